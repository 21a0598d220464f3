"""Wake-ups go to one idle loop each; a loop that finds more than its share wakes another."""

from __future__ import annotations

import threading
import time

import pytest

from contact_site.delivery.backend import backend_of
from contact_site.delivery.pool import Wake
from support.factories import queue_submissions
from support.outbox import each_sent_once, statuses


def waiters(wake: Wake, count: int,
            timeout: float) -> tuple[list[bool], list[threading.Thread]]:
    """`count` threads waiting on `wake` for up to `timeout`, and where each puts what it got."""
    results: list[bool] = []
    lock = threading.Lock()

    def wait() -> None:
        woken = wake.wait(timeout)
        with lock:
            results.append(woken)

    threads = [threading.Thread(target=wait) for _ in range(count)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all of them waiting
    return results, threads


def test_one_wake_up_wakes_one_loop():
    wake = Wake()
    results, threads = waiters(wake, 3, 1.0)
    wake.set()
    for thread in threads:
        thread.join(5)
    assert sorted(results) == [False, False, True]


def test_a_wake_up_given_while_every_loop_is_busy_waits_for_the_next_one():
    wake = Wake()
    wake.set()
    assert wake.wait(0) is True
    assert wake.wait(0) is False


def test_stopping_wakes_every_loop_for_good():
    wake = Wake()
    results, threads = waiters(wake, 3, 5.0)
    wake.set_all()
    for thread in threads:
        thread.join(5)
    assert results == [True, True, True]
    assert wake.wait(0) is True


@pytest.mark.settings(DELIVERY_CONCURRENCY=4, DELIVERY_POLL_SECONDS=60)
@pytest.mark.timeout(40)
def test_one_wake_up_for_a_burst_brings_in_several_loops(app, smtp_server):
    """Idle loops, 8 mails queued, one wake-up (as the web process gives): the loop woken
    passes it on, so a slow server still gets several connections at once."""
    time.sleep(0.5)  # every loop has found nothing and sleeps for a minute
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    queue_submissions(app, count=8)
    with app.app_context():
        backend_of(app).wake()
    deadline = time.monotonic() + 20
    while statuses(app)["sent"] < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert statuses(app)["sent"] == 8
    assert smtp_server.peak_concurrent_data >= 3
    assert each_sent_once(app, smtp_server)
