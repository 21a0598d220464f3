"""Webhook deliveries in the outbox: the URL posted to, the event and its data.

A webhook delivery is an outbox row of kind "webhook", claimed, retried and given
up like a mail; its webhook-id is the row's message_id.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EVENT_MAX = 32
WEBHOOK = "webhook"


def upgrade() -> None:
    """Three nullable columns: mails leave them empty."""
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("target", sa.Text(), nullable=True))
        batch.add_column(sa.Column("event", sa.String(EVENT_MAX), nullable=True))
        batch.add_column(sa.Column("payload", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Webhook deliveries have no place before this revision: they are deleted."""
    outbox = sa.table("outbox", sa.column("kind", sa.String()))
    op.execute(outbox.delete().where(outbox.c.kind == WEBHOOK))
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("payload")
        batch.drop_column("event")
        batch.drop_column("target")
