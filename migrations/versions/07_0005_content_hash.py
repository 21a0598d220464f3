"""A second POST with a known submission_key folds only when its content matches.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HASH_LENGTH = 64  # sha256, hex


def upgrade() -> None:
    # Nullable: rows stored before this revision have no hash; a POST reusing their key
    # (a form older than the upgrade) is then taken as a new submission, never lost.
    op.add_column("submission", sa.Column("content_hash", sa.String(HASH_LENGTH),
                                          nullable=True))


def downgrade() -> None:
    op.drop_column("submission", "content_hash")  # SQLite >= 3.35 drops a column in place
