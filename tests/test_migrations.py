"""Upgrading a database made by release 0.1 (create_all, no alembic_version) by starting the
new code: the old rows are kept, its queued mail goes out, new submissions work.

The old schema comes from tests/fixtures/release-0.1-*.sql, dumped from what that
release's own code made (see the files' headers), so no git history is needed here.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask

from contact_site import create_app
from contact_site.database import utcnow
from contact_site.delivery.models import DeliveryAttempt, OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.factories import queue_submissions
from support.forms import form_tokens, post_form
from support.processes import FLASK, PROJECT_ROOT
from support.settings import SECRET
from support.waiting import wait_until

# A test using database_url or app runs on SQLite, then on PostgreSQL.
pytestmark = pytest.mark.each_database

FIXTURES = Path(__file__).parent / "fixtures"
MIGRATIONS = PROJECT_ROOT / "migrations"
OLD_TABLES = ("submission", "outbox", "rate_limit")
DELIVERED, QUEUED = "d" * 32, "q" * 32
DELIVERED_FILE = b"%PDF-1.4\n% the delivered submission's file\n%%EOF\n"
QUEUED_FILE = b"%PDF-1.4\n% the queued submission's file\n%%EOF\n"
# The columns a delivery changes; every other column of the queued mail stays as it was.
DELIVERY_STATE = {"status", "attempts", "next_attempt_at", "sent_at", "last_error",
                  "claim_token", "claimed_until"}
# The columns of a submission's file (0011), none of them there when it has no file.
NO_FILE = dict.fromkeys(("field", "position", "name", "path", "content_type", "size"))


def first_file(row: dict[str, Any]) -> dict[str, Any]:
    """The first of the files a submission row now carries (see old_columns_now)."""
    return row["files"][0] if row["files"] else NO_FILE


# Columns of release 0.1 that a later revision replaced, and how each old value reads now.
REPLACED: dict[str, Callable[[dict[str, Any]], Any]] = {
    "is_spam": lambda row: row["verdict"] == "spam",  # 0010: the verdict alone says spam
    "thank_you_sent": lambda row: row["thank_you_promised"],  # 0010: named for what it means
    # 0011: the one attachment is the submission's file in submission_file.
    "attachment_name": lambda row: first_file(row)["name"],
    "attachment_path": lambda row: first_file(row)["path"],
    "attachment_type": lambda row: first_file(row)["content_type"],
    "attachment_size": lambda row: first_file(row)["size"],
}


@dataclass
class OldDatabase:
    """A database as release 0.1 left it, with its files, and what it held."""

    url: str
    uploads: Path
    before: dict[str, list[dict[str, Any]]]

    def mail(self, submission_id: str, kind: str = "recipient") -> dict[str, Any]:
        """The old outbox row of this submission and kind."""
        return next(row for row in self.before["outbox"]
                    if row["submission_id"] == submission_id and row["kind"] == kind)


def load_release_0_1_schema(url: str) -> None:
    """Create the tables release 0.1 made, from its committed SQL dump."""
    engine = sa.create_engine(url)
    try:
        dialect = engine.dialect.name
        script = (FIXTURES / f"release-0.1-{dialect}.sql").read_text()
        if dialect == "sqlite":
            with sqlite3.connect(engine.url.database) as conn:
                conn.executescript(script)
            conn.close()
        else:
            with engine.begin() as conn:
                # On the driver itself: with no parameters psycopg reads no placeholders.
                conn.connection.driver_connection.execute(script)
    finally:
        engine.dispose()


def old_submission(submission_id: str, created_at: datetime, upload: bytes,
                   thank_you_sent: bool) -> dict[str, Any]:
    """A submission row as release 0.1 stored it, its file at <id>/attachment.pdf."""
    return {
        "id": submission_id, "submission_key": f"key-{submission_id}", "created_at": created_at,
        "recipient_slug": "sales", "recipient_name": "Sales",
        "recipient_address": "sales@example.com", "name": "Ada Lovelace",
        "email": "ada@example.com", "subject": f"Engines {submission_id[0]}",
        "message": "Hello,\nabout the analytical engine.", "attachment_name": "report.pdf",
        "attachment_path": f"{submission_id}/attachment.pdf",
        "attachment_type": "application/pdf", "attachment_size": len(upload),
        "is_spam": False, "thank_you_sent": thank_you_sent, "remote_addr": "192.0.2.7",
    }


def old_mail(submission_id: str, kind: str, to: str, created_at: datetime,
             **state: Any) -> dict[str, Any]:
    """An outbox row as release 0.1 stored it (its id from the table's own sequence)."""
    return {
        "submission_id": submission_id, "kind": kind, "to_address": to,
        "message_id": f"<{kind}.{submission_id[0]}.release01@example.org>",
        "created_at": created_at, "next_attempt_at": created_at,
        "expires_at": created_at + timedelta(days=3), "sent_at": None, "last_error": None,
        "claim_token": None, "claimed_until": None, **state,
    }


def fill_release_0_1(url: str, uploads: Path) -> None:
    """A delivered submission (file, two sent mails) and a queued one, as 0.1 left them."""
    then = utcnow() - timedelta(hours=2)
    now = utcnow().replace(microsecond=0)
    submissions = [old_submission(DELIVERED, then, DELIVERED_FILE, thank_you_sent=True),
                   old_submission(QUEUED, now - timedelta(minutes=5), QUEUED_FILE,
                                  thank_you_sent=False)]
    mails = [
        old_mail(DELIVERED, "recipient", "sales@example.com", then, status="sent",
                 attempts=1, sent_at=then + timedelta(seconds=2)),
        old_mail(DELIVERED, "thank_you", "ada@example.com", then, status="sent",
                 attempts=1, sent_at=then + timedelta(seconds=3)),
        # Tried once already and due again now: the upgraded app must send it.
        old_mail(QUEUED, "recipient", "sales@example.com", now - timedelta(minutes=5),
                 status="queued", attempts=1, last_error="451 4.3.0 Try again later",
                 next_attempt_at=now - timedelta(minutes=1)),
    ]
    engine = sa.create_engine(url)
    try:
        tables = reflect(engine)
        with engine.begin() as conn:
            conn.execute(tables["submission"].insert(), submissions)
            for mail in mails:  # one by one, as 0.1 did: the ids come from the sequence
                conn.execute(tables["outbox"].insert(), mail)
            conn.execute(tables["rate_limit"].insert(),
                         {"key": "LIMITER/192.0.2.7/post", "count": 1,
                          "expires_at": time.time() + 3600})
    finally:
        engine.dispose()
    for submission_id, data in ((DELIVERED, DELIVERED_FILE), (QUEUED, QUEUED_FILE)):
        (uploads / submission_id).mkdir(parents=True)
        (uploads / submission_id / "attachment.pdf").write_bytes(data)


def reflect(engine: sa.Engine) -> dict[str, sa.Table]:
    """The old tables as the database describes them (not the newer ones their foreign
    keys now point to, which reflection brings along)."""
    metadata = sa.MetaData()
    metadata.reflect(engine, only=OLD_TABLES)
    return {name: table for name, table in metadata.tables.items() if name in OLD_TABLES}


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the old tables, every column, in primary-key order."""
    engine = sa.create_engine(url)
    try:
        tables = reflect(engine)
        with engine.connect() as conn:
            return {name: [dict(row._mapping) for row in conn.execute(
                        sa.select(table).order_by(*table.primary_key.columns))]
                    for name, table in tables.items()}
    finally:
        engine.dispose()


def files_now(url: str) -> dict[str, list[dict[str, Any]]]:
    """Each submission's rows in submission_file, in order, by submission id."""
    engine = sa.create_engine(url)
    try:
        files = sa.Table("submission_file", sa.MetaData(), autoload_with=engine)
        with engine.connect() as conn:
            found: dict[str, list[dict[str, Any]]] = {}
            for row in conn.execute(sa.select(files).order_by(files.c.position, files.c.id)):
                found.setdefault(row.submission_id, []).append(dict(row._mapping))
            return found
    finally:
        engine.dispose()


def old_columns_now(old: OldDatabase) -> dict[str, list[dict[str, Any]]]:
    """The old tables' rows as they are now, in the columns release 0.1 had (later
    revisions may add columns; those are not the old rows' data; a replaced column is
    read through REPLACED, a submission's from its files)."""
    now = snapshot(old.url)
    files = files_now(old.url)
    now["submission"] = [{**row, "files": files.get(row["id"], [])}
                         for row in now["submission"]]
    return {name: [{column: REPLACED[column](row) if column in REPLACED else row[column]
                    for column in old.before[name][0]} for row in rows]
            for name, rows in now.items()}


def heads() -> set[str]:
    """The newest revisions in migrations/."""
    found = set(ScriptDirectory(str(MIGRATIONS)).get_heads())
    assert found, "migrations/ has no revisions"
    return found


def alembic_versions(url: str) -> set[str]:
    """What alembic_version records."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


@pytest.fixture
def old_database(database_url: str, tmp_path: Path) -> OldDatabase:
    """A database made by release 0.1 on SQLite and on PostgreSQL, with its uploads."""
    uploads = tmp_path / "uploads"  # the UPLOAD_FOLDER of make_app's apps
    load_release_0_1_schema(database_url)
    fill_release_0_1(database_url, uploads)
    return OldDatabase(database_url, uploads, snapshot(database_url))


def wait_sent(app: Any, message_id: str) -> OutboxMail:
    """The mail with this Message-ID once it is sent (detached)."""
    def sent() -> bool:
        with app.app_context():
            return db.session.scalar(sa.select(OutboxMail.status).filter_by(
                message_id=message_id)) == "sent"

    wait_until(sent, timeout=20, what=f"{message_id} to be sent")
    with app.app_context():
        mail = db.session.scalars(sa.select(OutboxMail).filter_by(message_id=message_id)).one()
        db.session.expunge_all()
        return mail


def attachment_of(message: EmailMessage) -> bytes:
    """The bytes of the mail's one attached file."""
    (part,) = list(message.iter_attachments())
    payload = part.get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def test_upgrade_keeps_every_old_row_and_file(old_database, make_app):
    """Starting the new code on a 0.1 database changes no column of any old row, nor a file."""
    make_app(deliver=False, DATABASE_URL=old_database.url)
    assert old_columns_now(old_database) == old_database.before
    assert (old_database.uploads / DELIVERED / "attachment.pdf").read_bytes() == DELIVERED_FILE


def test_upgrade_brings_the_database_to_the_newest_revision(old_database, make_app):
    """The adopted database records the newest revision and has the attempt log."""
    make_app(deliver=False, DATABASE_URL=old_database.url)
    assert alembic_versions(old_database.url) == heads()
    engine = sa.create_engine(old_database.url)
    try:
        assert "delivery_attempt" in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_queued_mail_of_the_old_release_is_delivered(old_database, make_app, smtp_server):
    """The mail 0.1 left queued goes out once, under its old Message-ID, with its old file."""
    old = old_database.mail(QUEUED)
    app = make_app(DATABASE_URL=old_database.url)
    (received,) = smtp_server.wait_for(1, timeout=20)
    assert received.message["Message-ID"] == old["message_id"]
    assert received.rcpt_tos == ["sales@example.com"]
    assert attachment_of(received.message) == QUEUED_FILE
    sent = wait_sent(app, old["message_id"])
    assert (sent.id, sent.attempts) == (old["id"], old["attempts"] + 1)
    kept = {column: value for column, value in old.items() if column not in DELIVERY_STATE}
    assert {column: getattr(sent, column) for column in kept} == kept


def test_new_submission_after_the_upgrade_is_stored_and_mailed(old_database, make_app,
                                                              smtp_server):
    """A form post on the upgraded database is stored with new outbox ids and both mails go."""
    app = make_app(DATABASE_URL=old_database.url)
    client = app.test_client()
    tokens = form_tokens(client)
    assert post_form(client, tokens=tokens).status_code == 303
    received = smtp_server.wait_for(3, timeout=20)  # the old queued mail and the two new ones
    with app.app_context():
        new = db.session.scalars(sa.select(Submission).filter_by(
            submission_key=tokens["submission_key"])).one()
        new_mails = dict(db.session.execute(sa.select(OutboxMail.id, OutboxMail.message_id)
                                            .filter_by(submission_id=new.id)).tuples().all())
    assert len(new_mails) == 2
    assert not set(new_mails) & {row["id"] for row in old_database.before["outbox"]}
    assert sorted(mail.message["Message-ID"] for mail in received) == sorted(
        [*new_mails.values(), old_database.mail(QUEUED)["message_id"]])

def test_deleting_an_old_submission_now_removes_its_mails_and_attempts(old_database, make_app,
                                                                        smtp_server):
    """After the upgrade the outbox and attempt rows go with their submission (cascade)."""
    old = old_database.mail(QUEUED)
    app = make_app(DATABASE_URL=old_database.url)
    wait_sent(app, old["message_id"])
    with app.app_context():
        attempts = sa.select(DeliveryAttempt).filter_by(mail_id=old["id"])
        assert db.session.scalars(attempts).all(), "the delivery left no attempt row"
        for submission_id in (QUEUED, DELIVERED):
            db.session.execute(sa.delete(Submission).filter_by(id=submission_id))
        db.session.commit()
        assert db.session.scalars(sa.select(OutboxMail)).all() == []
        assert db.session.scalars(sa.select(DeliveryAttempt)).all() == []


def test_flask_db_upgrade_adopts_a_release_0_1_database(old_database, tmp_path):
    """`flask --app contact_site db upgrade` on a 0.1 database: newest revision, rows kept."""
    env = {"PATH": str(Path(FLASK).parent), "HOME": str(tmp_path), "SECRET_KEY": SECRET,
           "DATABASE_URL": old_database.url, "UPLOAD_FOLDER": str(old_database.uploads),
           "CONTACT_RECIPIENTS": "Sales <sales@example.com>"}
    done = subprocess.run([FLASK, "--app", "contact_site", "db", "upgrade"], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert alembic_versions(old_database.url) == heads()
    assert old_columns_now(old_database) == old_database.before



REBUILD_SUBMISSION = '''"""A later revision rebuilding submission (SQLite: copy, drop, rename)."""
from alembic import op

revision = "zz_rebuild"
down_revision = {heads!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("submission", recreate="always"):
        pass


def downgrade() -> None:
    pass
'''


def test_a_revision_rebuilding_a_parent_table_on_sqlite_keeps_its_children(make_app, tmp_path):
    """A batch rebuild of `submission` on SQLite drops no mail and no attempt (foreign keys
    are off while migrating), and the cascade works again afterwards."""
    app = make_app(deliver=False)
    (mail_id, _thank_you) = queue_submissions(app, thank_you=True)
    with app.app_context():
        db.session.add(DeliveryAttempt(mail_id=mail_id, outcome="transient", reply="451"))
        db.session.commit()
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "zz_rebuild.py").write_text(
        REBUILD_SUBMISSION.format(heads=tuple(sorted(heads()))))
    with app.app_context():
        flask_migrate.upgrade(directory=str(migrations), revision="heads")
        assert len(db.session.scalars(sa.select(OutboxMail)).all()) == 2
        assert len(db.session.scalars(sa.select(DeliveryAttempt)).all()) == 1
        db.session.execute(sa.delete(Submission))
        db.session.commit()
        assert db.session.scalars(sa.select(OutboxMail)).all() == []
        assert db.session.scalars(sa.select(DeliveryAttempt)).all() == []


BROKEN_REVISION = '''"""A later revision that fails half-way."""
import sqlalchemy as sa
from alembic import op

revision = "zz_broken"
down_revision = {heads!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("half_done", sa.Column("id", sa.Integer(), primary_key=True))
    op.add_column("submission", sa.Column("half_done", sa.Integer(), nullable=True))
    with op.batch_alter_table("submission") as batch:  # on SQLite: a rebuild of the table
        batch.alter_column("subject", existing_type=sa.String(200), nullable=True)
    raise RuntimeError("this revision fails after some of its work")


def downgrade() -> None:
    pass
'''


def test_a_failing_revision_leaves_the_database_as_it_was(database_url, make_app, tmp_path):
    """An upgrade that fails part-way changes nothing: no new table or column, the
    revision and the rows as before (one transaction, on SQLite too)."""
    app = make_app(deliver=False, DATABASE_URL=database_url)
    queue_submissions(app, thank_you=True)
    before = set(alembic_versions(database_url))
    migrations = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, migrations, ignore=shutil.ignore_patterns("__pycache__"))
    (migrations / "versions" / "zz_broken.py").write_text(
        BROKEN_REVISION.format(heads=tuple(sorted(heads()))))
    with app.app_context(), pytest.raises(SystemExit):  # Flask-Migrate exits on the error
        flask_migrate.upgrade(directory=str(migrations), revision="heads")
    engine = sa.create_engine(database_url)
    try:
        inspector = sa.inspect(engine)
        assert "half_done" not in inspector.get_table_names()
        columns = {column["name"]: column for column in inspector.get_columns("submission")}
        assert "half_done" not in columns
        assert columns["subject"]["nullable"] is False
    finally:
        engine.dispose()
    assert alembic_versions(database_url) == before
    with app.app_context():
        assert len(db.session.scalars(sa.select(OutboxMail)).all()) == 2


