"""Webhook deliveries: claimed from the outbox like mails, posted one by one, settled alike.

A webhook row is claimed with a lease (outbox.claim_due_mails over WEBHOOKS), its
body built from the stored submission, signed afresh at each attempt (receivers
refuse old timestamps) under the same webhook-id, posted by contact_site.webhooks
(SSRF guard, timeouts, no redirects; one kept-alive connection per route for the
pass, contact_site/webhooks/keepalive.py) and settled by outbox.settle: sent, queued
again with backoff (never sooner than Retry-After), or failed, and then the form's
delivery.failed webhooks hear of it. A mail's trouble never holds a webhook up:
the SMTP loops never claim these rows and an SMTP configuration error holds mails only.
Nor does a webhook's trouble hold a mail up: a delivery pool posts its webhooks from a
loop of their own (WebhookLoop), so a receiver that takes seconds to answer keeps no
mail loop waiting.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime

from flask import Flask, current_app
from sqlalchemy import select

from ..database import utcnow
from ..extensions import db
from ..forms import Webhook, declaration_of
from ..forms.secrets import SecretError, needs_secret, secret_of
from ..webhooks.keepalive import KeptClients
from ..webhooks.payload import DELIVERY_FAILED, WebhookBody, created_body, failed_body
from ..webhooks.sender import PostOutcome, post_webhook
from ..webhooks.signing import signature_headers
from . import outbox
from .models import OutboxMail, Status
from .pool import Wake
from .timing import WAKE_MARGIN_SECONDS

log = logging.getLogger("contact_site.delivery")
# Each post may take up to the sender's deadline (30 s): this many stay well inside a lease.
WEBHOOK_BATCH = 10
NOT_DECLARED = "this webhook is no longer in the forms file"
STATUSES = {PostOutcome.SENT: Status.SENT, PostOutcome.TRANSIENT: Status.QUEUED,
            PostOutcome.FAILED: Status.FAILED, PostOutcome.REFUSED: Status.FAILED}


def deliver_due_webhooks(stop: threading.Event | None = None,
                         limit: int = WEBHOOK_BATCH) -> int:
    """Claim due webhook deliveries and post them; how many were claimed. An idle call costs
    a read, never the write lock. Once `stop` is set, or should a post go wrong, the rows
    not yet posted are given back at once rather than left to their lease."""
    if not outbox.due_count(1, outbox.WEBHOOKS):
        # End the read: a loop that sleeps next must not hold a snapshot (and PostgreSQL's
        # locks on the outbox) meanwhile.
        db.session.commit()
        return 0
    rows = outbox.claim_due_mails(limit, which=outbox.WEBHOOKS)
    left = list(rows)
    try:
        with KeptClients() as clients:  # closed with the pass: no connection outlives it
            while left and not (stop is not None and stop.is_set()):
                row = left.pop(0)
                # Posted one by one: a row removed (erasure, deletion) or taken over while
                # the ones before it were posted is not posted.
                if still_held(row):
                    outbox.settle([attempt_at(row, clients)])
    finally:
        outbox.release_all(left)
    return len(rows)


class WebhookLoop:
    """A delivery pool's webhooks, posted from a thread of their own until `stop`.

    Woken when a submission is stored (it may have queued webhooks); otherwise it
    sleeps until the next delivery is due, at most DELIVERY_POLL_SECONDS. `idle` is
    set while its last pass found nothing to post.
    """

    def __init__(self, app: Flask, stop: threading.Event) -> None:
        self.app, self.stop = app, stop
        self.wake = Wake()
        self.idle = threading.Event()

    def thread(self) -> threading.Thread:
        """A daemon thread running the loop (not started)."""
        return threading.Thread(target=self.run, name="contact-webhooks", daemon=True)

    def run(self) -> None:
        """Post due webhooks pass after pass, sleeping between passes that find none."""
        poll = float(self.app.config["DELIVERY_POLL_SECONDS"])
        while not self.stop.is_set():
            try:
                with self.app.app_context():
                    posted = deliver_due_webhooks(self.stop)
                    sleep = 0.0 if posted else self._idle_seconds(poll)
            except Exception:  # the loop must outlive a database hiccup; it is logged
                log.exception("webhook loop error; retrying in %ss", poll)
                posted, sleep = 0, poll
            if posted:
                self.idle.clear()
            else:
                self.idle.set()
                self.wake.wait(sleep)

    def _idle_seconds(self, poll: float) -> float:
        """Until the next delivery is due or a claim on one lapses, at most `poll`."""
        until = outbox.seconds_until_due(outbox.WEBHOOKS)
        return poll if until is None else min(poll, until + WAKE_MARGIN_SECONDS)

    def close(self) -> None:
        """Wake the loop for good (after `stop` is set), so it sees the stop at once."""
        self.wake.set_all()


def still_held(row: OutboxMail) -> bool:
    """Whether this worker's claim on the row still stands, checked just before its POST."""
    held = db.session.scalar(select(OutboxMail.id).where(
        OutboxMail.id == row.id, OutboxMail.claim_token == row.claim_token,
        OutboxMail.status == Status.SENDING))
    db.session.commit()  # end the read: no snapshot is kept open across the POST
    return held is not None


def declared_hook(row: OutboxMail) -> Webhook | None:
    """The form's webhook this row posts to, found by its URL; None if the file dropped it."""
    form = declaration_of().form(row.owning_submission().form_slug)
    return next((hook for hook in (form.webhooks if form else ()) if hook.url == row.target),
                None)


def body_of(row: OutboxMail, hook: Webhook) -> WebhookBody:
    """The request's body and headers for this row's event, in the webhook's format."""
    if row.event == DELIVERY_FAILED:
        data = row.payload or {}
        at = datetime.fromisoformat(str(data.get("at", "")).rstrip("Z") or utcnow().isoformat())
        return failed_body(hook.format, row.owning_submission(), str(data.get("kind", "")),
                           str(data.get("reason", "")), at)
    return created_body(hook.format, row.owning_submission())


def attempt_at(row: OutboxMail, clients: KeptClients | None = None) -> outbox.Attempt:
    """One POST of this row's webhook, as an outbox attempt (never raises for the network);
    over the pass's kept connections when given."""
    started = utcnow()
    hook = declared_hook(row)
    if hook is None or row.target is None:
        return outbox.Attempt(row, Status.FAILED, NOT_DECLARED, 0.0)
    body = body_of(row, hook)
    headers = dict(body.headers)
    try:
        if needs_secret(hook):
            headers.update(signature_headers(secret_of(hook, os.environ), row.message_id,
                                             body.content))
    except SecretError as error:
        return outbox.Attempt(row, Status.FAILED, str(error), 0.0)
    result = post_webhook(row.target, body.content, headers,
                          allow_private=bool(current_app.config["WEBHOOK_ALLOW_PRIVATE"]),
                          clients=clients)
    seconds = (utcnow() - started).total_seconds()
    reply = f"{result.status or '-'} {result.answer}".strip()
    return outbox.Attempt(row, STATUSES[result.outcome], reply, seconds,
                          retry_after=result.retry_after)
