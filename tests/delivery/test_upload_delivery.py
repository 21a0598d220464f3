"""Uploads end to end: hostile files refused through the form, real documents delivered intact.

Refused files leave no row, no folder and no mail; accepted ones reach the real test SMTP
server byte for byte, and are kept on disk readable by the site's own user alone.
"""

from __future__ import annotations

import io
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from contact_site.contact.uploads import REFUSALS
from support.forms import post_form
from support.records import counts
from support.upload_samples import docx, encrypted, gigabyte_bomb, odt

LINES = b"Dear team,\nplease find my notes below.\n" * 2000  # more than the 64 KiB first read
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_TYPE = "application/vnd.oasis.opendocument.text"

HOSTILE = {
    "txt with markup after its first line": (
        "notes.txt", b"Hello,\n<script>alert(document.cookie)</script>\n", "markup"),
    "txt turning binary after 64 KiB": ("notes.txt", LINES + b"\x00\x01\x02\x03", "control"),
    "txt turning to non-UTF-8 bytes after 64 KiB": ("notes.txt", LINES + b"\xff\xfe\x00",
                                                    "not_utf8"),
    "docx carrying word/vbaProject.bin": (
        "letter.docx", docx(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0" + bytes(500))), "macros"),
    "odt with Basic/": ("letter.odt", odt(("Basic/Standard/Module1.xml", "<m/>")), "macros"),
    "encrypted docx": ("secret.docx", encrypted(docx()), "encrypted"),
}


def refusal(reason: str, extension: str) -> str:
    """The words the visitor is shown for this reason."""
    return REFUSALS[reason].format(extension=extension, limit_mb=100)


def nothing_kept(app, uploads: Path) -> bool:
    """No submission, no mail and no folder or file under the upload folder."""
    stored = counts(app)
    no_folder = not uploads.exists() or not any(uploads.iterdir())
    return stored["submission"] == stored["outbox"] == 0 and no_folder


@pytest.mark.parametrize(("filename", "content", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_file_answers_422_with_its_reason_and_keeps_nothing(
        app, client, smtp_server, tmp_path, filename, content, reason):
    response = post_form(client, json=True, attachment=(io.BytesIO(content), filename))
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert errors == {"attachment": [refusal(reason, filename.rpartition(".")[2])]}
    assert nothing_kept(app, tmp_path / "uploads")


def test_gigabyte_bomb_is_refused_beside_the_attachment_field(app, client, tmp_path):
    """A 1 MiB .docx inflating to 1 GiB: the page shows why, next to the file field."""
    response = post_form(client, attachment=(io.BytesIO(gigabyte_bomb()), "bomb.docx"))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    shown = re.search(r'id="attachment-error">(.*?)</p>', page, re.S)
    assert shown is not None
    assert "more than 100 MB once unpacked" in shown.group(1)
    assert nothing_kept(app, tmp_path / "uploads")


def attachments(mail) -> list:
    """The attachment parts of a received mail, parsed from the bytes the server got."""
    return list(mail.message.iter_attachments())


DELIVERED = {
    ".docx": ("Brief an Sie.docx", docx(text="Grüße aus Berlin"), DOCX_TYPE),
    ".odt": ("lettre.odt", odt(text="Bonjour de Paris"), ODT_TYPE),
    ".txt": ("notes.txt", "Notes: 東京, naïve\n".encode() * 3000, "text/plain"),
}


@pytest.mark.parametrize(("filename", "content", "content_type"), DELIVERED.values(),
                         ids=DELIVERED.keys())
def test_real_document_reaches_the_owner_byte_for_byte(
        app, client, smtp_server, filename, content, content_type):
    response = post_form(client, attachment=(io.BytesIO(content), filename))
    assert response.status_code == 303
    mails = {mail.rcpt_tos[0]: mail for mail in smtp_server.wait_for(2)}
    [part] = attachments(mails["sales@example.com"])
    assert part.get_content_type() == content_type
    assert part.get_filename() == filename
    assert part.get_payload(decode=True) == content
    assert content_type != "text/plain" or part.get_content_charset() == "utf-8"


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process umask set to `mask` for the block, the previous one restored after."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277], ids=["umask 000", "umask 022",
                                                            "umask 277"])
def test_stored_files_are_0600_in_folders_0700_whatever_the_umask(make_app, tmp_path, mask):
    """The upload folder (created on first use), the submission's folder and the file."""
    app = make_app(deliver=False)
    client = app.test_client()
    uploads = tmp_path / "uploads"
    assert not uploads.exists()
    document = odt()
    with umask(mask):
        response = post_form(client, json=True, attachment=(io.BytesIO(document), "letter.odt"))
    assert response.status_code == 202, response.get_json()
    folder = uploads / response.get_json()["id"]
    stored = folder / "attachment.odt"
    assert (mode(uploads), mode(folder), mode(stored)) == (0o700, 0o700, 0o600)
    assert stored.read_bytes() == document


def test_an_existing_upload_folder_keeps_its_mode(make_app, tmp_path):
    """An operator's own folder is left as they made it; what goes inside is private."""
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    uploads.chmod(0o750)
    app = make_app(deliver=False)
    with umask(0o000):
        response = post_form(app.test_client(), json=True,
                             attachment=(io.BytesIO(docx()), "letter.docx"))
    assert response.status_code == 202
    folder = uploads / response.get_json()["id"]
    assert (mode(uploads), mode(folder), mode(folder / "attachment.docx")) == (0o750, 0o700,
                                                                                0o600)