def test_migration_files_are_named_in_chain_order():
    """versions/NN_<revision>_<slug>.py, NN the place in the chain: the files sort in the
    order they are applied (migrations/README.md)."""
    chain = list(reversed(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions())))
    names = [Path(script.path).name for script in chain]
    assert names == sorted(path.name for path in (MIGRATIONS / "versions").glob("*.py"))
    prefixes = [f"{place:02d}_{script.revision}_" for place, script in enumerate(chain, 1)]
    assert [name[:len(prefix)] for name, prefix in zip(names, prefixes, strict=True)] == prefixes


@contextmanager
def app_at(url: str, tmp_path: Path, revision: str) -> Iterator[Flask]:
    """An app (nothing started) whose database is brought to `revision` alone."""
    app = create_app({"TESTING": True, "SECRET_KEY": SECRET, "DATABASE_URL": url,
                      "UPLOAD_FOLDER": str(tmp_path / "uploads"),
                      "CONTACT_RECIPIENTS": "Sales <sales@example.com>"})
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=str(MIGRATIONS), revision=revision)
        yield app
    finally:
        with app.app_context():
            db.engine.dispose()


# Rows as revision 0009 held them: id → is_spam, verdict, verdict_reasons, thank_you_sent.
ROWS_0009 = {
    "marked_by_is_spam_alone": (True, "ham", "", False),
    "is_spam_over_suspect": (True, "suspect", "no_proof", False),
    "spam_both_ways": (True, "spam", "honeypot\nduplicate", False),
    "ham_thanked": (False, "ham", "", True),
    "suspect": (False, "suspect", "too_many_links", False),
}
# The same rows after 0010: verdict, verdict_reasons, thank_you_promised.
ROWS_0010 = {
    "marked_by_is_spam_alone": ("spam", "", False),
    "is_spam_over_suspect": ("spam", "no_proof", False),
    "spam_both_ways": ("spam", "honeypot\nduplicate", False),
    "ham_thanked": ("ham", "", True),
    "suspect": ("suspect", "too_many_links", False),
}


