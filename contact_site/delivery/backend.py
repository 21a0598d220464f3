"""The delivery backend a web process talks to: what it may ask, whichever backend runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from flask import Flask, current_app

from ..app_state import state_of
from .timing import STOP_WAIT_SECONDS


class DeliveryBackend(Protocol):
    """Starts this process's share of delivery, and is told when mails were queued."""

    def start(self) -> None:
        """Begin delivering in this process, if this backend delivers in-process."""

    def wake(self) -> None:
        """Mails were just queued: deliver them soon."""

    def stop(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Stop delivering in this process, giving back what was not sent."""


@dataclass
class BackendState:
    """The delivery backend init_app chose for the app."""

    backend: DeliveryBackend | None = None


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
    state_of(app, BackendState).backend = backend


def backend_of(app: Flask | None = None) -> DeliveryBackend:
    """The delivery backend of this app (or the current one)."""
    backend = state_of(app or current_app, BackendState).backend
    if backend is None:
        raise RuntimeError("no delivery backend: delivery.init_app has not run for this app")
    return backend
