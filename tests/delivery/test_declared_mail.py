"""The mails of a declared form: every field in order with its label, every file attached,
the subject, the form's own thank-you PDF (or none) and the site's name."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask_babel import gettext

from contact_site import i18n
from contact_site.config import Recipient
from contact_site.delivery.compose import compose
from contact_site.delivery.models import MailKind
from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.submissions.answers import stored_entry
from contact_site.submissions.models import Submission, SubmissionFile
from support.factories import submission_values
from support.files import PDF
from support.mails import CREATED, MESSAGE_ID, parsed

# An app for composing only: no delivery thread.
pytestmark = pytest.mark.manual_delivery

HIRING = Recipient("hiring", "Hiring", "hiring@example.com")
CONSENT = {"en": "I agree that Example Ltd keeps my application for six months.",
           "zh": "我同意 Example Ltd 将我的申请保存六个月。"}
FORMS = f"""
[site]
name = "Example Ltd"

[[forms]]
slug = "careers"
title = {{ en = "Job application", zh = "求职申请" }}
recipients = ["Hiring <hiring@example.com>"]
thank_you_pdf = false

  [[forms.fields]]
  name = "name"
  type = "text"
  label = {{ en = "Full name", zh = "姓名" }}

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = {{ en = "Phone", zh = "电话" }}

  [[forms.fields]]
  name = "role"
  type = "select"
  label = {{ en = "Role", zh = "职位" }}
  options = [{{ value = "eng", label = {{ en = "Engineer", zh = "工程师" }} }},
             {{ value = "ops", label = {{ en = "Operations", zh = "运维" }} }}]

  [[forms.fields]]
  name = "team"
  type = "select"
  label = {{ en = "Team", zh = "团队" }}
  options = [{{ value = "platform", label = "Platform" }}]

  [[forms.fields]]
  name = "newsletter"
  type = "checkbox"
  label = {{ en = "Newsletter", zh = "订阅通讯" }}

  [[forms.fields]]
  name = "privacy"
  type = "consent"
  label = {{ en = "Privacy", zh = "隐私" }}
  text = {{ en = "{CONSENT['en']}", zh = "{CONSENT['zh']}" }}
  required = true

  [[forms.fields]]
  name = "years"
  type = "number"
  label = {{ en = "Years of experience", zh = "工作年限" }}

  [[forms.fields]]
  name = "start"
  type = "date"
  label = {{ en = "Start date", zh = "入职日期" }}

  [[forms.fields]]
  name = "experience"
  type = "textarea"
  label = {{ en = "Experience", zh = "工作经历" }}

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = {{ en = "CV", zh = "简历" }}

  [[forms.fields]]
  name = "samples"
  type = "file"
  label = {{ en = "Work samples", zh = "作品样本" }}
  max_files = 2

[[forms]]
slug = "press"
title = {{ en = "Press enquiry", zh = "媒体咨询" }}
thank_you_pdf = "press-kit.pdf"

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "subject"
  type = "text"
  label = {{ en = "Subject", zh = "主题" }}
"""
PRESS_KIT = {"en": PDF + b"% press kit\n", "zh": PDF + b"% \xe5\xaa\x92\xe4\xbd\x93\n"}
EXPERIENCE = "Analytical engine, 1842–1843.\nNotes A to G.\n\nBernoulli numbers."
# (field, stored name, content type, bytes), in the order the visitor sent them.
FILES = [("cv", "Lovelace – CV.pdf", "application/pdf", PDF),
         ("samples", "note-g.txt", "text/plain", b"B1 = -1/2\r\nB3 = 1/6\n\x00\xff"),
         ("samples", "diagram.png", "image/png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)))]


def declared_app(make_app: Callable[..., Flask], tmp_path: Path, **settings: Any) -> Flask:
    """An app serving FORMS, with the press form's PDF (and its Chinese sibling) beside it."""
    folder = tmp_path / "site"
    folder.mkdir()
    (folder / "forms.toml").write_text(FORMS, encoding="utf-8")
    (folder / "press-kit.pdf").write_bytes(PRESS_KIT["en"])
    (folder / "press-kit.zh.pdf").write_bytes(PRESS_KIT["zh"])
    return make_app(deliver=False, CONTACT_FORMS_FILE=str(folder / "forms.toml"), **settings)