# Columns of older revisions a test fills with values SQLAlchemy must be told the type of.
OLD_TYPES: dict[str, sa.types.TypeEngine[Any]] = {
    "created_at": sa.DateTime(), "is_spam": sa.Boolean(), "thank_you_sent": sa.Boolean(),
    "thank_you_promised": sa.Boolean()}


def insert_old_submissions(rows: dict[str, dict[str, Any]]) -> None:
    """Store a submission per id with the columns every revision from 0003 on has, and the
    row's own (in an older revision's schema, which the models no longer describe)."""
    values = [{
        "id": row_id, "submission_key": row_id, "created_at": utcnow(),
        "recipient_slug": "sales", "recipient_name": "Sales",
        "recipient_address": "sales@example.com", "name": "", "email": "ada@example.com",
        "mailbox_key": "ada@example.com", "subject": "s", "message": "m", **own,
    } for row_id, own in rows.items()]
    table = sa.table("submission", *(sa.column(name, OLD_TYPES.get(name)) for name in values[0]))
    db.session.execute(sa.insert(table), values)
    db.session.commit()


def insert_0009_rows() -> None:
    """Store ROWS_0009 in the schema of revision 0009."""
    insert_old_submissions({row_id: {
        "is_spam": is_spam, "verdict": verdict, "verdict_reasons": reasons,
        "thank_you_sent": thanked,
    } for row_id, (is_spam, verdict, reasons, thanked) in ROWS_0009.items()})


