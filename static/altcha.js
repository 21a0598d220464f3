/* Proof of work for the contact form (docs/spam-verdicts.md): fetches a challenge from /altcha
   while the visitor types, solves it in a Web Worker (altcha-worker.js) and puts the base64
   JSON solution in the form's hidden `altcha` field. Nothing is shown, nothing waits for it:
   without it the message still reaches the owner, marked suspect.

   On this site's pages it runs by itself on #contact-form. On another site's page the embed
   script calls window.ContactSite.proveWork(form) on the form it put there. A page may not
   start a Worker from another origin's address, so there the worker is a blob: of the page
   whose only line imports altcha-worker.js from this site (importScripts may load a script
   from anywhere its page's script-src allows): the page's CSP needs `worker-src blob:`. */
(function () {
  'use strict';

  const script = document.currentScript;
  if (!script || !window.Worker || !window.fetch || !window.crypto || !window.crypto.subtle) {
    return;
  }
  // Beside this file: /static/altcha-worker.js, under any URL prefix.
  const workerUrl = new URL('altcha-worker.js', script.src);
  // A fresh challenge this long before the current one expires.
  const RENEW_BEFORE_MS = 60 * 1000;
  const RETRY_MS = 30 * 1000;

  function expiryOf(salt) {
    const query = salt.split('?')[1] || '';
    return Number(new URLSearchParams(query).get('expires')) * 1000 || 0;
  }

  // The worker's address as this page may start it: the file itself on this site's own pages.
  function workerSource() {
    if (workerUrl.origin === window.location.origin) {
      return { url: workerUrl.href, revoke: () => {} };
    }
    const loader = new Blob([`importScripts(${JSON.stringify(workerUrl.href)});\n`],
      { type: 'text/javascript' });
    const url = URL.createObjectURL(loader);
    return { url, revoke: () => URL.revokeObjectURL(url) };
  }

  // Rejects with `workerFailed` set when the worker would not run (the page's policy).
  function solveInWorker(task) {
    return new Promise((resolve, reject) => {
      const source = workerSource();
      let worker = null;
      const finish = (settle, value) => {
        if (worker) {
          worker.terminate();
        }
        source.revoke();
        settle(value);
      };
      const failed = () => finish(reject, Object.assign(new Error('no worker'),
        { workerFailed: true }));
      try {
        worker = new Worker(source.url);
      } catch (error) { // some browsers refuse at once
        failed();
        return;
      }
      worker.onmessage = (event) => finish(resolve, event.data);
      worker.onerror = failed;
      worker.postMessage(task);
    });
  }

  // Keep a fresh, unused solution in `form`'s altcha field for as long as the page is open.
  function proveWork(form) {
    const field = form && form.querySelector('input[name="altcha"]');
    if (!field || form.dataset.altchaStarted) {
      return;
    }
    form.dataset.altchaStarted = 'true';
    const challengeUrl = new URL(form.dataset.altchaUrl || '../altcha', script.src);
    let timer = null;
    let expiresAt = 0;
    let running = false;
    // Set when the page will not run the worker: it will not later either.
    let noWorker = false;

    function later(ms) {
      window.clearTimeout(timer);
      timer = window.setTimeout(renew, Math.max(ms, 1000));
    }

    async function renew() {
      if (running || noWorker) {
        return;
      }
      running = true;
      try {
        // (On another site's page, same-origin means no cookies: none are needed.)
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
        // No retries without a worker: each would be one more policy violation reported
        // to the page's owner.
        noWorker = Boolean(error && error.workerFailed);
        if (!noWorker) {
          later(RETRY_MS);
        }
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
  }

  window.ContactSite = Object.assign(window.ContactSite || {}, { proveWork });
  // This site's own page (and the form's iframe); the embed script starts its own form.
  const own = document.getElementById('contact-form');
  if (own && !own.closest('.contact-site-embed')) {
    proveWork(own);
  }
}());
