"""The owner's replies and notes in the console: a reply goes to the visitor through the
outbox as a person's mail, threaded under the owner's mail; a note stays in the console."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from email.message import EmailMessage
from email.utils import parseaddr
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site.admin.audit import AuditEntry
from contact_site.contact.uploads import stored_bytes
from contact_site.database import utcnow
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.i18n import local_time
from contact_site.records.retention import purge
from contact_site.submissions.models import Submission
from contact_site.submissions.thread import Note, Reply
from support.admin import csrf_token, owner_client, post_action
from support.factories import create_submission
from support.files import EXE, PDF
from support.mails import parsed
from support.outbox import deliver_everything, deliver_now, mails_of, make_due
from support.smtp_server import ReceivedMail, SMTPTestServer
from support.upload_samples import MIB

pytestmark = pytest.mark.manual_delivery

ADA = "ada@example.com"
GRACE = "grace@example.com"
MESSAGE = "Hello,\nabout the analytical engine.\n\nCan it weave algebraic patterns?"
REPLY = "Dear Ada,\nyes it can: see the attached notes.\nBest regards"
NOTE = "Called back on Monday; she wants a quote by Friday."


def reply_path(submission_id: str) -> str:
    return f"/admin/submissions/{submission_id}/reply"


def send_reply(client: FlaskClient, submission_id: str, body: str = REPLY,
               file: tuple[bytes, str] | None = None, token: bool = True) -> Any:
    """POST the reply form as a browser sends it (multipart, an empty file input when no
    file is chosen), with the token of a console page that does not open the message."""
    data, name = file or (b"", "")
    form = MultiDict({"body": body, "attachment": FileStorage(io.BytesIO(data), name)})
    if token:
        form["csrf_token"] = csrf_token(client, "/admin/outbox")
    # Encoded in memory: the test client would spool a body over 500 kB to a temporary
    # file it never closes.
    boundary, encoded = encode_multipart(form)
    return client.post(reply_path(submission_id), data=encoded,
                       content_type=f"multipart/form-data; boundary={boundary}")


def add_note(client: FlaskClient, submission_id: str, text: str = NOTE) -> Any:
    """POST the note form."""
    return post_action(client, f"/admin/submissions/{submission_id}/notes", text=text)


def page_text(client: FlaskClient, path: str) -> str:
    """The page's HTML, after checking it answered 200."""
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def thread_section(html: str) -> str:
    """The detail page's "Replies and notes" section, up to its two forms."""
    start = html.index('<h2 id="thread">')
    return html[start:html.index('<div class="thread-forms">', start)]


def replies_of(app: Flask, submission_id: str) -> list[Reply]:
    """The submission's stored replies, oldest first, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(Reply).where(
            Reply.submission_id == submission_id).order_by(Reply.id)))
        db.session.expunge_all()
        return found


def notes_of(app: Flask, submission_id: str) -> list[Note]:
    """The submission's stored notes, oldest first, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(Note).where(
            Note.submission_id == submission_id).order_by(Note.id)))
        db.session.expunge_all()
        return found


def state_of(app: Flask, submission_id: str) -> str:
    """The submission's state in the owner's inbox."""
    with app.app_context():
        return db.session.execute(select(Submission.state).where(
            Submission.id == submission_id)).scalar_one()


def reply_rows(app: Flask, submission_id: str) -> list[OutboxMail]:
    """The submission's outbox rows carrying a reply."""
    return [row for row in mails_of(app, submission_id) if row.kind == MailKind.REPLY]


def audit_lines(app: Flask, action: str) -> list[tuple[str | None, str | None, str]]:
    """(who, which submission, detail) of each audit line of this action, oldest first."""
    with app.app_context():
        return [(actor, submission_id, detail) for actor, submission_id, detail in
                db.session.execute(select(AuditEntry.actor, AuditEntry.submission_id,
                                          AuditEntry.detail)
                                   .where(AuditEntry.action == action).order_by(AuditEntry.id))]