def submission_columns() -> set[str]:
    """The columns the submission table has now."""
    return {column["name"] for column in sa.inspect(db.engine).get_columns("submission")}


@pytest.mark.each_database
def test_0010_stores_the_verdict_once_and_names_the_promise(database_url, tmp_path):
    """From 0009 with data: a row marked spam by is_spam alone gets the verdict spam, its
    reasons kept; thank_you_sent's values move to thank_you_promised; both old columns go."""
    with app_at(database_url, tmp_path, "0009") as app, app.app_context():
        insert_0009_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0010")
        found = db.session.execute(sa.select(
            Submission.id, Submission.verdict, Submission.verdict_reasons,
            Submission.thank_you_promised)).all()
        columns = submission_columns()
    assert {row_id: tuple(rest) for row_id, *rest in found} == ROWS_0010
    assert {"verdict", "thank_you_promised"} <= columns
    assert not {"is_spam", "thank_you_sent"} & columns


@pytest.mark.each_database
def test_0010_downgrade_sets_is_spam_from_the_verdict(database_url, tmp_path):
    """Back to 0009: is_spam is true exactly for the verdict spam, thank_you_sent as it was."""
    with app_at(database_url, tmp_path, "0009") as app, app.app_context():
        insert_0009_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0010")
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0009")
        found = db.session.execute(sa.text(
            "SELECT id, is_spam, verdict, thank_you_sent FROM submission")).all()
    assert {row_id: (bool(is_spam), verdict, bool(thanked))
            for row_id, is_spam, verdict, thanked in found} == {
        row_id: (verdict == "spam", verdict, promised)
        for row_id, (verdict, _reasons, promised) in ROWS_0010.items()}


