"""The database handle, SQLite durability settings and schema creation."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

import click
from flask import Flask
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base shared by every model."""


db = SQLAlchemy(model_class=Base)


def utcnow() -> datetime:
    """Naive UTC now: SQLite keeps no time zone, so every timestamp is UTC by rule."""
    return datetime.now(UTC).replace(tzinfo=None)


@event.listens_for(Engine, "connect")
def _sqlite_durability(dbapi_connection: object, _record: object) -> None:
    """WAL for concurrent readers, FULL sync so a commit survives power loss."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def create_schema() -> None:
    """Create missing tables; existing ones are left as they are."""
    from . import limiter, outbox, submissions  # noqa: F401  (register the models)

    db.create_all()


@click.command("init-db")
def init_db_command() -> None:
    """Create the database tables."""
    create_schema()
    click.echo("Database ready.")


def init_app(app: Flask) -> None:
    """Bind the database to the app and create the schema when it is missing."""
    db.init_app(app)
    app.cli.add_command(init_db_command)
    with app.app_context():
        create_schema()
