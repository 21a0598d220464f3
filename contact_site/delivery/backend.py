"""The delivery backend a web process talks to: what it may ask, whichever backend runs."""

from __future__ import annotations

from typing import Protocol, cast

from flask import Flask, current_app


class DeliveryBackend(Protocol):
    """Starts this process's share of delivery, and is told when mails were queued."""

    def start(self) -> None:
        """Begin delivering in this process, if this backend delivers in-process."""

    def wake(self) -> None:
        """Mails were just queued: deliver them soon."""

    def stop(self, timeout: float = 30.0) -> None:
        """Stop delivering in this process, giving back what was not sent."""


def init_app(app: Flask) -> None:
    """Choose the backend named by DELIVERY_BACKEND; nothing is started here."""
    backend: DeliveryBackend
    if app.config["DELIVERY_BACKEND"] == "celery":
        from .celery import CeleryBackend, celery_init_app

        celery_init_app(app)
        backend = CeleryBackend()
    else:
        from .worker import DeliveryThread

        backend = DeliveryThread(app)
    app.extensions["contact_delivery"] = backend


def backend_of(app: Flask | None = None) -> DeliveryBackend:
    """The delivery backend of this app (or the current one)."""
    app = app or current_app
    return cast(DeliveryBackend, app.extensions["contact_delivery"])
