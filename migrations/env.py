"""Alembic environment for Flask-Migrate: the app's engine and metadata, batch mode for SQLite."""

from __future__ import annotations

import logging
from typing import Any

from alembic import context
from alembic.script import ScriptDirectory
from flask import current_app
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

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
    with _migrate().db.engine.connect() as connection:
        context.configure(connection=connection, target_metadata=_migrate().db.metadata,
                          **conf_args)
        with context.begin_transaction():
            adopt_release_0_1(connection)
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
