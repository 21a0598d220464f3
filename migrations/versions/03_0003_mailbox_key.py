"""The thank-you cap counts mailboxes: submission.mailbox_key, indexed, filled for old rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

EMAIL_COLUMN = 320
INDEX = "ix_submission_mailbox_key"
BATCH = 500


def mailbox_key(email: str) -> str:
    """The rule of contact_site.submissions.models.mailbox_key as this revision shipped it.

    Copied, not imported: a migration must keep doing what it did when the
    application's rule later changes (a new rule comes with its own migration).
    """
    local, at, domain = email.strip().lower().rpartition("@")
    if not at:
        return email.strip().lower()[:EMAIL_COLUMN]
    local = local.partition("+")[0] or local
    if domain in ("gmail.com", "googlemail.com"):
        local, domain = local.replace(".", "") or local, "gmail.com"
    return f"{local}@{domain}"[:EMAIL_COLUMN]


def upgrade() -> None:
    # NOT NULL from the start, with a default for the rows already there: making it
    # NOT NULL afterwards would rebuild the table on SQLite, and dropping `submission`
    # with foreign keys on would cascade to every outbox row.
    op.add_column("submission", sa.Column("mailbox_key", sa.String(EMAIL_COLUMN),
                                          nullable=False, server_default=""))
    submission = sa.table("submission", sa.column("id", sa.String),
                          sa.column("email", sa.String), sa.column("mailbox_key", sa.String))
    bind = op.get_bind()
    rows = bind.execute(sa.select(submission.c.id, submission.c.email)).all()
    update = (sa.update(submission).where(submission.c.id == sa.bindparam("row_id"))
              .values(mailbox_key=sa.bindparam("key")))
    for start in range(0, len(rows), BATCH):
        bind.execute(update, [{"row_id": row.id, "key": mailbox_key(row.email or "")}
                              for row in rows[start:start + BATCH]])
    if bind.dialect.name != "sqlite":  # SQLite cannot drop a default without a rebuild
        op.alter_column("submission", "mailbox_key", server_default=None,
                        existing_type=sa.String(EMAIL_COLUMN), existing_nullable=False)
    op.create_index(INDEX, "submission", ["mailbox_key"])


def downgrade() -> None:
    op.drop_index(INDEX, "submission")
    op.drop_column("submission", "mailbox_key")  # SQLite >= 3.35 drops a column in place
