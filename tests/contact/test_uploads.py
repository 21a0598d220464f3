"""Upload checks as units: a file, as Werkzeug hands it over, is accepted or refused with why."""

from __future__ import annotations

import functools
import io
import random
import re
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage

from contact_site import create_app
from contact_site.contact import uploads
from contact_site.contact.uploads import REFUSALS, UploadRefused, check
from support.upload_samples import (
    CONTENT_TYPES_HEAD,
    CONTENT_TYPES_TAIL,
    DOCX_MAIN,
    MIB,
    TO_LETTERS,
    VBA_TYPE,
    content_types_flood,
    docx,
    docx_parts,
    docx_with,
    encrypted,
    gigabyte_bomb,
    in_batches,
    long_attribute,
    many_entries,
    nested,
    odt,
    odt_parts,
    odt_with_content,
    random_elements,
    stored_docx,
    understated,
    word_body,
    zeros_docx,
    zipped,
)

DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
ODT_TYPE = "application/vnd.oasis.opendocument.text"
TEXT_TYPE = "text/plain; charset=utf-8"
CHUNK = uploads.CHUNK
LINES = b"Dear team,\nplease find my notes below.\n" * 2000  # about 78 KiB, more than a chunk


@pytest.fixture(scope="module")
def upload_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    """An app whose settings the checks read, its context pushed: no database or delivery is
    needed for them, so one serves the module's hundred checks (the `app` fixture would
    migrate a database for each)."""
    folder = tmp_path_factory.mktemp("upload_units")
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-not-for-production",
                      "DATABASE_URL": f"sqlite:///{folder / 'unused.sqlite'}",
                      "UPLOAD_FOLDER": str(folder / "uploads"), "CONTACT_MAX_UPLOAD_MB": 10})
    with app.app_context():
        yield app


def checked(app: Flask, filename: str, content: bytes) -> str:
    """The content type `check` gives the file, or the reason it refuses it."""
    try:
        return check(FileStorage(io.BytesIO(content), filename=filename)).content_type
    except UploadRefused as error:
        assert str(error) == REFUSALS[error.reason].format(extension=filename.rpartition(".")[2],
                                                           limit=uploads.MAX_PARTS,
                                                           limit_mb=100, allowed="")
        return f"refused: {error.reason}"


