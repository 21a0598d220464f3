// Passkeys in the console: adding one (the account page), signing in with one (the sign-in
// page) and proving who you are again with one (re-authentication).
//
// The server's options come as JSON with their binary parts in base64url; the credential
// goes back the same way, with the console's CSRF token in the X-CSRFToken header. An
// answer {"redirect": url} is followed, {"reauth": url} too (an account change long after
// the last proof), {"error": text} is shown. Without JavaScript, or in a browser without
// passkeys, the passkey parts stay hidden and the fallback text shows.
"use strict";

(function () {
  if (!window.PublicKeyCredential || !navigator.credentials || !window.fetch) {
    return;
  }

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = window.atob(base64 + "===".slice((base64.length + 3) % 4));
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i += 1) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) {
      return null;
    }
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i += 1) {
      binary += String.fromCharCode(bytes[i]);
    }
    return window.btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withIds(descriptors) {
    return (descriptors || []).map(function (descriptor) {
      return Object.assign({}, descriptor, {id: toBytes(descriptor.id)});
    });
  }

  function creationOptions(options) {
    return Object.assign({}, options, {
      challenge: toBytes(options.challenge),
      user: Object.assign({}, options.user, {id: toBytes(options.user.id)}),
      excludeCredentials: withIds(options.excludeCredentials)
    });
  }

  function requestOptions(options) {
    return Object.assign({}, options, {
      challenge: toBytes(options.challenge),
      allowCredentials: withIds(options.allowCredentials)
    });
  }

  function credentialJSON(credential) {
    var response = credential.response;
    var json = {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      authenticatorAttachment: credential.authenticatorAttachment || null,
      clientExtensionResults: credential.getClientExtensionResults(),
      response: {clientDataJSON: toText(response.clientDataJSON)}
    };
    if (response.attestationObject) {
      json.response.attestationObject = toText(response.attestationObject);
      json.response.transports = response.getTransports ? response.getTransports() : [];
    } else {
      json.response.authenticatorData = toText(response.authenticatorData);
      json.response.signature = toText(response.signature);
      json.response.userHandle = toText(response.userHandle);
    }
    return json;
  }

  // POST JSON; the answer's JSON (an empty object when it is not JSON) and its status.
  function post(url, csrf, body) {
    return window.fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {"Content-Type": "application/json", "Accept": "application/json",
                "X-CSRFToken": csrf},
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        return {status: response.status, ok: response.ok, json: json};
      });
    });
  }

  // Follow a redirect or a request to re-authenticate; true when the page is leaving.
  function followed(answer) {
    var target = answer.json.redirect || answer.json.reauth;
    if (typeof target === "string" && target.charAt(0) === "/" && target.charAt(1) !== "/") {
      window.location.assign(target);
      return true;
    }
    return false;
  }

  function showError(container, text) {
    var error = container.querySelector("[data-passkey-error]");
    if (error) {
      error.textContent = text;
    }
  }

  // The browser's refusal in plain words: cancelled, a passkey already there, or other.
  function browserError(error, source) {
    if (error && error.name === "InvalidStateError" && source.getAttribute("data-exists")) {
      return source.getAttribute("data-exists");
    }
    if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
      return source.getAttribute("data-cancelled");
    }
    return source.getAttribute("data-failed");
  }

  // The JSON answer's error, or the generic one of the element.
  function answerError(answer, source) {
    return typeof answer.json.error === "string" ? answer.json.error
      : source.getAttribute("data-failed");
  }

  function ceremony(source, container, button, run) {
    showError(container, "");
    button.disabled = true;
    run().then(function (leaving) {
      if (!leaving) {
        button.disabled = false;
      }
    }, function (error) {
      showError(container, browserError(error, source));
      button.disabled = false;
    });
  }

  // Sign in, or prove who you are again, with a passkey.
  function usePasskey(button) {
    var container = button.closest("[data-passkey]") || button.parentNode;
    var csrf = button.getAttribute("data-csrf");
    ceremony(button, container, button, function () {
      return post(button.getAttribute("data-options-url"), csrf, {}).then(function (answer) {
        if (!answer.ok) {
          if (followed(answer)) {
            return true;
          }
          showError(container, answerError(answer, button));
          return false;
        }
        return navigator.credentials.get({publicKey: requestOptions(answer.json)})
          .then(function (credential) {
            return post(button.getAttribute("data-url"), csrf, {
              credential: credentialJSON(credential),
              next: button.getAttribute("data-next") || null
            });
          }).then(function (result) {
            if (followed(result)) {
              return true;
            }
            showError(container, answerError(result, button));
            return false;
          });
      });
    });
  }

  // Add a passkey under the name typed.
  function addPasskey(form) {
    var button = form.querySelector("button[type=submit]");
    var csrf = form.getAttribute("data-csrf");
    var name = form.querySelector("input[name=name]").value;
    ceremony(form, form, button, function () {
      return post(form.getAttribute("data-options-url"), csrf, {}).then(function (answer) {
        if (!answer.ok) {
          if (followed(answer)) {
            return true;
          }
          showError(form, answerError(answer, form));
          return false;
        }
        return navigator.credentials.create({publicKey: creationOptions(answer.json)})
          .then(function (credential) {
            return post(form.getAttribute("data-url"), csrf,
                        {credential: credentialJSON(credential), name: name});
          }).then(function (result) {
            if (followed(result)) {
              return true;
            }
            showError(form, answerError(result, form));
            return false;
          });
      });
    });
  }

  function start() {
    document.querySelectorAll("[data-passkey], [data-passkey-add]").forEach(function (part) {
      part.hidden = false;
    });
    document.querySelectorAll("[data-passkey-fallback]").forEach(function (part) {
      part.hidden = true;
    });
    document.querySelectorAll("[data-passkey-get]").forEach(function (button) {
      if (button.getAttribute("data-passkey-ready")) {
        return;  // the script is on the page twice
      }
      button.setAttribute("data-passkey-ready", "1");
      button.addEventListener("click", function () { usePasskey(button); });
    });
    document.querySelectorAll("[data-passkey-add]").forEach(function (form) {
      if (form.getAttribute("data-passkey-ready")) {
        return;
      }
      form.setAttribute("data-passkey-ready", "1");
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        addPasskey(form);
      });
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
