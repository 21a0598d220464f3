"""Rules on what was written: links, the owner's blocklist, the same message posted again.

Reasons are shown to the owner, so they name the rule and, for the blocklist,
the owner's own entry that matched: never the visitor's text. The duplicate rule
keeps a hash of the normalised message and the sender's network, not the text.
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import delete, exists, select

from ..app_state import state_of
from ..extensions import db
from ..keys import keyed_digests
from ..ratelimit import network_of
from .models import MessageFingerprint

# Each occurrence counts: a scheme (with its `www.` once), a bare `www.`, BBCode and
# HTML links. Bare domains without either ("example.com") are not counted: ordinary
# text names sites that way, and spam that wants clicks writes a scheme.
LINK = re.compile(r"(?:\b(?:https?|ftp)://(?:www\.)?|(?<![\w./@-])www\.|\[url\b|<a\s)",
                  re.IGNORECASE)
FINGERPRINT_SALT = b"contact_site.spam.fingerprint\n"
# Fingerprints past the window are deleted this often at most (per process).
PRUNE_EVERY = timedelta(minutes=1)


@dataclass
class SpamState:
    """When this process last deleted the fingerprints past the window."""

    fingerprints_pruned_at: datetime | None = None


def link_count(text: str) -> int:
    """How many links the text holds."""
    return len(LINK.findall(text))


def normalise(text: str) -> str:
    """The text as the rules compare it: NFKC (full-width letters fold), case-folded,
    each run of white space one space, so cosmetic changes do not make another message."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


@dataclass(frozen=True)
class Blocklist:
    """The owner's entries, each with the pattern that finds it as a whole word or domain."""

    entries: tuple[tuple[str, re.Pattern[str]], ...]

    def first_match(self, texts: Iterable[str]) -> str | None:
        """The first entry found in any of the texts, as the owner wrote it."""
        folded = [normalise(text) for text in texts]
        for entry, pattern in self.entries:
            if any(pattern.search(text) for text in folded):
                return entry
        return None


def parse_blocklist(lines: Iterable[str]) -> Blocklist:
    """One entry a line; `#` starts a comment; blank lines are skipped."""
    entries = []
    for line in lines:
        entry = line.partition("#")[0].strip()
        if entry:
            entries.append((entry, _pattern(normalise(entry))))
    return Blocklist(tuple(entries))


def _pattern(term: str) -> re.Pattern[str]:
    """A word or phrase as a whole word; a domain also as any of its subdomains.

    `spam.example` matches `www.spam.example` and `x@spam.example`, not
    `notspam.example` nor `spam.example.org`.
    """
    if "." in term:
        return re.compile(r"(?<![\w-])" + re.escape(term) + r"(?![\w-])(?!\.[\w-])")
    return re.compile(r"(?<!\w)" + re.escape(term) + r"(?!\w)")


class _BlocklistFile:
    """The file named by CONTACT_BLOCKLIST_FILE, read again whenever its mtime changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, tuple[int | None, Blocklist]] = {}

    def get(self, path: str) -> Blocklist:
        """The entries of the file as it is now (as it was last read, if it cannot be read)."""
        with self._lock:
            known = self._loaded.get(path, (None, Blocklist(())))
            try:
                stamp = os.stat(path).st_mtime_ns
                if stamp != known[0]:
                    text = Path(path).read_text(encoding="utf-8", errors="replace")
                    known = self._loaded[path] = (stamp, parse_blocklist(text.splitlines()))
            except OSError:  # being replaced, or removed: keep what it said last
                pass
            return known[1]


_blocklist_file = _BlocklistFile()


def blocklist_match(texts: Iterable[str]) -> str | None:
    """The first CONTACT_BLOCKLIST_FILE entry found in the texts, or None (also without a file)."""
    path = current_app.config.get("CONTACT_BLOCKLIST_FILE")
    if not path:
        return None
    return _blocklist_file.get(path).first_match(texts)


def fingerprints(message: str, remote_addr: str) -> list[str]:
    """HMAC-SHA-256 of the sender's network (IPv4 address, IPv6 /64) and the normalised
    message, keyed with SECRET_KEY so a copy of the table cannot be matched to guessed texts;
    then under each of SECRET_KEY_FALLBACKS, so a key change forgets no duplicate."""
    data = f"{network_of(remote_addr)}\n{normalise(message)}".encode()
    return keyed_digests(FINGERPRINT_SALT + data)


def is_duplicate(message: str, remote_addr: str | None,
                 now: datetime) -> tuple[bool, MessageFingerprint | None]:
    """Whether this network sent this message within CONTACT_DUPLICATE_HOURS (a day by
    default; 0 turns the rule off), and the fingerprint that remembers this post.

    The fingerprint is returned, not added to the session: the caller adds it with
    the submission, after its own reads (an added row would be autoflushed by the
    next query, taking SQLite's write lock early), and commits or undoes it with
    the submission. Fingerprints older than the window are pruned in a
    transaction of their own, at most once every PRUNE_EVERY per process.
    """
    hours = current_app.config["CONTACT_DUPLICATE_HOURS"]
    if not hours or not normalise(message) or remote_addr is None:
        return False, None
    digests, table = fingerprints(message, remote_addr), MessageFingerprint
    since = now - timedelta(hours=hours)
    _prune(since, now)
    seen = db.session.scalar(select(exists().where(table.digest.in_(digests),
                                                   table.seen_at > since)))
    return bool(seen), MessageFingerprint(digest=digests[0], seen_at=now)


def _prune(since: datetime, now: datetime) -> None:
    """Delete the fingerprints seen before `since`, unless this process did a moment ago."""
    state = state_of(current_app, SpamState)
    last = state.fingerprints_pruned_at
    if last is not None and timedelta(0) <= now - last < PRUNE_EVERY:
        return  # a commit (an fsync) per post otherwise, for rows the query ignores anyway
    state.fingerprints_pruned_at = now
    with db.engine.begin() as conn:
        conn.execute(delete(MessageFingerprint.__table__).where(
            MessageFingerprint.__table__.c.seen_at <= since))
