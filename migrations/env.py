"""Alembic environment for Flask-Migrate: the app's engine and metadata, batch mode for SQLite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import context
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from contact_site.schema import migration_lock

config = context.config
logger = logging.getLogger("alembic.env")


def _migrate() -> Any:
    return current_app.extensions["migrate"]


# The revision equal to the schema the first release made with create_all.
RELEASE_0_1 = "0001"


def adopt_release_0_1(connection: Connection) -> None:
    """A database the first release made (tables, no alembic_version) is stamped at 0001."""
    tables = set(inspect(connection).get_table_names())
    if "submission" in tables and "alembic_version" not in tables:
        logger.info("adopting a database made by the first release at %s", RELEASE_0_1)
        context.get_context().stamp(ScriptDirectory.from_config(config), RELEASE_0_1)


@contextmanager
def sqlite_migration(connection: Connection) -> Iterator[None]:
    """On SQLite: the whole upgrade in one transaction, with foreign keys off.

    pysqlite opens no transaction before DDL, so by default a failing revision
    leaves its first statements behind; here BEGIN is sent by hand and the upgrade
    commits or rolls back as a whole. Batch mode rebuilds a table by copy, drop and
    rename, and with foreign keys on the drop is a DELETE that cascades (rebuilding
    `submission` would delete every mail and attempt): they are off, checked before
    the commit. Both pragmas work only outside a transaction, and both settings are
    set back before the connection returns to the pool.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    driver = connection.connection.driver_connection
    assert driver is not None
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    isolation = driver.isolation_level
    driver.isolation_level = None  # no implicit BEGIN or COMMIT: the one below holds all
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        yield
        orphans = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if orphans:  # table, rowid, parent table: no visitor data
            raise RuntimeError(f"the migrations left rows without their parent: {orphans[:5]}")
        connection.commit()
    finally:
        if connection.in_transaction():
            connection.rollback()
        driver.isolation_level = isolation
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def run_migrations_offline() -> None:
    """Write the SQL for the upgrade instead of running it (`flask db upgrade --sql`)."""
    url = _migrate().db.engine.url.render_as_string(hide_password=False)
    context.configure(url=url, target_metadata=_migrate().db.metadata, literal_binds=True,
                      **_migrate().configure_args)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on a connection of the app's engine."""

    def skip_empty(_context: Any, _revision: Any, directives: list[Any]) -> None:
        # `flask db migrate` with no model change writes no empty revision.
        if getattr(config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
            directives[:] = []
            logger.info("No changes in schema detected.")

    conf_args = dict(_migrate().configure_args)
    conf_args.setdefault("process_revision_directives", skip_empty)
    with (_migrate().db.engine.connect() as connection, migration_lock(connection),
          sqlite_migration(connection)):
        # Configured only now: alembic reads the current revision once the lock is held,
        # so a process that waited for another one's upgrade applies nothing twice. On
        # SQLite the transaction is already open: alembic takes it as the caller's.
        context.configure(connection=connection, target_metadata=_migrate().db.metadata,
                          **conf_args)
        with context.begin_transaction():
            adopt_release_0_1(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
