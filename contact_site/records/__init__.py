"""The record over submissions and their mails: search, export, retention and erasure.

It sits above `submissions` and `delivery` (it reads both); the console (`admin`)
and the `flask submissions` commands use it. Delivery never imports it: the daily
retention job is handed to the delivery loops through `contact_site.daily_jobs`.
"""

from __future__ import annotations

from flask import Flask, current_app

from ..daily_jobs import add_daily_job
from . import cli, digest, models, retention

__all__ = ["init_app", "models"]


def retention_notice() -> dict[str, dict[str, int]]:
    """The retention settings for the contact page's privacy line."""
    config = current_app.config
    return {"privacy_retention": {
        "days": config["CONTACT_RETENTION_DAYS"],
        "upload_days": config["CONTACT_UPLOAD_RETENTION_DAYS"]}}


def init_app(app: Flask) -> None:
    """The `submissions` commands, the daily retention and digest jobs, the privacy line's
    values."""
    cli.init_app(app)
    add_daily_job(app, retention.run_daily)
    add_daily_job(app, digest.run_daily)
    app.context_processor(retention_notice)
