"""The owner's console under /admin: accounts, the archive, actions, export, erasure, audit."""

from __future__ import annotations

from flask import Flask, Response, request

from ..daily_jobs import add_daily_job
from ..escaping import escape_controls
from ..security import own_session_under
from . import account as account  # its routes: /admin/account, the code step, re-authentication
from . import audit, auth, cli
from . import factors as factors  # its tables are part of the schema
from . import passkeys as passkeys  # its routes: adding passkeys, signing in with one
from .session import CONSOLE_PREFIX, ConsoleSessionInterface, is_console_path
from .views import bp


def console_headers(response: Response) -> Response:
    """Console answers are never cached, indexed, or given away in a Referer."""
    if is_console_path(request.path):
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Robots-Tag"] = "noindex"
        # Console URLs carry ids and searches (perhaps an address): never sent elsewhere.
        response.headers["Referrer-Policy"] = "same-origin"
    return response


def visible_text(text: str | None) -> str:
    """Visitor text with its line breaks kept and every other control character escaped."""
    return "\n".join(escape_controls(line) for line in (text or "").split("\n"))


def init_app(app: Flask) -> None:
    """Register the console (after security, which keeps the console's session cookie)."""
    own_session_under(app, CONSOLE_PREFIX, ConsoleSessionInterface())
    auth.init_app(app)
    app.register_blueprint(bp, url_prefix=CONSOLE_PREFIX)
    app.after_request(console_headers)
    app.add_template_filter(escape_controls, "controls")
    app.add_template_filter(visible_text, "visible_text")
    cli.init_app(app)
    # The delivery loops run these; delivery never imports the console.
    add_daily_job(app, audit.purge_with_submissions)