def application_answers(visitor_language: str) -> list[dict[str, Any]]:
    """The careers form's answers as the form stores them, the consent shown in this language."""
    form = declaration_of().form("careers")
    assert form is not None
    labels = {field.name: field.label for field in form.fields}
    values: dict[str, tuple[Any, dict[str, Any]]] = {
        "name": ("Ada Lovelace", {}), "email": ("ada@example.com", {}),
        "phone": ("+44 20 7946 0958", {}),
        "role": ("eng", {"option_label": {"en": "Engineer", "zh": "工程师"}}),
        "team": ("platform", {}), "newsletter": (False, {}),
        "privacy": (True, {"text": CONSENT[visitor_language], "language": visitor_language,
                           "sha256": hashlib.sha256(CONSENT[visitor_language].encode())
                           .hexdigest()}),
        "years": (7.5, {}), "start": ("2026-09-01", {}), "experience": (EXPERIENCE, {}),
        "cv": (["Lovelace – CV.pdf"], {}), "samples": (["note-g.txt", "diagram.png"], {}),
    }
    types = {field.name: field.type for field in form.fields}
    return [stored_entry(name, types[name], labels[name], value, **details)
            for name, (value, details) in values.items()]


def store(app: Flask, form_slug: str, answers: list[dict[str, Any]] | None = None,
          files: Sequence[tuple[str, str, str, bytes]] = (), **fields: Any) -> str:
    """A submission of `form_slug` stored as the form stores it, its files under
    UPLOAD_FOLDER/<id>/; its id."""
    with app.app_context():
        values = submission_values(recipient=HIRING, **{
            "created_at": CREATED, "form_slug": form_slug, "subject": "", "message": "",
            "answers": answers, **fields})
        submission = Submission(**values)
        folder = Path(app.config["UPLOAD_FOLDER"]) / submission.id
        folder.mkdir(parents=True)
        for position, (field, name, content_type, data) in enumerate(files):
            (folder / f"file-{position}").write_bytes(data)
            submission.files.append(SubmissionFile(
                field=field, position=position, name=name, content_type=content_type,
                path=f"{submission.id}/file-{position}", size=len(data)))
        db.session.add(submission)
        db.session.commit()
        return submission.id


def store_application(app: Flask, visitor_language: str = "en") -> str:
    """A job application with every type of field and three files in two file fields."""
    with app.app_context():
        answers = application_answers(visitor_language)
    return store(app, "careers", answers, FILES, language=visitor_language,
                 thank_you=True)


def mail(app: Flask, kind: MailKind, submission_id: str) -> EmailMessage:
    """The mail of this kind for the stored submission, as its reader parses it."""
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        return parsed(compose(kind, submission, MESSAGE_ID, CREATED).as_bytes())


def text_of(message: EmailMessage, subtype: str = "plain") -> str:
    """A body of the mail, its line ends as LF."""
    part = message.get_body((subtype,))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


def catalogue(app: Flask, language: str, text: str, **values: Any) -> str:
    """The catalogue's words for `text` in `language`."""
    with app.app_context(), i18n.in_language(language):
        return gettext(text, **values)


