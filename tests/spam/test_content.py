"""Rules on what was written: links, the owner's blocklist, the same message sent again."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from sqlalchemy import select

from contact_site.config import ConfigError
from contact_site.database import utcnow
from contact_site.extensions import db
from contact_site.spam.content import (
    blocklist_match,
    is_duplicate,
    link_count,
    normalise,
    parse_blocklist,
)
from contact_site.spam.models import MessageFingerprint
from support.spam import LAYERS_ON

pytestmark = [pytest.mark.manual_delivery, pytest.mark.settings(**LAYERS_ON)]


@pytest.mark.parametrize(("text", "links"), [
    ("No links here, just example.com in words.", 0),
    ("See https://example.com/page", 1),
    ("http://a.example http://b.example HTTPS://C.EXAMPLE", 3),
    ("https://www.example.com counts once", 1),
    ("www.example.com and www.example.org", 2),
    ("[url=https://x.example]x[/url]", 2),  # the tag and its address
    ('<a href="https://x.example">x</a>', 2),
    ("ftp://files.example/a", 1),
    ("an email ada@www.example.com is not a link", 0),
], ids=["none", "one", "three", "scheme-and-www", "bare-www", "bbcode", "html", "ftp",
        "address"])
def test_links_are_counted(text, links):
    """Each scheme, bare `www.`, BBCode or HTML link counts; bare domains do not."""
    assert link_count(text) == links


BLOCKLIST = """\
# words and domains the owner never wants to hear about
casino
cheap pills   # a phrase, with a comment after it

spam.example
"""


@pytest.mark.parametrize(("texts", "entry"), [
    (["Best CASINO offers"], "casino"),
    (["ｃａｓｉｎｏ in full width"], "casino"),
    (["Buy cheap   pills now"], "cheap pills"),
    (["visit https://spam.example/offer"], "spam.example"),
    (["visit www.spam.example."], "spam.example"),
    (["", "", "", "bot@mail.spam.example"], "spam.example"),  # the email field
    (["casinos are not casino-free"], "casino"),  # the second word: hyphens separate
    (["the casinos"], None),  # a whole word only
    (["notspam.example"], None),
    (["spam.example.org is someone else's"], None),
    (["# casino"], "casino"),  # a comment in the file, not in a message
    (["nothing to see"], None),
], ids=["case", "full-width", "phrase", "url", "subdomain-end-of-sentence", "email",
        "hyphen", "whole-word", "longer-domain", "other-tld", "hash-in-message", "clean"])
def test_blocklist_entries_match_whole_words_and_domains(texts, entry):
    """Case, full-width letters and spacing do not hide an entry; parts of words are not it."""
    assert parse_blocklist(BLOCKLIST.splitlines()).first_match(texts) == entry


def test_blocklist_lines_comments_and_blanks():
    """One entry a line; `#` starts a comment; blank lines and comment lines are nothing."""
    entries = [entry for entry, _ in parse_blocklist(BLOCKLIST.splitlines()).entries]
    assert entries == ["casino", "cheap pills", "spam.example"]


def test_the_blocklist_file_is_read_again_when_it_changes(make_app, tmp_path):
    """The owner edits the file; the next submission is judged by the new entries."""
    path = tmp_path / "blocklist.txt"
    path.write_text("casino\n")
    app = make_app(deliver=False, CONTACT_BLOCKLIST_FILE=str(path))
    with app.test_request_context():
        assert blocklist_match(["casino night"]) == "casino"
        assert blocklist_match(["lottery win"]) is None
        path.write_text("lottery\n")
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        assert blocklist_match(["lottery win"]) == "lottery"
        assert blocklist_match(["casino night"]) is None
        path.unlink()  # gone meanwhile: what it said last still holds, no error
        assert blocklist_match(["lottery win"]) == "lottery"


def test_without_a_blocklist_file_nothing_is_blocked(make_app):
    """CONTACT_BLOCKLIST_FILE is optional."""
    with make_app(deliver=False).test_request_context():
        assert blocklist_match(["casino"]) is None


def test_a_blocklist_file_that_does_not_exist_fails_at_start(make_app, tmp_path):
    """A mistyped path is named at start-up, not found missing at the first message."""
    with pytest.raises(ConfigError, match="CONTACT_BLOCKLIST_FILE"):
        make_app(deliver=False, CONTACT_BLOCKLIST_FILE=str(tmp_path / "missing.txt"))


MESSAGE = "Hello,\nI would like to order ten analytical engines."


def post(app, message: str, address: str | None, minutes_later: float = 0,
         commit: bool = True) -> bool:
    """One submission's duplicate check, committed like the submission it belongs to."""
    with app.app_context():
        seen, remembered = is_duplicate(message, address,
                                        utcnow() + timedelta(minutes=minutes_later))
        if remembered is not None:
            db.session.add(remembered)
        if commit:
            db.session.commit()
        else:
            db.session.rollback()
        return seen


