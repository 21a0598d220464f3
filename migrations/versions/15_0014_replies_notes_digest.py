"""The owner's inbox, continued: replies to visitors, notes, and the daily digest.

`reply` and `note` hang off a submission and go with it. An outbox row may now
carry a reply (`reply_id`), or belong to no submission at all: the daily digest
a recipient gets is about many messages, or none.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

AUTHOR_MAX = 100
FILE_NAME_MAX = 255
CONTENT_TYPE_MAX = 100
SUBMISSION_ID_MAX = 32
NEW_KINDS = ("reply", "digest")


def _owned_by_submission(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    """A table of rows that belong to one submission and are deleted with it."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("submission_id", sa.String(SUBMISSION_ID_MAX),
                  sa.ForeignKey("submission.id", ondelete="CASCADE",
                                name=f"fk_{name}_submission_id"), nullable=False),
        sa.Column("author", sa.String(AUTHOR_MAX), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        *columns)
    op.create_index(f"ix_{name}_submission_id", name, ["submission_id"])


def upgrade() -> None:
    """Two new tables; the outbox's link to a reply, and its submission made optional."""
    _owned_by_submission(
        "reply", sa.Column("body", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(FILE_NAME_MAX), nullable=True),
        sa.Column("file_path", sa.String(FILE_NAME_MAX), nullable=True),
        sa.Column("file_content_type", sa.String(CONTENT_TYPE_MAX), nullable=True),
        sa.Column("file_size", sa.Integer(), nullable=True))
    _owned_by_submission("note", sa.Column("text", sa.Text(), nullable=False))
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("submission_id", existing_type=sa.String(SUBMISSION_ID_MAX),
                           nullable=True)
        batch.add_column(sa.Column("reply_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_outbox_reply_id", "reply", ["reply_id"], ["id"],
                                 ondelete="CASCADE")
        batch.create_index("ix_outbox_reply_id", ["reply_id"])


def downgrade() -> None:
    """Replies, notes and digests have no place before this revision: they are deleted."""
    outbox = sa.table("outbox", sa.column("kind", sa.String()))
    op.execute(outbox.delete().where(outbox.c.kind.in_(NEW_KINDS)))
    with op.batch_alter_table("outbox") as batch:
        batch.drop_index("ix_outbox_reply_id")
        batch.drop_constraint("fk_outbox_reply_id", type_="foreignkey")
        batch.drop_column("reply_id")
        batch.alter_column("submission_id", existing_type=sa.String(SUBMISSION_ID_MAX),
                           nullable=False)
    for name in ("note", "reply"):
        op.drop_index(f"ix_{name}_submission_id", table_name=name)
        op.drop_table(name)
