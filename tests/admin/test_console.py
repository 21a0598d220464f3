"""The console's pages and actions (README, "The owner's console"), on real mail delivery and
both databases."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, insert, select, update

from contact_site.admin.audit import AuditEntry
from contact_site.database import utcnow
from contact_site.delivery.backend import backend_of
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.submissions.models import Submission, SubmissionFile
from support.admin import owner_client, post_action
from support.factories import create_submission, queue_submissions
from support.outbox import mails_of
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

HOSTILE = {
    "name": '<img src=x onerror="alert(1)">',
    "subject": "<script>alert('subject')</script>",
    "message": "Dear owner,\n<script>alert('message')</script>\nsee \u202etxt.exe\n",
    "email": "ada+<b>@example.com",
}


def page_text(client: FlaskClient, path: str, **query: str) -> str:
    """The page's HTML, after checking it answered 200."""
    response = client.get(path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def listed_subjects(html: str) -> list[str]:
    """The subjects of the archive's rows, in order."""
    return re.findall(r'<td data-label="Subject"><a href="[^"]+">([^<]*)</a>', html)


def set_owner_mail_status(app: Flask, submission_id: str, status: Status) -> None:
    """Put the submission's owner mail in this state."""
    with app.app_context():
        db.session.execute(update(OutboxMail).where(
            OutboxMail.submission_id == submission_id, OutboxMail.kind == MailKind.OWNER)
            .values(status=status))
        db.session.commit()


def file_ids(app: Flask, submission_id: str) -> list[int]:
    """The ids of the submission's files, in order."""
    with app.app_context():
        return list(db.session.scalars(select(SubmissionFile.id).where(
            SubmissionFile.submission_id == submission_id).order_by(SubmissionFile.position)))


def audit_actions(app: Flask) -> list[tuple[str, str | None, str]]:
    """(action, submission id, detail) of every audit line, oldest first."""
    with app.app_context():
        return [tuple(row) for row in db.session.execute(select(  # type: ignore[misc]
            AuditEntry.action, AuditEntry.submission_id, AuditEntry.detail)
            .order_by(AuditEntry.id))]


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_the_archive_lists_newest_first_fifty_a_page(app: Flask) -> None:
    """51 submissions: page 1 holds the 50 newest, newest first; page 2 the oldest."""
    queue_submissions(app, 51)
    with app.app_context():
        start = utcnow() - timedelta(days=1)
        for number in range(51):
            db.session.execute(update(Submission).where(Submission.subject == f"Engines {number}")
                               .values(created_at=start + timedelta(minutes=number)))
        db.session.commit()
    client = owner_client(app)
    first = listed_subjects(page_text(client, "/admin/"))
    assert first == [f"Engines {number}" for number in range(50, 0, -1)]
    assert listed_subjects(page_text(client, "/admin/", page="2")) == ["Engines 0"]
    assert listed_subjects(page_text(client, "/admin/", page="9")) == []


@pytest.mark.manual_delivery
def test_each_row_shows_date_visitor_subject_recipient_file_and_mails(app: Flask) -> None:
    """A row has every column the README's console section names, with the state of each mail."""
    submission_id = create_submission(app, thank_you=True, attachment=b"%PDF-1.4 x")
    set_owner_mail_status(app, submission_id, Status.SENT)
    html = page_text(owner_client(app), "/admin/")
    assert 'data-label="Form"' not in html  # one form: no form column
    # The address may break before its @ and dots (<wbr>), never elsewhere.
    row = html[html.index("<tbody>"):html.index("</tbody>")].replace("<wbr>", "")
    for text in ("UTC</time>", "Ada Lovelace", "ada@example.com", "Engines 0", "Sales",
                 "report.pdf", "Owner’s mail: <span class=\"state state-sent\">sent",
                 "Thank-you mail: <span class=\"state state-queued\">queued"):
        assert text in row


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize(("q", "field", "value"), [
    ("grace@EXAMPLE.com", "email", "grace@example.com"),
    ("hopper", "name", "Grace Hopper"),
    ("compiler", "subject", "The first compiler"),
    ("cobol", "message", "About COBOL, at length."),
    ("100%", "subject", "100% sure"),
])
def test_search_finds_address_name_subject_and_message(app: Flask, q: str, field: str,
                                                        value: str) -> None:
    """?q= matches any of the four fields, ignoring case, and nothing else."""
    create_submission(app, subject="Unrelated")
    create_submission(app, **{field: value, **({} if field == "subject" else
                                                   {"subject": "Wanted"})})
    found = listed_subjects(page_text(owner_client(app), "/admin/", q=q))
    assert found == [value if field == "subject" else "Wanted"]


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize(("status", "expected"), [
    ("all", ["Failed", "Delivered", "Pending"]),
    ("pending", ["Pending"]),
    ("delivered", ["Delivered"]),
    ("failed", ["Failed"]),
    ("spam", ["Spam"]),
    ("suspect", []),
])
def test_status_filters(app: Flask, status: str, expected: list[str]) -> None:
    """?status= keeps the submissions whose owner's mail is in that state; `all` hides spam."""
    create_submission(app, subject="Pending")
    for subject, state in (("Delivered", Status.SENT), ("Failed", Status.FAILED)):
        set_owner_mail_status(app, create_submission(app, subject=subject), state)
    create_submission(app, subject="Spam", verdict="spam")
    found = listed_subjects(page_text(owner_client(app), "/admin/", status=status))
    assert found == expected


@pytest.mark.manual_delivery
def test_an_unknown_status_filter_is_a_plain_400(app: Flask) -> None:
    """?status=nonsense: 400 naming the filters, not a 500."""
    response = owner_client(app).get("/admin/?status=nonsense")
    assert response.status_code == 400
    assert "pending" in response.get_data(as_text=True)


@pytest.mark.manual_delivery
def test_visitor_text_is_escaped_everywhere(app: Flask) -> None:
    """Markup from the visitor shows as text on the archive and the detail page; bidi
    overrides are written out as escapes."""
    submission_id = create_submission(app, **HOSTILE)
    client = owner_client(app)
    for html in (page_text(client, "/admin/"),
                 page_text(client, f"/admin/submissions/{submission_id}")):
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(&#39;subject&#39;)&lt;/script&gt;" in html
        assert "\u202e" not in html
    detail = page_text(client, f"/admin/submissions/{submission_id}")
    assert "&lt;script&gt;alert(&#39;message&#39;)&lt;/script&gt;" in detail
    assert "see \\u202etxt.exe" in detail
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in detail


def test_the_detail_shows_every_attempt_of_each_mail(app: Flask, smtp_server: SMTPTestServer
                                                     ) -> None:
    """A mail refused once (451) then taken: both attempts, with the server's replies."""
    smtp_server.mode, smtp_server.fail_times = "451", 1
    submission_id = create_submission(app, thank_you=True)
    backend_of(app).wake()
    wait_until(lambda: all(m.status == Status.SENT for m in mails_of(app, submission_id)),
               30, "both mails sent")
    html = page_text(owner_client(app), f"/admin/submissions/{submission_id}")
    assert html.count("Every attempt at this mail") == 2
    assert "451 4.3.0 Try again later" in html
    assert ">transient<" in html and ">sent<" in html
    for mail in mails_of(app, submission_id):
        assert mail.message_id in html.replace("&lt;", "<").replace("&gt;", ">")


@pytest.mark.manual_delivery
def test_smtp_replies_are_shown_with_control_characters_escaped(app: Flask) -> None:
    """A reply carrying terminal escapes and line breaks is written out, not replayed."""
    submission_id = create_submission(app)
    [mail] = mails_of(app, submission_id)
    with app.app_context():
        db.session.execute(insert(DeliveryAttempt).values(
            mail_id=mail.id, attempted_at=utcnow(), outcome="failed", seconds=0.1,
            reply="550 \x1b[31mred\x1b[0m\r\nBcc: <victim@example.com>"))
        db.session.commit()
    html = page_text(owner_client(app), f"/admin/submissions/{submission_id}")
    assert "\x1b" not in html and "\r\nBcc" not in html
    assert "550 \\x1b[31mred\\x1b[0m\\r\\nBcc: &lt;victim@example.com&gt;" in html


@pytest.mark.manual_delivery
def test_a_file_is_a_download_only(app: Flask) -> None:
    """Content-Disposition: attachment with the original name, octet-stream, nosniff."""
    data = b"%PDF-1.4\n<html><script>alert(1)</script>"
    submission_id = create_submission(app, attachment=data)
    [file_id] = file_ids(app, submission_id)
    client = owner_client(app)
    detail = page_text(client, f"/admin/submissions/{submission_id}")
    assert f'href="/admin/submissions/{submission_id}/files/{file_id}" download>report.pdf' \
        in detail
    with client.get(f"/admin/submissions/{submission_id}/files/{file_id}") as response:
        assert response.status_code == 200
        assert response.data == data
    headers = response.headers
    assert headers["Content-Disposition"].startswith("attachment;")
    assert "report.pdf" in headers["Content-Disposition"]
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"


@pytest.mark.manual_delivery
def test_a_file_no_longer_kept_is_a_plain_404(app: Flask, tmp_path: Path) -> None:
    """Once retention removed the file, the download says so; the detail names the file."""
    submission_id = create_submission(app, attachment=b"%PDF-1.4 x")
    [file_id] = file_ids(app, submission_id)
    (tmp_path / "uploads" / submission_id / "attachment.pdf").unlink()
    client = owner_client(app)
    response = client.get(f"/admin/submissions/{submission_id}/files/{file_id}")
    assert response.status_code == 404
    assert "no longer kept" in response.get_data(as_text=True)
    assert "report.pdf (the file itself is no longer kept)" in page_text(
        client, f"/admin/submissions/{submission_id}")


@pytest.mark.manual_delivery
def test_a_file_outside_the_upload_folder_is_never_sent(app: Flask, tmp_path: Path) -> None:
    """A stored path that leads out of UPLOAD_FOLDER is refused like a missing file."""
    submission_id = create_submission(app, attachment=b"%PDF-1.4 x")
    [file_id] = file_ids(app, submission_id)
    (tmp_path / "secret.txt").write_text("not for download")
    with app.app_context():
        db.session.execute(update(SubmissionFile).where(SubmissionFile.id == file_id)
                           .values(path="../secret.txt"))
        db.session.commit()
    response = owner_client(app).get(f"/admin/submissions/{submission_id}/files/{file_id}")
    assert response.status_code == 404
    assert "not for download" not in response.get_data(as_text=True)


@pytest.mark.manual_delivery
def test_another_submissions_file_id_is_refused(app: Flask) -> None:
    """A file is served only under its own submission's id: another's id, or no such file,
    is a plain 404."""
    mine = create_submission(app, attachment=b"%PDF-1.4 mine")
    theirs = create_submission(app, email="grace@example.com", attachment=b"%PDF-1.4 theirs")
    [their_file] = file_ids(app, theirs)
    client = owner_client(app)
    for path in (f"/admin/submissions/{mine}/files/{their_file}",
                 f"/admin/submissions/{mine}/files/{their_file + 1000}",
                 f"/admin/submissions/nope/files/{their_file}"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert b"theirs" not in response.data
    with client.get(f"/admin/submissions/{theirs}/files/{their_file}") as served:
        assert served.data == b"%PDF-1.4 theirs"


@pytest.mark.manual_delivery
def test_an_unknown_submission_is_a_plain_404(app: Flask) -> None:
    """A mistyped or deleted id: 404 in plain words."""
    response = owner_client(app).get("/admin/submissions/nope")
    assert response.status_code == 404
    assert "no message with this id" in response.get_data(as_text=True)


def test_resend_delivers_a_new_mail_with_a_new_message_id(app: Flask,
                                                          smtp_server: SMTPTestServer) -> None:
    """The owner's mail again: a second mail reaches the server, with its own Message-ID."""
    submission_id = create_submission(app)
    client = owner_client(app)
    [first] = smtp_server.wait_for(1, 20)
    response = post_action(client, f"/admin/submissions/{submission_id}/resend")
    assert response.status_code == 303
    second = smtp_server.wait_for(2, 20)[1]
    assert second.message["Subject"] == first.message["Subject"]
    assert second.message["Message-ID"] != first.message["Message-ID"]
    assert second.rcpt_tos == first.rcpt_tos == ["sales@example.com"]
    assert ("resend", submission_id, "") in audit_actions(app)


def test_retry_requeues_every_failed_mail(app: Flask, smtp_server: SMTPTestServer) -> None:
    """Mails refused with 550 fail; the outbox page shows the reply; retry delivers them."""
    smtp_server.mode = "550"
    ids = [create_submission(app, subject=f"Refused {n}") for n in range(2)]
    wait_until(lambda: all(m.status == Status.FAILED for i in ids for m in mails_of(app, i)),
               20, "both mails failed")
    client = owner_client(app)
    html = page_text(client, "/admin/outbox")
    assert html.count("550 5.7.1 Rejected by policy") == 2
    smtp_server.mode = "accept"
    assert post_action(client, "/admin/outbox/retry").status_code == 303
    received = smtp_server.wait_for(2, 20)
    assert sorted(m.message["Subject"] for m in received) == [
        "[Contact] Refused 0", "[Contact] Refused 1"]
    assert ("retry", None, "2 mail(s) requeued") in audit_actions(app)


@pytest.mark.manual_delivery
def test_spam_leaves_the_archive_and_is_found_under_spam(app: Flask) -> None:
    """Marked spam: out of `all`, listed under `spam`, no mail added."""
    submission_id = create_submission(app, subject="Buy now")
    client = owner_client(app)
    assert post_action(client, f"/admin/submissions/{submission_id}/spam").status_code == 303
    assert listed_subjects(page_text(client, "/admin/")) == []
    assert listed_subjects(page_text(client, "/admin/", status="spam")) == ["Buy now"]
    assert len(mails_of(app, submission_id)) == 1


def test_not_spam_sends_the_owners_mail_that_never_went(app: Flask,
                                                        smtp_server: SMTPTestServer) -> None:
    """Spam stored without mails: "not spam" queues the owner's mail, and the server gets it."""
    submission_id = create_submission(app, subject="Real question", verdict="spam")
    assert mails_of(app, submission_id) == []
    client = owner_client(app)
    assert post_action(client, f"/admin/submissions/{submission_id}/not-spam").status_code == 303
    [mail] = smtp_server.wait_for(1, 20)
    assert mail.message["Subject"] == "[Contact] Real question"
    assert [m.kind for m in mails_of(app, submission_id)] == [MailKind.OWNER]


@pytest.mark.manual_delivery
def test_not_spam_does_not_send_twice(app: Flask) -> None:
    """Its owner's mail was sent already (before it was marked spam): "not spam" adds none."""
    submission_id = create_submission(app)
    set_owner_mail_status(app, submission_id, Status.SENT)
    client = owner_client(app)
    assert post_action(client, f"/admin/submissions/{submission_id}/spam").status_code == 303
    post_action(client, f"/admin/submissions/{submission_id}/not-spam")
    assert len(mails_of(app, submission_id)) == 1
    with app.app_context():
        assert db.session.get(Submission, submission_id).verdict == "ham"  # type: ignore[union-attr]


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_delete_removes_rows_history_and_the_upload_folder(app: Flask) -> None:
    """The submission, its mails, their attempts and its folder go; another stays."""
    keep = create_submission(app, attachment=b"%PDF-1.4 keep")
    submission_id = create_submission(app, thank_you=True, attachment=b"%PDF-1.4 gone")
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission_id
    mail_ids = [m.id for m in mails_of(app, submission_id)]
    with app.app_context():
        db.session.execute(insert(DeliveryAttempt).values(
            mail_id=mail_ids[0], attempted_at=utcnow(), outcome="transient", reply="451",
            seconds=0.1))
        db.session.commit()
    client = owner_client(app)
    response = post_action(client, f"/admin/submissions/{submission_id}/delete")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    with app.app_context():
        assert db.session.get(Submission, submission_id) is None
        assert db.session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.id.in_(mail_ids))) == 0
        assert db.session.scalar(select(func.count()).select_from(DeliveryAttempt).where(
            DeliveryAttempt.mail_id.in_(mail_ids))) == 0
    assert not folder.exists()
    assert (Path(app.config["UPLOAD_FOLDER"]) / keep).is_dir()
    assert ("delete", submission_id, "") in audit_actions(app)
    assert client.get(f"/admin/submissions/{submission_id}").status_code == 404


@pytest.mark.manual_delivery
@pytest.mark.parametrize("kind", ["csv", "json"])
def test_exports_stream_the_filtered_submissions(app: Flask, kind: str) -> None:
    """export.csv / export.json: streamed, parsed, the same filters; the audit line keeps
    no search text."""
    create_submission(app, subject="=HYPERLINK(\"x\")", email="grace@example.com")
    create_submission(app, subject="Other")
    response = owner_client(app).get(f"/admin/export.{kind}",
                                           query_string={"q": "grace@example.com"})
    assert response.status_code == 200 and response.is_streamed
    assert response.headers["Content-Disposition"].startswith("attachment;")
    body = response.get_data(as_text=True)
    if kind == "csv":
        records = list(csv.DictReader(io.StringIO(body)))
        assert [r["subject"] for r in records] == ["'=HYPERLINK(\"x\")"]
    else:
        records = json.loads(body)
        assert [r["subject"] for r in records] == ["=HYPERLINK(\"x\")"]
    [line] = [a for a in audit_actions(app) if a[0] == "export"]
    assert line[2] == f"{kind}, filter all, with a search"


@pytest.mark.manual_delivery
def test_erase_removes_an_address_and_says_what_went(app: Flask) -> None:
    """Every submission of the address (any case) goes; the page and the audit show counts,
    never the address."""
    gone = create_submission(app, email="Grace@Example.com")
    kept = create_submission(app)
    client = owner_client(app)
    response = post_action(client, "/admin/erase", address="grace@example.COM")
    assert response.status_code == 303
    html = page_text(client, "/admin/erase")
    assert "erased 1 submission(s)" in html
    with app.app_context():
        assert db.session.get(Submission, gone) is None
        assert db.session.get(Submission, kept) is not None
    [line] = [a for a in audit_actions(app) if a[0] == "erase"]
    assert "grace" not in line[2].lower() and "erased 1 submission(s)" in line[2]
    assert "grace" not in page_text(client, "/admin/audit").lower()


@pytest.mark.manual_delivery
def test_erase_without_an_address_is_a_plain_422(app: Flask) -> None:
    """An empty address: the form again with its error, nothing removed."""
    create_submission(app)
    response = post_action(owner_client(app), "/admin/erase", address="")
    assert response.status_code == 422
    assert 'aria-invalid="true"' in response.get_data(as_text=True)


@pytest.mark.manual_delivery
def test_the_audit_log_lists_the_owners_actions(app: Flask) -> None:
    """Sign-ins and actions appear on /admin/audit, newest first, with who did them."""
    submission_id = create_submission(app)
    client = owner_client(app)
    post_action(client, f"/admin/submissions/{submission_id}/spam")
    html = page_text(client, "/admin/audit")
    actions = re.findall(r'<td data-label="What">([^<]+)</td>', html)
    assert actions[:2] == ["spam", "sign-in"]
    assert "<td data-label=\"Who\">owner</td>" in html
