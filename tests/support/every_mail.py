"""Every kind of mail the product sends, in one language, as a mail server received it.

    mails = every_kind_of_mail(app, smtp_server, "zh")
    mails["recipient"].message  # the owner's mail, with a file; also thank_you, reply, digest

The app is made by the test (its language for the owner with CONTACT_OWNER_LANGUAGE, its
mail server): one submission with an upload and a thank-you promised, the owner's reply
to it, and the recipient's digest, all delivered by hand.
"""

from __future__ import annotations

from datetime import timedelta

from flask import Flask

from contact_site.admin import thread
from contact_site.database import utcnow
from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.records.digest import queue_digests
from contact_site.submissions.models import Submission
from support.factories import create_submission
from support.files import PDF
from support.outbox import deliver_now
from support.smtp_server import ReceivedMail, SMTPTestServer

KINDS = (MailKind.OWNER, MailKind.THANK_YOU, MailKind.REPLY, MailKind.DIGEST)
# What a visitor writes and an owner answers, in each language.
WORDS = {
    "en": {"name": "Ada Lovelace", "subject": "A quote for two engines",
           "message": "Hello,\nwe would like a quote for two engines.\nKind regards, Ada",
           "file": "quote request.pdf",
           "reply": "Dear Ada,\nthank you: the quote is attached to our next mail.\nBest, Grace"},
    "zh": {"name": "李雷", "subject": "两台机器的报价",
           "message": "您好，\n我们想要两台机器的报价。\n谢谢，李雷",
           "file": "报价申请.pdf",
           "reply": "李雷您好，\n谢谢您的来信，报价单会随下一封邮件发给您。\n祝好"},
}


def every_kind_of_mail(app: Flask, server: SMTPTestServer, language: str,
                       email: str = "ada@example.com") -> dict[str, ReceivedMail]:
    """The owner's mail, the thank-you, a reply and a digest, by kind, as `server` got them."""
    words = WORDS[language]
    submission_id = create_submission(
        app, language=language, thank_you=True, attachment=PDF, attachment_name=words["file"],
        name=words["name"], email=email, subject=words["subject"], message=words["message"])
    with app.test_request_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        thread.reply(submission, "owner", words["reply"], None)
        now = utcnow()
        queue_digests(now, now - timedelta(days=1))
        ids = {row.message_id: row.kind for row in db.session.scalars(db.select(OutboxMail))}
    while deliver_now(app):
        pass
    # Through a relay (Postfix) the mails reach `server` a moment after they were sent.
    arrived = server.wait_for(len(ids), timeout=30)
    received = {ids.get(str(mail.message["Message-ID"])): mail for mail in arrived}
    missing = [kind for kind in KINDS if kind not in received]
    assert not missing, f"not received: {missing}"
    return {str(kind): received[kind] for kind in KINDS}