def received_by(smtp_server: SMTPTestServer, address: str) -> list[ReceivedMail]:
    """The mails the server took for this address, in order."""
    return [mail for mail in smtp_server.messages if mail.rcpt_tos == [address]]


def plain_body(message: EmailMessage) -> str:
    """The text/plain body, with LF line ends."""
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def every_text(data: bytes) -> str:
    """All a mail says: its headers and each text part decoded (whatever its transfer
    encoding), so words cannot hide in base64 or quoted-printable."""
    message = parsed(data)
    said = [f"{name}: {value}" for name, value in message.items()]
    for part in message.walk():
        if part.get_content_maintype() == "text":
            said.append(str(part.get_content()))
    return "\n".join(said)


def files_under(app: Flask, submission_id: str) -> list[Path]:
    """The files kept in the submission's upload folder."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission_id
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.is_dir() else []


def delivered_submission(app: Flask, **fields: Any) -> tuple[str, OutboxMail]:
    """A submission whose owner's mail reached the server; its id and that mail's row."""
    submission_id = create_submission(app, message=MESSAGE, **fields)
    deliver_everything(app)
    [owner_mail] = mails_of(app, submission_id)
    assert owner_mail.status == Status.SENT
    return submission_id, owner_mail


@pytest.mark.each_database
@pytest.mark.parametrize(("subject", "expected"), [
    ("Analytical engine", "Re: Analytical engine"),
    ("Re: Analytical engine", "Re: Analytical engine"),
    ("RE: analytical engine", "RE: analytical engine"),
])
def test_a_reply_reaches_the_visitor_as_a_persons_answer_in_the_thread(
        app: Flask, smtp_server: SMTPTestServer, subject: str, expected: str) -> None:
    """To the visitor, from the site's sender, answered to the recipient, "Re: " once, the
    owner's words then the message quoted, threaded under the owner's mail, no
    Auto-Submitted; the message becomes answered."""
    submission_id, owner_mail = delivered_submission(app, subject=subject)
    client = owner_client(app)
    response = send_reply(client, submission_id)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/submissions/{submission_id}#thread"
    assert state_of(app, submission_id) == "answered"
    deliver_everything(app)

    [mail] = received_by(smtp_server, ADA)
    message = parsed(mail.data)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Ada Lovelace", ADA)
    [sender] = message["From"].addresses
    assert sender.addr_spec == parseaddr(app.config["MAIL_DEFAULT_SENDER"])[1]
    assert mail.mail_from == sender.addr_spec
    [answered_by] = message["Reply-To"].addresses
    assert answered_by.addr_spec == "sales@example.com"
    assert message["Subject"] == expected
    [owner_received] = received_by(smtp_server, "sales@example.com")
    assert owner_received.message["Message-ID"] == owner_mail.message_id
    assert message["In-Reply-To"] == owner_mail.message_id
    assert message["References"] == owner_mail.message_id
    assert "Auto-Submitted" not in message
    [row] = reply_rows(app, submission_id)
    assert message["Message-ID"] == row.message_id != owner_mail.message_id
    assert row.status == Status.SENT

    with app.app_context():
        created = db.session.get(Submission, submission_id).created_at  # type: ignore[union-attr]
        when = local_time(created)
    quoted = "\n".join(f"> {line}".rstrip() for line in MESSAGE.split("\n"))
    assert plain_body(message).rstrip("\n") == (
        f"{REPLY}\n\nOn {when}, Ada Lovelace wrote:\n{quoted}")
    assert quoted.splitlines()[2] == ">"  # an empty line of the message is quoted too


@pytest.mark.each_database
def test_a_reply_carries_its_file_byte_for_byte(app: Flask,
                                                smtp_server: SMTPTestServer) -> None:
    """A file sent with the reply is checked as a visitor's would be, kept with the message
    and attached under its name, its bytes unchanged; the thread names it."""
    submission_id, _owner_mail = delivered_submission(app)
    client = owner_client(app)
    response = send_reply(client, submission_id, file=(PDF, "notes on the engine.pdf"))
    assert response.status_code == 303
    [reply] = replies_of(app, submission_id)
    assert (reply.file_name, reply.file_size, reply.file_content_type) == (
        "notes on the engine.pdf", len(PDF), "application/pdf")
    kept = Path(app.config["UPLOAD_FOLDER"]) / str(reply.file_path)
    assert kept.parent.name == submission_id and kept.read_bytes() == PDF
    deliver_everything(app)

    [mail] = received_by(smtp_server, ADA)
    message = parsed(mail.data)
    [attached] = list(message.iter_attachments())
    assert attached.get_filename() == "notes on the engine.pdf"
    assert attached.get_content_type() == "application/pdf"
    assert attached.get_content() == PDF
    assert plain_body(message).startswith(REPLY + "\n")
    thread = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    assert f"Attached: notes on the engine.pdf ({len(PDF)} bytes)" in thread


@pytest.mark.parametrize(("name", "data", "status", "words"), [
    pytest.param("setup.exe", EXE, 422, "Files of this type are not accepted. Allowed types:",
                 id="type"),
    pytest.param("report.pdf", EXE, 422, "The file's content is not a .pdf file.",
                 id="content"),
    pytest.param("photo.png", PDF, 422, "The file's content is not a .png file.",
                 id="extension"),
    pytest.param("empty.pdf", b"", 422, "The file is empty.", id="empty"),
    pytest.param("big.pdf", PDF + b"0" * MIB, 413, "The file is larger than the limit of 1 MB.",
                 id="size", marks=pytest.mark.settings(CONTACT_MAX_UPLOAD_MB=1)),
])
def test_a_refused_file_refuses_the_reply(app: Flask, name: str, data: bytes, status: int,
                                          words: str) -> None:
    """A file the site would refuse from a visitor: 422 (413 when too large) with the words
    naming the problem beside the file field, the owner's text kept; nothing stored, queued
    or written."""
    submission_id = create_submission(app, message=MESSAGE)
    client = owner_client(app)
    response = send_reply(client, submission_id, file=(data, name))
    assert response.status_code == status
    html = response.get_data(as_text=True)
    error = re.search(r'<p class="field-error" id="attachment-error">([^<]*)</p>', html)
    assert error and words in unescape(error.group(1))
    assert 'aria-invalid="true"' in html
    assert "yes it can: see the attached notes." in html  # what the owner wrote is kept
    assert replies_of(app, submission_id) == []
    assert [row.kind for row in mails_of(app, submission_id)] == [MailKind.OWNER]
    assert files_under(app, submission_id) == []
    assert state_of(app, submission_id) == "new"
    assert audit_lines(app, "reply") == []


@pytest.mark.parametrize("body", ["", "  \n\t "])
def test_an_empty_reply_is_refused(app: Flask, body: str) -> None:
    """No words: 422 with the form again and its error; nothing stored or queued, the
    message's state unchanged."""
    submission_id = create_submission(app)
    client = owner_client(app)
    response = send_reply(client, submission_id, body=body, file=(PDF, "report.pdf"))
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'<p class="field-error" id="body-error">[^<]+</p>', html)
    assert replies_of(app, submission_id) == []
    assert [row.kind for row in mails_of(app, submission_id)] == [MailKind.OWNER]
    assert files_under(app, submission_id) == []
    assert state_of(app, submission_id) == "new"
    assert audit_lines(app, "reply") == []


