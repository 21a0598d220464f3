"""What a submission says, as one hash: a form sent again folds only when it says the same."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from typing import Any

from .files import CHUNK, CheckedUpload

# What the visitor wrote, as stored: verdicts and other derived columns may differ
# between a double click's two POSTs and must not make them two submissions.
CONTENT_FIELDS = ("recipient_slug", "name", "email", "subject", "message")


def new_submission_key() -> str:
    """A fresh key, as issued with a form."""
    return secrets.token_urlsafe(24)


def content_hash(fields: Mapping[str, Any], upload: CheckedUpload | None) -> str:
    """sha256 (hex) of the visitor's fields and of the attached file's name and bytes."""
    digest = hashlib.sha256()
    written = {name: fields.get(name) for name in CONTENT_FIELDS}
    digest.update(json.dumps(written, sort_keys=True, ensure_ascii=False).encode())
    if upload is not None:
        digest.update(b"\0" + upload.filename.encode() + b"\0")
        upload.stream.seek(0)
        while chunk := upload.stream.read(CHUNK):
            digest.update(chunk)
        upload.stream.seek(0)
    return digest.hexdigest()
