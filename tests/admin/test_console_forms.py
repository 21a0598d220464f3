"""The console with declared forms: the form column and filter, search in the declared values,
the detail with every field as sent, and a download per file (README, "Forms")."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contact_site.admin.audit import AuditEntry
from contact_site.extensions import db
from contact_site.forms import declaration_of, local_text
from contact_site.submissions.models import SubmissionFile
from support.admin import owner_client
from support.files import PDF, PNG
from support.forms_files import PRIVACY

pytestmark = [pytest.mark.manual_delivery, pytest.mark.usefixtures("forms_file")]

CONTACT = {"recipient": "support-team", "name": "Ada Lovelace", "email": "ada@example.com",
           "phone": "+44 20 7946 0000", "topic": "help", "callback": True, "privacy": True,
           "company": "巴贝奇分析机公司", "message": "Dear owner,\nabout the engine."}
CAREERS = {"name": "Grace Hopper", "email": "grace@example.com",
           "portfolio": "https://grace.example.com/Work", "years": 12, "start": "2026-09-01",
           "privacy": True}
# The `store_declared` fixture (conftest.py): a declared form's submission stored; its id.
StoreDeclared = Callable[..., str]
CV_FILES = [("cv", "cv.pdf", PDF + b"% curriculum vitae\n"), ("cv", "portrait.png", PNG)]


def page_text(client: FlaskClient, path: str, **query: str) -> str:
    """The page's HTML, after checking it answered 200."""
    response = client.get(path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def listed_subjects(html: str) -> list[str]:
    """The subjects of the archive's rows, in order."""
    return re.findall(r'<td data-label="Subject"><a href="[^"]+">([^<]*)</a>', html)


def listed_forms(html: str) -> list[str]:
    """The form column of the archive's rows, in order."""
    return re.findall(r'<td data-label="Form"><code>([^<]*)</code></td>', html)


def fields_shown(html: str) -> list[tuple[str, str]]:
    """(label, value as text) of each field on a detail page, in order."""
    section = html[html.index('<dl class="mail-summary answers">'):]
    section = section[:section.index("</dl>\n")]
    pairs = re.findall(r"<dt>(.*?)</dt>\s*<dd>(.*?)</dd>", section, re.S)
    return [(label, " ".join(re.sub(r"<[^>]+>", " ", value).split())) for label, value in pairs]


def file_ids(app: Flask, submission_id: str) -> list[int]:
    """The ids of the submission's files, in order."""
    with app.app_context():
        return list(db.session.scalars(select(SubmissionFile.id).where(
            SubmissionFile.submission_id == submission_id).order_by(SubmissionFile.position)))


@pytest.mark.each_database
def test_the_form_column_and_filter(app: Flask, store_declared: StoreDeclared) -> None:
    """With two forms, each row names its form; ?form= keeps one form's submissions, with the
    search and status filters; an unknown form lists nothing, without an error."""
    store_declared("contact", CONTACT, subject="Contact one")
    store_declared("careers", CAREERS, subject="Careers one")
    store_declared("careers", {**CAREERS, "name": "Linus", "email": "linus@example.com"},
                   subject="Careers two")
    client = owner_client(app)
    everything = page_text(client, "/admin/")
    assert listed_subjects(everything) == ["Careers two", "Careers one", "Contact one"]
    assert listed_forms(everything) == ["careers", "careers", "contact"]
    careers = page_text(client, "/admin/", form="careers")
    assert listed_subjects(careers) == ["Careers two", "Careers one"]
    assert '<option value="careers" selected>' in careers
    assert listed_subjects(page_text(client, "/admin/", form="careers", q="linus")) == [
        "Careers two"]
    assert listed_subjects(page_text(client, "/admin/", form="contact")) == ["Contact one"]
    assert listed_subjects(page_text(client, "/admin/", form="contact", status="spam")) == []
    unknown = page_text(client, "/admin/", form="nope")
    assert listed_subjects(unknown) == [] and "No message matches." in unknown


@pytest.mark.each_database
@pytest.mark.parametrize(("q", "form", "expected"), [
    ("分析机", None, ["Contact one"]),
    ("巴贝奇分析机公司", "contact", ["Contact one"]),
    ("分析机", "careers", []),
    ("GRACE.example.com/work", None, ["Careers one"]),
    ("2026-09-01", None, ["Careers one"]),
    ("+44 20 7946", None, ["Contact one"]),
    # A field's name, type or label is not a value: it finds nothing.
    ("portfolio", None, []),
    ("consent", None, []),
    ("Portfolio", "careers", []),
])
def test_search_finds_the_declared_values(app: Flask, store_declared: StoreDeclared, q: str,
                                          form: str | None, expected: list[str]) -> None:
    """?q= finds a value of a declared field (Chinese too, any letter case), with ?form=."""
    store_declared("contact", CONTACT, subject="Contact one")
    store_declared("careers", CAREERS, subject="Careers one")
    store_declared("careers", {**CAREERS, "portfolio": "https://other.example.org/",
                               "start": "2027-01-01", "email": "other@example.com"},
                   subject="Unrelated")
    query = {"q": q, **({"form": form} if form else {})}
    assert listed_subjects(page_text(owner_client(app), "/admin/", **query)) == expected


def test_the_detail_shows_every_field_with_its_label_as_sent(
        app: Flask, store_declared: StoreDeclared) -> None:
    """The form's slug and short version, then each field in order with the label it was
    sent with (the file has relabelled the phone since), the consent's exact text, language
    and SHA-256."""
    submission_id = store_declared("contact", CONTACT, subject="Contact one",
                                   labels={"phone": {"en": "Telephone", "zh": "电话号码"}})
    html = page_text(owner_client(app), f"/admin/submissions/{submission_id}")
    with app.app_context():
        form = declaration_of(app).forms[0]
        to = local_text(form.fields[0].label, "en")  # the recipient's choice, added first
    assert f"<code>contact</code> (version {form.version[:12]})" in html
    sha = hashlib.sha256(PRIVACY["en"].encode()).hexdigest()
    assert fields_shown(html) == [
        (to, "Support Team &lt;support@example.com&gt;"),
        ("Full name", "Ada Lovelace"),
        ("Email", "ada@example.com"),
        ("Telephone", "+44 20 7946 0000"),
        ("Topic", "Getting help help"),
        ("Call me back", "Yes"),
        ("Privacy", f"Yes {PRIVACY['en']} Shown in en; SHA-256 {sha}"),
        ("Company", "巴贝奇分析机公司"),
        ("Message", "Dear owner, about the engine."),
    ]


@pytest.mark.settings(CONTACT_OWNER_LANGUAGE="zh")
def test_the_detail_labels_are_in_the_consoles_language(
        app: Flask, store_declared: StoreDeclared) -> None:
    """In a Chinese console the labels sent are shown in Chinese; the consent keeps the text
    the visitor was shown, in the visitor's language."""
    submission_id = store_declared("careers", CAREERS, files=CV_FILES, language="en")
    shown = dict(fields_shown(page_text(owner_client(app),
                                        f"/admin/submissions/{submission_id}")))
    assert list(shown)[:5] == ["姓名", "电子邮箱", "作品集", "工作年限", "最早入职日期"]
    assert PRIVACY["en"] in shown["隐私"] and PRIVACY["zh"] not in shown["隐私"]
    assert "cv.pdf" in shown["简历和求职信"] and "portrait.png" in shown["简历和求职信"]


def test_each_file_has_its_own_download(app: Flask, store_declared: StoreDeclared) -> None:
    """Two files of one field: each listed with its type and size and a link of its own,
    downloaded with its bytes and name; another submission's file is refused under this id."""
    mine = store_declared("careers", CAREERS, files=CV_FILES)
    theirs = store_declared("careers", {**CAREERS, "email": "linus@example.com"},
                            files=[("cv", "linus.pdf", PDF + b"% linus\n")])
    [their_file] = file_ids(app, theirs)
    client = owner_client(app)
    detail = page_text(client, f"/admin/submissions/{mine}")
    for file_id, (_field, name, data) in zip(file_ids(app, mine), CV_FILES, strict=True):
        assert f'href="/admin/submissions/{mine}/files/{file_id}" download>{name}</a>' in detail
        with client.get(f"/admin/submissions/{mine}/files/{file_id}") as response:
            assert response.status_code == 200 and response.data == data
            assert name in response.headers["Content-Disposition"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert f"(image/png, {len(PNG)} bytes)" in detail
    refused = client.get(f"/admin/submissions/{mine}/files/{their_file}")
    assert refused.status_code == 404 and b"linus" not in refused.data


@pytest.mark.each_database
def test_the_console_export_of_one_form_has_a_column_per_field(
        app: Flask, store_declared: StoreDeclared) -> None:
    """/admin/export.csv?form=careers: the careers form's fields as columns, in order; the
    link on the archive carries the filter; the audit line names the form."""
    store_declared("careers", CAREERS, files=CV_FILES)
    store_declared("contact", CONTACT)
    client = owner_client(app)
    archive = page_text(client, "/admin/", form="careers")
    assert 'href="/admin/export.csv?status=all&amp;form=careers"' in archive
    body = client.get("/admin/export.csv", query_string={"form": "careers"}).get_data(
        as_text=True)
    [header, *rows] = list(csv.reader(io.StringIO(body, newline="")))
    assert header == ["id", "created_at", "name", "email", "portfolio", "years", "start",
                      "privacy", "cv", "status", "state"]
    assert [row[2:9] for row in rows] == [["Grace Hopper", "grace@example.com",
                                           "https://grace.example.com/Work", "12",
                                           "2026-09-01", "true", "cv.pdf; portrait.png"]]
    with app.app_context():
        details = list(db.session.scalars(select(AuditEntry.detail).where(
            AuditEntry.action == "export")))
    assert details == ["csv, filter all, form careers"]
