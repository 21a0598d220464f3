"""Takeovers counted per mail, and when the mail in a worker's hands was started.

Revision ID: 0004
Revises: 0007
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("takeovers", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("send_started_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("send_started_at")
        batch.drop_column("takeovers")
