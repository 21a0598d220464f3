"""Delivery: the outbox, composing the mails, SMTP, and the workers that send them.

Nothing here imports the web side (`contact`, `admin`).
"""

from __future__ import annotations

from flask import Flask

from . import backend, cli


def init_app(app: Flask) -> None:
    """Choose the backend and register the `outbox` commands."""
    backend.init_app(app)
    cli.init_app(app)
