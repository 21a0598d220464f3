"""The mails against software nobody here wrote: a private Postfix as the provider (STARTTLS
with a verified certificate, Dovecot SASL after TLS only, strict HELO and envelope rules,
size limits, SMTPUTF8 on and off), SpamAssassin's shipped rules scoring every kind of mail
in both languages, and munpack extracting the files by their names."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.delivery.smtp import NO_SMTPUTF8
from contact_site.extensions import db
from support.every_mail import WORDS, every_kind_of_mail
from support.factories import create_submission
from support.files import PDF
from support.mail_tools import munpack_files, spam_report
from support.outbox import deliver_now, make_due
from support.postfix import PostfixServer
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

STORED_INTERNATIONAL = "用户@xn--fsqu00a.xn--fiqs8s"
SPAM_THRESHOLD = 3.0
# SpamAssassin's rules about a mail's structure: headers missing or malformed, MIME,
# encodings, and HTML parts that do not match their text.
STRUCTURAL = ("MISSING_", "INVALID_", "MIME_", "MPART_", "HTML_MIME_", "HEADER_", "MALFORMED",
              "FROM_EXCESS_", "SUBJ_ILLEGAL", "PP_MIME", "TVD_", "EMPTY_MESSAGE", "NO_DNS_FOR",
              "FROM_ADDR_WS", "DATE_IN_", "MSGID_", "BASE64_LENGTH", "__MIME")


@pytest.fixture
def provider(smtp_server: SMTPTestServer) -> Iterator[Callable[..., PostfixServer]]:
    """Start private Postfix instances relaying to the test's SMTP server; stopped after."""
    started: list[PostfixServer] = []

    def start(**options: Any) -> PostfixServer:
        server = PostfixServer(smtp_server, **options)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.close()


def app_through(make_app: Callable[..., Flask], postfix: PostfixServer, language: str = "en",
                **settings: Any) -> Flask:
    """An app delivering by hand through `postfix`, as through a provider."""
    return make_app(deliver=False, CONTACT_OWNER_LANGUAGE=language,
                    **{**postfix.mail_settings(), **settings})


def statuses_by_kind(app: Flask) -> dict[str, list[str]]:
    """The status of every mail, by kind."""
    with app.app_context():
        found: dict[str, list[str]] = {}
        for row in db.session.scalars(db.select(OutboxMail).order_by(OutboxMail.id)):
            found.setdefault(str(row.kind), []).append(str(row.status))
        return found


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_kind_of_mail_goes_through_postfix_over_tls_with_one_login(
        make_app, provider, language) -> None:
    """STARTTLS verified against the test CA, AUTH PLAIN after it (Postfix's ESMTPSA), EHLO
    with the sender's domain past strict HELO rules; every mail relayed once, its file byte
    for byte, and munpack saves the file under its name (the ASCII one for 报价申请.pdf)."""
    postfix = provider()
    app = app_through(make_app, postfix, language)
    mails = every_kind_of_mail(app, postfix.sink, language)
    assert all(set(statuses) == {"sent"} for statuses in statuses_by_kind(app).values())
    for kind, mail in mails.items():
        received = str(mail.message["Received"])
        assert "from example.org" in received and "with ESMTPSA" in received, kind
    log = postfix.log()
    sent = sum(len(statuses) for statuses in statuses_by_kind(app).values())
    assert log.count("sasl_method=PLAIN, sasl_username=") == sent  # each mail logged in
    assert "Trusted TLS connection established" in log or "TLS connection established" in log
    assert "authentication failed" not in log and "reject" not in log
    owner = mails[MailKind.OWNER]
    [part] = owner.message.iter_attachments()
    assert part.get_filename() == WORDS[language]["file"]
    assert part.get_payload(decode=True) == PDF
    unpacked = munpack_files(owner.data)
    # munpack takes filename= (it writes a space as X); without it, it saved "part1".
    ascii_name = "quoteXrequest.pdf" if language == "en" else "attachment.pdf"
    assert {name: data for name, data in unpacked.items() if not name.endswith(".desc")} == {
        ascii_name: PDF}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_kind_of_mail_scores_well_under_spamassassins_threshold(
        make_app, smtp_server, language) -> None:
    """SpamAssassin's shipped rules (local tests only) score each mail under 3.0, and none
    of its rules about headers, MIME or encodings fires."""
    app = make_app(deliver=False, CONTACT_OWNER_LANGUAGE=language)
    for kind, mail in every_kind_of_mail(app, smtp_server, language).items():
        score, rules = spam_report(mail.data)
        structural = [rule for rule in rules if rule.startswith(STRUCTURAL)]
        assert score < SPAM_THRESHOLD and not structural, (kind, score, rules)


