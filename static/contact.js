/* Progressive enhancement of #contact-form: early file checks, upload progress,
   errors shown in place. Without this file the form posts as plain HTML. */
(function () {
  'use strict';

  const form = document.getElementById('contact-form');
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return;
  }

  const fileInput = document.getElementById('attachment');
  const fileInfo = document.getElementById('attachment-info');
  const summary = document.getElementById('error-summary');
  const summaryList = document.getElementById('error-summary-list');
  const progress = document.getElementById('upload-progress');
  const status = document.getElementById('upload-status');
  const button = document.getElementById('submit-button');

  const data = form.dataset;
  const maxBytes = Number(data.maxBytes) || Infinity;
  const allowed = (data.allowedExtensions || '')
    .split(',')
    .map((ext) => ext.trim().toLowerCase())
    .filter(Boolean);

  const NETWORK_ERROR = 'The message could not be sent. Check your connection and try again.';
  const RATE_LIMITED = 'Too many messages were sent from your connection. Please wait a while and try again.';
  const SERVER_ERROR = 'The message could not be sent. Please try again later.';

  let rejectedFileMessage = null;
  let sending = false;
  let announcedStep = -1;
  const buttonLabel = button.textContent;
  const pageTitle = document.title.replace(/^Error: /, '');

  function humanSize(bytes) {
    if (bytes < 1024) {
      return `${bytes} bytes`;
    }
    if (bytes < 1024 * 1024) {
      return `${(bytes / 1024).toFixed(1)} KB`;
    }
    return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
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

  function setFieldError(name, messages) {
    const container = document.getElementById(`${name}-error`);
    const control = controlFor(name);
    if (!container || !control) {
      return false;
    }
    container.textContent = '';
    messages.forEach((message) => {
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
    const container = document.getElementById(`${name}-error`);
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
    summaryList.textContent = '';
    summary.hidden = true;
    document.title = pageTitle;
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
    summary.hidden = false;
    document.title = `Error: ${pageTitle}`;
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
      const messages = (Array.isArray(raw) ? raw : [raw]).map(String);
      const linked = setFieldError(name, messages);
      messages.forEach((message) => addSummaryItem(message, linked ? name : null));
    });
    showSummary();
  }

  function showMessage(message) {
    addSummaryItem(message, null);
    showSummary();
  }

  function checkFile() {
    clearFieldError('attachment');
    fileInfo.textContent = '';
    rejectedFileMessage = null;
    const file = fileInput.files && fileInput.files[0];
    if (!file) {
      return;
    }
    const described = `${file.name} (${humanSize(file.size)})`;
    let problem = null;
    if (file.size > maxBytes) {
      problem = data.msgTooLarge;
    } else if (allowed.length && !allowed.includes(extensionOf(file.name))) {
      problem = data.msgBadType;
    }
    if (!problem) {
      fileInfo.textContent = `Selected: ${described}`;
      return;
    }
    // Clearing the input keeps the refused file out of the request.
    fileInput.value = '';
    rejectedFileMessage = problem;
    setFieldError('attachment', [problem]);
    fileInfo.textContent = `Not added: ${described}. Choose another file, or send the message without one.`;
  }

  // No aria-busy on the form: it would silence the status live region inside it.
  function setSending(active) {
    sending = active;
    button.disabled = active;
    button.textContent = active ? 'Sending…' : buttonLabel;
  }

  // The bar moves with every event; the live status text only every 10 %, so a screen
  // reader announces the percentage without being flooded.
  function setProgress(percent) {
    progress.hidden = false;
    status.hidden = false;
    progress.value = percent;
    progress.textContent = `${percent}%`;
    const step = percent >= 100 ? 100 : Math.floor(percent / 10) * 10;
    if (step !== announcedStep) {
      announcedStep = step;
      status.textContent = step === 100
        ? 'Uploaded: 100%. Waiting for the server to confirm…'
        : `Uploading: ${step}%`;
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

  function fallbackMessage(code) {
    if (code === 413) {
      return data.msgTooLarge || SERVER_ERROR;
    }
    return code === 429 ? RATE_LIMITED : SERVER_ERROR;
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
      status.textContent = 'Sent. Opening the confirmation page…';
      window.location.assign(data.thanksUrl);
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
    showMessage(NETWORK_ERROR);
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
    if (rejectedFileMessage) {
      // Stop once so the visitor notices the file was not added; the next send goes without it.
      const message = rejectedFileMessage;
      rejectedFileMessage = null;
      showErrors({ attachment: [message] });
      return;
    }
    if (!form.checkValidity()) {
      form.reportValidity();
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

  if (fileInput && fileInfo) {
    fileInput.addEventListener('change', checkFile);
  }
  summary.addEventListener('click', onSummaryClick);
  form.addEventListener('submit', onSubmit);

  // Errors rendered by the server (no-JS round trip): bring them to attention.
  if (!summary.hidden) {
    summary.focus();
  }
})();
