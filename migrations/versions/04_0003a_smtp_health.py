"""One row saying whether the SMTP settings work (a configuration error and since when).

Revision ID: 0003a
Revises: 0003
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003a"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "smtp_health",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("since", sa.DateTime(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # The row exists from the start, so processes only ever UPDATE it (no insert race).
    op.bulk_insert(table, [{"id": 1, "error": None, "failures": 0}])


def downgrade() -> None:
    op.drop_table("smtp_health")
