// The owner's console: ask before an action that cannot be undone (delete, erase).
// Without JavaScript the forms post directly.
"use strict";

document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form instanceof HTMLFormElement ? form.getAttribute("data-confirm") : null;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
