"""The owner's inbox: each submission's state (new, read, answered, archived).

Submissions stored before this revision were there for the owner to see already: they
become `read`, so the console does not greet the owner with the whole archive as new.
A submission stored from now on starts `new`.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

STATE_MAX = 16
NEW, READ = "new", "read"
STATE_INDEX = "ix_submission_state_verdict"


def upgrade() -> None:
    """The column, every existing row `read`, and the index the count of new ones reads."""
    with op.batch_alter_table("submission") as batch:
        batch.add_column(sa.Column("state", sa.String(STATE_MAX), nullable=False,
                                   server_default=NEW))
    submission = sa.table("submission", sa.column("state", sa.String))
    op.execute(submission.update().values(state=READ))
    op.create_index(STATE_INDEX, "submission", ["state", "verdict"])


def downgrade() -> None:
    """The states have no place before this revision: they go."""
    op.drop_index(STATE_INDEX, table_name="submission")
    with op.batch_alter_table("submission") as batch:
        batch.drop_column("state")
