"""Starting a process's share of the work: the schema, delivery, the development mailbox.

`create_app` only assembles; each process that serves or delivers calls
`start_process` once: `wsgi.py`, the gunicorn hooks in `gunicorn.conf.py`,
`outbox work`, the Celery worker, and `flask run` (at its first request).
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, request

from . import devmail
from .delivery.backend import backend_of
from .schema import upgrade_schema

log = logging.getLogger("contact_site")


def start_process(app: Flask, *, dev_server: bool = False) -> None:
    """Upgrade the schema, start in-process delivery, and the dev mailbox on the dev server."""
    if app.extensions.get("contact_started"):
        return
    app.extensions["contact_started"] = True
    upgrade_schema(app)
    if dev_server and app.debug and app.config["DEV_MAILBOX"]:
        devmail.start(app)
    backend_of(app).start()


def _start_under_flask_run() -> None:
    """`flask run` builds the app with no start-up step of its own: take it at the first request."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    if not app.extensions.get("contact_started") and request.environ.get(
            "SERVER_SOFTWARE", "").startswith("Werkzeug/"):
        start_process(app, dev_server=True)


def init_app(app: Flask) -> None:
    """Under Werkzeug's development server (`flask run`) only, start at the first request."""
    app.before_request(_start_under_flask_run)
