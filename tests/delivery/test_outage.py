"""A server that refuses connections is probed once per interval, not hammered: the mails
of new submissions wait for the probe instead of each failing and recording its failure."""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import pairwise

import pytest
from flask import Flask
from sqlalchemy import select

from contact_site.delivery.backend import backend_of
from contact_site.delivery.models import DeliveryAttempt
from contact_site.extensions import db
from support.factories import queue_submissions
from support.outbox import each_sent_once, statuses
from support.waiting import wait_until

PROBE_SECONDS = 2  # DELIVERY_RETRY_BASE_SECONDS: the first retry, and the probe interval
# Long enough that the ten later submissions are all queued, on a busy machine too, before
# the first probe.
LONG_PROBE_SECONDS = 6


def outcomes_by_mail(app: Flask) -> dict[int, list[str]]:
    """Each mail's attempt outcomes, oldest first."""
    with app.app_context():
        found: dict[int, list[str]] = defaultdict(list)
        for attempt in db.session.scalars(select(DeliveryAttempt).order_by(DeliveryAttempt.id)):
            found[attempt.mail_id].append(attempt.outcome)
        return found


@pytest.mark.settings(DELIVERY_CONCURRENCY=4, DELIVERY_POLL_SECONDS=60,
                      DELIVERY_RETRY_BASE_SECONDS=LONG_PROBE_SECONDS)
@pytest.mark.timeout(60)
def test_new_mails_wait_for_the_probe_while_the_server_refuses_connections(app, smtp_server):
    """The first submission's mails find the server down (one refused attempt each); the
    next ten submissions' mails, each with its wake-up, wait untried; the server back, the
    probe finds it and every mail goes, the new ones at their first attempt."""
    smtp_server.mode = "down"
    first = queue_submissions(app, count=1)
    with app.app_context():
        backend_of(app).wake()
    wait_until(lambda: all(outcomes_by_mail(app).get(mail) for mail in first), 10,
               "the first mails' refused attempts")
    assert all(outcomes_by_mail(app)[mail] == ["transient"] for mail in first), \
        outcomes_by_mail(app)

    later: list[int] = []
    for _ in range(10):
        later += queue_submissions(app, count=1)
        with app.app_context():
            backend_of(app).wake()
        time.sleep(0.05)
    time.sleep(0.5)
    attempted = outcomes_by_mail(app)
    assert not any(attempted.get(mail) for mail in later), attempted
    assert statuses(app)["queued"] == len(first) + len(later)

    smtp_server.start()  # back before the probe
    wait_until(lambda: statuses(app)["sent"] == len(first) + len(later),
               4 * LONG_PROBE_SECONDS, "every mail sent after the probe")
    attempted = outcomes_by_mail(app)
    assert all(attempted[mail] == ["sent"] for mail in later), attempted
    assert all(attempted[mail] == ["transient", "sent"] for mail in first), attempted
    assert each_sent_once(app, smtp_server)


@pytest.mark.settings(DELIVERY_CONCURRENCY=4, DELIVERY_POLL_SECONDS=60,
                      DELIVERY_RETRY_BASE_SECONDS=PROBE_SECONDS)
@pytest.mark.timeout(60)
def test_while_the_server_stays_down_it_is_tried_once_per_interval(app, smtp_server):
    """A submission every 0.2 s for three intervals, each with its wake-up, and four
    delivery loops: the refused attempts come one connection at a time, an interval apart."""
    smtp_server.mode = "down"
    tried_at: list[float] = []  # when the count of refused attempts grew
    seen = 0
    deadline = time.monotonic() + 3.5 * PROBE_SECONDS
    while time.monotonic() < deadline:
        queue_submissions(app, count=1)
        with app.app_context():
            backend_of(app).wake()
        for _ in range(4):
            time.sleep(0.05)
            count = sum(len(outcomes) for outcomes in outcomes_by_mail(app).values())
            if count > seen:
                tried_at.append(time.monotonic())
                seen = count
    assert seen == len(tried_at)  # one mail per connection, each probe counted on its own
    assert 3 <= len(tried_at) <= 4, tried_at
    gaps = [later - earlier for earlier, later in pairwise(tried_at)]
    assert all(gap >= PROBE_SECONDS - 0.3 for gap in gaps), gaps
    assert statuses(app)["sent"] == 0
