"""The daily jobs (retention, the audit purge), handed to the delivery loops that run them.

Their owners (`records`, `admin`) sit above `delivery`, which never imports them:
each registers its job here in its `init_app`, and the delivery loops call every
registered job between passes. A job is called often and decides for itself
whether its turn has come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import Flask

from .app_state import state_of

DailyJob = Callable[[Flask, datetime], None]  # (the app, now in UTC)


@dataclass
class DailyJobs:
    """The jobs registered for the app, in the order the loops call them."""

    jobs: list[DailyJob] = field(default_factory=list)


def daily_jobs_of(app: Flask) -> list[DailyJob]:
    """The app's daily jobs, in the order the delivery loops call them."""
    return state_of(app, DailyJobs).jobs


def add_daily_job(app: Flask, job: DailyJob) -> None:
    """Have the delivery loops call `job(app, now)` from now on."""
    daily_jobs_of(app).append(job)