# Attachments as revision 0010 held them: id → attachment_name, _path, _type, _size.
ATTACHMENTS_0010 = {
    "with_file": ("report.pdf", "with_file/attachment.pdf", "application/pdf", 4096),
    "file_deleted": ("notes.pdf", None, "application/pdf", 512),  # by retention: name kept
    "untyped": ("scan", "untyped/attachment", None, None),
    "without_file": (None, None, None, None),
}
# Their files after 0011: id → field, position, name, path, content_type, size of each.
FILES_0011: dict[str, list[tuple[Any, ...]]] = {
    "with_file": [("attachment", 0, "report.pdf", "with_file/attachment.pdf",
                   "application/pdf", 4096)],
    "file_deleted": [("attachment", 0, "notes.pdf", None, "application/pdf", 512)],
    "untyped": [("attachment", 0, "scan", "untyped/attachment", "application/octet-stream", 0)],
}
ATTACHMENT_COLUMNS = ("attachment_name", "attachment_path", "attachment_type", "attachment_size")
FILE_COLUMNS = ("submission_id", "field", "position", "name", "path", "content_type", "size")


def insert_0010_rows() -> None:
    """Store ATTACHMENTS_0010 in the schema of revision 0010."""
    insert_old_submissions({row_id: {"thank_you_promised": False,
                                     **dict(zip(ATTACHMENT_COLUMNS, attachment, strict=True))}
                            for row_id, attachment in ATTACHMENTS_0010.items()})


