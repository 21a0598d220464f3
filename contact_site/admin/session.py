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

from ..security import CookieSessionInterface, is_under

CONSOLE_PREFIX = "/admin"
CONSOLE_COOKIE = "contact_console"
IDLE_LIMIT = timedelta(hours=12)


def is_console_path(path: str) -> bool:
    """True for /admin and everything under /admin/."""
    return is_under(path, CONSOLE_PREFIX)


class ConsoleSessionInterface(CookieSessionInterface):
    """The console's session: a Strict, HttpOnly cookie of its own, sent to /admin only.

    `security.SessionInterface` hands it the requests under /admin (see
    `admin.init_app`); every other path keeps the public cookie.
    """

    def get_cookie_name(self, app: Flask) -> str:
        """The console's own cookie, never the public one."""
        return CONSOLE_COOKIE

    def get_cookie_path(self, app: Flask) -> str:
        """Sent back to /admin paths only."""
        return request.script_root + CONSOLE_PREFIX

    def get_cookie_samesite(self, app: Flask) -> str | None:
        """Strict: no other site can make the browser send it."""
        return "Strict"

    def get_cookie_httponly(self, app: Flask) -> bool:
        """Never readable by script."""
        return True

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """A console cookie signed more than 12 hours ago is refused, whatever it holds."""
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
