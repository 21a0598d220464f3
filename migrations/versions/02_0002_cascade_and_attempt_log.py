"""Mails go with their submission (ON DELETE CASCADE); one row per SMTP attempt.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

FK_NAME = "fk_outbox_submission_id"


def upgrade() -> None:
    # The first release left the constraint unnamed: PostgreSQL named it itself,
    # SQLite keeps no name, so batch mode names it after the convention below.
    found = sa.inspect(op.get_bind()).get_foreign_keys("outbox")
    old_name = next((fk["name"] for fk in found if fk["name"]), FK_NAME)
    with op.batch_alter_table("outbox", naming_convention={
            "fk": "fk_%(table_name)s_%(column_0_name)s"}) as batch:
        batch.drop_constraint(old_name, type_="foreignkey")
        batch.create_foreign_key(FK_NAME, "submission", ["submission_id"], ["id"],
                                 ondelete="CASCADE")
    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("mail_id", sa.Integer(), nullable=False),
        sa.Column("attempted_at", sa.DateTime(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["mail_id"], ["outbox.id"], name="fk_delivery_attempt_mail_id",
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_attempt_mail_id", "delivery_attempt", ["mail_id"])


def downgrade() -> None:
    op.drop_table("delivery_attempt")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_constraint(FK_NAME, type_="foreignkey")
        batch.create_foreign_key(None, "submission", ["submission_id"], ["id"])
