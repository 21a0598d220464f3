/* Inside the form's iframe (/f/<slug>/embed): tells the page around the frame how tall the
   form is, so that page (embed.js with data-mode="iframe") can size the frame to it. The
   message goes to the one origin the server named in data-parent-origin (an origin the form
   allows), never to "*": no other page learns anything from it.

   Sent on load, whenever the page's height changes (errors shown or cleared, a narrower
   window), and after errors are shown (contact.js's `contact-site:errors`). */
(function () {
  'use strict';

  const script = document.currentScript;
  const parentOrigin = script && script.dataset.parentOrigin;
  if (!parentOrigin || window.parent === window) {
    return;
  }
  // The bounds embed.js accepts: a whole number of pixels, never 0, never absurd.
  const MIN_HEIGHT = 100;
  const MAX_HEIGHT = 5000;
  let told = 0;

  // The page's own height: the root element's box, which (unlike scrollHeight) does not grow
  // with the frame, so the frame can shrink again.
  function pageHeight() {
    const height = Math.ceil(document.documentElement.getBoundingClientRect().height);
    return Math.min(MAX_HEIGHT, Math.max(MIN_HEIGHT, height));
  }

  function tellHeight(always) {
    const height = pageHeight();
    if (height === told && !always) {
      return;
    }
    told = height;
    window.parent.postMessage({ type: 'contact-site:height', height }, parentOrigin);
  }

  if (window.ResizeObserver) {
    new ResizeObserver(() => tellHeight(false)).observe(document.documentElement);
  }
  window.addEventListener('resize', () => tellHeight(false));
  document.addEventListener('contact-site:errors', () => tellHeight(true));
  window.addEventListener('load', () => tellHeight(true));
  tellHeight(true);
}());
