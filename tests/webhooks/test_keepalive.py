"""Connections kept between the POSTs of a pass: one per route, the guard still asked at
every POST, and a connection in doubt never used again."""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

from contact_site.webhooks.keepalive import KeptClients
from contact_site.webhooks.sender import PostOutcome, PostResult, post_webhook
from support.tls_certs import LocalPKI
from support.waiting import wait_until
from support.webhook_receiver import WebhookReceiver

BODY = json.dumps({"type": "submission.created", "data": {"id": "abc"}}).encode()
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A plain-HTTP receiver on 127.0.0.1."""
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def clients() -> Iterator[KeptClients]:
    """The kept connections of one pass, closed at the end of the test."""
    with KeptClients() as kept:
        yield kept


def post(url: str, clients: KeptClients, **options: object) -> PostResult:
    """post_webhook over the pass's connections, private addresses allowed unless told."""
    return post_webhook(url, BODY, JSON, clients=clients,  # type: ignore[arg-type]
                        **{"allow_private": True, **options})


def answering(*answers: str) -> object:
    """A resolver giving each answer in turn, the last one from then on."""
    given: list[str] = []

    def resolve(host: str, port: int) -> Sequence[str]:
        given.append(answers[min(len(given), len(answers) - 1)])
        return [given[-1]]

    return resolve


def test_posts_to_one_receiver_share_one_connection_closed_with_the_pass(receiver):
    """Five POSTs, one connection; closing the pass closes it at the receiver."""
    with KeptClients() as clients:
        results = [post(receiver.url(), clients) for _ in range(5)]
        assert {result.outcome for result in results} == {PostOutcome.SENT}
        assert receiver.connections == 1
        assert {request.connection for request in receiver.requests} == {1}
    wait_until(lambda: receiver.open_connections == 0, 5, "the connection to be closed")


def test_another_port_or_name_gets_a_connection_of_its_own(receiver, clients):
    """A second receiver, or the same one under another name (Host, SNI), is another route."""
    with WebhookReceiver() as other:
        for _ in range(2):
            for url in (receiver.url(), other.url(), receiver.url(host="hooks.test")):
                assert post(url, clients, resolve=answering("127.0.0.1")).outcome == "sent"
        assert (receiver.connections, other.connections) == (2, 1)
        assert len(receiver.requests) == 4 and len(other.requests) == 2


def test_a_changed_address_is_not_sent_over_the_old_connection(receiver, clients):
    """The name now resolves to another address: the POST goes there, on a new connection."""
    with WebhookReceiver(host="127.0.0.2", port=receiver.port) as moved:
        resolve = answering("127.0.0.1", "127.0.0.2")
        first, second = (post(receiver.url(host="hooks.test"), clients, resolve=resolve)
                         for _ in range(2))
        assert (first.address, second.address) == ("127.0.0.1", "127.0.0.2")
        assert len(receiver.requests) == 1 and len(moved.requests) == 1


def test_the_guard_still_refuses_a_private_target_with_a_connection_open(tmp_path):
    """Over HTTPS, one TLS connection serves both POSTs; then, without
    WEBHOOK_ALLOW_PRIVATE, the name resolving to loopback is refused though a connection to
    that very address is open, and nothing more is sent."""
    pki = LocalPKI.create(tmp_path / "pki")
    trust = ssl.create_default_context(cafile=str(pki.ca_file))
    resolve = answering("127.0.0.1")
    with WebhookReceiver(ssl_context=pki.issued("localhost")) as secure, \
            KeptClients() as clients:
        url = secure.url(host="localhost")
        for _ in range(2):
            assert post(url, clients, resolve=resolve, verify=trust).outcome == "sent"
        result = post(url, clients, resolve=resolve, verify=trust, allow_private=False)
        assert result.outcome == PostOutcome.REFUSED
        assert "127.0.0.1, a loopback address" in result.answer
        assert len(secure.requests) == 2
        assert (secure.connections, secure.server_names) == (1, ["localhost"])


def test_a_receiver_closing_after_each_answer_gets_each_post_once(receiver, clients):
    """Connection: close after every answer: a new connection each time, no POST twice."""
    receiver.close_after_answer = True
    results = [post(receiver.url(), clients) for _ in range(3)]
    assert [result.outcome for result in results] == [PostOutcome.SENT] * 3
    assert len(receiver.requests) == 3 and receiver.connections == 3


def test_a_receiver_closing_idle_connections_gets_each_post_once(receiver, clients):
    """The receiver drops a connection idle for 0.2 s: the next POST connects anew, and
    every POST arrives exactly once."""
    receiver.idle_close_seconds = 0.2
    for number in range(3):
        if number:
            time.sleep(0.5)
        assert post(receiver.url(), clients).outcome == PostOutcome.SENT
    assert len(receiver.requests) == 3 and receiver.connections == 3


def test_a_connection_that_timed_out_is_not_used_again(receiver, clients):
    """A read timeout: transient, and the next POST goes over a fresh connection."""
    receiver.answer_next("hang")
    short = httpx.Timeout(connect=2, read=0.5, write=2, pool=2)
    assert post(receiver.url(), clients, timeout=short).outcome == PostOutcome.TRANSIENT
    assert post(receiver.url(), clients).outcome == PostOutcome.SENT
    assert [request.connection for request in receiver.requests] == [1, 2]


def test_the_deadline_also_cuts_off_a_kept_connection(receiver, clients):
    """The second POST, over the connection the first left open, is ended at its deadline
    (1 s, though the first POST's was 30 s)."""
    assert post(receiver.url(), clients).outcome == PostOutcome.SENT
    receiver.answer_next("drip")
    started = time.monotonic()
    result = post(receiver.url(), clients, timeout=httpx.Timeout(5), deadline=1.0)
    assert result.answer == "no complete answer within 1 s"
    assert time.monotonic() - started < 2.5
    assert [request.connection for request in receiver.requests] == [1, 1]


def deadline_threads() -> list[threading.Thread]:
    """The webhook watchdog threads running now."""
    return [thread for thread in threading.enumerate()
            if thread.name == "contact-webhook-deadline"]


def test_one_watchdog_thread_serves_a_pass_and_ends_with_it(receiver):
    """Five POSTs, one watchdog thread (not one per POST); closing the pass ends it."""
    before = deadline_threads()
    with KeptClients() as clients:
        for _ in range(5):
            assert post(receiver.url(), clients).outcome == PostOutcome.SENT
        assert len(deadline_threads()) == len(before) + 1
    assert deadline_threads() == before

