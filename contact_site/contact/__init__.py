"""The public contact page: its blueprint, form and upload checks."""

from __future__ import annotations

from flask import Flask

from .views import bp


def init_app(app: Flask) -> None:
    """Register the contact page's blueprint (and its form's error answers)."""
    app.register_blueprint(bp)