def stored_files() -> dict[str, list[tuple[Any, ...]]]:
    """The rows of submission_file by submission id, each submission's in order."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    for submission_id, *file in db.session.execute(sa.text(
            f"SELECT {', '.join(FILE_COLUMNS)} FROM submission_file "
            "ORDER BY submission_id, position, id")):
        found.setdefault(submission_id, []).append(tuple(file))
    return found


@pytest.mark.each_database
def test_0011_moves_each_attachment_to_a_file_row(database_url, tmp_path):
    """From 0010 with data: an attachment becomes its submission's file of the field
    `attachment` (one deleted by retention keeps its name, without a path; an unknown type
    reads as application/octet-stream, size 0); a submission without one has no file; the
    attachment columns go."""
    with app_at(database_url, tmp_path, "0010") as app, app.app_context():
        insert_0010_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0011")
        files = stored_files()
        columns = submission_columns()
    assert files == FILES_0011
    assert not set(ATTACHMENT_COLUMNS) & columns


@pytest.mark.each_database
def test_0011_stores_old_submissions_as_sent_with_the_built_in_form(database_url, tmp_path):
    """Every submission stored before 0011 is of the form `contact`, with no version and no
    answers (they read as the built-in form's fields)."""
    with app_at(database_url, tmp_path, "0010") as app, app.app_context():
        insert_0010_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0011")
        found = db.session.execute(sa.text(
            "SELECT id, form_slug, form_version, answers FROM submission")).all()
    assert {row_id: tuple(rest) for row_id, *rest in found} == dict.fromkeys(
        ATTACHMENTS_0010, ("contact", None, None))


@pytest.mark.each_database
def test_0011_downgrade_puts_each_first_file_back(database_url, tmp_path):
    """Back to 0010: the attachment columns hold each submission's first file by position
    (a later one is lost), and submission_file and the form columns go."""
    with app_at(database_url, tmp_path, "0010") as app, app.app_context():
        insert_0010_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0011")
        insert_old_submissions({"two_files": {"thank_you_promised": False,
                                              "form_slug": "quote"}})
        files = sa.table("submission_file", *(sa.column(name) for name in FILE_COLUMNS))
        db.session.execute(sa.insert(files), [  # the second file stored before the first
            dict(zip(FILE_COLUMNS, file, strict=True)) for file in (
                ("two_files", "drawings", 1, "b.dwg", "two_files/b", "image/vnd.dwg", 20),
                ("two_files", "drawings", 0, "a.dwg", "two_files/a", "image/vnd.dwg", 10),
                ("with_file", "attachment", 1, "extra.pdf", "with_file/extra",
                 "application/pdf", 30))])
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0010")
        found = db.session.execute(sa.text(
            f"SELECT id, {', '.join(ATTACHMENT_COLUMNS)} FROM submission")).all()
        columns = submission_columns()
        tables = set(sa.inspect(db.engine).get_table_names())
    assert {row_id: tuple(rest) for row_id, *rest in found} == {
        **ATTACHMENTS_0010, "untyped": FILES_0011["untyped"][0][2:],
        "two_files": ("a.dwg", "two_files/a", "image/vnd.dwg", 10)}
    assert not {"form_slug", "form_version", "answers"} & columns
    assert "submission_file" not in tables


@pytest.mark.each_database
def test_the_migrated_schema_is_the_one_the_models_declare(database_url, tmp_path):
    """What `flask db check` checks: at the newest revision, comparing the models with the
    database (with the app's own settings, types included) finds no difference."""
    with (app_at(database_url, tmp_path, "heads") as app, app.app_context(),
          db.engine.connect() as connection):
        context = MigrationContext.configure(
            connection, opts=dict(app.extensions["migrate"].configure_args))
        assert compare_metadata(context, db.metadata) == []


def outbox_rows() -> dict[int, tuple[Any, ...]]:
    """id → kind, status and (where the revision has them) target and event of each row."""
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("outbox")}
    wanted = ["id", "kind", "status", *(c for c in ("target", "event") if c in columns)]
    found = db.session.execute(sa.text(f"SELECT {', '.join(wanted)} FROM outbox")).all()
    return {row[0]: tuple(row[1:]) for row in found}


def insert_0011_mails() -> None:
    """Two mails of one submission, as revision 0011 stored them."""
    insert_old_submissions({"with_mails": {"thank_you_promised": True}})
    now = utcnow()
    mails = sa.table("outbox", *(sa.column(name, OLD_TYPES.get(name)) for name in (
        "id", "submission_id", "kind", "to_address", "message_id", "status", "attempts",
        "created_at", "next_attempt_at", "expires_at")))
    db.session.execute(sa.insert(mails), [
        {"id": 1, "submission_id": "with_mails", "kind": "recipient",
         "to_address": "sales@example.com", "message_id": "<1@example.com>", "status": "sent",
         "attempts": 1, "created_at": now, "next_attempt_at": now, "expires_at": now},
        {"id": 2, "submission_id": "with_mails", "kind": "thank_you",
         "to_address": "ada@example.com", "message_id": "<2@example.com>", "status": "queued",
         "attempts": 0, "created_at": now, "next_attempt_at": now, "expires_at": now}])
    db.session.commit()