def test_a_refused_reply_is_retried_then_shown_failed_with_its_attempts(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """The server says 451: the reply stays queued and is tried again; it says 550: the
    reply is failed, and the thread shows it so, with both attempts and the server's words."""
    submission_id, _owner_mail = delivered_submission(app)
    client = owner_client(app)
    assert send_reply(client, submission_id).status_code == 303
    smtp_server.mode = "451"
    assert deliver_now(app) == 1
    [row] = reply_rows(app, submission_id)
    assert (row.status, row.attempts) == (Status.QUEUED, 1)
    html = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    assert '<span class="state state-queued">queued</span>' in html
    assert "451 4.3.0 Try again later" in html and "Next try" in html

    smtp_server.mode = "550"
    make_due(app)
    assert deliver_now(app) == 1
    [row] = reply_rows(app, submission_id)
    assert (row.status, row.attempts) == (Status.FAILED, 2)
    assert smtp_server.data_commands == 3 and received_by(smtp_server, ADA) == []
    html = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    [heading] = re.findall(r'<h3 id="reply-\d+">(.*?)</h3>', html)
    assert heading.endswith(': <span class="state state-failed">failed</span>')
    assert "<dt>Attempts</dt><dd>2</dd>" in html
    assert "Every attempt at this reply" in html
    outcomes = re.findall(r'<td data-label="Outcome">([^<]*)</td>', html)
    assert outcomes == ["transient", "failed"]
    assert "451 4.3.0 Try again later" in html and "550 5.7.1 Rejected by policy" in html
    assert state_of(app, submission_id) == "answered"


def test_notes_stay_in_the_console_and_the_owners_export(app: Flask,
                                                         smtp_server: SMTPTestServer) -> None:
    """A note is kept with its author and time and shown in the thread; it is in no mail,
    not in the CSV export nor the visitor's access export, but in the owner's JSON export;
    the access export holds the reply."""
    submission_id = create_submission(app, message=MESSAGE, thank_you=True)
    client = owner_client(app)
    response = add_note(client, submission_id)
    assert response.status_code == 303
    assert response.headers["Location"] == f"/admin/submissions/{submission_id}#thread"
    [note] = notes_of(app, submission_id)
    assert (note.author, note.text) == ("owner", NOTE)
    assert state_of(app, submission_id) == "new"  # a note is not an answer
    assert send_reply(client, submission_id).status_code == 303
    deliver_everything(app)

    thread = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    stamp = note.created_at.isoformat(timespec="seconds") + "Z"
    assert re.search(rf'<h3 id="note-{note.id}">Note by owner, <time datetime="{stamp}">', thread)
    assert "Called back on Monday; she wants a quote by Friday." in thread
    assert thread.index(f'id="note-{note.id}"') < thread.index('id="reply-')  # oldest first

    assert {tuple(mail.rcpt_tos) for mail in smtp_server.messages} == {
        ("sales@example.com",), (ADA,)}
    assert len(smtp_server.messages) == 3  # the owner's mail, the thank-you and the reply
    for mail in smtp_server.messages:
        assert "Called back" not in every_text(mail.data)
        assert b"Called back" not in mail.data

    [record] = json.loads(page_text(client, "/admin/export.json?state=all"))
    [exported_note] = record["thread"]["notes"]
    assert exported_note == {"author": "owner", "text": NOTE,
                             "created_at": exported_note["created_at"]}
    assert exported_note["created_at"].startswith(note.created_at.strftime("%Y-%m-%dT%H:%M"))
    assert [reply["body"] for reply in record["thread"]["replies"]] == [REPLY]

    exported = page_text(client, "/admin/export.csv?state=all")
    [row] = list(csv.DictReader(io.StringIO(exported)))
    assert not {"thread", "notes", "replies"} & set(row)
    assert "Called back" not in exported

    result = app.test_cli_runner().invoke(
        args=["submissions", "export", "--email", ADA, "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "Called back" not in result.output
    [access] = json.loads(result.output)["submissions"]
    assert "notes" not in access
    assert [(reply["author"], reply["body"]) for reply in access["replies"]] == [("owner", REPLY)]


def test_the_thread_shows_what_was_written_as_text(app: Flask) -> None:
    """Markup and control characters in a reply or a note are shown as text, never run."""
    submission_id = create_submission(app)
    client = owner_client(app)
    assert send_reply(client, submission_id, body="<script>alert('reply')</script>\x1b[31m"
                      ).status_code == 303
    assert add_note(client, submission_id, '<img src=x onerror="alert(1)">').status_code == 303
    thread = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    assert "<script>alert" not in thread and "<img src=x" not in thread
    assert "\x1b" not in thread
    assert "&lt;script&gt;alert(&#39;reply&#39;)&lt;/script&gt;" in thread
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in thread


@pytest.mark.parametrize("note", ["", " \n "])
def test_an_empty_note_is_refused(app: Flask, note: str) -> None:
    """No words: 422 with the error beside the field; nothing kept."""
    submission_id = create_submission(app)
    response = add_note(owner_client(app), submission_id, note)
    assert response.status_code == 422
    assert re.search(r'<p class="field-error" id="text-error">[^<]+</p>',
                     response.get_data(as_text=True))
    assert notes_of(app, submission_id) == []
    assert audit_lines(app, "note") == []


def with_thread(app: Flask, client: FlaskClient, email: str) -> tuple[str, Path, int]:
    """A message from `email` answered with a file and noted; its id, the reply's file and
    the reply's mail id."""
    submission_id = create_submission(app, email=email, message=MESSAGE)
    assert send_reply(client, submission_id, file=(PDF, "notes.pdf")).status_code == 303
    assert add_note(client, submission_id).status_code == 303
    [reply] = replies_of(app, submission_id)
    [row] = reply_rows(app, submission_id)
    return submission_id, Path(app.config["UPLOAD_FOLDER"]) / str(reply.file_path), row.id


def thread_counts(app: Flask, submission_id: str, mail_id: int) -> tuple[int, int, int, int]:
    """(replies, notes, the reply's outbox rows, their attempts) still stored."""
    with app.app_context():
        def count(model: Any, *where: Any) -> int:
            return int(db.session.scalar(select(func.count()).select_from(model).where(*where))
                       or 0)

        return (count(Reply, Reply.submission_id == submission_id),
                count(Note, Note.submission_id == submission_id),
                count(OutboxMail, OutboxMail.id == mail_id),
                count(DeliveryAttempt, DeliveryAttempt.mail_id == mail_id))


@pytest.mark.each_database
@pytest.mark.parametrize("how", ["console erasure", "erase command", "delete"])
def test_erasure_and_delete_take_replies_notes_their_mails_and_files(
        app: Flask, smtp_server: SMTPTestServer, how: str) -> None:
    """Erasing the visitor's address (console or command) or deleting the message removes
    its replies, notes, the replies' mails with their attempts and the replies' files; the
    thread of another visitor stays."""
    client = owner_client(app)
    gone, gone_file, gone_mail = with_thread(app, client, ADA)
    kept, kept_file, kept_mail = with_thread(app, client, GRACE)
    smtp_server.mode = "451"  # every mail refused once, then taken: two attempts each
    deliver_now(app)
    smtp_server.mode = "accept"
    make_due(app)
    deliver_everything(app)
    assert len(received_by(smtp_server, ADA)) == 1
    assert thread_counts(app, gone, gone_mail) == (1, 1, 1, 2)
    assert gone_file.read_bytes() == PDF

    if how == "console erasure":
        assert post_action(client, "/admin/erase", address=ADA.upper()).status_code == 303
    elif how == "erase command":
        result = app.test_cli_runner().invoke(args=["submissions", "erase", ADA])
        assert result.exit_code == 0, result.output
    else:
        response = post_action(client, f"/admin/submissions/{gone}/delete")
        assert response.status_code == 303

    assert thread_counts(app, gone, gone_mail) == (0, 0, 0, 0)
    assert not gone_file.exists() and not gone_file.parent.exists()
    with app.app_context():
        left = db.session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.submission_id == gone))
    assert left == 0
    assert thread_counts(app, kept, kept_mail) == (1, 1, 1, 2)
    assert kept_file.read_bytes() == PDF


def test_the_audit_log_says_who_replied_and_noted_never_what(app: Flask) -> None:
    """A "reply" line and a "note" line naming the owner and the message; no line, and not
    the audit page, holds a word of the reply or the note."""
    submission_id = create_submission(app)
    client = owner_client(app)
    assert send_reply(client, submission_id).status_code == 303
    assert add_note(client, submission_id).status_code == 303
    for action in ("reply", "note"):
        assert [(who, which) for who, which, _detail in audit_lines(app, action)] == [
            ("owner", submission_id)]
    with app.app_context():
        details = " ".join(db.session.scalars(select(AuditEntry.detail)))
    html = page_text(client, "/admin/audit")
    for words in (*REPLY.split("\n"), NOTE, "Called back", "Dear Ada"):
        assert words not in details and words not in html
    actions = re.findall(r'<td data-label="What">([^<]+)</td>', html)
    assert actions[:2] == ["note", "reply"]


@pytest.mark.parametrize("what", ["reply", "notes"])
def test_a_reply_or_note_without_a_token_is_refused(app: Flask, what: str) -> None:
    """A signed-in owner's POST without the CSRF token: 400 in plain words; nothing stored,
    queued or logged, the state unchanged."""
    submission_id = create_submission(app)
    client = owner_client(app)
    if what == "reply":
        response = send_reply(client, submission_id, file=(PDF, "notes.pdf"), token=False)
    else:
        response = client.post(f"/admin/submissions/{submission_id}/notes", data={"text": NOTE})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert replies_of(app, submission_id) == [] and notes_of(app, submission_id) == []
    assert [row.kind for row in mails_of(app, submission_id)] == [MailKind.OWNER]
    assert files_under(app, submission_id) == []
    assert state_of(app, submission_id) == "new"
    assert audit_lines(app, "reply") == audit_lines(app, "note") == []


@pytest.mark.parametrize("what", ["reply", "notes"])
def test_a_reply_or_note_to_an_unknown_message_is_a_404(app: Flask, what: str) -> None:
    """A deleted or mistyped id: 404 in plain words, nothing stored."""
    client = owner_client(app)
    if what == "reply":
        response = send_reply(client, "nope")
    else:
        response = add_note(client, "nope")
    assert response.status_code == 404
    assert "no message with this id" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Reply)) == 0
        assert db.session.scalar(select(func.count()).select_from(Note)) == 0


