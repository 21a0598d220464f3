"""The schema under migrations: applied at start under a lock, so processes never race.

`flask --app contact_site db upgrade` (Flask-Migrate) applies the revisions in
`migrations/`; `init-db` is kept as a synonym. A process starting up calls
`upgrade_schema`: the first to take the lock (in `migrations/env.py`, so the
`db` commands take it too) upgrades, the others find the schema current and go
on. A database made by the first release (create_all, no `alembic_version`) is
adopted at revision 0001 by `migrations/env.py`.
"""

from __future__ import annotations

import fcntl
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import click
import flask_migrate
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask, current_app
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from .extensions import db, migrate
from .paths import resource_root
from .private_files import open_private

MIGRATIONS = resource_root() / "migrations"
LOCK_KEY = zlib.crc32(b"contact_site.schema")


def _heads() -> set[str]:
    """The newest revisions in migrations/."""
    config = migrate.get_config(str(MIGRATIONS))
    return set(ScriptDirectory.from_config(config).get_heads())


def _current(engine: Engine) -> set[str]:
    """The revisions the database is at (empty when it has none)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def is_current() -> bool:
    """Whether the database is at the newest revision."""
    return _current(db.engine) == _heads()


@contextmanager
def migration_lock(connection: Connection) -> Iterator[None]:
    """Held by one process at a time around the migrations run on `connection`.

    PostgreSQL: a session advisory lock on that connection; SQLite: a file lock
    next to the database file. `migrations/env.py` takes it, so `flask db upgrade`
    and processes starting up never migrate at the same time.
    """
    if connection.dialect.name == "postgresql":
        with _advisory_lock(connection):
            yield
        return
    database = connection.engine.url.database
    if connection.dialect.name != "sqlite" or not database or database == ":memory:":
        yield  # one process only
        return
    # 0600 like the database: another user able to open it could hold the lock.
    with os.fdopen(open_private(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT)) as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@contextmanager
def _advisory_lock(connection: Connection) -> Iterator[None]:
    """A PostgreSQL session lock keyed by schema: deployments sharing a server never wait
    on each other (coalesce: with no schema on the search_path the key is still a number)."""
    key = text("SELECT hashtext(coalesce(current_schema(), '')) # :key")
    lock_id = connection.scalar(key, {"key": LOCK_KEY})
    connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": lock_id})
    connection.commit()  # the lock outlives this transaction; the migrations open their own

    def release() -> None:
        if connection.in_transaction():
            connection.rollback()  # a failed migration leaves its transaction aborted
        connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": lock_id})
        connection.commit()

    try:
        yield
    except BaseException:
        # The migration's error is the one to show; a closed session drops the lock anyway.
        with suppress(SQLAlchemyError):
            release()
        raise
    release()


def upgrade_schema(app: Flask) -> None:
    """Bring the database to the newest revision, once, whoever else starts at the same time."""
    with app.app_context():
        if is_current():
            return
        # env.py migrates under migration_lock and reads the revision only once it holds
        # it: a process that waited finds the work done and applies nothing.
        # "heads": every branch, should two revisions ever share a parent.
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="heads")


@click.command("init-db")
def init_db_command() -> None:
    """Create or upgrade the database schema (the same as `flask db upgrade`)."""
    upgrade_schema(current_app._get_current_object())  # type: ignore[attr-defined]
    click.echo("Database ready.")


def init_app(app: Flask) -> None:
    """Flask-Migrate's `db` commands on migrations/, and `init-db`."""
    migrate.init_app(app, db, directory=str(MIGRATIONS), render_as_batch=True,
                     compare_type=True)
    app.cli.add_command(init_db_command)
