"""Reading composed mails: a fixed time and Message-ID to compose with, the parsed message."""

from __future__ import annotations

import email.policy
from datetime import datetime
from email.message import EmailMessage
from email.parser import BytesParser

CREATED = datetime(2026, 5, 17, 9, 30, 15)
MESSAGE_ID = "<20260517093015.1@example.org>"


def parsed(data: bytes) -> EmailMessage:
    """The mail as a reader with Python's modern parser sees it."""
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message
