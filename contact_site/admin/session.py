"""The console's own session cookie: SameSite=Strict, path /admin, a 12-hour idle limit.

The public page keeps its Lax cookie on `/`; the console answers under `/admin`
read and write a second cookie only. So a visitor's form session and the
owner's console session never share a cookie: a cross-site link to the public
page (which gets no Strict cookie) cannot overwrite the owner's session, and the
console's CSRF token lives in the Strict cookie alone.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession
from itsdangerous import BadSignature

from ..security import SessionInterface

CONSOLE_PREFIX = "/admin"
CONSOLE_COOKIE = "contact_console"
IDLE_LIMIT = timedelta(hours=12)


def is_console_path(path: str) -> bool:
    """True for /admin and everything under /admin/."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def _in_console() -> bool:
    return bool(request) and is_console_path(request.path)


class ConsoleSessionInterface(SessionInterface):
    """The public session on `/`, a Strict cookie of its own under `/admin`."""

    def get_cookie_name(self, app: Flask) -> str:
        """The console's cookie under /admin, the public one elsewhere."""
        return CONSOLE_COOKIE if _in_console() else super().get_cookie_name(app)

    def get_cookie_path(self, app: Flask) -> str:
        """Sent back to /admin paths only."""
        if _in_console():
            return request.script_root + CONSOLE_PREFIX
        return super().get_cookie_path(app)

    def get_cookie_samesite(self, app: Flask) -> str | None:
        """Strict for the console: no other site can make the browser send it."""
        return "Strict" if _in_console() else super().get_cookie_samesite(app)

    def get_cookie_httponly(self, app: Flask) -> bool:
        """The console's cookie is never readable by script."""
        return True if _in_console() else super().get_cookie_httponly(app)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """A console cookie signed more than 12 hours ago is refused, whatever it holds."""
        if not is_console_path(request.path):
            return super().open_session(app, request)
        # Flask's serializer signs with SECRET_KEY and accepts SECRET_KEY_FALLBACKS (a list,
        # in the order keys.secret_keys gives them), so the owner stays signed in across a
        # key change.
        serializer = self.get_signing_serializer(app)
        if serializer is None:
            return None
        value = request.cookies.get(CONSOLE_COOKIE)
        if not value:
            return self.session_class()
        try:
            # Each console answer re-signs the cookie, so this is an idle limit.
            data = serializer.loads(value, max_age=int(IDLE_LIMIT.total_seconds()))
        except BadSignature:  # forged, or signed too long ago (SignatureExpired)
            return self.session_class()
        return self.session_class(data)