@pytest.mark.each_database
def test_0012_keeps_the_mails_and_gives_webhooks_their_columns(database_url, tmp_path):
    """From 0011 with mails: they stay as they were, with no target or event (mails have
    none); a webhook delivery can then be stored, and going back to 0011 deletes it alone."""
    with app_at(database_url, tmp_path, "0011") as app, app.app_context():
        insert_0011_mails()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0012")
        assert outbox_rows() == {1: ("recipient", "sent", None, None),
                                 2: ("thank_you", "queued", None, None)}
        db.session.execute(sa.text(
            "INSERT INTO outbox (id, submission_id, kind, to_address, message_id, status, "
            "attempts, created_at, next_attempt_at, expires_at, target, event) "
            "SELECT 3, submission_id, 'webhook', '', 'msg_3', 'queued', 0, created_at, "
            "next_attempt_at, expires_at, 'https://crm.example.com/h', 'submission.created' "
            "FROM outbox WHERE id = 1"))
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0011")
        assert outbox_rows() == {1: ("recipient", "sent"), 2: ("thank_you", "queued")}


# Submissions as revision 0012 held them (no state), by id: their verdicts.
ROWS_0012 = {"ham_delivered": "ham", "suspect": "suspect", "spam": "spam"}


def insert_0012_rows() -> None:
    """Store ROWS_0012 in the schema of revision 0012."""
    insert_old_submissions({row_id: {"thank_you_promised": False, "verdict": verdict}
                            for row_id, verdict in ROWS_0012.items()})


def states() -> dict[str, str]:
    """Each submission's state, by id."""
    return dict(db.session.execute(sa.text("SELECT id, state FROM submission")).tuples().all())


@pytest.mark.each_database
def test_0013_makes_every_stored_submission_read_and_new_ones_new(database_url, tmp_path):
    """From 0012 with data: every submission there (spam too) is `read`, none left new for
    the owner to wade through; one stored afterwards without a state is `new`."""
    with app_at(database_url, tmp_path, "0012") as app, app.app_context():
        insert_0012_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0013")
        assert states() == dict.fromkeys(ROWS_0012, "read")
        insert_old_submissions({"after": {"thank_you_promised": False}})  # the column's default
        assert states()["after"] == "new"
        indexes = {index["name"]: index["column_names"]
                   for index in sa.inspect(db.engine).get_indexes("submission")}
    assert indexes["ix_submission_state_verdict"] == ["state", "verdict"]


@pytest.mark.each_database
def test_0013_downgrade_drops_the_state_and_keeps_the_rows(database_url, tmp_path):
    """Back to 0012: the state column and its index go; every submission stays, its verdict
    as it was."""
    with app_at(database_url, tmp_path, "0012") as app, app.app_context():
        insert_0012_rows()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0013")
        db.session.execute(sa.text("UPDATE submission SET state = 'archived' WHERE id = 'spam'"))
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0012")
        found = dict(db.session.execute(sa.text(
            "SELECT id, verdict FROM submission")).tuples().all())
        columns = submission_columns()
        indexes = {index["name"] for index in sa.inspect(db.engine).get_indexes("submission")}
    assert found == ROWS_0012
    assert "state" not in columns
    assert "ix_submission_state_verdict" not in indexes


