/* Proof of work for #contact-form (docs/spam-verdicts.md): fetches a challenge from /altcha while the
   visitor types, solves it in a Web Worker (altcha-worker.js) and puts the base64 JSON
   solution in the form's hidden `altcha` field. Nothing is shown, nothing waits for it:
   without it the message still reaches the owner, marked suspect. */
(function () {
  'use strict';

  const form = document.getElementById('contact-form');
  const field = form && form.querySelector('input[name="altcha"]');
  const script = document.currentScript;
  if (!field || !script || !window.Worker || !window.fetch || !window.crypto
      || !window.crypto.subtle) {
    return;
  }
  // Beside this file: /static/altcha-worker.js and /altcha, under any URL prefix.
  const workerUrl = new URL('altcha-worker.js', script.src);
  const challengeUrl = new URL(form.dataset.altchaUrl || '../altcha', script.src);
  // A fresh challenge this long before the current one expires.
  const RENEW_BEFORE_MS = 60 * 1000;
  const RETRY_MS = 30 * 1000;

  let timer = null;
  let expiresAt = 0;
  let running = false;

  function expiryOf(salt) {
    const query = salt.split('?')[1] || '';
    return Number(new URLSearchParams(query).get('expires')) * 1000 || 0;
  }

  function later(ms) {
    window.clearTimeout(timer);
    timer = window.setTimeout(renew, Math.max(ms, 1000));
  }

  function solveInWorker(task) {
    return new Promise((resolve, reject) => {
      const worker = new Worker(workerUrl);
      worker.onmessage = (event) => {
        worker.terminate();
        resolve(event.data);
      };
      worker.onerror = (error) => {
        worker.terminate();
        reject(error);
      };
      worker.postMessage(task);
    });
  }

  async function renew() {
    if (running) {
      return;
    }
    running = true;
    try {
      const answer = await fetch(challengeUrl, {
        credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' },
      });
      if (!answer.ok) {
        return; // proof of work is off (404), or the server is busy: the form works without
      }
      const task = await answer.json();
      const result = await solveInWorker(task);
      if (result.number === null || result.number === undefined) {
        return;
      }
      field.value = btoa(JSON.stringify({
        algorithm: task.algorithm, challenge: task.challenge, number: result.number,
        salt: task.salt, signature: task.signature,
      }));
      expiresAt = expiryOf(task.salt);
      form.dataset.altchaSolvedMs = String(result.took); // read by the browser test
      later(expiresAt - Date.now() - RENEW_BEFORE_MS);
    } catch (error) {
      later(RETRY_MS);
    } finally {
      running = false;
    }
  }

  // Timers sleep in a background tab: renew on return if the challenge ran out meanwhile.
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && expiresAt
        && Date.now() > expiresAt - RENEW_BEFORE_MS) {
      renew();
    }
  });
  // A solution is accepted once: after each send (which may fail and be retried in place),
  // solve a new one. The form's data is read when the send starts, before this replaces it.
  form.addEventListener('submit', () => window.setTimeout(renew, 0));
  renew();
}());
