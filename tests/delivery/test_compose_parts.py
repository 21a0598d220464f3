"""The thank-you mail's constant parts are built once per process and language, and follow
a replaced PDF."""

from __future__ import annotations

import os
import shutil

from flask import Flask

from contact_site.delivery.compose import compose, thank_you_parts
from contact_site.delivery.models import MailKind
from contact_site.submissions.models import Submission
from support.factories import build_submission
from support.mails import CREATED, MESSAGE_ID, parsed


def visitor(language: str = "en", email: str = "ada@example.com") -> Submission:
    """A submission that earns a thank-you, not saved."""
    return build_submission(created_at=CREATED, name="Ada", email=email, subject="Engines",
                            message="Hello", thank_you=True, language=language)


def thank_you_pdf(app: Flask, stored: Submission) -> bytes:
    """The PDF attached to the thank-you mail as it goes on the wire."""
    with app.app_context():
        data = compose(MailKind.THANK_YOU, stored, MESSAGE_ID, CREATED).as_bytes()
    [part] = list(parsed(data).iter_attachments())
    return bytes(part.get_content())


def test_the_parts_are_built_once_per_language(make_app):
    app = make_app(deliver=False)
    with app.app_context():
        assert thank_you_parts("en") is thank_you_parts("en")
        assert thank_you_parts("zh") is not thank_you_parts("en")
        assert thank_you_parts("zh").subject != thank_you_parts("en").subject


def test_mails_sharing_the_parts_differ_only_in_their_own_headers(make_app):
    app = make_app(deliver=False)
    with app.app_context():
        first = parsed(compose(MailKind.THANK_YOU, visitor(email="a@example.com"), MESSAGE_ID,
                               CREATED).as_bytes())
        second = parsed(compose(MailKind.THANK_YOU, visitor(email="b@example.com"), MESSAGE_ID,
                                CREATED).as_bytes())
    assert (first["To"], second["To"]) == ("a@example.com", "b@example.com")
    assert first.get_body(("plain",)).get_content() == second.get_body(("plain",)).get_content()


def test_a_replaced_pdf_is_attached_without_a_restart(make_app, tmp_path):
    folder = tmp_path / "static"
    folder.mkdir()
    pdf = folder / "thanks.pdf"
    shutil.copy(os.path.join(os.path.dirname(__file__), "..", "..", "static", "thank-you.pdf"),
                pdf)
    app = make_app(deliver=False, CONTACT_THANK_YOU_PDF=str(pdf))
    before = thank_you_pdf(app, visitor())
    replaced = before + b"\n% a new edition\n"
    pdf.write_bytes(replaced)
    stamp = os.stat(pdf).st_mtime_ns + 10**9  # a new mtime even on a coarse clock
    os.utime(pdf, ns=(stamp, stamp))
    assert thank_you_pdf(app, visitor()) == replaced