@pytest.mark.each_database
def test_0014_keeps_the_mails_and_their_attempts_and_lets_a_digest_have_no_submission(
        database_url, tmp_path):
    """From 0013 with mails and an attempt: all stay as they were (SQLite rebuilds the
    outbox); a reply, a note and a digest without a submission can then be stored, and going
    back to 0013 deletes the reply's and the digest's rows and keeps the rest."""
    with app_at(database_url, tmp_path, "0013") as app, app.app_context():
        insert_0011_mails()
        db.session.execute(sa.text(
            "INSERT INTO delivery_attempt (id, mail_id, attempted_at, outcome, reply, seconds) "
            "SELECT 1, 1, created_at, 'sent', '250 ok', 0.1 FROM outbox WHERE id = 1"))
        db.session.commit()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0014")
        assert outbox_rows() == {1: ("recipient", "sent", None, None),
                                 2: ("thank_you", "queued", None, None)}
        assert db.session.scalar(sa.text("SELECT count(*) FROM delivery_attempt")) == 1
        db.session.execute(sa.text(
            "INSERT INTO reply (id, submission_id, author, created_at, body) "
            "SELECT 1, id, 'owner', created_at, 'Thanks!' FROM submission"))
        db.session.execute(sa.text(
            "INSERT INTO note (id, submission_id, author, created_at, text) "
            "SELECT 1, id, 'owner', created_at, 'Called back' FROM submission"))
        db.session.execute(sa.text(
            "INSERT INTO outbox (id, submission_id, kind, to_address, message_id, status, "
            "attempts, created_at, next_attempt_at, expires_at, reply_id) "
            "SELECT 3, submission_id, 'reply', 'ada@example.com', '<3@example.com>', 'queued', "
            "0, created_at, next_attempt_at, expires_at, 1 FROM outbox WHERE id = 1"))
        db.session.execute(sa.text(
            "INSERT INTO outbox (id, submission_id, kind, to_address, message_id, status, "
            "attempts, created_at, next_attempt_at, expires_at) "
            "SELECT 4, NULL, 'digest', 'sales@example.com', '<4@example.com>', 'queued', "
            "0, created_at, next_attempt_at, expires_at FROM outbox WHERE id = 1"))
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0013")
        assert outbox_rows() == {1: ("recipient", "sent", None, None),
                                 2: ("thank_you", "queued", None, None)}
        assert db.session.scalar(sa.text("SELECT count(*) FROM delivery_attempt")) == 1
        tables = set(sa.inspect(db.engine).get_table_names())
    assert not tables & {"reply", "note"}


def accounts() -> dict[str, tuple[Any, ...]]:
    """Each account's password hash, session version and (where the revision has it) role."""
    columns = {c["name"] for c in sa.inspect(db.engine).get_columns("admin_user")}
    wanted = ["username", "password_hash", "session_version",
              *(c for c in ("role", "recipients", "totp_secret") if c in columns)]
    found = db.session.execute(sa.text(f"SELECT {', '.join(wanted)} FROM admin_user"))
    return {row[0]: tuple(row[1:]) for row in found}


@pytest.mark.each_database
def test_0015_makes_every_account_an_owner_and_downgrade_keeps_the_owners(
        database_url, tmp_path):
    """From 0014 with two accounts: both stay, with their password and sessions, as owners
    with no second factor; going back to 0014 deletes responders and every second factor,
    and keeps the owners."""
    with app_at(database_url, tmp_path, "0014") as app, app.app_context():
        db.session.execute(sa.text(
            "INSERT INTO admin_user (id, username, password_hash, session_version, created_at) "
            "VALUES (1, 'ada', '$argon2id$ada', 3, '2026-01-01 00:00:00'), "
            "(2, 'bob', '$argon2id$bob', 1, '2026-01-01 00:00:00')"))
        db.session.commit()
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0015")
        assert accounts() == {"ada": ("$argon2id$ada", 3, "owner", "", None),
                              "bob": ("$argon2id$bob", 1, "owner", "", None)}
        db.session.execute(sa.text(
            "UPDATE admin_user SET role = 'responder', recipients = 'sales' WHERE id = 2"))
        db.session.execute(sa.text(
            "INSERT INTO recovery_code (id, user_id, code_hash) VALUES (1, 1, '$argon2id$x')"))
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0014")
        assert accounts() == {"ada": ("$argon2id$ada", 3)}
        tables = set(sa.inspect(db.engine).get_table_names())
    assert not tables & {"recovery_code", "passkey"}


def files_rows() -> list[tuple[Any, ...]]:
    """The file rows in the columns every revision since 0011 has."""
    return [tuple(row) for row in db.session.execute(sa.text(
        "SELECT id, submission_id, field, position, name, path, content_type, size "
        "FROM submission_file ORDER BY id"))]


@pytest.mark.each_database
def test_0016_leaves_every_stored_file_unscanned_and_downgrade_keeps_the_files(
        database_url, tmp_path):
    """From 0015 with a file: it stays, with no scan state (it was never scanned); back to
    0015 the scan columns go and the file row stays as it was."""
    with app_at(database_url, tmp_path, "0015") as app, app.app_context():
        insert_0011_mails()
        db.session.execute(sa.text(
            "INSERT INTO submission_file (id, submission_id, field, position, name, path, "
            "content_type, size) VALUES (1, 'with_mails', 'attachment', 0, 'cv.pdf', "
            "'with_mails/attachment.pdf', 'application/pdf', 10)"))
        db.session.commit()
        before = files_rows()
        db.session.commit()  # no read left open: the revision alters the table
        flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0016")
        found = db.session.execute(sa.text(
            "SELECT scan_state, scan_detail FROM submission_file")).all()
        assert found and all(tuple(row) == (None, None) for row in found)
        db.session.execute(sa.text("UPDATE submission_file SET scan_state = 'infected', "
                                   "scan_detail = 'Eicar-Test-Signature'"))
        db.session.commit()
        flask_migrate.downgrade(directory=str(MIGRATIONS), revision="0015")
        assert files_rows() == before
        db.session.commit()
