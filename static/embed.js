/* The contact form on another site's page (docs/embed-example.html shows every way).

     <script src="https://contact.example.com/embed.js" data-form="contact" defer></script>

   placed where the form should appear. Attributes of that script tag:
   - data-form: the form's slug (default "contact");
   - data-lang: the form's language (default: the page's <html lang>, else the visitor's
     browser decides);
   - data-mode="iframe": the form in an iframe instead, sized to its content;
     data-title names that frame for screen readers (default "Contact form"),
     data-height is its height until the form tells it (default 900).

   Without data-mode the form is put into the page itself, so the page's CSS applies: the
   script fetches the form (/f/<slug>/fragment) and a one-time token (/f/<slug>/token, used
   instead of a cookie: none is sent, none is needed), loads contact.js and altcha.js from
   this site, and the form then sends with the same checks, words, progress bar and proof of
   work as on this site's own page. After a success it says thank you in place and gets a
   new token for a next message; the form dispatches `contact-site:sent` (bubbling, detail
   {id, status}) for the page to react to.

   Every request to this site is CORS without credentials; the server answers only the
   origins the form lists in allowed_origins. */
(function () {
  'use strict';

  const script = document.currentScript;
  if (!script || !window.fetch || !window.URL) {
    return;
  }
  // This script's folder is the site's root (the site may live under a path prefix).
  const base = new URL('./', script.src);
  const slug = encodeURIComponent(script.dataset.form || 'contact');
  const pageLanguage = (document.documentElement.lang || '').split('-')[0];
  const lang = script.dataset.lang || pageLanguage;
  const DEFAULT_HEIGHT = 900;
  // The heights the frame takes from its content (frame.js sends the same bounds).
  const MIN_HEIGHT = 100;
  const MAX_HEIGHT = 5000;

  function siteUrl(path, params) {
    const url = new URL(path, base);
    Object.keys(params || {}).forEach((key) => {
      if (params[key]) {
        url.searchParams.set(key, params[key]);
      }
    });
    return url.href;
  }

  function fromSite(path, params) {
    return fetch(siteUrl(path, params), { mode: 'cors', credentials: 'omit', cache: 'no-store' })
      .then((answer) => (answer.ok ? answer
        : Promise.reject(new Error(`${path} answered ${answer.status}`))));
  }

  // Where the form goes: after this script, in the page's body.
  function place(element) {
    if (script.parentNode && script.parentNode !== document.head) {
      script.after(element);
    } else {
      document.body.appendChild(element);
    }
  }

  // A script of this site, loaded once per page (the embed script may be there twice).
  function loadScript(path) {
    const shared = window.ContactSite = window.ContactSite || {};
    shared.scripts = shared.scripts || {};
    const src = siteUrl(`static/${path}`);
    if (!shared.scripts[src]) {
      shared.scripts[src] = new Promise((resolve, reject) => {
        const tag = document.createElement('script');
        tag.src = src;
        tag.onload = resolve;
        tag.onerror = () => reject(new Error(`${src} did not load`));
        (document.head || document.documentElement).appendChild(tag);
      });
    }
    return shared.scripts[src];
  }

  // The server's fragment: one <div class="contact-site-embed"> holding the form.
  async function insertForm() {
    const html = await (await fromSite(`f/${slug}/fragment`, { lang })).text();
    const template = document.createElement('template');
    template.innerHTML = html;
    const root = template.content.querySelector('.contact-site-embed');
    const form = root && root.querySelector('form');
    if (!form) {
      throw new Error('the answer holds no form');
    }
    // The language the form was asked in goes with the POST too: no cookie carries it.
    if (lang) {
      const action = new URL(form.getAttribute('action'));
      action.searchParams.set('lang', lang);
      form.setAttribute('action', action.href);
    }
    place(root);
    return form;
  }

  // A token is accepted once: a new one for each message sent.
  function tokenKeeper(form) {
    const field = form.querySelector('input[name="_token"]');
    const fetchToken = () => fromSite(`f/${slug}/token`)
      .then((answer) => answer.json())
      .then((body) => {
        field.value = body.token;
      });
    let ready = fetchToken();
    return {
      // Before each send: the token fetched, or (that failed) fetched again.
      beforeSend: () => ready.catch(() => {
        ready = fetchToken();
        return ready;
      }),
      renew: () => {
        field.value = '';
        ready = fetchToken();
      },
    };
  }

  async function embedForm() {
    const form = await insertForm();
    const token = tokenKeeper(form);
    if (form.querySelector('input[name="altcha"]') && form.dataset.altchaUrl) {
      loadScript('altcha.js').then(() => window.ContactSite.proveWork(form));
    }
    await loadScript('contact.js');
    window.ContactSite.enhance(form, {
      inPlace: true, setTitle: false, beforeSend: token.beforeSend, onSuccess: token.renew,
    });
  }

  function embedFrame() {
    const frame = document.createElement('iframe');
    frame.src = siteUrl(`f/${slug}/embed`, { origin: window.location.origin, lang });
    frame.title = script.dataset.title || 'Contact form';
    frame.className = 'contact-site-frame';
    frame.width = '100%';
    frame.height = String(Number(script.dataset.height) || DEFAULT_HEIGHT);
    const siteOrigin = base.origin;
    window.addEventListener('message', (event) => {
      const data = event.data;
      if (event.origin !== siteOrigin || event.source !== frame.contentWindow
          || !data || data.type !== 'contact-site:height' || !Number.isInteger(data.height)) {
        return;
      }
      frame.height = String(Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, data.height)));
    });
    place(frame);
  }

  if (script.dataset.mode === 'iframe') {
    embedFrame();
  } else {
    embedForm().catch((error) => {
      // Nothing is shown: the page keeps whatever it offers instead (a link, <noscript>).
      window.console.error(`The contact form could not be shown: ${error.message}`);
    });
  }
}());
