"""Starting a process's share of the work: the schema, delivery, the development mailbox.

`create_app` only assembles; each process that serves or delivers calls
`start_process` once: `wsgi.py`, the gunicorn hooks in `gunicorn.conf.py`,
`outbox work`, the Celery worker; `flask run` and any server started without
those hooks do it at their first request.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import click
from click.core import ParameterSource
from flask import Flask, current_app, request
from flask.cli import run_command

from . import devmail
from .app_state import state_of
from .config import ConfigError
from .delivery.backend import backend_of
from .schema import upgrade_schema

log = logging.getLogger("contact_site")


@dataclass
class RuntimeState:
    """Whether this process has started its share of the work for the app."""

    started: bool = False


def state(app: Flask) -> RuntimeState:
    """The app's runtime state in this process."""
    return state_of(app, RuntimeState)


def start_process(app: Flask, *, dev_server: bool = False) -> None:
    """Upgrade the schema, start in-process delivery, and the dev mailbox on the dev server."""
    process = state(app)
    if process.started:
        return
    process.started = True
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
    at /dev/mailbox and never runs in debug mode (Flask reads FLASK_DEBUG under any server).
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
    if not state(app).started and _on_a_server():
        start_process(app, dev_server=_on_development_server())


def _given_as(context: click.Context, name: str) -> ParameterSource | None:
    """Where option `name` of this `flask run` came from; None when it was not given.

    The innermost context given the option wins, as its callback ran last
    (`flask --debug run --no-debug`).
    """
    found: click.Context | None = context
    while found is not None:
        source = found.get_parameter_source(name)
        if source not in (None, ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP):
            return source
        found = found.parent
    return None


def keep_flask_run_out_of_debug(app: Flask) -> None:
    """Under `flask run` without a typed `--debug`: no debugger, reloader or dev mailbox.

    README calls `flask run` fit for production, and a shell or unit file that still
    has FLASK_DEBUG=1 must not turn the site into a remote Python console. The flag's
    source is asked of click, not read from FLASK_DEBUG: `--debug` sets FLASK_DEBUG
    itself, while the variable alone (and FLASK_RUN_DEBUG) reach click as coming from
    the environment. This runs while `flask run` loads the app, before it reads
    FLASK_DEBUG to choose the debugger and the reloader.
    """
    context = click.get_current_context(silent=True)
    if context is None or context.command is not run_command:
        return
    if _given_as(context, "debug") is ParameterSource.COMMANDLINE:
        return
    if context.params.get("debugger") and _given_as(
            context, "debugger") is not ParameterSource.COMMANDLINE:
        # FLASK_RUN_DEBUGGER: `flask run` has read it already, so it cannot be ignored.
        raise ConfigError("FLASK_RUN_DEBUGGER", "is set: the debugger runs only under "
                          "`flask run --debug`; unset it")
    os.environ["FLASK_DEBUG"] = "0"
    leave_development_mode(app)


def init_app(app: Flask) -> None:
    """Keep `flask run` out of debug mode unless asked on its command line; start at the
    first request served by a real server, if nothing started this process."""
    keep_flask_run_out_of_debug(app)
    app.before_request(_start_at_first_request)
