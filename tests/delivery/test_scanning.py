"""Every file scanned by a real clamd before the owner's mail carries it; nothing lost while
the scanner is away (hold keeps the mail waiting, send carries the file marked unscanned)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask

from contact_site.database import utcnow
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.submissions.models import Submission, SubmissionFile
from support.forms import post_form
from support.forms_files import SITE_FORMS, post_declared, write_forms
from support.outbox import deliver_now, make_due
from support.smtp_server import SMTPTestServer

CLEAN = b"Notes on the analytical engine.\n"
CAREERS_FIELDS = {"name": "Grace Hopper", "email": "grace@example.com",
                  "portfolio": "https://grace.example.com/work", "years": "12",
                  "start": "2026-09-01", "privacy": "y"}


def scanning_app(make_app: Callable[..., Flask], clamd: Any, **settings: Any) -> Flask:
    """An app delivering by hand whose files are scanned by the test's clamd."""
    return make_app(deliver=False, CONTACT_CLAMD=clamd.tcp_address,
                    CONTACT_SCAN_TIMEOUT=2, **settings)


def sent_with(app: Flask, data: bytes, name: str = "notes.txt") -> str:
    """Post the form with one file; the stored submission's id."""
    response = post_form(app.test_client(), attachment=(io.BytesIO(data), name))
    assert response.status_code == 303, response.get_data(as_text=True)
    with app.app_context():
        return str(db.session.scalars(db.select(Submission.id)).one())


def file_scan(app: Flask) -> tuple[str | None, str | None]:
    """The one stored file's scan state and detail."""
    with app.app_context():
        stored = db.session.scalars(db.select(SubmissionFile)).one()
        return stored.scan_state, stored.scan_detail


def owner_mail(app: Flask) -> OutboxMail:
    """The owner's mail row."""
    with app.app_context():
        return db.session.scalars(db.select(OutboxMail).where(
            OutboxMail.kind == MailKind.OWNER)).one()


def owners_copy(smtp_server: SMTPTestServer) -> Any:
    """The mail the recipient received (the visitor's thank-you may come first)."""
    for count in (1, 2):
        found = [m for m in smtp_server.wait_for(count) if "sales@example.com" in m.rcpt_tos]
        if found:
            return found[0].message
    raise AssertionError("the owner's mail never arrived")


def attached(message: Any) -> dict[str, bytes]:
    """The mail's attachments by name."""
    return {part.get_filename(): part.get_payload(decode=True)
            for part in message.iter_attachments()}


def text_of(message: Any) -> str:
    """The plain-text body."""
    return str(message.get_body(("plain",)).get_content())


def test_a_clean_file_is_scanned_then_attached(make_app, clamd, smtp_server) -> None:
    """The file is pending when stored, scanned by the worker, stored clean and attached
    byte for byte; the mail says it was scanned."""
    app = scanning_app(make_app, clamd)
    sent_with(app, CLEAN)
    assert file_scan(app) == ("pending", None)
    deliver_now(app)
    message = owners_copy(smtp_server)
    assert file_scan(app) == ("clean", None)
    assert attached(message) == {"notes.txt": CLEAN}
    assert "notes.txt" in text_of(message) and "scanned: no virus found" in text_of(message)


def test_an_infected_file_is_withheld_and_named_with_its_signature(make_app, clamd,
                                                                   smtp_server) -> None:
    """The mail goes without the file and names it with the signature clamd found."""
    app = scanning_app(make_app, clamd)
    sent_with(app, b"hello " + clamd.marker + b" bye\n")
    deliver_now(app)
    message = owners_copy(smtp_server)
    assert file_scan(app) == ("infected", clamd.signature)
    assert attached(message) == {}
    assert f"withheld: the virus scanner found {clamd.signature}" in " ".join(
        text_of(message).split())


def test_while_the_scanner_is_down_the_mail_waits_then_goes_once_it_is_back(
        make_app, clamd, smtp_server) -> None:
    """hold: with clamd stopped the owner's mail stays queued, its attempt saying why and the
    file pending; once clamd is back, the next try scans it and sends it attached."""
    app = scanning_app(make_app, clamd)
    sent_with(app, CLEAN)
    clamd.stop()
    deliver_now(app)
    row = owner_mail(app)
    assert row.status == Status.QUEUED and row.attempts == 1
    assert "held until its files are scanned: scanner unavailable" in (row.last_error or "")
    assert file_scan(app) == ("pending", None)
    assert smtp_server.messages == [] or all(
        "sales@example.com" not in m.rcpt_tos for m in smtp_server.messages)
    clamd.start()
    make_due(app)
    deliver_now(app)
    message = owners_copy(smtp_server)
    assert attached(message) == {"notes.txt": CLEAN}
    assert file_scan(app) == ("clean", None)
    with app.app_context():
        outcomes = [a.outcome for a in db.session.scalars(
            db.select(DeliveryAttempt).where(DeliveryAttempt.mail_id == row.id)
            .order_by(DeliveryAttempt.id))]
    assert outcomes == ["transient", "sent"]