def at_chunk_boundary(piece: bytes) -> bytes:
    """Text whose `piece` straddles the end of the first chunk read."""
    return b"x" * (CHUNK - len(piece) // 2) + piece + b"\n"


def with_duplicate_part() -> bytes:
    """A .docx holding word/document.xml twice (parsers would disagree on which one counts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate
        return zipped(docx_parts() + [("WORD/document.xml", "<x/>")])


BILLION_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE w [<!ENTITY a "aaaaaaaaaa">'
                  '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><w:document '
                  'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                  "&b;</w:document>")

ACCEPTED = {
    "minimal .docx": ("letter.docx", docx(), DOCX_TYPE),
    "minimal .odt": ("letter.odt", odt(), ODT_TYPE),
    ".docx with non-ASCII text": ("brief.docx", docx(text="Grüße, 你好, مرحبا"), DOCX_TYPE),
    ".docx with an image part": ("photo.docx", docx(("word/media/image1.png", b"\x89PNG" * 99)),
                                 DOCX_TYPE),
    "ASCII text": ("notes.txt", b"Hello,\nplain words.\n", TEXT_TYPE),
    "UTF-8 with a BOM": ("notes.txt", "\ufeffRésumé, naïve, 東京\n".encode(), TEXT_TYPE),
    "text longer than one chunk": ("notes.txt", LINES * 3, TEXT_TYPE),
    "tabs, form feeds and CRLF": ("notes.txt", b"a\tb\r\n\x0cpage two\r\n", TEXT_TYPE),
    "angle-bracket addresses and comparisons": (
        "notes.txt", b"From: Ada <ada@example.com>\nif a < b and x<y then <https://x.example>\n",
        TEXT_TYPE),
    "a character split across chunks": ("notes.txt", b"x" * (CHUNK - 1) + "é".encode(),
                                        TEXT_TYPE),
}


@pytest.mark.parametrize(("filename", "content", "content_type"), ACCEPTED.values(),
                         ids=ACCEPTED.keys())
def test_real_files_are_accepted_with_their_type(upload_app, filename, content, content_type):
    assert checked(upload_app, filename, content) == content_type


MARKUP_OPENERS = ["<script>alert(1)</script>", "<SCRIPT src=//x.example/a.js>", "<html>",
                  "<!DOCTYPE html>", "<svg onload=alert(1)>", "<?xml version='1.0'?>",
                  "<iframe src=x>", "<object data=x>", "<embed src=x>",
                  "<meta http-equiv=refresh>", "<?php system($x); ?>", "<% exec %>", "<body>",
                  "<head>", "<!-- hidden -->", "<style>x{}</style>", "<img src=x onerror=alert(1)>",
                  "<a href='javascript:alert(1)'>", "<div\nonclick = 'x'>", "<![CDATA[x]]>"]


@pytest.mark.parametrize("markup", MARKUP_OPENERS)
def test_txt_with_markup_after_its_first_line_is_refused(upload_app, markup):
    assert checked(upload_app, "notes.txt", LINES + markup.encode() + b"\n") == "refused: markup"


@pytest.mark.parametrize("markup", ["<script>", "<!--", "<img src=x onerror=alert(1)>"])
def test_txt_markup_split_across_the_chunk_boundary_is_refused(upload_app, markup):
    assert checked(upload_app, "notes.txt", at_chunk_boundary(markup.encode())) == "refused: markup"


TEXT_REFUSED = {
    "NUL after 64 KiB": (LINES + b"\x00\x01\x02binary", "control"),
    "escape sequence": (b"red \x1b[31m alert\n", "control"),
    "C1 control character": ("caf\u0085e\n".encode(), "control"),
    "invalid UTF-8 after 64 KiB": (LINES + b"\x89PNG\r\n\x1a\n\xff\xfe", "not_utf8"),
    "a truncated character at the end": (LINES + "é".encode()[:1], "not_utf8"),
    "Latin-1 text": ("Résumé\n".encode("latin-1"), "not_utf8"),
    "UTF-16 with a BOM": ("Hello\n".encode("utf-16"), "not_utf8"),
    "PDF named .txt": (b"%PDF-1.4\n1 0 obj <<>> endobj\n%%EOF\n", "content"),
}


@pytest.mark.parametrize(("content", "reason"), TEXT_REFUSED.values(), ids=TEXT_REFUSED.keys())
def test_txt_must_be_utf8_text_throughout(upload_app, content, reason):
    assert checked(upload_app, "notes.txt", content) == f"refused: {reason}"


DOCUMENTS_REFUSED = {
    "docx carrying word/vbaProject.bin": (
        "letter.docx", docx(("word/vbaProject.bin", b"\xd0\xcf\x11\xe0" + bytes(500))), "macros"),
    "docx declaring a VBA .bin content type": ("letter.docx", docx(extra_types=VBA_TYPE),
                                               "macros"),
    "docm renamed .docx": (
        "letter.docx", docx(main="application/vnd.ms-word.document.macroEnabled.main+xml"),
        "macros"),
    "docx with ActiveX controls": ("letter.docx", docx(("word/activeX/activeX1.xml", "<a/>")),
                                   "macros"),
    "odt with Basic macros": ("letter.odt", odt(("Basic/Standard/Module1.xml", "<m/>")),
                              "macros"),
    "odt with scripts": ("letter.odt", odt(("Scripts/python/run.py", "import os")), "macros"),
    "docx compressed 1000:1": ("bomb.docx", zeros_docx(40), "too_compressed"),
    "docx understating a part's size": (
        "bomb.docx", understated(zeros_docx(40), "word/media/image1.png", 10_000), "damaged"),
    "docx with more than 1000 parts": (
        "parts.docx", docx(*[(f"word/media/{n}.txt", "x") for n in range(1000)]),
        "too_many_parts"),
    "encrypted docx": ("secret.docx", encrypted(docx()), "encrypted"),
    "docx with a DTD (entity expansion)": (
        "laughs.docx", zipped(docx_parts()[:2] + [("word/document.xml", BILLION_LAUGHS)]),
        "damaged"),
    "docx whose document is not XML": (
        "broken.docx", zipped(docx_parts()[:2] + [("word/document.xml", "<w:document>")]),
        "damaged"),
    "docx with a part twice": ("twice.docx", with_duplicate_part(), "damaged"),
    "docx with a traversing part name": ("evil.docx", docx(("../../etc/cron.d/x", "x")),
                                         "damaged"),
    "docx cut short": ("short.docx", docx()[:-30], "damaged"),
    "zip without word/document.xml": (
        "sheet.docx", zipped(docx_parts()[:2] + [("xl/workbook.xml", "<w/>")]), "content"),
    "docx whose main part is a template": (
        "template.docx", docx(main="application/vnd.openxmlformats-officedocument."
                                   "wordprocessingml.template.main+xml"), "content"),
    "not a zip at all": ("letter.docx", b"Just some text, no archive.", "content"),
    "odt of a spreadsheet": (
        "sheet.odt", odt(mimetype="application/vnd.oasis.opendocument.spreadsheet"), "content"),
    "odt whose mimetype is not first": ("late.odt", zipped(odt_parts()[::-1]), "content"),
    "odt without content.xml": ("empty.odt", zipped(odt_parts()[:2], stored_first=True),
                                "content"),
    "docx named .odt": ("letter.odt", docx(), "content"),
    "odt named .docx": ("letter.docx", odt(), "content"),
}


@pytest.mark.parametrize(("filename", "content", "reason"), DOCUMENTS_REFUSED.values(),
                         ids=DOCUMENTS_REFUSED.keys())
def test_hostile_documents_are_refused_with_their_reason(upload_app, filename, content, reason):
    assert checked(upload_app, filename, content) == f"refused: {reason}"


def test_the_bomb_is_small_and_refused_from_its_directory(upload_app):
    """About 1 MiB declaring 1 GiB: refused on the declared size, so nothing is inflated."""
    bomb = gigabyte_bomb()
    assert len(bomb) < 2 * MIB
    assert checked(upload_app, "bomb.docx", bomb) == "refused: unpacked_too_large"


def test_check_leaves_the_stream_at_its_start(upload_app):
    """The stored copy is read from the beginning, whatever the checks read."""
    stream = io.BytesIO(docx())
    check(FileStorage(stream, filename="letter.docx"))
    assert stream.tell() == 0


@pytest.mark.parametrize("reason", REFUSALS)
def test_every_refusal_is_one_plain_sentence_or_two(reason):
    """The words are filled in, end with a full stop and carry no code-like names."""
    words = REFUSALS[reason].format(extension="docx", limit=1000, limit_mb=100, allowed="pdf")
    assert words.endswith(".") and "{" not in words
    assert not re.search(r"vbaProject|zip|ratio|Exception", words)


def test_no_file_is_written_by_a_check(upload_app):
    """Checks read the upload in memory: nothing appears in the upload folder."""
    checked(upload_app, "letter.docx", docx())
    checked(upload_app, "bomb.docx", gigabyte_bomb())
    assert not Path(upload_app.config["UPLOAD_FOLDER"]).exists()


# Structures that cost time or memory out of proportion to the file's size, each under the
# upload, unpacked and ratio limits: only the limits on structure can refuse them.
def content_types_of(count: int) -> bytes:
    """[Content_Types].xml under its size limit, holding `count` Defaults."""
    entries = in_batches(count, lambda n: f'<Default Extension="e{n}" ContentType="a/b"/>')
    return docx_with("[Content_Types].xml", [CONTENT_TYPES_HEAD, *entries,
                                             CONTENT_TYPES_TAIL.format(main=DOCX_MAIN)])


def document_of(pieces: list[str]) -> bytes:
    """A .docx whose body holds these pieces."""
    return docx_with("word/document.xml", word_body(pieces))


def random_text(size: int, seed: int = 3, markup_characters: bool = False) -> str:
    """`size` random letters and spaces (with `&` and `<` for a CDATA section): text that
    compresses as real text does, not 1000:1."""
    letters = random.Random(seed).randbytes(size).translate(TO_LETTERS)
    return letters.translate(bytes.maketrans(b"qxz", b" &<" if markup_characters else b"   ")
                             ).decode()


def spread_prefixes(count: int) -> bytes:
    """A body of `count` paragraphs, each declaring a namespace prefix of its own."""
    return document_of([f'<w:p xmlns:p{n}="urn:x"/>' for n in range(count)])


HOSTILE: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "2 million content-type entries in 9 MB": ("flood.docx", content_types_flood, "too_complex"),
    "20,000 content-type entries in 1 MiB": (
        "types.docx", lambda: content_types_of(20_000), "too_complex"),
    "a body nested 100,000 deep": (
        "deep.docx", lambda: docx_with("word/document.xml", word_body(nested(100_000))),
        "too_complex"),
    "an .odt nested 100,000 deep": ("deep.odt", lambda: odt_with_content(nested(100_000)),
                                    "too_complex"),
    "3 million elements": (
        "many.docx", lambda: docx_with("word/document.xml", word_body(random_elements(3 * 10**6))),
        "too_complex"),
    "an attribute of 8 MiB": (
        "long.docx", lambda: docx_with("word/document.xml", word_body(long_attribute(8))),
        "too_complex"),
    "a comment of 1 MiB": ("comment.docx", lambda: document_of(["<!--", random_text(MIB),
                                                                 "-->"]), "too_complex"),
    "a million distinct element names": (
        "names.docx", lambda: docx_with("word/document.xml", word_body(
            in_batches(10**6, lambda n: f"<e{n}/>"))), "too_complex"),
    "20,000 distinct attribute names": (
        "names.docx", lambda: document_of([f'<w:p a{n}=""/>' for n in range(20_000)]),
        "too_complex"),
    "12,000 namespace prefixes": ("prefixes.docx", lambda: spread_prefixes(12_000),
                                  "too_complex"),
    "100,000 zip entries": ("parts.docx", lambda: many_entries(100_000), "too_many_parts"),
    "100,000 zip entries declared as 3": (
        "parts.docx", lambda: many_entries(100_000, declared=3), "too_many_parts"),
}


@functools.cache
def hostile(name: str) -> bytes:
    """The sample, built once per test run."""
    return HOSTILE[name][1]()


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_structure_is_refused_in_plain_words(upload_app, name):
    filename, _build, reason = HOSTILE[name]
    sample = hostile(name)
    assert len(sample) < upload_app.config["CONTACT_MAX_UPLOAD_BYTES"]
    assert checked(upload_app, filename, sample) == f"refused: {reason}"


def timed(app: Flask, filename: str, content: bytes, runs: int = 3) -> tuple[str, float]:
    """What `check` says of the file, and the least CPU time it takes over `runs` runs (the
    machine is shared)."""
    best, outcome = float("inf"), ""
    for _ in range(runs):
        started = time.process_time()
        outcome = checked(app, filename, content)
        best = min(best, time.process_time() - started)
    return outcome, best


@pytest.mark.parametrize("name", ["2 million content-type entries in 9 MB", "100,000 zip entries",
                                  "100,000 zip entries declared as 3"])
def test_hostile_structure_costs_less_than_a_plain_document_as_large(upload_app, name):
    """Refused before its inner structure is read: cheaper than checking a photo of its size
    (before the limits, the 9 MB flood took 5 s, the zip entries half a second)."""
    filename, _build, reason = HOSTILE[name]
    sample = hostile(name)
    outcome, plain_seconds = timed(upload_app, "photo.docx", stored_docx(len(sample)))
    assert outcome == DOCX_TYPE
    outcome, seconds = timed(upload_app, filename, sample)
    assert outcome == f"refused: {reason}"
    assert seconds <= 2 * plain_seconds


def test_a_long_token_costs_less_than_plain_text_as_long(upload_app):
    """An 8 MiB attribute is refused after 256 KiB: cheaper than 8 MiB of text, which expat
    streams (before the limit expat parsed the growing tag again with every chunk)."""
    text = document_of(["<w:p><w:r><w:t>", random_text(8 * MIB), "</w:t></w:r></w:p>"])
    outcome, text_seconds = timed(upload_app, "text.docx", text)
    assert outcome == DOCX_TYPE
    outcome, seconds = timed(upload_app, "long.docx", hostile("an attribute of 8 MiB"))
    assert outcome == "refused: too_complex"
    assert seconds <= text_seconds


def test_elements_past_the_limit_cost_no_more_than_at_the_limit(upload_app):
    """Counting stops at the limit: 3 million elements cost about what 900,000 do (which
    are accepted), not three times as much."""
    under = docx_with("word/document.xml", word_body(random_elements(900_000)))
    outcome, under_seconds = timed(upload_app, "many.docx", under, runs=2)
    assert outcome == DOCX_TYPE
    outcome, over_seconds = timed(upload_app, "many.docx", hostile("3 million elements"), runs=2)
    assert outcome == "refused: too_complex"
    assert over_seconds <= 1.6 * under_seconds


@pytest.mark.parametrize("name", ["2 million content-type entries in 9 MB",
                                  "100,000 zip entries declared as 3", "an attribute of 8 MiB",
                                  "a million distinct element names"])
def test_hostile_structure_is_checked_in_little_memory(upload_app, name):
    """Python's allocations (expat's included) peak at a few MiB over a plain document's
    (the 9 MB flood took about 300 MiB before the limits)."""
    filename, _build, _reason = HOSTILE[name]
    sample = hostile(name)
    plain = stored_docx(len(sample))
    assert peak_mib(upload_app, filename, sample) < peak_mib(upload_app, "photo.docx", plain) + 8


def peak_mib(app: Flask, filename: str, content: bytes) -> float:
    """The peak of memory allocated while `check` runs, in MiB."""
    stream = io.BytesIO(content)
    tracemalloc.start()
    try:
        try:
            check(FileStorage(stream, filename=filename))
        except UploadRefused:
            pass
        return tracemalloc.get_traced_memory()[1] / MIB
    finally:
        tracemalloc.stop()


LONG_DOCUMENTS = {
    "a paragraph of 3 MiB": ["<w:p><w:r><w:t>", random_text(3 * MIB), "</w:t></w:r></w:p>"],
    "a CDATA section of 1 MiB": ["<w:p><w:r><w:t><![CDATA[",
                                 random_text(MIB, markup_characters=True),
                                 "]]></w:t></w:r></w:p>"],
    "an attribute of 200 KiB": ['<w:p w:x="', "1,2 " * 51_200, '"/>'],
    "tables nested 40 deep": ["<w:tbl><w:tr><w:tc>" * 40, "<w:p/>", "</w:tc></w:tr></w:tbl>" * 40],
}


@pytest.mark.parametrize("pieces", LONG_DOCUMENTS.values(), ids=LONG_DOCUMENTS.keys())
def test_long_but_plain_documents_are_accepted(upload_app, pieces):
    assert checked(upload_app, "long.docx", document_of(pieces)) == DOCX_TYPE


def markup_lookalikes(size: int) -> bytes:
    """Text that keeps the markup search busiest without matching: a tag-like start, then
    event-handler-like words with no `=`."""
    line = b"<q" + b" onclickxxxxxxxxxxxxxxxxxxxxxxx" * 6 + b"                    \n"
    return (line * (size // len(line) + 1))[:size]


def test_text_check_time_grows_linearly(upload_app):
    """Ten times the text costs at most about ten times as much (25 allows for noise)."""
    outcome, short_seconds = timed(upload_app, "notes.txt", markup_lookalikes(MIB // 2))
    assert outcome == TEXT_TYPE
    outcome, long_seconds = timed(upload_app, "notes.txt", markup_lookalikes(5 * MIB))
    assert outcome == TEXT_TYPE
    assert long_seconds <= 25 * short_seconds