def test_a_mail_over_postfixs_size_limit_goes_again_without_its_files(
        make_app, provider) -> None:
    """Postfix announces SIZE 100000: the owner's mail with a 200 kB file is never sent
    with it; it goes through at once without the file, saying so."""
    postfix = provider(message_size_limit=100_000)
    app = app_through(make_app, postfix)
    create_submission(app, attachment=b"%PDF-1.4\n" + b"7" * 200_000, attachment_name="plan.pdf")
    deliver_now(app)
    [mail] = postfix.sink.wait_for(1, timeout=30)
    assert list(mail.message.iter_attachments()) == []
    text = " ".join(str(mail.message.get_body(("plain",)).get_content()).split())
    assert "The files were left out of this mail" in text and "100000 bytes" in text
    assert statuses_by_kind(app) == {"recipient": ["sent"]}


def test_postfixs_own_552_after_the_data_sends_the_owners_mail_again_without_files(
        make_app, provider) -> None:
    """A Postfix that does not announce SIZE refuses the data itself (552 5.3.4): the same
    attempt sends the owner's mail again without the file, and the attempt says why."""
    postfix = provider(message_size_limit=100_000,
                       main_cf={"smtpd_discard_ehlo_keywords": "size"})
    app = app_through(make_app, postfix)
    create_submission(app, attachment=b"%PDF-1.4\n" + b"7" * 200_000, attachment_name="plan.pdf")
    deliver_now(app)
    [mail] = postfix.sink.wait_for(1, timeout=30)
    assert list(mail.message.iter_attachments()) == []
    with app.app_context():
        [attempt] = db.session.scalars(db.select(DeliveryAttempt)).all()
    assert attempt.outcome == "sent" and "without its files: 552 5.3.4" in (attempt.reply or "")


def test_smtputf8_through_postfix_and_without_it(make_app, provider, smtp_server) -> None:
    """With SMTPUTF8 on, the thank-you reaches 用户@例子.中国 through Postfix; with it off,
    it fails with a plain reason and the owner's mail still goes, without Reply-To."""
    postfix = provider()
    app = app_through(make_app, postfix)
    create_submission(app, thank_you=True, email=STORED_INTERNATIONAL)
    deliver_now(app)
    arrived = postfix.sink.wait_for(2, timeout=30)
    assert sorted(address for mail in arrived for address in mail.rcpt_tos) == sorted(
        ["sales@example.com", STORED_INTERNATIONAL])
    assert all("SMTPUTF8" in mail.mail_options for mail in arrived)
    smtp_server.messages.clear()

    strict = provider(smtputf8_enable=False)
    app = app_through(make_app, strict)
    submission_id = create_submission(app, thank_you=True, email=STORED_INTERNATIONAL)
    deliver_now(app)
    [owner] = strict.sink.wait_for(1, timeout=30)
    assert owner.rcpt_tos == ["sales@example.com"] and owner.message["Reply-To"] is None
    with app.app_context():
        thank_you = db.session.scalars(db.select(OutboxMail).where(
            OutboxMail.kind == MailKind.THANK_YOU,
            OutboxMail.submission_id == submission_id)).one()
    assert thank_you.status == Status.FAILED and thank_you.last_error == NO_SMTPUTF8


def test_a_wrong_password_is_one_failed_login_and_loses_nothing(make_app, provider) -> None:
    """Dovecot refuses the password: one AUTH per attempt in Postfix's log, the mails held
    (not failed); with the right password they go."""
    postfix = provider()
    app = app_through(make_app, postfix, MAIL_PASSWORD="not-the-password")
    create_submission(app, thank_you=True)
    deliver_now(app)
    postfix.wait_for_log("authentication failed")
    assert postfix.log().count("authentication failed") == 1
    assert statuses_by_kind(app) == {"recipient": ["queued"], "thank_you": ["queued"]}
    app.config["MAIL_PASSWORD"] = postfix.password
    make_due(app)
    deliver_now(app)
    assert len(postfix.sink.wait_for(2, timeout=30)) == 2


def test_a_tarpit_longer_than_the_timeout_is_transient_and_loses_nothing(
        make_app, provider) -> None:
    """A provider that holds its answer to RCPT longer than MAIL_TIMEOUT (a tarpit): the
    attempt is transient and the mail stays queued; through a prompt one it goes, once."""
    tarpit = provider(main_cf={"smtpd_recipient_restrictions": "sleep 4, permit"})
    app = app_through(make_app, tarpit, MAIL_TIMEOUT=2)
    create_submission(app)
    deliver_now(app)
    with app.app_context():
        row = db.session.scalars(db.select(OutboxMail)).one()
    assert row.status == Status.QUEUED and "timed out" in (row.last_error or "").lower()
    prompt = provider()
    app.config.update(prompt.mail_settings())
    make_due(app)
    deliver_now(app)
    wait_until(lambda: len(prompt.sink.messages) >= 1, 30, "the mail through the prompt one")
    assert statuses_by_kind(app) == {"recipient": ["sent"]}
    assert len(prompt.sink.messages) == 1
