"""gunicorn settings, loaded from the working directory: `gunicorn 'contact_site:create_app()'`.

The master checks the settings and upgrades the schema once, before any worker
starts; each worker then starts its own delivery once it has loaded the app.
"""

from __future__ import annotations

from typing import Any


def on_starting(server: Any) -> None:
    """In the master: a bad setting stops gunicorn here, with one line; the schema is made."""
    from contact_site import create_app
    from contact_site.extensions import db
    from contact_site.schema import upgrade_schema

    app = create_app()
    upgrade_schema(app)
    with app.app_context():
        db.engine.dispose()  # the workers are forked from here: no shared connections


def post_worker_init(worker: Any) -> None:
    """In each worker: start its share of delivery."""
    from flask import Flask

    from contact_site.runtime import start_process

    if isinstance(worker.wsgi, Flask):
        start_process(worker.wsgi)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker that stops gives its unsent claims back."""
    from flask import Flask

    from contact_site.delivery.backend import backend_of

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask) and app.extensions.get("contact_started"):
        backend_of(app).stop(timeout=10)
