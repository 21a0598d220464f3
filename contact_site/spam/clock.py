"""Moments in UTC: the project keeps naive UTC in the database, callers may pass either."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive one is UTC by the project's rule."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def naive_utc(moment: datetime) -> datetime:
    """`moment` as a naive UTC datetime, as the database columns keep it."""
    return as_utc(moment).replace(tzinfo=None)
