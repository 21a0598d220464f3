"""A Celery broker that accepts and never answers: the POST is answered in time, nothing is lost."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from support.forms import form_tokens, post_form
from support.outbox import statuses
from support.processes import BROKER_URL, CELERY, PROJECT_ROOT, stop_process, worker_env
from support.waiting import wait_until

ANSWER_WITHIN_SECONDS = 2


class SilentBroker:
    """A TCP listener on a free loopback port that accepts connections and never says a word."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)  # accept() is not woken by close() from another thread
        self._closed = threading.Event()
        self.port = self._listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-broker", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:  # closed
                return
            self.accepted.append(connection)

    def close(self) -> None:
        """Stop listening and drop every connection held."""
        self._closed.set()
        self._thread.join(5)
        self._listener.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def silent_broker() -> Iterator[SilentBroker]:
    broker = SilentBroker()
    try:
        yield broker
    finally:
        broker.close()


def celery_site(make_app, broker: SilentBroker):
    """The web side with the Celery backend, its broker silent (its port is known only now)."""
    return make_app(DELIVERY_BACKEND="celery", CELERY_BROKER_URL=broker.url)


@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_a_silent_broker_never_holds_the_post(make_app, silent_broker, caplog, json):
    app = celery_site(make_app, silent_broker)
    client = app.test_client()
    tokens = form_tokens(client)
    start = time.monotonic()
    response = post_form(client, json=json, tokens=tokens)
    seconds = time.monotonic() - start
    assert response.status_code == (202 if json else 303)
    assert seconds < ANSWER_WITHIN_SECONDS
    assert statuses(app)["queued"] == 2  # waiting in the database for the sweep
    wait_until(lambda: "could not queue deliver_due" in caplog.text, 10,
               "the wake-up, off the request path, to give up on the broker")
    assert silent_broker.accepted, "the broker was never asked"


@pytest.mark.timeout(120)
def test_mails_left_by_a_silent_broker_are_delivered_once_a_worker_runs(
        make_app, silent_broker, redis_broker, smtp_server, tmp_path):
    """The good broker and a worker come back: the sweep finds the mails; each arrives once."""
    app = celery_site(make_app, silent_broker)
    for _ in range(2):
        assert post_form(app.test_client()).status_code == 303
    assert statuses(app)["queued"] == 4
    log = tmp_path / "celery.log"
    env = worker_env(app, DELIVERY_BACKEND="celery", CELERY_BROKER_URL=BROKER_URL)
    with log.open("ab") as out:
        worker = subprocess.Popen(
            [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        smtp_server.wait_for(4, timeout=60)
        wait_until(lambda: statuses(app)["sent"] == 4, 15, "every mail recorded as sent")
    finally:
        assert stop_process(worker, timeout=20) is not None
    ids = [mail.message["Message-ID"] for mail in smtp_server.messages]
    assert len(ids) == len(set(ids)) == 4
