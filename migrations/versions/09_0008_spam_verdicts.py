"""Spam defence: each submission's verdict and reasons; used proofs; message fingerprints.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

DIGEST_LENGTH = 64  # sha256, hex


def upgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        batch.add_column(sa.Column("verdict", sa.String(16), nullable=False,
                                   server_default="ham"))
        batch.add_column(sa.Column("verdict_reasons", sa.Text(), nullable=False,
                                   server_default=""))
        batch.create_index("ix_submission_verdict", ["verdict"])
    # Before this revision the honeypot was the only rule, and its catches were is_spam.
    op.execute("UPDATE submission SET verdict = 'spam', verdict_reasons = 'honeypot' "
               "WHERE is_spam")
    op.create_table(
        "altcha_used",
        sa.Column("challenge", sa.String(DIGEST_LENGTH), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("challenge"),
    )
    op.create_index("ix_altcha_used_expires_at", "altcha_used", ["expires_at"])
    op.create_table(
        "message_fingerprint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(DIGEST_LENGTH), nullable=False),
        sa.Column("seen_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_message_fingerprint_digest", "message_fingerprint", ["digest"])
    op.create_index("ix_message_fingerprint_seen_at", "message_fingerprint", ["seen_at"])


def downgrade() -> None:
    op.drop_table("message_fingerprint")
    op.drop_table("altcha_used")
    with op.batch_alter_table("submission") as batch:
        batch.drop_index("ix_submission_verdict")
        batch.drop_column("verdict_reasons")
        batch.drop_column("verdict")
