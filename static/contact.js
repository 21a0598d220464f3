/* Progressive enhancement of #contact-form: the page's own validation, early file checks,
   upload progress, errors shown in place. Without this file the form posts as plain HTML
   (the browser's own checks, then the server's 422 page with the same words).

   Every word shown comes from the page (the form's data-messages, in the page's language)
   or from the server's answers; every limit comes from the rendered attributes
   (required, maxlength, type=email, accept, data-max-bytes). */
(function () {
  'use strict';

  const form = document.getElementById('contact-form');
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }

  let messages = null;
  try {
    messages = JSON.parse(form.dataset.messages || 'null');
  } catch (error) {
    messages = null;
  }
  if (!messages || typeof messages !== 'object') {
    // No words to show: leave validation to the browser and the server.
    return;
  }

  const fileInput = document.getElementById('attachment');
  const fileInfo = document.getElementById('attachment-info');
  const summary = document.getElementById('error-summary');
  const summaryTitle = document.getElementById('error-summary-title');
  const summaryList = document.getElementById('error-summary-list');
  const progress = document.getElementById('upload-progress');
  const status = document.getElementById('upload-status');
  const button = document.getElementById('submit-button');

  const lang = document.documentElement.lang || undefined;
  const maxBytes = Number(form.dataset.maxBytes) || Infinity;
  const allowed = extensionsAccepted(fileInput);
  // Deliberately loose (something@something.something): email-validator on the server decides.
  const EMAIL_SHAPE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

  let rejectedFileMessage = null;
  let sending = false;
  let announcedStep = -1;
  const buttonLabel = button.textContent;
  // The title without errors, known only when the page came without them.
  const pageTitle = summary.hidden ? document.title : null;

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

  // The control named `name`, found by id as WTForms renders it, inside this form only.
  function controlFor(name) {
    const control = document.getElementById(name);
    return control && form.contains(control) ? control : null;
  }

  function errorContainer(name) {
    return document.getElementById(`${name}-error`);
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
    const notice = document.getElementById('form-notice');
    if (notice) {
      notice.remove();
    }
    summaryList.textContent = '';
    summary.hidden = true;
    if (pageTitle !== null) {
      document.title = pageTitle;
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
    if (messages.error_title) {
      document.title = say('error_title');
    }
    summary.focus();
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

  // The first problem with one text control, in the server's order: required, length, shape.
  // Without words for it on the page, the problem is left for the server to answer.
  function controlProblem(control) {
    return textProblem(control) || null;
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
    return null;
  }

  // The fields the page can show an error beside (the honeypot has no such place).
  function checkedControls() {
    return Array.prototype.filter.call(form.elements, (control) => (
      /^(INPUT|SELECT|TEXTAREA)$/.test(control.tagName)
      && !['hidden', 'file', 'submit', 'button'].includes(control.type)
      && control.name && !control.disabled && errorContainer(control.name)));
  }

  function fileProblem(file) {
    if (file.size > maxBytes) {
      return say('file_too_large');
    }
    if (allowed.length && !allowed.includes(extensionOf(file.name))) {
      return say('file_type');
    }
    return null;
  }

  // Clearing the input keeps the refused file out of the request.
  function refuseFile(file, problem) {
    fileInput.value = '';
    rejectedFileMessage = problem;
    setFieldError('attachment', [problem]);
    if (fileInfo) {
      fileInfo.textContent = say('file_not_added', { name: file.name, size: humanSize(file.size) });
    }
  }

  function checkFile() {
    clearFieldError('attachment');
    if (fileInfo) {
      fileInfo.textContent = '';
    }
    rejectedFileMessage = null;
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      return;
    }
    const problem = fileProblem(file);
    if (problem) {
      refuseFile(file, problem);
    } else if (fileInfo) {
      fileInfo.textContent = say('file_selected', { name: file.name, size: humanSize(file.size) });
    }
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
    const file = fileInput && fileInput.files && fileInput.files[0];
    const refusal = file ? fileProblem(file) : null;
    if (refusal) {
      refuseFile(file, refusal);
    }
    if (rejectedFileMessage) {
      // Stop once so the visitor notices the file was not added; the next send goes without it.
      found.attachment = [rejectedFileMessage];
      rejectedFileMessage = null;
    }
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

  // An answer without the server's JSON (a proxy's page, say): the page's nearest words.
  function fallbackMessage(code) {
    return (code === 413 && say('file_too_large')) || say('network_error');
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
      window.location.assign(form.dataset.thanksUrl);
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

  function failNetwork() {
    setSending(false);
    hideProgress();
    showMessage(say('network_error'));
  }

  function send() {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', form.getAttribute('action') || window.location.href);
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
    send();
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

  if (fileInput) {
    fileInput.addEventListener('change', checkFile);
  }
  summary.addEventListener('click', onSummaryClick);
  form.addEventListener('submit', onSubmit);

  // Errors rendered by the server (no-JS round trip): bring them to attention.
  if (!summary.hidden) {
    summary.focus();
  }
})();
