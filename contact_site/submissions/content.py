"""What a submission says, as one hash, and the one spelling of its sender's address.

A form sent again folds only when it says the same; one address written several
ways (letter case, a Unicode or punycode domain) is one sender for the thank-you
cap, erasure and the access export.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import idna
from email_validator import EmailNotValidError, validate_email

from .files import CHUNK, CheckedUpload

# What the visitor wrote, as stored: verdicts and other derived columns may differ
# between a double click's two POSTs and must not make them two submissions. `answers`
# holds every declared field, so a field added to the form is hashed without a change here.
CONTENT_FIELDS = ("form_slug", "recipient_slug", "name", "email", "subject", "message",
                  "answers")


def new_submission_key() -> str:
    """A fresh key, as issued with a form."""
    return secrets.token_urlsafe(24)


def content_hash(fields: Mapping[str, Any],
                 uploads: Sequence[tuple[str, CheckedUpload]] = ()) -> str:
    """sha256 (hex) of the visitor's fields and of each attached file's field, name and bytes."""
    digest = hashlib.sha256()
    written = {name: fields.get(name) for name in CONTENT_FIELDS}
    digest.update(json.dumps(written, sort_keys=True, ensure_ascii=False).encode())
    for field, upload in uploads:
        digest.update(b"\0" + field.encode() + b"\0" + upload.filename.encode() + b"\0")
        upload.stream.seek(0)
        while chunk := upload.stream.read(CHUNK):
            digest.update(chunk)
        upload.stream.seek(0)
    return digest.hexdigest()


def ascii_address(address: str) -> str:
    """The address as the form stores it: the part before the @ as typed, the domain in
    lower-case ASCII (`user@Bücher.example` → `user@xn--bcher-kva.example`).

    email-validator, which the form validates with, writes the domain; an address it
    refuses (a bot's junk kept as spam, an operator's reserved test domain) gets its
    domain from idna alone, or is kept as it is.
    """
    text = unicodedata.normalize("NFC", address.strip())
    try:
        found = validate_email(text, check_deliverability=False, allow_smtputf8=True,
                               allow_display_name=False)
    except EmailNotValidError:
        local, at, domain = text.rpartition("@")
        return f"{local}@{_ascii_domain(domain)}" if at else text
    return f"{found.local_part}@{found.ascii_domain}"


def _ascii_domain(domain: str) -> str:
    """The domain in IDNA's lower-case ASCII form, or just lower-cased if it has none."""
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.lower()


def unicode_address(address: str) -> str:
    """The same address with its domain in Unicode (`xn--bcher-kva` → `bücher`), if it has one."""
    written = ascii_address(address)
    local, at, domain = written.rpartition("@")
    try:
        return f"{local}@{idna.decode(domain)}" if at else written
    except (idna.IDNAError, UnicodeError):
        return written


def spellings(address: str) -> set[str]:
    """The lower-cased ways this address (or mailbox key) may be stored: as typed, with an
    ASCII domain, with a Unicode domain (a bot's row, filed as it was posted)."""
    return {address.strip().lower(), ascii_address(address).lower(),
            unicode_address(address).lower()}
