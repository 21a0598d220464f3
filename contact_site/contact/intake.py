"""What happens to a valid form: judged, stored with its files and mails, in one place.

The view validates and hands over (`take`); this module judges the submission,
bounds the transaction's lock waits, checks the upload quota and stores the
submission with its outgoing mails in one commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from flask import request
from sqlalchemy import text

from .. import ratelimit
from ..database import SQLITE_BUSY_TIMEOUT_MS, utcnow
from ..delivery import outbox
from ..extensions import db
from ..forms import form_of
from ..spam import Verdict, VerdictKind, judge
from ..submissions.models import Submission
from ..submissions.store import NewSubmission, store_submission
from . import uploads

# The honeypot's catch is not judged further: its values were not even validated.
HONEYPOT = Verdict(VerdictKind.SPAM, ("honeypot",))


def take(data: NewSubmission, posted: Mapping[str, str], verdict: Verdict | None = None,
         also: tuple[str, ...] = ()) -> Submission:
    """Judge (unless already judged) and store in one transaction whose lock waits are bounded.

    Judging writes (the proof is marked used), so it comes first, before this
    request's session takes a lock, and a database that cannot take those writes is
    answered like one that cannot take the submission.
    """
    failed = ratelimit.storage_error()
    if failed is not None:  # it failed moments ago in this request: do not wait on it again
        raise failed
    if verdict is None:  # `also`: what the way it came adds (a form on another site)
        verdict = judge(posted, request.remote_addr, utcnow(), form_of(data.fields["form_slug"]),
                        also)
    if db.engine.dialect.name == "postgresql":
        # PostgreSQL waits for a lock for ever by default; SQLite has its busy timeout.
        db.session.execute(text(f"SET LOCAL lock_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
    judged = replace(data, verdict=str(verdict.kind), verdict_reasons=verdict.reasons_text())
    if judged.uploads and not judged.held:  # a held file is never stored
        uploads.ensure_room(sum(upload.size for _field, upload in judged.uploads))
    return store_submission(judged, outbox.enqueue_submission, with_rows=verdict.remember)
