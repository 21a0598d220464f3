"""Security headers on every answer, CSRF protection and rate limits on every POST.

It owns the app's session interface too: the public cookie, plus the areas given a
cookie of their own with `own_session_under` (the console's, under /admin).
"""

from __future__ import annotations

from flask import Flask, Request, Response, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin
from werkzeug.middleware.proxy_fix import ProxyFix

from . import ratelimit
from .extensions import csrf
from .keys import oldest_first

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; frame-ancestors 'none'; form-action 'self'; object-src 'none'; "
    "base-uri 'none'"
)


def add_security_headers(response: Response) -> Response:
    """CSP without inline code, nosniff, a referrer policy CSRF's check can live with."""
    headers = response.headers
    if "Content-Security-Policy" not in headers:  # a view may set its own (dev mailbox frame)
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors, for older browsers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # strict-origin-when-cross-origin still sends the origin to ourselves over
    # HTTPS, which Flask-WTF's strict referrer check needs (no-referrer breaks it).
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    if request.is_secure:
        # No includeSubDomains: the site's other hosts are not ours to force onto HTTPS.
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, marked Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure over HTTPS (or when configured), so the cookie never leaks to plain HTTP."""
        return bool(app.config["SESSION_COOKIE_SECURE"] or (request and request.is_secure))


def is_under(path: str, prefix: str) -> bool:
    """True for `prefix` itself and every path below it."""
    return path == prefix or path.startswith(prefix + "/")


class SessionInterface(CookieSessionInterface):
    """The app's one session interface: the public cookie, or the cookie of the path's area."""

    def __init__(self) -> None:
        self.areas: dict[str, CookieSessionInterface] = {}

    def area_of(self, path: str) -> CookieSessionInterface | None:
        """The interface of the area `path` lies in; None on the public pages."""
        return next((area for prefix, area in self.areas.items() if is_under(path, prefix)),
                    None)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """Read the cookie of the request's area (or the public one)."""
        area = self.area_of(request.path)
        if area is not None:
            return area.open_session(app, request)
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Write the cookie of the request's area (or the public one)."""
        area = self.area_of(request.path) if request else None
        if area is not None:
            area.save_session(app, session, response)
        else:
            super().save_session(app, session, response)


def own_session_under(app: Flask, prefix: str, interface: CookieSessionInterface) -> None:
    """Give the paths under `prefix` a session cookie of their own, kept by `interface`."""
    sessions = app.session_interface
    if not isinstance(sessions, SessionInterface):
        raise RuntimeError("security.init_app must run first: it owns the session interface")
    sessions.areas[prefix] = interface


def trust_proxy(app: Flask) -> None:
    """Behind N proxies, take the client's address and scheme from their X-Forwarded headers.

    Off by default: a client talking to us directly could otherwise pick its own
    address with X-Forwarded-For and escape the rate limit.
    """
    x_for, x_proto = app.config["PROXY_FIX_X_FOR"], app.config["PROXY_FIX_X_PROTO"]
    if x_for or x_proto:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=x_for, x_proto=x_proto)


def csrf_keys(app: Flask) -> None:
    """CSRF tokens signed with SECRET_KEY and accepted under SECRET_KEY_FALLBACKS as well.

    Flask's session (which holds the token's raw value) honours the fallbacks, but
    Flask-WTF signs the token with one key of its own: given the list, its
    itsdangerous serializer signs with the last and accepts any, so a form left
    open across a key change still posts.
    """
    if app.config.get("WTF_CSRF_SECRET_KEY") is None:  # a key of its own is kept as given
        app.config["WTF_CSRF_SECRET_KEY"] = oldest_first(app)


def init_app(app: Flask) -> None:
    """Trust proxies as configured, limit and protect every POST, add the headers."""
    trust_proxy(app)
    ratelimit.init_app(app)
    csrf_keys(app)
    csrf.init_app(app)
    app.after_request(add_security_headers)
    app.session_interface = SessionInterface()
