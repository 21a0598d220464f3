"""`[site]` on every page: the accent colour's stylesheet, the logo, and `site` in templates.

The pages' Content-Security-Policy allows no inline style, so the accent colour comes
as a small stylesheet of its own, /site.css, linked after style.css, which reads it
as `var(--accent, <the colour of the built-in look>)`. Without `[site]` that sheet
sets nothing and every page looks as it always did.
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Flask, Response, abort, current_app, request, send_file

from . import declaration_of
from .declaration import FormsFileError, Site

# What a logo may be, by its extension: the content type it is served with.
LOGO_TYPES = {"svg": "image/svg+xml", "png": "image/png", "jpg": "image/jpeg",
              "jpeg": "image/jpeg", "webp": "image/webp"}
# An SVG is a document that may hold scripts and links: opened on its own, it runs
# nothing, loads nothing and cannot be framed (an <img> shows it as drawn).
LOGO_POLICY = "default-src 'none'; sandbox; frame-ancestors 'none'"
# The sheet's address carries the colour (?v=0b5fff), so a new colour is a new address
# and a day of caching never shows an old one.
MAX_AGE = 86_400

bp = Blueprint("site", __name__)


def logo_problem(name: str) -> str | None:
    """Why `name` cannot be the logo (its extension), or None."""
    if Path(name).suffix.lower().lstrip(".") in LOGO_TYPES:
        return None
    return f"{name!r} must be an image: .svg, .png, .jpg or .webp"


def check_site(path: str | Path, site: Site) -> None:
    """What the declaration leaves to the pages: a logo of a type they can serve."""
    problem = logo_problem(site.logo) if site.logo else None
    if problem:
        raise FormsFileError(path, ["site.logo"], problem)


def accent_stylesheet(site: Site) -> str:
    """The sheet that sets --accent; an empty rule without an accent colour."""
    if site.accent_color is None:
        return ":root {}\n"
    return f":root {{ --accent: {site.accent_color}; }}\n"


def logo_path() -> Path | None:
    """The logo's file, beside the forms file; None without a logo."""
    logo, forms_file = declaration_of().site.logo, current_app.config.get("CONTACT_FORMS_FILE")
    if not logo or not forms_file:
        return None
    return Path(forms_file).resolve().parent / logo


@bp.get("/site.css")
def stylesheet() -> Response:
    """The accent colour as a CSS custom property (text/css, cached for a day)."""
    response = current_app.response_class(accent_stylesheet(declaration_of().site),
                                          mimetype="text/css")
    response.cache_control.public = True
    response.cache_control.max_age = MAX_AGE
    response.add_etag()
    response.make_conditional(request)  # a 304 for a browser that has it already
    return response


@bp.get("/site/logo")
def logo() -> Response:
    """The logo, with the content type of its extension, cached as the static files are."""
    path = logo_path()
    if path is None or not path.is_file():
        abort(404)
    kind = LOGO_TYPES[path.suffix.lower().lstrip(".")]
    response = send_file(path, mimetype=kind, conditional=True)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = LOGO_POLICY
    return response


def template_values() -> dict[str, Site]:
    """`site` for every template: the `[site]` of the forms file (empty without one)."""
    return {"site": declaration_of().site}


def init_app(app: Flask) -> None:
    """Refuse a logo the pages cannot serve, serve the sheet and the logo, give `site`."""
    forms_file = app.config.get("CONTACT_FORMS_FILE")
    if forms_file:
        check_site(forms_file, declaration_of(app).site)
    app.register_blueprint(bp)
    app.context_processor(template_values)
