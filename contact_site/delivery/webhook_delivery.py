"""Webhook deliveries: claimed from the outbox like mails, posted one by one, settled alike.

A webhook row is claimed with a lease (outbox.claim_due_mails over WEBHOOKS), its
body built from the stored submission, signed afresh at each attempt (receivers
refuse old timestamps) under the same webhook-id, posted by contact_site.webhooks
(SSRF guard, timeouts, no redirects; one kept-alive connection per route for the
pass, contact_site/webhooks/keepalive.py) and settled by outbox.settle, a pass's
outcomes written together (WebhookPass): sent, queued again with backoff (never
sooner than Retry-After), or failed, and then the form's
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
import time
from datetime import datetime

from flask import Flask, current_app

from ..database import utcnow
from ..extensions import db
from ..forms import Webhook, declaration_of
from ..forms.secrets import SecretError, needs_secret, secret_of
from ..webhooks.keepalive import KeptClients
from ..webhooks.payload import DELIVERY_FAILED, WebhookBody, created_body, failed_body
from ..webhooks.sender import PostOutcome, post_webhook
from ..webhooks.signing import signature_headers
from . import outbox
from .lease import LastCheck
from .models import OutboxMail, Status
from .pool import Wake, fitting
from .timing import BATCH_SECONDS, FLUSH_SECONDS, WAKE_MARGIN_SECONDS

log = logging.getLogger("contact_site.delivery")
# A pass that knows nothing of the receiver's speed claims this many (each POST may take
# up to the sender's deadline, 30 s); later passes are sized by the rate measured.
WEBHOOK_BATCH = 10
# The most rows one pass claims, however fast the receiver: a claim and its commit cost
# about as much as a few deliveries, and more rows in one claim gain nothing measurable.
MAX_WEBHOOK_BATCH = 100
NOT_DECLARED = "this webhook is no longer in the forms file"
STATUSES = {PostOutcome.SENT: Status.SENT, PostOutcome.TRANSIENT: Status.QUEUED,
            PostOutcome.FAILED: Status.FAILED, PostOutcome.REFUSED: Status.FAILED}


def deliver_due_webhooks(stop: threading.Event | None = None,
                         limit: int = WEBHOOK_BATCH) -> int:
    """Claim due webhook deliveries (up to `limit`) and post them; how many were claimed. An
    idle call costs a read, never the write lock."""
    if not outbox.due_count(1, outbox.WEBHOOKS):
        # End the read: a loop that sleeps next must not hold a snapshot (and PostgreSQL's
        # locks on the outbox) meanwhile.
        db.session.commit()
        return 0
    rows = outbox.claim_due_mails(limit, which=outbox.WEBHOOKS)
    with WebhookPass(rows, stop) as batch:
        while (row := batch.next_row()) is not None:
            batch.finished(attempt_at(row, batch.clients))
    return len(rows)


class WebhookPass:
    """The claimed rows of one pass, posted one by one; their outcomes written together.

    Just before its POST, each row is checked (LastCheck, one primary-key read): a row
    removed (erasure, deletion) or taken over while the ones before it were posted is
    not posted. Outcomes wait in memory FLUSH_SECONDS at most: before a POST, once
    that long has passed since the last write, one commit writes them and renews the
    claims on the rows left. So a fast receiver costs a commit per FLUSH_SECONDS, not
    one per delivery; a worker's death may post again what it had not written, which
    at least once allows. The pass ends after BATCH_SECONDS, or once `stop` is set,
    and gives back what it did not post, so a receiver gone slow holds few rows other
    workers could post.
    """

    def __init__(self, rows: list[OutboxMail], stop: threading.Event | None = None) -> None:
        self.left, self.stop = list(rows), stop
        self.done: list[outbox.Attempt] = []
        self.clients = KeptClients()  # closed with the pass: no connection outlives it
        self._check = LastCheck()
        self._started = self._written = time.monotonic()  # the claim just held them all

    def next_row(self) -> OutboxMail | None:
        """The next row still held, after writing what is due; None when the pass ends."""
        if self.done and time.monotonic() - self._written >= FLUSH_SECONDS:
            self.write()
        while self.left and not self._over():
            row = self.left.pop(0)
            if self._check.still_held(row):
                return row
        return None

    def finished(self, attempt: outbox.Attempt) -> None:
        """Keep a finished attempt, to be written with the next ones."""
        self.done.append(attempt)

    def write(self) -> None:
        """Write the finished attempts and renew the claims left, in one commit; drop the
        rows no longer held."""
        attempts, self.done = self.done, []
        held = outbox.settle(attempts, renew=self.left)
        self.left = [row for row in self.left if row.id in held]
        self._written = time.monotonic()

    def _over(self) -> bool:
        return ((self.stop is not None and self.stop.is_set())
                or time.monotonic() - self._started > BATCH_SECONDS)

    def __enter__(self) -> WebhookPass:
        return self

    def __exit__(self, *exc: object) -> None:
        """Write what was posted, give back the rest at once rather than leave it to its
        lease, and close the connections."""
        try:
            self.clients.close()
            self._check.close()
            if self.done:
                attempts, self.done = self.done, []
                outbox.settle(attempts)
        finally:
            outbox.release_all(self.left)


def claim_size(claimed: int, seconds: float) -> int:
    """How many rows the next pass claims: about BATCH_SECONDS of posting at the rate of the
    last one (`claimed` rows in `seconds`), between 1 and MAX_WEBHOOK_BATCH."""
    if not claimed:
        return WEBHOOK_BATCH
    return fitting(BATCH_SECONDS, seconds / claimed, MAX_WEBHOOK_BATCH)


class WebhookLoop:
    """A delivery pool's webhooks, posted from a thread of their own until `stop`.

    Woken when a submission is stored (it may have queued webhooks); otherwise it
    sleeps until the next delivery is due, at most DELIVERY_POLL_SECONDS. Each pass
    claims as many rows as the last one's rate posts in about BATCH_SECONDS. `idle`
    is set while its last pass found nothing to post.
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
        limit = WEBHOOK_BATCH
        while not self.stop.is_set():
            try:
                with self.app.app_context():
                    started = time.monotonic()
                    posted = deliver_due_webhooks(self.stop, limit)
                    limit = claim_size(posted, time.monotonic() - started)
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
