"""Which site a request comes from, and whether a form takes submissions from it.

A form's `allowed_origins` are exact origins (`scheme://host[:port]`); a leading
`*.` admits the subdomains of one domain (never the domain itself). The origin of
a request is its `Origin` header, else the origin of its `Referer`; "null" and
none mean the browser would not say (privacy settings, a file:// page).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from flask import Request

from ..forms import Form

# What the browser sends when it will not name the page's origin.
HIDDEN = "null"


def origin_of_url(url: str) -> str | None:
    """`scheme://host[:port]` of an http(s) URL in lower case, or None for anything else.

    Backslashes and protocol-relative `//host` are refused outright: browsers read
    them in ways a parser may not, which is how open redirects slip through.
    """
    if not url or "\\" in url or url.startswith("//") or any(c.isspace() for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def request_origin(request: Request) -> str | None:
    """The origin the request says it comes from: Origin, else Referer's; "null" or None when
    the browser keeps it to itself."""
    origin = request.headers.get("Origin")
    if origin is not None:
        return HIDDEN if origin.strip() == HIDDEN else origin_of_url(origin.strip()) or HIDDEN
    referer = request.headers.get("Referer")
    return origin_of_url(referer) if referer else None


def is_own(request: Request, origin: str | None) -> bool:
    """Whether `origin` is this site: its host and port, whatever the scheme.

    The scheme is left to the CSRF check (Flask-WTF's strict Referer check over
    HTTPS): behind a proxy that terminates TLS without saying so the request looks
    like http while the browser names https, and the site's own page must not be
    taken for another site.
    """
    if not origin or origin == HIDDEN:
        return False
    return origin.partition("://")[2] == request.host.lower()


def allows(form: Form, origin: str | None) -> bool:
    """Whether `origin` is one of the form's allowed origins (exactly, or by `*.`)."""
    if not origin or origin == HIDDEN:
        return False
    scheme, _, host = origin.partition("://")
    for declared in form.allowed_origins:
        # As browsers write it (`https://x:443` is sent as `https://x`); `*.` survives this.
        allowed = origin_of_url(declared) or declared.lower()
        allowed_scheme, _, allowed_host = allowed.partition("://")
        if allowed_scheme != scheme:
            continue
        if allowed_host == host:
            return True
        if allowed_host.startswith("*.") and host.endswith(allowed_host[1:]):
            return True
    return False


def next_url(form: Form, value: str | None) -> str | None:
    """The `_next` address to send the visitor to: only a URL on an allowed origin."""
    return value if value and allows(form, origin_of_url(value)) else None


@dataclass(frozen=True)
class Caller:
    """Where a POST comes from, as far as the form is concerned."""

    origin: str | None  # the origin named, "null", or None
    own: bool  # this site's own page
    allowed: bool  # an origin the form takes submissions from

    @property
    def hidden(self) -> bool:
        """The browser did not say where the form was."""
        return self.origin in (None, HIDDEN)


def caller(request: Request, form: Form) -> Caller:
    """Where this request comes from, judged for this form."""
    origin = request_origin(request)
    return Caller(origin, is_own(request, origin), allows(form, origin))
