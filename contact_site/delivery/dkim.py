"""DKIM signatures (optional): every mail signed for DKIM_DOMAIN with the key of DKIM_SELECTOR.

rsa-sha256 with relaxed/relaxed canonicalisation over the headers a reader sees and
the MIME headers, by dkimpy. The body hash needs the whole mail, so a signed mail is
read once to sign and once more as it is sent: its files are still streamed from disk
both times, but the mail is held in memory while it is signed.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dkim

from .mime import StreamedMail

# From, To, Subject, Date, Message-ID, Reply-To and the MIME headers; the threading and
# Auto-Submitted headers too, where a mail has them (dkimpy signs only those present).
SIGNED_HEADERS = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to",
                  b"mime-version", b"content-type", b"content-transfer-encoding",
                  b"in-reply-to", b"references", b"auto-submitted")


def is_on(config: Mapping[str, Any]) -> bool:
    """Whether mails are signed (the settings are checked together at start-up)."""
    return bool(config["DKIM_PRIVATE_KEY_FILE"])


@functools.lru_cache(maxsize=4)  # read once per process and key file
def _key(path: str) -> bytes:
    return Path(path).read_bytes()


def signature(config: Mapping[str, Any], mail: bytes) -> bytes:
    """The DKIM-Signature header line(s) for the mail, ending in CRLF."""
    header: bytes = dkim.sign(
        mail, config["DKIM_SELECTOR"].encode("ascii"), config["DKIM_DOMAIN"].encode("ascii"),
        _key(config["DKIM_PRIVATE_KEY_FILE"]), canonicalize=(b"relaxed", b"relaxed"),
        include_headers=list(SIGNED_HEADERS), linesep=b"\r\n")
    return header


def signed(config: Mapping[str, Any], mail: StreamedMail) -> StreamedMail:
    """The mail with its DKIM-Signature first; the files still streamed when it is sent."""
    header = signature(config, b"".join(mail.chunks()))
    mail.head = header + mail.head
    return mail