def test_held_until_its_last_try_the_mail_goes_without_the_file_saying_why(
        make_app, clamd, smtp_server) -> None:
    """hold: when the next retry would come after the give-up time, the file is marked
    unscanned and the mail goes without it, saying it could not be scanned."""
    app = scanning_app(make_app, clamd, DELIVERY_RETRY_BASE_SECONDS=60,
                       DELIVERY_RETRY_MAX_SECONDS=60)  # the next try: in about a minute
    sent_with(app, CLEAN)
    clamd.stop()
    with app.app_context():
        db.session.execute(db.update(OutboxMail).values(
            expires_at=utcnow() + timedelta(seconds=30)))
        db.session.commit()
    deliver_now(app)
    message = owners_copy(smtp_server)
    state, reason = file_scan(app)
    assert state == "unscanned" and reason is not None and "scanner unavailable" in reason
    assert attached(message) == {}
    assert "not attached: it could not be scanned" in " ".join(text_of(message).split())


def test_the_send_policy_attaches_an_unscanned_file_marked_so(make_app, clamd,
                                                              smtp_server) -> None:
    """send: with clamd stopped the mail goes at once, the file attached and marked."""
    app = scanning_app(make_app, clamd, CONTACT_SCAN_UNAVAILABLE="send")
    sent_with(app, CLEAN)
    clamd.stop()
    deliver_now(app)
    message = owners_copy(smtp_server)
    assert attached(message) == {"notes.txt": CLEAN}
    assert file_scan(app)[0] == "unscanned"
    assert "not scanned for viruses" in " ".join(text_of(message).split())


@pytest.mark.parametrize(("policy", "carried"), [("hold", False), ("send", True)])
def test_a_file_over_the_scanners_limit_is_unscanned_never_clean(
        make_app, clamd, smtp_server, policy: str, carried: bool) -> None:
    """Over clamd's StreamMaxLength (1 MiB here): unscanned (too large) at once, whatever
    the policy; attached only under send."""
    app = scanning_app(make_app, clamd, CONTACT_SCAN_UNAVAILABLE=policy)
    big = (b"lorem ipsum dolor sit amet\n" * 50_000)[: 1024 * 1024 + 100]
    sent_with(app, big)
    deliver_now(app)
    message = owners_copy(smtp_server)
    state, reason = file_scan(app)
    assert state == "unscanned" and reason is not None and "too large" in reason
    assert ("notes.txt" in attached(message)) is carried


def test_without_a_scanner_files_are_not_scanned_and_go_as_before(make_app,
                                                                  smtp_server) -> None:
    """CONTACT_CLAMD unset: no scan state is stored and the file is attached."""
    app = make_app(deliver=False)
    sent_with(app, CLEAN)
    deliver_now(app)
    assert attached(owners_copy(smtp_server)) == {"notes.txt": CLEAN}
    assert file_scan(app) == (None, None)


def test_of_several_files_only_the_infected_one_is_withheld(make_app, clamd, smtp_server,
                                                           tmp_path) -> None:
    """A careers form's two files: the clean one attached byte for byte, the infected one
    withheld and named with its signature; each file's state stored."""
    forms = write_forms(tmp_path / "forms", SITE_FORMS)
    app = scanning_app(make_app, clamd, CONTACT_FORMS_FILE=str(forms))
    infected = b"cover letter " + clamd.marker + b"\n"
    answer = post_declared(app.test_client(), "/f/careers", CAREERS_FIELDS,
                           files=[("cv", CLEAN, "cv.txt"), ("cv", infected, "letter.txt")])
    assert answer.status_code == 202, answer.get_data(as_text=True)
    deliver_now(app)
    [mail] = [m for m in smtp_server.wait_for(1) if "hiring@example.com" in m.rcpt_tos]
    assert attached(mail.message) == {"cv.txt": CLEAN}
    assert f"withheld: the virus scanner found {clamd.signature}" in " ".join(
        text_of(mail.message).split())
    with app.app_context():
        states = {f.name: (f.scan_state, f.scan_detail)
                  for f in db.session.scalars(db.select(SubmissionFile))}
    assert states == {"cv.txt": ("clean", None), "letter.txt": ("infected", clamd.signature)}
