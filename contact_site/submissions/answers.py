"""What a submission answered, field by field, with the labels it was sent with.

A submission stores its form's fields in order (`Submission.answers`, a JSON list):
each entry names the field, its type and its label as declared when it was sent, so
a later edit of the forms file changes no stored submission. The fields that have a
column of their own (COLUMN_FIELDS) keep their value there, once; every other value
is in its entry. Submissions stored before forms were declared have no list: they
read as the built-in form's fields (LEGACY).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import Submission

# Fields whose value is a column of the submission (searched, sorted, mailed from there).
COLUMN_FIELDS = {"recipient": "recipient_name", "name": "name", "email": "email",
                 "subject": "subject", "message": "message"}
# The built-in form's fields, as submissions stored before forms were declared read.
LEGACY: tuple[dict[str, Any], ...] = (
    {"name": "recipient", "type": "select", "label": "Who to write to"},
    {"name": "name", "type": "text", "label": "Your name"},
    {"name": "email", "type": "email", "label": "Your email address"},
    {"name": "subject", "type": "text", "label": "Subject"},
    {"name": "message", "type": "textarea", "label": "Message"},
    {"name": "attachment", "type": "file", "label": "Attachment"},
)


@dataclass(frozen=True)
class Answer:
    """One field of a stored submission: its name, type, label (as sent) and value.

    `value` is text for text types and `select` (the option's value), a bool for
    `checkbox` and `consent`, a number for `number`, and a list of file names for
    `file`. `details` holds what else was kept: a select option's label, or the
    consent's exact text, its language and SHA-256.
    """

    name: str
    type: str
    label: str | dict[str, str]
    value: Any
    details: Mapping[str, Any]


def answers_of(submission: Submission) -> list[Answer]:
    """The submission's fields in the order of its form, each with its value."""
    entries: Sequence[Mapping[str, Any]] = submission.answers or LEGACY
    files: dict[str, list[str]] = {}
    for stored in submission.files:
        files.setdefault(stored.field, []).append(stored.name)
    answers = []
    for entry in entries:
        name, kind = str(entry["name"]), str(entry["type"])
        if name in COLUMN_FIELDS:
            value: Any = getattr(submission, COLUMN_FIELDS[name])
        elif kind == "file":
            value = files.get(name, list(entry.get("value") or ()))
        else:
            value = entry.get("value")
        details = {k: v for k, v in entry.items() if k not in {"name", "type", "label", "value"}}
        answers.append(Answer(name, kind, entry["label"], value, details))
    return answers


def stored_entry(name: str, kind: str, label: str | dict[str, str], value: Any,
                 **details: Any) -> dict[str, Any]:
    """The JSON entry of one field; a column field's value is left to its column."""
    entry: dict[str, Any] = {"name": name, "type": kind, "label": label}
    if name not in COLUMN_FIELDS:
        entry["value"] = value
    entry.update(details)
    return entry
