"""Starting a process's share of the work: the schema, delivery, the development mailbox.

`create_app` only assembles; each process that serves or delivers calls
`start_process` once: `wsgi.py`, the gunicorn hooks in `gunicorn.conf.py`,
`outbox work`, the Celery worker; `flask run` and any server started without
those hooks do it at their first request.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request

from . import devmail
from .config import ConfigError
from .delivery.backend import backend_of
from .schema import upgrade_schema

log = logging.getLogger("contact_site")


def start_process(app: Flask, *, dev_server: bool = False) -> None:
    """Upgrade the schema, start in-process delivery, and the dev mailbox on the dev server."""
    if app.extensions.get("contact_started"):
        return
    app.extensions["contact_started"] = True
    development = dev_server and app.debug
    if not development:
        leave_development_mode(app)
    upgrade_schema(app)
    if development and app.config["DEV_MAILBOX"]:
        devmail.start(app)
    backend_of(app).start()


def leave_development_mode(app: Flask) -> None:
    """Outside `flask run --debug`, FLASK_DEBUG and DEV_MAILBOX are ignored, with a warning.

    Ignored rather than refused: a production server started from a shell that
    still has FLASK_DEBUG=1 keeps serving, but never captures mail, never shows it
    at /dev/mailbox and never runs in debug mode (TRAPS.md: the flag reaches gunicorn).
    """
    if app.config.get("CONTACT_DEVELOPMENT_SECRET_KEY"):
        raise ConfigError("SECRET_KEY", "is missing: the generated development key exists only "
                          "under `flask run --debug`; set SECRET_KEY to a long random string")
    asked = [name for name, on in (("FLASK_DEBUG", app.debug),
                                   ("DEV_MAILBOX", app.config["DEV_MAILBOX"])) if on]
    if not asked:
        return
    app.debug = False
    app.config["DEV_MAILBOX"] = False
    log.warning("%s ignored: debug mode and the dev mailbox exist only under "
                "`flask run --debug`; mail goes to MAIL_SERVER %s:%s", " and ".join(asked),
                app.config["MAIL_SERVER"], app.config["MAIL_PORT"])


def _on_development_server() -> bool:
    """Whether Werkzeug's own server (`flask run`) is serving: never gunicorn, nor a test client."""
    environ = request.environ
    return "werkzeug.socket" in environ and str(
        environ.get("SERVER_SOFTWARE", "")).startswith("Werkzeug/")


def _on_a_server() -> bool:
    """Whether a real server answers this request (test clients name no SERVER_SOFTWARE)."""
    return bool(request.environ.get("SERVER_SOFTWARE"))


def _start_at_first_request() -> None:
    """A server with no start-up step of its own (`flask run`, gunicorn started outside the
    project folder, so without gunicorn.conf.py) starts this process at its first request."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.extensions.get("contact_started") and _on_a_server():
        start_process(app, dev_server=_on_development_server())


def init_app(app: Flask) -> None:
    """Start at the first request served by a real server, if nothing started this process."""
    app.before_request(_start_at_first_request)
