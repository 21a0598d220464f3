"""Virus scanning: each stored file's scan state and its detail.

`scan_state` is pending, clean, infected or unscanned while scanning is on
(CONTACT_CLAMD); files stored before this revision, or while scanning is off, have
none. `scan_detail` holds an infected file's signature, or why a file went unscanned.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

STATE_MAX = 16
DETAIL_MAX = 200


def upgrade() -> None:
    """Two nullable columns: no file stored so far was scanned."""
    with op.batch_alter_table("submission_file") as batch:
        batch.add_column(sa.Column("scan_state", sa.String(STATE_MAX), nullable=True))
        batch.add_column(sa.Column("scan_detail", sa.String(DETAIL_MAX), nullable=True))


def downgrade() -> None:
    """Scan results have no place before this revision: they go, the files stay."""
    with op.batch_alter_table("submission_file") as batch:
        batch.drop_column("scan_detail")
        batch.drop_column("scan_state")