@pytest.mark.parametrize(("second", "address", "minutes", "duplicate"), [
    (MESSAGE, "192.0.2.10", 1, True),
    ("  hello, I WOULD like to order ten   analytical engines. ", "192.0.2.10", 1, True),
    (MESSAGE, "192.0.2.10", 23 * 60, True),
    (MESSAGE, "192.0.2.10", 24 * 60 + 1, False),
    (MESSAGE, "192.0.2.11", 1, False),
    ("Hello, I would like to order eleven analytical engines.", "192.0.2.10", 1, False),
], ids=["same", "spacing-and-case", "within-a-day", "after-a-day", "other-address",
        "other-text"])
def test_the_same_message_from_the_same_address_within_a_day_is_a_duplicate(
        app, second, address, minutes, duplicate):
    """IPv4: the same address; the text compared after folding case and spacing."""
    assert post(app, MESSAGE, "192.0.2.10") is False
    assert post(app, second, address, minutes) is duplicate


@pytest.mark.parametrize(("address", "duplicate"), [
    ("2001:db8:1:2::99", True),  # the same /64: one client picks addresses in it freely
    ("2001:db8:1:3::1", False),
], ids=["same-64", "other-64"])
def test_an_ipv6_client_is_its_64(app, address, duplicate):
    """IPv6: the /64, as the rate limit counts a client."""
    assert post(app, MESSAGE, "2001:db8:1:2::1") is False
    assert post(app, MESSAGE, address, 1) is duplicate


def test_a_post_that_was_not_stored_is_not_remembered(app):
    """The fingerprint is committed with the submission: a rolled-back post leaves none."""
    assert post(app, MESSAGE, "192.0.2.10", commit=False) is False
    assert post(app, MESSAGE, "192.0.2.10", 1) is False


def test_only_a_keyed_hash_is_kept_never_the_text_or_the_address(app):
    """The table holds a digest and a time: nothing the visitor wrote, nor their address."""
    post(app, MESSAGE, "192.0.2.10")
    with app.app_context():
        rows = db.session.execute(select(MessageFingerprint.__table__)).all()
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    for secret in ("analytical", "192.0.2.10", normalise(MESSAGE)):
        assert secret not in stored
    assert len(rows[0].digest) == 64


def test_fingerprints_older_than_a_day_are_deleted(app):
    """Nothing is kept longer than the rule needs it."""
    post(app, MESSAGE, "192.0.2.10")
    post(app, "another message", "192.0.2.10", 25 * 60)
    with app.app_context():
        assert db.session.query(MessageFingerprint).count() == 1


@pytest.mark.parametrize(("message", "address"), [("", "192.0.2.10"), ("   ", "192.0.2.10"),
                                                  (MESSAGE, None)],
                         ids=["empty", "blank", "no-address"])
def test_nothing_to_compare_is_never_a_duplicate(app, message, address):
    """An empty message, or a request without an address, is not judged by this rule."""
    assert post(app, message, address) is False
    assert post(app, message, address, 1) is False
