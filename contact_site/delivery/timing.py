"""Every fixed duration of delivery, each with the reason for its value.

The durations an operator may tune are settings instead (DELIVERY_POLL_SECONDS,
DELIVERY_CLAIM_SECONDS, DELIVERY_RETRY_BASE_SECONDS, DELIVERY_RETRY_MAX_SECONDS,
DELIVERY_GIVE_UP_HOURS, MAIL_TIMEOUT: see README). The modules import these by
name; docs/mail-lifecycle.md tells the life of a mail they time.
"""

from __future__ import annotations

# --- The loops (worker.py) ---

# A loop woken a hair before a retry is due would find nothing and spin: it waits this much more.
WAKE_MARGIN_SECONDS = 0.05
# A loop woken for new mails waits this long first, so that the mails of a busy form's
# next submissions go out in the same claim (a claim and its commits cost as much as a
# few mails); nobody notices a mail half a second later. Measured at concurrency 8 with
# delivery in the web workers: 0.1 s cost 18.6 ms of CPU per submission, 0.5 s 16.0 ms
# (POSTs/s +19 %, p50 at concurrency 1 from 11 to 7.5 ms); 1 s gained nothing more.
GATHER_SECONDS = 0.5
# A loop keeps its connection this long after its last mail: a form posted to every few
# seconds would otherwise pay a connection (TLS handshake, login) per submission.
LINK_IDLE_SECONDS = 10.0

# --- The pool (pool.py) ---

# A 421 halves the loops allowed to send for this long: the provider's "too many
# connections" lasts about a minute, and a shorter pause would only earn another 421.
THROTTLE_SECONDS = 60.0
# A claim is sized to keep its loop busy for about this long: a fast server gets whole
# batches (one claim for many mails), a slow one small claims, so that the loops of
# every process of the deployment share a burst instead of the first loop taking it all.
# A webhook pass is sized alike, and ends after this long, giving back what is left.
BATCH_SECONDS = 5.0

# --- The mails in hand (lease.py) ---

# Finished attempts wait in memory about this long at most, then are written together
# (group commit): what a worker's death may send twice, and one commit for many mails
# (or webhook deliveries, webhook_delivery.py).
FLUSH_SECONDS = 0.25
# How often the heartbeat looks at the running batches: well under FLUSH_SECONDS and
# UNMARK_AFTER_SECONDS, so that neither is overshot by much, yet cheap when idle.
TICK_SECONDS = 0.2
# The claims are renewed when this share of DELIVERY_CLAIM_SECONDS has passed since the
# last renewal, and a send is cut when less than it is left: two renewals may fail
# before a send is at risk, and a send never outlives its claim.
RENEW_FRACTION = 1 / 3
# A send taking longer than this is no longer one of a chunk sent in a flash: the mails
# marked in hand behind it are unmarked until their turn comes.
UNMARK_AFTER_SECONDS = 1.0
# A stopping worker lets the mail in hand finish for this long, then abandons it:
# well inside gunicorn's graceful_timeout and systemd's stop timeout.
STOP_GRACE_SECONDS = 10.0
# The per-socket MAIL_TIMEOUT catches a silent server; this catches one that keeps
# trickling bytes. Generous: a 100 MiB attachment on a slow uplink is legitimate.
MAX_SECONDS_PER_MAIL = 2 * 3600.0
# How long a backend's stop() waits for its loops unless told otherwise: the grace
# above, then time to write the last outcomes and give the rest back.
STOP_WAIT_SECONDS = 30.0

# --- The outbox (outbox.py) ---

# A thank-you mail is given up after a day even when DELIVERY_GIVE_UP_HOURS is longer:
# thanks that arrive days after the message are worse than none.
THANK_YOU_GIVE_UP_HOURS = 24
# Each retry delay is shortened by a random share of up to this much, so that the mails
# of one outage are not all retried in the same second.
RETRY_JITTER = 0.25

# --- Celery (celery.py) ---

# Redis re-delivers an unacknowledged task after this long (docs/stack-pitfalls.md): no
# task may run anywhere near it, or it would run twice.
VISIBILITY_TIMEOUT_SECONDS = 3600
# One task delivers for at most this long, then queues a fresh one: far below the
# visibility timeout, and short enough that a warm shutdown is not kept waiting.
TASK_BUDGET_SECONDS = 60
# kombu's Redis transport has no socket timeouts by default (docs/stack-pitfalls.md): a
# broker that accepts and never answers would hold the visitor's POST for ever. One
# attempt of at most about this long (measured: 1.0-1.1 s), and the mails wait for the sweep.
BROKER_TIMEOUT_SECONDS = 1.0
