"""Every submission's verdict: ham, suspect or spam, with the reasons found (docs/spam-verdicts.md).

`judge` runs every rule and keeps every reason; the worst kind wins. Reasons
are short codes shown to the owner; the only free text in them is the owner's
own blocklist entry.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flask import current_app

from ..forms import Form
from . import altcha, content, timetrap
from .clock import naive_utc

HONEYPOT_FIELD = "website"
# The types of field the visitor writes words in: the blocklist looks in all of them (a
# domain entry also finds an address or a web address at that domain).
WRITTEN_TYPES = {"text", "textarea", "email", "tel", "url"}
REASON_SEPARATOR = "\n"  # blocklist entries are one a line, so none holds one


class VerdictKind(enum.StrEnum):
    """What a submission is taken for; the value is what the database stores."""

    HAM = "ham"
    SUSPECT = "suspect"
    SPAM = "spam"


# Each reason code and the kind it makes a submission; `blocklist:<entry>` is spam.
REASONS: dict[str, VerdictKind] = {
    "honeypot": VerdictKind.SPAM,
    "too_fast": VerdictKind.SPAM,
    "time_tampered": VerdictKind.SPAM,
    "no_form_time": VerdictKind.SUSPECT,
    "no_proof": VerdictKind.SUSPECT,
    "proof_expired": VerdictKind.SUSPECT,
    "proof_replayed": VerdictKind.SUSPECT,
    "proof_forged": VerdictKind.SPAM,
    "too_many_links": VerdictKind.SUSPECT,
    "duplicate": VerdictKind.SPAM,
    # A plain form on another site: nothing there proves a person (no script ran).
    "embedded_no_proof": VerdictKind.SUSPECT,
    # A plain form whose browser would not say which site it was on.
    "no_origin": VerdictKind.SUSPECT,
}
BLOCKLIST_PREFIX = "blocklist:"
RANK = {VerdictKind.HAM: 0, VerdictKind.SUSPECT: 1, VerdictKind.SPAM: 2}


@dataclass(frozen=True)
class Verdict:
    """The kind of a submission and why; `reasons` is empty for ham."""

    kind: VerdictKind
    reasons: tuple[str, ...] = ()
    # Rows the judging wants committed with the submission (the message's fingerprint).
    remember: tuple[Any, ...] = field(default=(), compare=False)

    @classmethod
    def of(cls, reasons: tuple[str, ...]) -> Verdict:
        """The verdict the reasons add up to: the worst kind among them."""
        kinds = [kind_of(reason) for reason in reasons]
        return cls(max(kinds, key=RANK.__getitem__, default=VerdictKind.HAM), reasons)

    def reasons_text(self) -> str:
        """The reasons as stored in `submission.verdict_reasons`."""
        return REASON_SEPARATOR.join(self.reasons)


def kind_of(reason: str) -> VerdictKind:
    """The kind one reason code makes a submission."""
    if reason.startswith(BLOCKLIST_PREFIX):
        return VerdictKind.SPAM
    return REASONS[reason]


def reasons_from_text(text: str | None) -> tuple[str, ...]:
    """The reasons stored by `Verdict.reasons_text`."""
    return tuple(reason for reason in (text or "").split(REASON_SEPARATOR) if reason)


def written_fields(form: Form | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The fields the blocklist reads, and the free text (every textarea, else every written
    field) that links are counted in and the duplicate rule compares."""
    if form is None:
        return (), ()
    written = tuple(f.name for f in form.fields if f.type in WRITTEN_TYPES)
    free = tuple(f.name for f in form.fields if f.type == "textarea")
    return written, free or written


def judge(form_values: Mapping[str, str], remote_addr: str | None, now: datetime,
          form: Form | None, also: tuple[str, ...] = ()) -> Verdict:
    """Run every rule on a posted form and return the verdict with all its reasons.

    Writes: the proof's challenge is marked used (committed at once); the
    message's fingerprint comes back in `remember`, to be added and committed with
    the submission. Call it once per new submission, before anything else writes
    in the request's session. Raises SQLAlchemyError when the database is down.
    """
    moment = naive_utc(now)
    config = current_app.config
    reasons: list[str | None] = list(also)
    if form_values.get(HONEYPOT_FIELD):
        reasons.append("honeypot")
    reasons.append(timetrap.check_form_time(form_values.get(timetrap.FIELD), moment))
    if config["CONTACT_PROOF_OF_WORK"] == "altcha":
        reasons.append(altcha.check_proof(form_values.get(altcha.FIELD), moment))
    written, free = written_fields(form)
    message = "\n".join(form_values.get(name) or "" for name in free)
    if content.link_count(message) > config["CONTACT_MAX_LINKS"]:
        reasons.append("too_many_links")
    entry = content.blocklist_match(form_values.get(name) or "" for name in written)
    if entry is not None:
        reasons.append(BLOCKLIST_PREFIX + entry)
    duplicate, remembered = content.is_duplicate(message, remote_addr, moment)
    if duplicate:
        reasons.append("duplicate")
    verdict = Verdict.of(tuple(reason for reason in reasons if reason))
    return replace(verdict, remember=(remembered,)) if remembered is not None else verdict
