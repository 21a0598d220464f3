"""Console accounts for a team: roles and scopes, TOTP, recovery codes and passkeys.

Every account stored before this revision was an owner's (there was no other kind):
each becomes an `owner`, with no second factor yet.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

ROLE_MAX = 16
OWNER = "owner"
SECRET_MAX = 64
HASH_MAX = 255
CREDENTIAL_MAX = 1400
NAME_MAX = 100
TRANSPORTS_MAX = 200


def _of_account(name: str, *columns: sa.Column) -> None:  # type: ignore[type-arg]
    """A table of rows that belong to one account and are deleted with it."""
    op.create_table(
        name,
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(),
                  sa.ForeignKey("admin_user.id", ondelete="CASCADE", name=f"fk_{name}_user_id"),
                  nullable=False),
        *columns)
    op.create_index(f"ix_{name}_user_id", name, ["user_id"])


def upgrade() -> None:
    """The account's role, scope and TOTP columns; the recovery code and passkey tables."""
    with op.batch_alter_table("admin_user") as batch:
        batch.add_column(sa.Column("role", sa.String(ROLE_MAX), nullable=False,
                                   server_default=OWNER))
        batch.add_column(sa.Column("recipients", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("totp_secret", sa.String(SECRET_MAX), nullable=True))
        batch.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))
    _of_account("recovery_code", sa.Column("code_hash", sa.String(HASH_MAX), nullable=False),
                sa.Column("used_at", sa.DateTime(), nullable=True))
    _of_account("passkey",
                sa.Column("credential_id", sa.String(CREDENTIAL_MAX), nullable=False),
                sa.Column("public_key", sa.LargeBinary(), nullable=False),
                sa.Column("sign_count", sa.Integer(), nullable=False),
                sa.Column("name", sa.String(NAME_MAX), nullable=False),
                sa.Column("transports", sa.String(TRANSPORTS_MAX), nullable=False),
                sa.Column("created_at", sa.DateTime(), nullable=False),
                sa.Column("last_used_at", sa.DateTime(), nullable=True),
                sa.UniqueConstraint("credential_id", name="uq_passkey_credential_id"))


def downgrade() -> None:
    """Back to one kind of account with a password alone: responders and factors go."""
    for name in ("passkey", "recovery_code"):
        op.drop_index(f"ix_{name}_user_id", table_name=name)
        op.drop_table(name)
    users = sa.table("admin_user", sa.column("role", sa.String()))
    op.execute(users.delete().where(users.c.role != OWNER))
    with op.batch_alter_table("admin_user") as batch:
        batch.drop_column("totp_last_step")
        batch.drop_column("totp_secret")
        batch.drop_column("recipients")
        batch.drop_column("role")
