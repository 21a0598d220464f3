"""The two databases the tests run on: a PostgreSQL schema of a test's own, a locked SQLite."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

TEST_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def database_params() -> list[Any]:
    """The two databases a test marked `each_database` runs on."""
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str | None]:
    """A PostgreSQL URL on a schema of its own (dropped afterwards), or None if unreachable."""
    import sqlalchemy as sa

    engine = sa.create_engine(TEST_POSTGRES_URL)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError:
        engine.dispose()
        yield None
        return
    sep = "&" if "?" in TEST_POSTGRES_URL else "?"
    try:
        yield f"{TEST_POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


def sqlite_file(app: Flask) -> Path:
    """The file of the app's SQLite database."""
    return Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))


@contextmanager
def sqlite_locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holds the database's write lock (BEGIN EXCLUSIVE) until the block ends."""
    # Waits for the lock itself: the app's delivery thread may be writing at that moment.
    holder = sqlite3.connect(path, isolation_level=None, timeout=10)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        yield holder
        holder.execute("ROLLBACK")
    finally:
        holder.close()
