"""Declared forms: each submission's form (slug, version) and answers; its files in a table.

The one attachment of the built-in form becomes the row of field "attachment" in
submission_file, whose rows hold any number of files for any file field.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

DEFAULT_FORM = "contact"  # the form of every submission stored before forms were declared
FIELD = "attachment"  # the built-in form's file field
SLUG_MAX = 40
FILE_NAME_MAX = 255
TYPE_MAX = 100
UNKNOWN_TYPE = "application/octet-stream"
FORM_INDEX = "ix_submission_form_slug"
FILE_INDEX = "ix_submission_file_submission_id"
FILE_FK = "fk_submission_file_submission_id"
# The attachment columns of revisions 0001 to 0010: the submission_file column each
# became, and its type.
ATTACHMENT: dict[str, tuple[str, sa.types.TypeEngine[Any]]] = {
    "attachment_name": ("name", sa.String(FILE_NAME_MAX)),
    "attachment_path": ("path", sa.String(FILE_NAME_MAX)),
    "attachment_type": ("content_type", sa.String(TYPE_MAX)),
    "attachment_size": ("size", sa.Integer()),
}


def _submission_attachment() -> sa.TableClause:
    """The submission table's id and its attachment columns."""
    return sa.table("submission", sa.column("id", sa.String),
                    *(sa.column(name, type_) for name, (_, type_) in ATTACHMENT.items()))


def _submission_file() -> sa.TableClause:
    """The submission_file table's columns this revision copies."""
    return sa.table("submission_file", sa.column("id", sa.Integer),
                    sa.column("submission_id", sa.String), sa.column("field", sa.String),
                    sa.column("position", sa.Integer), sa.column("name", sa.String),
                    sa.column("path", sa.String), sa.column("content_type", sa.String),
                    sa.column("size", sa.Integer))


def upgrade() -> None:
    op.create_table(
        "submission_file",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("submission_id", sa.String(32), nullable=False),
        sa.Column("field", sa.String(SLUG_MAX), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(FILE_NAME_MAX), nullable=False),
        sa.Column("path", sa.String(FILE_NAME_MAX), nullable=True),
        sa.Column("content_type", sa.String(TYPE_MAX), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["submission_id"], ["submission.id"], name=FILE_FK,
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(FILE_INDEX, "submission_file", ["submission_id"])
    # A file deleted by retention kept its name with no path: its row keeps both so.
    old, files = _submission_attachment(), _submission_file()
    op.execute(files.insert().from_select(
        ["submission_id", "field", "position", "name", "path", "content_type", "size"],
        sa.select(old.c.id, sa.literal(FIELD, sa.String), sa.literal(0, sa.Integer),
                  old.c.attachment_name, old.c.attachment_path,
                  sa.func.coalesce(old.c.attachment_type, UNKNOWN_TYPE),
                  sa.func.coalesce(old.c.attachment_size, 0))
        .where(old.c.attachment_name.is_not(None))))
    with op.batch_alter_table("submission") as batch:  # SQLite: one rebuild for all
        batch.add_column(sa.Column("form_slug", sa.String(SLUG_MAX), nullable=False,
                                   server_default=DEFAULT_FORM))
        batch.add_column(sa.Column("form_version", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answers", sa.JSON(), nullable=True))
        batch.create_index(FORM_INDEX, ["form_slug"])
        for column in ATTACHMENT:
            batch.drop_column(column)


def downgrade() -> None:
    # Lossy by nature: a submission keeps its first file only, and its answers go.
    with op.batch_alter_table("submission") as batch:
        for name, (_, type_) in ATTACHMENT.items():
            batch.add_column(sa.Column(name, type_, nullable=True))
    old, files = _submission_attachment(), _submission_file()
    of_first_file = {name: sa.select(files.c[source]).where(files.c.submission_id == old.c.id)
                     .order_by(files.c.position, files.c.id).limit(1).scalar_subquery()
                     for name, (source, _) in ATTACHMENT.items()}
    op.execute(old.update().where(sa.exists().where(files.c.submission_id == old.c.id))
               .values(of_first_file))
    op.drop_index(FILE_INDEX, table_name="submission_file")
    op.drop_table("submission_file")
    with op.batch_alter_table("submission") as batch:
        batch.drop_index(FORM_INDEX)
        batch.drop_column("answers")
        batch.drop_column("form_version")
        batch.drop_column("form_slug")
