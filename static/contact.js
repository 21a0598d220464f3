/* Progressive enhancement of the contact form: the page's own validation, early file checks,
   upload progress, errors shown in place. Without this file the form posts as plain HTML
   (the browser's own checks, then the server's 422 page with the same words).

   Every word shown comes from the page (the form's data-messages, in the page's language)
   or from the server's answers; every limit comes from the rendered attributes
   (required, maxlength, the input's type, min/max, and on each file input accept,
   data-max-bytes and data-max-files). Where the page gives no words for a problem, the
   server answers it: the page is never stricter than the server.

   On this site's pages it runs by itself on #contact-form. On another site's page the
   embed script (embed.js) calls window.ContactSite.enhance(form, options) on the form it
   put there; see enhance() for the options. */
(function () {
  'use strict';

  // Deliberately loose (something@something.something): email-validator on the server decides.
  const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
  // The scheme the server takes, in any case, and no space; the server checks the host.
  const WEB_ADDRESS = /^https?:\/\/[^ ]+$/i;
  // What a date input gives once the browser has a whole date (the server wants the same).
  const DATE_SHAPE = /^\d{4}-\d{2}-\d{2}$/;

  function wordsOf(form) {
    try {
      const messages = JSON.parse(form.dataset.messages || 'null');
      return messages && typeof messages === 'object' ? messages : null;
    } catch (error) {
      return null;
    }
  }

  /* Enhance `form`. Options (all optional; the site's own page passes none):
     - inPlace: on success, say thank you beside the form and clear it, instead of going
       to the form's data-thanks-url (a form on another site's page stays on that page);
     - setTitle: false leaves document.title alone (it belongs to the page around the form);
     - beforeSend(): a promise settled when the form may be sent (the embed script fetches
       a fresh one-time token); a rejection is shown as a network error;
     - onSuccess(answer): called after a success with the server's JSON answer ({id, status}).
     The form dispatches `contact-site:errors` when it shows errors and `contact-site:sent`
     (detail: the answer) after a success; both bubble. */
  function enhance(form, options) {
    const settings = options || {};
    if (!form || form.dataset.contactSiteEnhanced || !window.FormData
        || !window.XMLHttpRequest) {
      return;
    }
    const messages = wordsOf(form);
    if (!messages) {
      // No words to show: leave validation to the browser and the server.
      return;
    }
    // The summary and the progress live beside the form, in the element around both.
    const scope = form.parentNode;
    const find = (id) => scope.querySelector(`#${CSS.escape(id)}`);
    const summary = find('error-summary');
    const summaryTitle = find('error-summary-title');
    const summaryList = find('error-summary-list');
    const progress = find('upload-progress');
    const status = find('upload-status');
    const button = find('submit-button');
    if (!summary || !summaryList || !progress || !status || !button) {
      return;
    }
    form.dataset.contactSiteEnhanced = 'true';

    const fileInputs = Array.prototype.filter.call(form.elements, (control) => (
      control.type === 'file' && control.name && !control.disabled));
    const languageHolder = form.closest('[lang]');
    const lang = (languageHolder && languageHolder.lang) || undefined;
    const setsTitle = settings.setTitle !== false;

    // Field name -> the words of a refused choice of files, shown again once on sending.
    const rejectedFiles = {};
    let sending = false;
    let announcedStep = -1;
    const buttonLabel = button.textContent;
    // The title without errors, known only when the page came without them.
    const pageTitle = setsTitle && summary.hidden ? document.title : null;
    // The thank-you said in place (settings.inPlace), made on the first success.
    let thanks = null;

    // The browser's bubbles would stop the submit before the page shows its own messages.
    form.noValidate = true;

    // A message of the page; a per-field entry (an object) is picked by the field's name.
    // {placeholders} are filled from `values`; a missing message reads as an empty string.
    function say(key, values, fieldName) {
      let text = messages[key];
      if (text && typeof text === 'object') {
        text = text[fieldName] || text.default;
      }
      return String(text || '').replace(/\{(\w+)\}/g, (whole, name) => (
        values && name in values ? String(values[name]) : whole));
    }

    function formatted(value, options) {
      try {
        return new Intl.NumberFormat(lang, options).format(value);
      } catch (error) {
        return String(value);
      }
    }

    function percentText(percent) {
      return formatted(percent / 100, { style: 'percent', maximumFractionDigits: 0 });
    }

    // Binary units, as the server's limit is counted; the unit's name comes from the browser.
    function humanSize(bytes) {
      const [unit, size] = bytes < 1024 ? ['byte', 1]
        : bytes < 1024 * 1024 ? ['kilobyte', 1024] : ['megabyte', 1024 * 1024];
      const digits = size === 1 ? 0 : 1;
      return formatted(bytes / size, {
        style: 'unit', unit, unitDisplay: 'short',
        minimumFractionDigits: digits, maximumFractionDigits: digits,
      });
    }

    // The extensions the file input's accept="…" lists (".pdf,.png"); MIME entries are ignored.
    function extensionsAccepted(input) {
      return ((input && input.getAttribute('accept')) || '')
        .split(',')
        .map((entry) => entry.trim().toLowerCase())
        .filter((entry) => entry.startsWith('.') && entry.length > 1)
        .map((entry) => entry.slice(1));
    }

    function extensionOf(filename) {
      const dot = filename.lastIndexOf('.');
      return dot === -1 ? '' : filename.slice(dot + 1).toLowerCase();
    }

    // A file input's limits as rendered: each file's size, how many files, which extensions.
    function fileLimits(input) {
      return {
        maxBytes: Number(input.dataset.maxBytes) || Number(form.dataset.maxBytes) || Infinity,
        maxFiles: Number(input.dataset.maxFiles) || (input.multiple ? Infinity : 1),
        allowed: extensionsAccepted(input),
      };
    }

    function chosenFiles(input) {
      return Array.prototype.slice.call(input.files || []);
    }

    // The control named `name`, found by id as WTForms renders it, inside this form only
    // (the page around an embedded form may use the same ids).
    function controlFor(name) {
      return form.querySelector(`#${CSS.escape(name)}`);
    }

    function errorContainer(name) {
      return form.querySelector(`#${CSS.escape(`${name}-error`)}`);
    }

    function describedBy(control, errorId, present) {
      const ids = (control.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
      const rest = ids.filter((id) => id !== errorId);
      if (present) {
        rest.push(errorId);
      }
      if (rest.length) {
        control.setAttribute('aria-describedby', rest.join(' '));
      } else {
        control.removeAttribute('aria-describedby');
      }
    }

    function setFieldError(name, messagesOfField) {
      const container = errorContainer(name);
      const control = controlFor(name);
      if (!container || !control) {
        return false;
      }
      container.textContent = '';
      messagesOfField.forEach((message) => {
        const line = document.createElement('span');
        line.className = 'field-error-message';
        line.textContent = message;
        container.appendChild(line);
      });
      container.hidden = false;
      control.setAttribute('aria-invalid', 'true');
      describedBy(control, container.id, true);
      return true;
    }

    function clearFieldError(name) {
      const container = errorContainer(name);
      const control = controlFor(name);
      if (container) {
        container.textContent = '';
        container.hidden = true;
      }
      if (control) {
        control.removeAttribute('aria-invalid');
        describedBy(control, `${name}-error`, false);
      }
    }

    function clearErrors() {
      form.querySelectorAll('.field-error').forEach((container) => {
        clearFieldError(container.id.replace(/-error$/, ''));
      });
      // The server's notice (nothing was sent) belongs to the earlier attempt.
      const notice = find('form-notice');
      if (notice) {
        notice.remove();
      }
      summaryList.textContent = '';
      summary.hidden = true;
      if (pageTitle !== null) {
        document.title = pageTitle;
      }
      if (thanks) {
        thanks.hidden = true;
      }
    }

    function addSummaryItem(message, fieldName) {
      const item = document.createElement('li');
      if (fieldName) {
        const link = document.createElement('a');
        link.href = `#${fieldName}`;
        link.textContent = message;
        item.appendChild(link);
      } else {
        item.textContent = message;
      }
      summaryList.appendChild(item);
    }

    // The title says so too, as the server's error page does: it is read first on a change.
    function showSummary() {
      if (messages.summary_title && summaryTitle) {
        summaryTitle.textContent = say('summary_title');
      }
      summary.hidden = false;
      if (messages.error_title && setsTitle) {
        document.title = say('error_title');
      }
      summary.focus();
      announce('contact-site:errors', null);
    }

    // Tell the page around the form (the embed script, the iframe's frame.js).
    function announce(type, detail) {
      form.dispatchEvent(new CustomEvent(type, { bubbles: true, detail }));
    }

    // Position of a field in the form, so the summary lists errors in reading order
    // (the server's JSON object has its keys sorted by name).
    function fieldPosition(name) {
      const control = controlFor(name);
      const index = control ? Array.prototype.indexOf.call(form.elements, control) : -1;
      return index === -1 ? form.elements.length : index;
    }

    function showErrors(errors) {
      const names = Object.keys(errors).sort((a, b) => fieldPosition(a) - fieldPosition(b));
      names.forEach((name) => {
        const raw = errors[name];
        const list = (Array.isArray(raw) ? raw : [raw]).map(String);
        const linked = setFieldError(name, list);
        list.forEach((message) => addSummaryItem(message, linked ? name : null));
      });
      showSummary();
    }

    function showMessage(message) {
      addSummaryItem(message, null);
      showSummary();
    }

    // What the server measures: CRLF counts as one character; a single-line field is measured
    // without the spaces the server strips or joins (never stricter than the server).
    function measuredText(control) {
      if (control.tagName === 'TEXTAREA') {
        return control.value.replace(/\r\n/g, '\n');
      }
      return control.value.replace(/ {2,}/g, ' ').replace(/^ +| +$/g, '');
    }

    // The first problem with one control, in the server's order: required, length, shape.
    // Without words for it on the page, the problem is left for the server to answer.
    function controlProblem(control) {
      if (control.type === 'checkbox') {
        return checkboxProblem(control);
      }
      if (control.type === 'number') {
        return numberProblem(control);
      }
      if (control.type === 'date') {
        return dateProblem(control);
      }
      return textProblem(control) || null;
    }

    // A checkbox or a consent that must be ticked.
    function checkboxProblem(control) {
      return control.required && !control.checked ? say('required', null, control.name) : null;
    }

    // The browser keeps what it cannot read as a number out of value (badInput): say so,
    // rather than that nothing was entered.
    function numberProblem(control) {
      const name = control.name;
      if (control.validity && control.validity.badInput) {
        return say('number_invalid', null, name);
      }
      const text = control.value.trim();
      if (!text) {
        return control.required ? say('required', null, name) : null;
      }
      const number = Number(text);
      if (!Number.isFinite(number)) {
        return say('number_invalid', null, name);
      }
      return rangeProblem(control, number);
    }

    // A number outside min/max, in the server's words for the bounds when the page has them;
    // without them the server answers.
    function rangeProblem(control, number) {
      const low = control.min === '' ? null : Number(control.min);
      const high = control.max === '' ? null : Number(control.max);
      if ((low === null || number >= low) && (high === null || number <= high)) {
        return null;
      }
      const key = low === null ? 'number_at_most' : high === null ? 'number_at_least'
        : 'number_between';
      return say(key, { min: formatted(low), max: formatted(high) }, control.name) || null;
    }

    // A date input gives YYYY-MM-DD or nothing; an unfinished date is badInput.
    function dateProblem(control) {
      const name = control.name;
      if (control.validity && control.validity.badInput) {
        return say('date_invalid', null, name);
      }
      const text = control.value.trim();
      if (!text) {
        return control.required ? say('required', null, name) : null;
      }
      return DATE_SHAPE.test(text) ? null : say('date_invalid', null, name);
    }

    function textProblem(control) {
      const name = control.name;
      if (!control.value.trim()) {
        return control.required ? say('required', null, name) : null;
      }
      const text = measuredText(control);
      const max = Number(control.getAttribute('maxlength'));
      // Code points, as Python's len() counts them (not UTF-16 units).
      if (max > 0 && Array.from(text).length > max) {
        return say('too_long', { max: formatted(max) }, name);
      }
      if (control.type === 'email' && !EMAIL_SHAPE.test(text)) {
        return say('email_invalid', null, name);
      }
      if (control.type === 'url' && !WEB_ADDRESS.test(text)) {
        return say('url_invalid', null, name);
      }
      return null;
    }

    // The fields the page can show an error beside (the honeypot has no such place).
    function checkedControls() {
      return Array.prototype.filter.call(form.elements, (control) => (
        /^(INPUT|SELECT|TEXTAREA)$/.test(control.tagName)
        && !['hidden', 'file', 'submit', 'button'].includes(control.type)
        && control.name && !control.disabled && errorContainer(control.name)));
    }

    // One file against its input's limits, in that field's words (each file on its own).
    function fileProblem(input, file) {
      const limits = fileLimits(input);
      if (file.size > limits.maxBytes) {
        return say('file_too_large', null, input.name);
      }
      if (limits.allowed.length && !limits.allowed.includes(extensionOf(file.name))) {
        return say('file_type', null, input.name);
      }
      return null;
    }

    // The first problem with the files chosen in one input: too many, then each file in turn.
    function selectionProblem(input, files) {
      const maxFiles = fileLimits(input).maxFiles;
      if (files.length > maxFiles) {
        return say('too_many_files', { max: formatted(maxFiles) }, input.name);
      }
      return files.map((file) => fileProblem(input, file)).find(Boolean) || null;
    }

    // The input's info line: one line per file, "Selected: …" or "Not added: …".
    function describeFiles(input, key, files) {
      const info = form.querySelector(`#${CSS.escape(`${input.name}-info`)}`);
      if (!info) {
        return;
      }
      info.textContent = '';
      files.forEach((file, index) => {
        if (index) {
          info.appendChild(document.createElement('br'));
        }
        info.appendChild(document.createTextNode(
          say(key, { name: file.name, size: humanSize(file.size) })));
      });
    }

    // Clearing the input keeps every file of a refused choice out of the request.
    function refuseFiles(input, files, problem) {
      input.value = '';
      rejectedFiles[input.name] = problem;
      setFieldError(input.name, [problem]);
      describeFiles(input, 'file_not_added', files);
    }

    function checkFiles(input) {
      clearFieldError(input.name);
      describeFiles(input, 'file_selected', []);
      delete rejectedFiles[input.name];
      const files = chosenFiles(input);
      if (!files.length) {
        return;
      }
      const problem = selectionProblem(input, files);
      if (problem) {
        refuseFiles(input, files, problem);
      } else {
        describeFiles(input, 'file_selected', files);
      }
    }

    // A file input's problem on sending: a refusal not yet seen by a send, else required.
    function fileInputProblem(input) {
      const files = chosenFiles(input);
      const refusal = files.length ? selectionProblem(input, files) : null;
      if (refusal) {
        refuseFiles(input, files, refusal);
      }
      // Stop once so the visitor notices the files were not added; the next send goes
      // without them.
      const rejected = rejectedFiles[input.name];
      delete rejectedFiles[input.name];
      if (rejected) {
        return rejected;
      }
      return input.required && !chosenFiles(input).length ? say('required', null, input.name)
        : null;
    }

    // Every problem the page can see before sending, by field name, as the server answers them.
    function problems() {
      const found = {};
      checkedControls().forEach((control) => {
        const problem = controlProblem(control);
        if (problem) {
          found[control.name] = [problem];
        }
      });
      fileInputs.forEach((input) => {
        const problem = fileInputProblem(input);
        if (problem) {
          found[input.name] = [problem];
        }
      });
      return found;
    }

    // No aria-busy on the form: it would silence the status live region inside it.
    function setSending(active) {
      sending = active;
      button.disabled = active;
      button.textContent = active ? (say('sending') || buttonLabel) : buttonLabel;
    }

    // The bar moves with every event; the live status text only every 10 %, so a screen
    // reader announces the percentage without being flooded.
    function setProgress(percent) {
      progress.hidden = false;
      status.hidden = false;
      progress.value = percent;
      progress.textContent = percentText(percent);
      const step = percent >= 100 ? 100 : Math.floor(percent / 10) * 10;
      if (step !== announcedStep) {
        announcedStep = step;
        status.textContent = say(step === 100 ? 'upload_done' : 'upload_progress',
          { percent: percentText(step) });
      }
    }

    function hideProgress() {
      progress.hidden = true;
      status.hidden = true;
      progress.value = 0;
      progress.textContent = '';
      status.textContent = '';
      announcedStep = -1;
    }

    // An answer without the server's JSON (a proxy's page, say): the page's nearest words,
    // for too large those of the first field with files.
    function fallbackMessage(code) {
      const sent = fileInputs.find((input) => chosenFiles(input).length) || fileInputs[0];
      return (code === 413 && say('file_too_large', null, sent && sent.name))
        || say('network_error');
    }

    function handleResponse(xhr) {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch (error) {
        body = null;
      }
      // A 2xx covers 202 and, should the server answer HTML, the followed 303.
      if (xhr.status >= 200 && xhr.status < 300) {
        succeed(body);
        return;
      }
      setSending(false);
      hideProgress();
      if (body && body.errors && typeof body.errors === 'object') {
        showErrors(body.errors);
      } else if (body && body.error) {
        showMessage(String(body.error));
      } else {
        showMessage(fallbackMessage(xhr.status));
      }
    }

    // The server has the message: to the thanks page, or (inPlace) thanks said here and the
    // form emptied for another message.
    function succeed(answer) {
      if (!settings.inPlace) {
        window.location.assign(form.dataset.thanksUrl);
      } else {
        setSending(false);
        hideProgress();
        HTMLFormElement.prototype.reset.call(form); // a field may be named "reset"
        fileInputs.forEach((input) => describeFiles(input, 'file_selected', []));
        showThanks();
      }
      announce('contact-site:sent', answer);
      if (typeof settings.onSuccess === 'function') {
        settings.onSuccess(answer);
      }
    }

    // A status message before the form, focused so it is read (and seen) at once.
    function showThanks() {
      if (!thanks) {
        thanks = document.createElement('p');
        thanks.className = 'contact-site-thanks';
        thanks.setAttribute('role', 'status');
        thanks.tabIndex = -1;
        summary.parentNode.insertBefore(thanks, summary);
      }
      // `sent` is the page's thank-you; older pages have only the upload's last words.
      thanks.textContent = say('sent') || say('upload_done', { percent: percentText(100) });
      thanks.hidden = false;
      thanks.focus();
    }

    function failNetwork() {
      setSending(false);
      hideProgress();
      showMessage(say('network_error'));
    }

    function send() {
      const xhr = new XMLHttpRequest();
      // The form's absolute address (another site's page holds this site's form). No
      // cookies go to another origin; this site's own page has the CSRF cookie sent anyway.
      // (getAttribute: a field named "action" would shadow form.action.)
      xhr.open('POST', new URL(form.getAttribute('action') || '', window.location.href).href);
      xhr.withCredentials = false;
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.setRequestHeader('X-Requested-With', 'XMLHttpRequest');
      xhr.upload.addEventListener('progress', (event) => {
        if (event.lengthComputable) {
          setProgress(Math.round((event.loaded / event.total) * 100));
        }
      });
      xhr.addEventListener('load', () => handleResponse(xhr));
      xhr.addEventListener('error', failNetwork);
      xhr.addEventListener('abort', failNetwork);
      xhr.addEventListener('timeout', failNetwork);
      setSending(true);
      setProgress(0);
      xhr.send(new FormData(form));
    }

    // Sent once what the page around the form needs first is ready (a fresh token).
    function sendWhenReady() {
      if (typeof settings.beforeSend !== 'function') {
        send();
        return;
      }
      setSending(true);
      Promise.resolve()
        .then(() => settings.beforeSend())
        .then(send, failNetwork);
    }

    function onSubmit(event) {
      event.preventDefault();
      if (sending) {
        return;
      }
      clearErrors();
      const found = problems();
      if (Object.keys(found).length) {
        showErrors(found);
        return;
      }
      sendWhenReady();
    }

    // Summary links move focus to the field itself, not just scroll to it.
    function onSummaryClick(event) {
      const link = event.target.closest('a[href^="#"]');
      const control = link && controlFor(link.getAttribute('href').slice(1));
      if (control) {
        event.preventDefault();
        control.focus();
      }
    }

    fileInputs.forEach((input) => {
      input.addEventListener('change', () => checkFiles(input));
    });
    summary.addEventListener('click', onSummaryClick);
    form.addEventListener('submit', onSubmit);

    // Errors rendered by the server (no-JS round trip): bring them to attention.
    if (!summary.hidden) {
      summary.focus();
    }
  }

  window.ContactSite = Object.assign(window.ContactSite || {}, { enhance });
  // This site's own page (and the form's iframe); a form the embed script put in another
  // site's page is enhanced by that script, with its options.
  const own = document.getElementById('contact-form');
  if (own && !own.closest('.contact-site-embed')) {
    enhance(own);
  }
})();
