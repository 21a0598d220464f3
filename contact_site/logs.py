"""The app's own log lines: on stderr, one line per event, ids only, at LOG_LEVEL.

Configured by `create_app`, so they appear alike under gunicorn, `flask run`,
`outbox work` and Celery. Only the "contact_site" logger tree is touched: the
root logger and its handlers belong to whoever runs the process.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from flask import Flask
from flask.logging import default_handler

LOGGER = "contact_site"
FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass


def _formatter() -> logging.Formatter:
    formatter = logging.Formatter(FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime  # UTC, like every timestamp the app stores
    return formatter


def _ours(handler: logging.Handler) -> bool:
    return isinstance(handler, StderrHandler)


def init_app(app: Flask) -> None:
    """Give the "contact_site" loggers one stderr handler and LOG_LEVEL (idempotent)."""
    logger = logging.getLogger(LOGGER)
    logger.setLevel(app.config["LOG_LEVEL"])
    logger.removeHandler(default_handler)  # Flask's: it would print each line twice
    if not any(_ours(handler) for handler in logger.handlers):
        handler = StderrHandler()
        handler.setFormatter(_formatter())
        logger.addHandler(handler)


def leave_to_root() -> None:
    """Print through the root logger's handlers instead (Celery's, once it set them up)."""
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if _ours(h)]:
        logger.removeHandler(handler)