def field_lines(app: Flask, language: str, visitor_language: str) -> list[str]:
    """The application's fields as the owner reads them in `language`, in form order."""
    zh = language == "zh"

    def line(label: str, value: str) -> str:
        return f"{catalogue(app, language, '%(label)s:', label=label)} {value}"

    def sized(name: str, data: bytes) -> str:
        return catalogue(app, language, "%(name)s (%(size)s bytes)", name=name,
                         size=f"{len(data):,}")

    return [
        line("姓名" if zh else "Full name", "Ada Lovelace"),
        line("电子邮箱" if zh else "Email", "ada@example.com"),
        line("电话" if zh else "Phone", "+44 20 7946 0958"),
        line("职位" if zh else "Role", "工程师" if zh else "Engineer"),
        line("团队" if zh else "Team", "platform"),
        line("订阅通讯" if zh else "Newsletter", catalogue(app, language, "No")),
        line("隐私" if zh else "Privacy", catalogue(app, language, "Yes")),
        f"  “{CONSENT[visitor_language]}”",
        line("工作年限" if zh else "Years of experience", "7.5"),
        line("入职日期" if zh else "Start date", "2026-09-01"),
        "",
        catalogue(app, language, "%(label)s:", label="工作经历" if zh else "Experience"),
        *EXPERIENCE.split("\n"),
        "",
        line("简历" if zh else "CV", sized("Lovelace – CV.pdf", PDF)),
        line("作品样本" if zh else "Work samples",
             f"{sized('note-g.txt', FILES[1][3])}, {sized('diagram.png', FILES[2][3])}"),
    ]


@pytest.mark.parametrize("language, visitor_language", [("en", "zh"), ("zh", "en")])
def test_owner_mail_lists_every_field_in_order_with_its_label(
        make_app, tmp_path, language, visitor_language):
    """Labels in the owner's language; the consent quoted in the words the visitor agreed to."""
    app = declared_app(make_app, tmp_path, CONTACT_OWNER_LANGUAGE=language)
    text = text_of(mail(app, MailKind.OWNER, store_application(app, visitor_language)))
    intro, _, rest = text.partition("\n\n")
    fields, _, footer = rest.partition("\n--\n")
    assert intro == "Ada Lovelace <ada@example.com> " + catalogue(
        app, language, "wrote through the form “%(form)s” to %(recipient)s.",
        form="求职申请" if language == "zh" else "Job application", recipient="Hiring")
    assert fields.strip("\n").split("\n") == field_lines(app, language, visitor_language)
    assert footer.startswith(catalogue(app, language, "Reply to this mail to answer %(address)s.",
                                       address="ada@example.com"))


def test_owner_mail_html_shows_every_label_and_value_in_order(make_app, tmp_path):
    """The HTML body holds the same fields, in the same order, the textarea's lines kept."""
    app = declared_app(make_app, tmp_path)
    html = text_of(mail(app, MailKind.OWNER, store_application(app, "zh")), "html")
    expected = ["Full name", "Ada Lovelace", "Email", "ada@example.com", "Phone",
                "+44 20 7946 0958", "Role", "Engineer", "Team", "platform", "Newsletter", "No",
                "Privacy", "Yes", f"<q>{CONSENT['zh']}</q>", "Years of experience", "7.5",
                "Start date", "2026-09-01", "Experience",
                "Analytical engine, 1842–1843.<br>\nNotes A to G.<br>\n<br>\nBernoulli numbers.",
                "CV", f"Lovelace – CV.pdf ({len(PDF)} bytes)", "Work samples",
                f"note-g.txt ({len(FILES[1][3])} bytes)", "diagram.png ("]
    table = html.partition('<table class="fields">')[2]
    at = 0
    for piece in expected:  # each found after the one before it
        found = table.find(piece, at)
        assert found >= 0, (piece, table[at:])
        at = found + len(piece)


