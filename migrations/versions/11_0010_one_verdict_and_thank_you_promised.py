"""The verdict stored once (is_spam folded into verdict); thank_you_sent named thank_you_promised.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SPAM = "spam"


def upgrade() -> None:
    submission = sa.table("submission", sa.column("is_spam", sa.Boolean),
                          sa.column("verdict", sa.String))
    # The code kept is_spam true exactly for the verdict spam; a row where they differ
    # (edited by hand) was treated as spam, so it stays spam. Its reasons are kept as
    # they are: nothing is known about why it was marked.
    op.execute(submission.update().where(submission.c.is_spam, submission.c.verdict != SPAM)
               .values(verdict=SPAM))
    # thank_you_sent was set when the thank-you was queued, not when it went out.
    with op.batch_alter_table("submission") as batch:  # SQLite: one rebuild for both
        batch.drop_column("is_spam")
        batch.alter_column("thank_you_sent", new_column_name="thank_you_promised",
                           existing_type=sa.Boolean(), existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        batch.alter_column("thank_you_promised", new_column_name="thank_you_sent",
                           existing_type=sa.Boolean(), existing_nullable=False)
        batch.add_column(sa.Column("is_spam", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    submission = sa.table("submission", sa.column("is_spam", sa.Boolean),
                          sa.column("verdict", sa.String))
    op.execute(submission.update().where(submission.c.verdict == SPAM).values(is_spam=True))
