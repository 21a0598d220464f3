"""The record of when each periodic job last ran, shared by every process of the deployment."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model

DAILY = "daily"


class MaintenanceRun(Model):
    """One row per periodic job: when a process last took its turn to run it."""

    __tablename__ = "maintenance"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run: Mapped[datetime]
