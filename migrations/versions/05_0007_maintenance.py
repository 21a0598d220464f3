"""When the daily retention last ran: one row, claimed by one process a day.

Revision ID: 0007
Revises: 0003a
Create Date: 2026-12-02
"""

from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0003a"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "maintenance",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("last_run", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Never run: the first delivery process to look takes the first turn.
    op.bulk_insert(table, [{"name": "daily", "last_run": datetime(1970, 1, 1)}])


def downgrade() -> None:
    op.drop_table("maintenance")
