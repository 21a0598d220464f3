"""Delivery: the outbox, composing the mails, SMTP, webhooks, and the workers that send them.

The life of a mail, and the module that owns each step (docs/mail-lifecycle.md tells
why each step is as it is). Every mail is one `outbox` row; the database is the
truth in every backend, a thread or a task only says "look at the outbox now".

                                                               owned by
  submission stored ─► queued  (in the same commit)            outbox.enqueue_submission
                         │ due, or its claim lapsed            (loops woken: backend.py)
                         ▼
                      claimed: "sending" under a lease         outbox.claim_due_mails
                         │ (claim_token, claimed_until)        lease.LeaseKeeper renews it
                         │ lapsed while in hand: a takeover    (failed after 3: outbox)
                         ▼
                      in hand: send_started_at                 lease.claim_batch, next_mail
                         │ committed before its data goes
                         ├─ removed, claim lost ──► not sent   LeaseKeeper.still_held
                         ▼
                      on the wire                              compose.py: what it says
                         │                                     mime.py: its bytes; smtp.py
                         ├─ 250 ──────────────────► sent       worker._send_one; each
                         ├─ 5xx, past give-up ────► failed     outcome by group commit:
                         └─ 4xx, timeout, dropped ► queued     LeaseKeeper.record →
                              (a retry, with backoff)          outbox.settle

  failed ─► queued: `outbox retry`, console's "try again"      outbox.requeue
  stopping: unsent claims given back at once, the mail         lease.LeaseKeeper
    in hand finished, or abandoned after STOP_GRACE_SECONDS
  configuration error (TLS, login): the batch queued           health.py
    again, no attempt counted, the whole queue held
  removed during delivery (erasure, deletion, retention):      records/privacy.py
    a marked mail is reported as possibly sent

A mail in hand is lease.py's from its mark to its end: how it is marked, checked
just before MAIL FROM and cleared, and who reads the mark, is told there.

The rest:
  worker.py   the loops: claim a share, deliver a batch over one connection, sleep
              until due or woken; DeliveryThread is the in-process backend
  context.py  LoopContext: what a loop hands down to each batch (app, stop, wake-ups,
              pool, kept connection, how to connect)
  pool.py     one process's loops: how many may send (421), the rate cap, claim sizes
  timing.py   every fixed duration, with its reason
  celery.py   the Celery backend: a task per wake-up and a sweep; cli.py the commands
  webhook_delivery.py  webhook rows (kind "webhook"): claimed apart from mails at the end of
              each claim_and_deliver, posted one by one, settled by the same outbox.settle
  models.py   the tables: outbox, delivery_attempt, smtp_health
  headers.py  address and subject headers written exactly as composed

Nothing here imports the web side (`contact`, `admin`).
"""

from __future__ import annotations

from flask import Flask

from . import backend, cli


def init_app(app: Flask) -> None:
    """Choose the backend and register the `outbox` commands."""
    backend.init_app(app)
    cli.init_app(app)