def test_owner_mail_attaches_every_file_in_order_byte_for_byte(make_app, tmp_path):
    app = declared_app(make_app, tmp_path)
    parts = list(mail(app, MailKind.OWNER, store_application(app)).iter_attachments())
    assert [(part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in parts] == [(name, kind, data) for _field, name, kind, data in FILES]


def test_a_deleted_file_is_named_but_not_attached(make_app, tmp_path):
    """Retention removed the CV: the mail still lists it, and attaches the samples alone."""
    app = declared_app(make_app, tmp_path)
    submission_id = store_application(app)
    with app.app_context():
        cv = db.session.execute(db.select(SubmissionFile).filter_by(
            submission_id=submission_id, field="cv")).scalar_one()
        cv.path = None
        db.session.commit()
    message = mail(app, MailKind.OWNER, submission_id)
    assert "CV: Lovelace – CV.pdf" in text_of(message)
    assert [part.get_filename() for part in message.iter_attachments()] == [
        "note-g.txt", "diagram.png"]


@pytest.mark.parametrize("language, title", [("en", "Job application"), ("zh", "求职申请")])
def test_a_form_without_a_subject_field_is_mailed_under_its_title(
        make_app, tmp_path, language, title):
    app = declared_app(make_app, tmp_path, CONTACT_OWNER_LANGUAGE=language)
    message = mail(app, MailKind.OWNER, store_application(app))
    assert message["Subject"] == f"[Contact] {title}"


def test_a_form_with_a_subject_field_is_mailed_under_the_visitors_subject(make_app, tmp_path):
    app = declared_app(make_app, tmp_path)
    answers = [stored_entry("email", "email", "Email", None),
               stored_entry("subject", "text", "Subject", None)]
    submission_id = store(app, "press", answers, subject="Interview request")
    assert mail(app, MailKind.OWNER, submission_id)["Subject"] == "[Contact] Interview request"


@pytest.mark.parametrize("subject, expected", [("Old subject", "Old subject"), ("", "retired")])
def test_a_form_gone_from_the_file_is_mailed_under_the_stored_subject_or_its_slug(
        make_app, tmp_path, subject, expected):
    app = declared_app(make_app, tmp_path)
    answers = [stored_entry("email", "email", {"en": "Email", "zh": "电子邮箱"}, None)]
    submission_id = store(app, "retired", answers, subject=subject)
    message = mail(app, MailKind.OWNER, submission_id)
    assert message["Subject"] == f"[Contact] {expected}"
    assert "Email: ada@example.com" in text_of(message)


def test_both_mails_come_from_the_site_by_name_at_the_configured_address(make_app, tmp_path):
    app = declared_app(make_app, tmp_path)
    submission_id = store_application(app)
    for kind in (MailKind.OWNER, MailKind.THANK_YOU):
        [sender] = mail(app, kind, submission_id)["From"].addresses
        assert (sender.display_name, sender.addr_spec) == ("Example Ltd", "noreply@example.org")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_thank_you_names_the_site_and_carries_no_pdf_when_the_form_has_none(
        make_app, tmp_path, language):
    app = declared_app(make_app, tmp_path)
    message = mail(app, MailKind.THANK_YOU, store_application(app, language))
    text = text_of(message)
    assert list(message.iter_attachments()) == []
    assert catalogue(app, language, "A short note with what happens next is attached as a PDF.") \
        not in text
    assert catalogue(app, language, "This mail was sent automatically because this address was "
                     "entered on the contact form of %(site)s. If that was not you, you can "
                     "ignore it.", site="Example Ltd") in text
    assert message["Subject"] == catalogue(app, language, "Thank you for your message")


@pytest.mark.parametrize("language", ["en", "zh"])
def test_thank_you_carries_the_forms_own_pdf_in_the_visitors_language(
        make_app, tmp_path, language):
    app = declared_app(make_app, tmp_path)
    answers = [stored_entry("email", "email", "Email", None)]
    submission_id = store(app, "press", answers, subject="Hi", language=language,
                          thank_you=True)
    [part] = list(mail(app, MailKind.THANK_YOU, submission_id).iter_attachments())
    assert (part.get_filename(), part.get_content_type()) == ("press-kit.pdf", "application/pdf")
    assert part.get_content() == PRESS_KIT[language]


def test_forms_with_and_without_a_pdf_each_keep_their_own_thank_you(make_app, tmp_path):
    """The parts made once per process are kept apart: no PDF is not the press kit."""
    app = declared_app(make_app, tmp_path)
    careers = store_application(app)
    press = store(app, "press", [stored_entry("email", "email", "Email", None)], subject="Hi")
    counts = [len(list(mail(app, MailKind.THANK_YOU, submission_id).iter_attachments()))
              for submission_id in (careers, press, careers, press)]
    assert counts == [0, 1, 0, 1]
