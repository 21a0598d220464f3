"""The public contact page: its blueprint, form and upload checks."""

from __future__ import annotations

from flask import Flask

from .. import embedding
from ..extensions import csrf
from .views import bp, submit


def init_app(app: Flask) -> None:
    """Register the contact page's blueprint (and its form's error answers); the form's POST
    leaves Flask-WTF's global CSRF check to embedding.admit, which makes it for the site's
    own page and admits the other ways a form may come (another site, an iframe)."""
    app.register_blueprint(bp)
    csrf.exempt(submit)
    embedding.init_app(app)
