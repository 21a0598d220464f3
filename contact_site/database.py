"""The database engine's settings: SQLite durability and private files, short waits, no
parameters in errors."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import event
from sqlalchemy.engine import Engine

from . import write_queue
from .extensions import db
from .private_files import make_private, open_private

# Well below gunicorn's worker timeout: a locked database is answered with a 503,
# not waited on until the worker is killed.
SQLITE_BUSY_TIMEOUT_MS = 5000


def utcnow() -> datetime:
    """Naive UTC now: SQLite keeps no time zone, so every timestamp is UTC by rule."""
    return datetime.now(UTC).replace(tzinfo=None)


def _journal_mode_wal(cursor: sqlite3.Cursor) -> None:
    """Switch to WAL, retrying briefly: processes opening a new database at once may each
    need it alone for the switch, and SQLite answers "database is locked" without waiting."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@event.listens_for(Engine, "connect")
def _sqlite_durability(dbapi_connection: object, _record: object) -> None:
    """WAL for concurrent readers, FULL sync so a commit survives power loss."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        _journal_mode_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def _sqlite_file(cargs: list[Any], cparams: dict[str, Any]) -> str | None:
    """The file a SQLite connection opens, or None for a database in memory."""
    name = str(cargs[0]) if cargs else str(cparams.get("database", ""))
    if cparams.get("uri"):  # file:path?mode=... (sqlite:///file:...?uri=true)
        parts = urllib.parse.urlsplit(name)
        if "mode=memory" in parts.query:
            return None
        name = urllib.parse.unquote(parts.path)
    return None if name in {"", ":memory:"} else name


@event.listens_for(Engine, "do_connect")
def _sqlite_private(dialect: Any, _record: object, cargs: list[Any],
                    cparams: dict[str, Any]) -> None:
    """Create the database file 0600 before SQLite would (0644 less the umask); SQLite gives
    its -wal and -shm the same mode. Files of ours left wider by an earlier release are
    narrowed: they hold every message, address and password hash."""
    path = _sqlite_file(cargs, cparams) if dialect.name == "sqlite" else None
    if path is None:
        return
    # Only a file that does not exist yet is opened (O_EXCL: a new inode nobody holds):
    # closing any descriptor of an existing SQLite file would drop every POSIX lock this
    # process's other connections hold on it. An existing file is narrowed by its path.
    try:
        os.close(open_private(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        with suppress(OSError):
            make_private(path)
    except OSError:  # no such folder, or not ours to open: SQLite's own error says which
        return
    for suffix in ("-wal", "-shm", "-journal"):
        with suppress(OSError):  # absent, most often
            make_private(path + suffix)


def _json_as_written(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def engine_options(url: str) -> dict[str, Any]:
    """Engine settings: errors never carry the row's values (a visitor's message)."""
    # JSON stored as written (not \u-escaped): a search for 电话 finds it in the text.
    options: dict[str, Any] = {"hide_parameters": True,
                               "json_serializer": _json_as_written}
    if url.startswith("postgresql"):
        # A server connection can go stale; a SQLite file cannot (a ping per checkout).
        options["pool_pre_ping"] = True
        options["connect_args"] = {"connect_timeout": 5}
    return options


def init_app(app: Flask) -> None:
    """Bind the database to the app."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", engine_options(url))
    db.init_app(app)
    with app.app_context():  # the engine's URL: Flask-SQLAlchemy resolves relative paths
        write_queue.init_app(app, db.engine.url, SQLITE_BUSY_TIMEOUT_MS / 1000)
