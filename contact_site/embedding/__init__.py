"""Forms on other sites: a plain HTML form, the embed script, or an iframe.

The routes are the contact blueprint's (/f/<slug>/token, /f/<slug>/fragment,
/f/<slug>/embed, /embed.js); this package decides. The public form's POST is exempt
from Flask-WTF's global CSRF check; `admit` puts every POST through one of these doors:
- a token (`_token`, from GET /f/<slug>/token: the embed script and the iframe),
- the site's own page (the CSRF check, exactly as before),
- a plain form on an allowed origin, or on a page whose browser hides its origin
  (stored as suspect: nothing proves a person there),
and refuses an origin the form does not list (403, nothing stored). CORS answers
name the exact allowed origin; other origins get none.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, Response, request
from flask_babel import gettext as _

from ..extensions import csrf
from ..forms import Form, declaration_of, form_of
from ..security import CONTENT_SECURITY_POLICY
from . import origins, tokens
from .origins import Caller, caller
from .tokens import Token

# The form field naming where a plain form's visitor goes after sending.
NEXT_FIELD = "_next"
# The iframe's form field naming the page around it (which is told the frame's height).
PARENT_FIELD = "_parent"
# The endpoints another site's page may call, and so the ones given CORS headers.
CORS_ENDPOINTS = {"contact.submit", "contact.token", "contact.fragment", "spam.challenge"}
# A preflight of the form's POST is routed to the page: both are served at /f/<slug> (and /),
# and Flask answers OPTIONS through the first rule of the address.
PREFLIGHT_ENDPOINTS = CORS_ENDPOINTS | {"contact.page"}
CORS_MAX_AGE = 600  # a preflight's answer, cached by the browser for ten minutes


@dataclass(frozen=True)
class Arrival:
    """How a POST came in: its caller, its token (if any), the reasons it adds to the verdict
    and where to send the visitor afterwards."""

    caller: Caller
    token: Token | None = None
    reasons: tuple[str, ...] = ()
    next_url: str | None = None

    @property
    def checks_csrf(self) -> bool:
        """The site's own page: the form's CSRF token is checked as ever."""
        return self.token is None and not self.reasons


class OriginRefused(Exception):
    """A POST from a site the form does not take submissions from (403)."""

    def __init__(self, origin: str) -> None:
        super().__init__(origin)
        self.origin = origin


class TokenRefused(Exception):
    """A `_token` that is not ours, not for this form, or too old (400)."""


def admit(form: Form) -> Arrival:
    """The door this POST came through; OriginRefused or TokenRefused when there is none."""
    who = caller(request, form)
    if not (who.hidden or who.own or who.allowed):
        raise OriginRefused(str(who.origin))
    next_url = origins.next_url(form, request.form.get(NEXT_FIELD))
    posted_token = request.form.get(tokens.FIELD)
    if posted_token:
        token = tokens.verify(posted_token, form.slug)
        if token is None:
            raise TokenRefused()
        return Arrival(who, token, next_url=next_url)
    if who.own or (who.hidden and ("csrf_token" in request.form or not form.allowed_origins)):
        csrf.protect()  # raises CSRFError, answered by the page's own handler
        return Arrival(who, next_url=next_url)
    reason = "no_origin" if who.hidden else "embedded_no_proof"
    return Arrival(who, reasons=(reason,), next_url=next_url)


def refused_origin_message(origin: str) -> str:
    """The one sentence a refused origin gets."""
    return str(_("This form does not take submissions from %(origin)s, so nothing was sent.",
                 origin=origin))


def cors_origin() -> str | None:
    """The request's Origin when the endpoint may answer it: an allowed origin of the form
    (for the challenge: of any form)."""
    origin = request.headers.get("Origin")
    if not origin or not answers_cors():
        return None
    slug = (request.view_args or {}).get("slug")
    forms = declaration_of().forms if request.endpoint == "spam.challenge" else (
        [found] if (found := form_of(slug)) is not None else [])
    named = origins.origin_of_url(origin)
    return origin if named and any(origins.allows(f, named) for f in forms) else None


def answers_cors() -> bool:
    """Whether this request is to an endpoint other sites' pages call (or its preflight)."""
    endpoints = PREFLIGHT_ENDPOINTS if request.method == "OPTIONS" else CORS_ENDPOINTS
    return request.endpoint in endpoints


def add_cors_headers(response: Response) -> Response:
    """The exact allowed origin, never `*`; `Vary: Origin` wherever the answer depends on it."""
    if not answers_cors():
        return response
    response.vary.add("Origin")
    origin = cors_origin()
    if origin is not None:
        response.headers["Access-Control-Allow-Origin"] = origin
        if request.method == "OPTIONS":
            response.headers["Access-Control-Allow-Methods"] = "GET, POST"
            response.headers["Access-Control-Allow-Headers"] = "Accept, X-Requested-With"
            response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return response


def frame_ancestors(form: Form) -> str:
    """The page's policy with the form's allowed origins as the only ones that may frame it."""
    allowed = " ".join(form.allowed_origins) or "'none'"
    return CONTENT_SECURITY_POLICY.replace("frame-ancestors 'none'", f"frame-ancestors {allowed}")


def init_app(app: Flask) -> None:
    """CORS on the answers other sites may read."""
    app.after_request(add_cors_headers)