@pytest.mark.each_database
def test_a_replys_file_is_kept_like_an_upload_and_deleted_on_its_retention(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """A message with no file of its own keeps its reply's file past the sweep of orphaned
    folders, until CONTACT_UPLOAD_RETENTION_DAYS after the reply went; then the file goes,
    its name stays in the thread, and the quota no longer counts it."""
    submission_id, _owner_mail = delivered_submission(app)
    client = owner_client(app)
    assert send_reply(client, submission_id, file=(PDF, "notes.pdf")).status_code == 303
    deliver_everything(app)
    [kept] = files_under(app, submission_id)
    days = app.config["CONTACT_UPLOAD_RETENTION_DAYS"]
    with app.app_context():
        assert stored_bytes() == len(PDF)
        purge(utcnow() + timedelta(days=2))  # past the orphan grace, within the retention
    assert kept.read_bytes() == PDF
    with app.app_context():
        purge(utcnow() + timedelta(days=days + 1))
        assert stored_bytes() == 0
    assert files_under(app, submission_id) == []
    [reply] = replies_of(app, submission_id)
    assert (reply.file_name, reply.file_path) == ("notes.pdf", None)
    thread = thread_section(page_text(client, f"/admin/submissions/{submission_id}"))
    assert f"Attached: notes.pdf ({len(PDF)} bytes)" in thread


def test_a_queued_replys_file_outlives_the_owners_mail_retention(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """The owner's mail went long ago; a reply with a file still queued keeps the folder."""
    submission_id, owner_mail = delivered_submission(app, attachment=PDF)
    with app.app_context():
        db.session.execute(OutboxMail.__table__.update().where(
            OutboxMail.id == owner_mail.id).values(sent_at=utcnow() - timedelta(days=90)))
        db.session.commit()
    assert send_reply(owner_client(app), submission_id,
                      file=(PDF, "notes.pdf")).status_code == 303
    with app.app_context():
        purge(utcnow())
    assert len(files_under(app, submission_id)) == 2
