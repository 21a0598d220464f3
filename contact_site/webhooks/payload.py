"""What a webhook sends: the body of each event, in each format.

`standard` is the JSON event of the Standard Webhooks format: the submission's declared
values and its files' metadata (with their virus scan, when scanning is on), never their
contents. `slack` and `ntfy` are short notices for people (chat.py). Each body is built
from the stored submission as it is when called: a file deleted meanwhile is listed
without its hash, and a file's scan is the one stored at that attempt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from flask import current_app

from ..submissions.answers import answers_of
from ..submissions.models import Submission, SubmissionFile
from . import chat

Format = Literal["standard", "slack", "ntfy"]
SUBMISSION_CREATED = "submission.created"
DELIVERY_FAILED = "delivery.failed"
CHUNK = 64 * 1024
JSON = "application/json"


@dataclass(frozen=True)
class WebhookBody:
    """The bytes to POST, with the headers that go with them (Content-Type, ntfy's Title)."""

    content: bytes
    headers: dict[str, str] = field(default_factory=dict)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, to the second; a naive time is taken as UTC (as stored)."""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.isoformat(timespec="seconds").replace("+00:00", "Z")


def file_sha256(stored: SubmissionFile) -> str | None:
    """SHA-256 of a stored file, read in chunks; None once it is deleted or outside the uploads.

    Computed at each delivery; a column of SubmissionFile may hold it from upload later.
    """
    if not stored.path:
        return None
    root = Path(current_app.config["UPLOAD_FOLDER"]).resolve()
    path = (root / stored.path).resolve()
    if root not in path.parents:
        return None
    digest = hashlib.sha256()
    try:
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                digest.update(chunk)
    except OSError:  # deleted meanwhile (retention, erasure): known by name only
        return None
    return digest.hexdigest()


def file_entry(stored: SubmissionFile) -> dict[str, Any]:
    """One file's metadata as the standard event lists it; with its virus scan as it stands
    at this attempt (state, and the signature or the reason) when it was stored with
    scanning on. Never its contents."""
    entry: dict[str, Any] = {"field": stored.field, "name": stored.name,
                             "content_type": stored.content_type, "size": stored.size,
                             "sha256": file_sha256(stored)}
    if stored.scan_state is not None:
        entry["scan"] = {"state": stored.scan_state, "detail": stored.scan_detail}
    return entry


def submission_created(submission: Submission) -> dict[str, Any]:
    """The `submission.created` event: the declared values in form order, the files' metadata."""
    return {"type": SUBMISSION_CREATED, "timestamp": iso_utc(submission.created_at), "data": {
        "id": submission.id, "form": submission.form_slug,
        "created_at": iso_utc(submission.created_at), "verdict": submission.verdict,
        "language": submission.language,
        "fields": {answer.name: answer.value for answer in answers_of(submission)},
        "files": [file_entry(stored) for stored in submission.files],
    }}


def delivery_failed(submission_id: str, kind: str, reason: str, at: datetime) -> dict[str, Any]:
    """The `delivery.failed` event: which delivery of which submission failed for good, why."""
    return {"type": DELIVERY_FAILED, "timestamp": iso_utc(at),
            "data": {"submission": submission_id, "kind": kind, "reason": reason}}


def json_body(value: dict[str, Any]) -> WebhookBody:
    """`value` as compact UTF-8 JSON."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return WebhookBody(text.encode(), {"Content-Type": JSON})


def notice_body(format: Literal["slack", "ntfy"], notice: chat.Notice) -> WebhookBody:
    """A notice as Slack's incoming-webhook JSON, or as ntfy's plain text and headers."""
    if format == "slack":
        return json_body({"text": chat.slack_text(notice)})
    return WebhookBody(chat.ntfy_text(notice).encode(), chat.ntfy_headers(notice))


def created_body(format: Format, submission: Submission) -> WebhookBody:
    """What a webhook of this format sends when the submission is stored."""
    if format == "standard":
        return json_body(submission_created(submission))
    return notice_body(format, chat.created_notice(submission))


def failed_body(format: Format, submission: Submission, kind: str, reason: str,
                at: datetime) -> WebhookBody:
    """What a webhook of this format sends when a delivery of the submission failed for good."""
    if format == "standard":
        return json_body(delivery_failed(submission.id, kind, reason, at))
    return notice_body(format, chat.failed_notice(submission, kind, reason))
