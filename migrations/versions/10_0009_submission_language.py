"""Languages (docs/languages.md): the visitor's language, stored with the submission.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every submission before this revision was written on the English-only page.
    with op.batch_alter_table("submission") as batch:
        batch.add_column(sa.Column("language", sa.String(16), nullable=False,
                                   server_default="en"))


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        batch.drop_column("language")
