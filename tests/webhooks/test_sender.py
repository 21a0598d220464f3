"""One webhook POST against a real loopback receiver: each answer classified, no redirect
followed, timeouts kept, TLS checked on the name while connecting to the checked address."""

from __future__ import annotations

import base64
import json
import secrets
import socket
import ssl
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook as Verifier

from contact_site.webhooks.sender import (
    RETRY_AFTER_MAX_SECONDS,
    PostOutcome,
    classified,
    post_webhook,
    retry_after,
)
from contact_site.webhooks.signing import new_webhook_id, signature_headers
from support.tls_certs import LocalPKI
from support.webhook_receiver import WebhookReceiver

BODY = json.dumps({"type": "submission.created", "data": {"id": "abc"}}).encode()
JSON = {"Content-Type": "application/json"}
SHORT = httpx.Timeout(connect=2, read=0.5, write=2, pool=2)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A plain-HTTP receiver on 127.0.0.1."""
    with WebhookReceiver() as running:
        yield running


@pytest.fixture
def pki(tmp_path: Path) -> LocalPKI:
    """A test CA."""
    return LocalPKI.create(tmp_path / "pki")


def trusting(pki: LocalPKI) -> ssl.SSLContext:
    """A client context trusting the test CA alone."""
    return ssl.create_default_context(cafile=str(pki.ca_file))


def answering(*answers: str) -> object:
    """A resolver giving each answer in turn (the last one from then on), counting calls."""
    def resolve(host: str, port: int) -> Sequence[str]:
        resolve.calls += 1  # type: ignore[attr-defined]
        return [answers[min(resolve.calls, len(answers)) - 1]]  # type: ignore[attr-defined]

    resolve.calls = 0  # type: ignore[attr-defined]
    return resolve


def post(url: str, **options: object) -> object:
    """post_webhook with the test body, private addresses allowed unless told."""
    return post_webhook(url, BODY, JSON, **{"allow_private": True, **options})  # type: ignore[arg-type]


def test_a_2xx_answer_is_sent_with_the_body_and_headers_as_given(receiver):
    """200: sent; the receiver got the exact bytes, our headers, Host of the URL, no redirect."""
    result = post(receiver.url())
    assert (result.outcome, result.status, result.answer) == (PostOutcome.SENT, 200, "ok")
    assert result.address == "127.0.0.1"
    [request] = receiver.requests
    assert (request.method, request.path, request.body) == ("POST", "/hook", BODY)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{receiver.port}"


def test_the_receiver_verifies_the_signature_with_the_library(receiver):
    """Signed headers and body as received pass standardwebhooks' verify."""
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    webhook_id = new_webhook_id()
    headers = {**JSON, **signature_headers(secret, webhook_id, BODY)}
    assert post_webhook(receiver.url(), BODY, headers, allow_private=True).outcome == "sent"
    [request] = receiver.requests
    assert Verifier(secret).verify(request.body, request.headers) == json.loads(BODY)
    assert request.headers["webhook-id"] == webhook_id


@pytest.mark.parametrize(("mode", "outcome", "status"), [
    ("500", PostOutcome.TRANSIENT, 500),
    ("429", PostOutcome.TRANSIENT, 429),
    ("410", PostOutcome.FAILED, 410),
    ("redirect", PostOutcome.FAILED, 302),
])
def test_each_answer_is_classified(receiver, mode, outcome, status):
    """5xx and 429 are retried; 410 and a redirect fail at once."""
    receiver.mode = mode
    receiver.location = "https://elsewhere.example/"
    result = post(receiver.url())
    assert (result.outcome, result.status) == (outcome, status)
    assert len(receiver.requests) == 1


def test_a_429_passes_its_retry_after_on(receiver):
    """Retry-After in seconds comes back with the transient outcome."""
    receiver.mode, receiver.retry_after = "429", "120"
    assert post(receiver.url()).retry_after == 120
    receiver.retry_after = format_datetime(datetime.now(UTC) + timedelta(seconds=90),
                                           usegmt=True)
    assert 85 <= post(receiver.url()).retry_after <= 90


@pytest.mark.parametrize(("status", "outcome"), [
    *[(s, PostOutcome.SENT) for s in (200, 201, 202, 204, 299)],
    *[(s, PostOutcome.FAILED) for s in (300, 301, 302, 303, 304, 307, 308)],
    *[(s, PostOutcome.FAILED) for s in (400, 401, 403, 404, 405, 409, 410, 413, 422, 451)],
    *[(s, PostOutcome.TRANSIENT) for s in (408, 429, 500, 502, 503, 504, 599)],
])
def test_the_status_table(status, outcome):
    """2xx sent; 408, 429 and 5xx transient; every other answer failed."""
    assert classified(status) == outcome


NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120), ("0", 0), (" 7 ", 7), ("86400", RETRY_AFTER_MAX_SECONDS),
    ("Fri, 01 May 2026 12:00:30 GMT", 30), ("Fri, 01 May 2026 11:00:00 GMT", 0),
    ("Sat, 01 May 2027 12:00:00 GMT", RETRY_AFTER_MAX_SECONDS),
    ("-5", None), ("soon", None), ("", None), (None, None), ("1e400", None),
])
def test_retry_after_is_read_and_bounded(value, seconds):
    """Seconds or an HTTP date, never negative, never over the maximum; junk is ignored."""
    assert retry_after(value, now=NOW) == seconds


def test_a_redirect_is_not_followed(receiver):
    """A 302 to another receiver: failed, and the other receiver hears nothing."""
    with WebhookReceiver() as elsewhere:
        receiver.mode, receiver.location = "redirect", elsewhere.url()
        result = post(receiver.url())
        assert (result.outcome, result.status) == (PostOutcome.FAILED, 302)
        assert elsewhere.requests == []


def test_a_hanging_receiver_times_out_within_the_read_timeout(receiver):
    """No answer: transient after the read timeout, not later."""
    receiver.mode = "hang"
    started = time.monotonic()
    result = post(receiver.url(), timeout=SHORT)
    assert result.outcome == PostOutcome.TRANSIENT and result.status is None
    assert "ReadTimeout" in result.answer
    assert time.monotonic() - started < 2
    assert len(receiver.requests) == 1


def test_a_dripping_receiver_is_cut_off_at_the_deadline(receiver):
    """A byte every 0.2 s beats a 5 s read timeout for ever: the deadline ends it."""
    receiver.mode = "drip"
    started = time.monotonic()
    result = post(receiver.url(), timeout=httpx.Timeout(5), deadline=1.0)
    assert result.outcome == PostOutcome.TRANSIENT
    assert result.answer == "no complete answer within 1 s"
    assert time.monotonic() - started < 2.5


def test_nothing_listening_is_transient():
    """A refused connection is retried later."""
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        port = spare.getsockname()[1]
    result = post(f"http://127.0.0.1:{port}/hook")
    assert result.outcome == PostOutcome.TRANSIENT and "ConnectError" in result.answer


def test_a_name_that_does_not_resolve_is_transient():
    """No DNS answer now may be an outage: retried, nothing sent."""
    result = post("https://hooks.example.com/in", resolve=lambda host, port: [])
    assert result.outcome == PostOutcome.TRANSIENT and "resolves to no address" in result.answer


def test_the_answer_is_cut_to_200_characters_and_escaped(receiver):
    """A huge answer: read in part, 200 characters kept, control characters escaped."""
    receiver.answer = b"\x1b[2J\r\n" + b"x" * 5_000_000
    started = time.monotonic()
    result = post(receiver.url())
    assert result.answer == "\\x1b[2J\\r\\n" + "x" * 194
    assert time.monotonic() - started < 2


def test_private_addresses_are_refused_and_nothing_is_sent(receiver):
    """Without WEBHOOK_ALLOW_PRIVATE, a name resolving to loopback is refused: no request."""
    url = f"https://hooks.example.com:{receiver.port}/hook"
    result = post(url, allow_private=False, resolve=answering("127.0.0.1"))
    assert result.outcome == PostOutcome.REFUSED
    assert "127.0.0.1, a loopback address" in result.answer
    assert receiver.requests == []


def test_plain_http_is_refused_without_allow_private(receiver):
    """http:// is refused even to a public address unless WEBHOOK_ALLOW_PRIVATE."""
    result = post("http://hooks.example.com/in", allow_private=False,
                  resolve=answering("93.184.215.14"))
    assert result.outcome == PostOutcome.REFUSED and "https://" in result.answer


def test_the_checked_address_is_the_one_connected_to(receiver):
    """DNS is asked once: a second, different answer never reaches the connection."""
    resolve = answering("127.0.0.1", "127.0.0.2")
    result = post(receiver.url(host="hooks.test"), resolve=resolve)
    assert result.outcome == PostOutcome.SENT and result.address == "127.0.0.1"
    assert resolve.calls == 1  # type: ignore[attr-defined]
    assert receiver.requests[0].headers["host"] == f"hooks.test:{receiver.port}"


def test_tls_is_checked_on_the_name_while_connecting_to_the_address(pki):
    """A certificate for localhost, the connection to 127.0.0.1: SNI and Host say localhost."""
    with WebhookReceiver(ssl_context=pki.issued("localhost")) as secure:
        result = post(secure.url(host="localhost"), resolve=answering("127.0.0.1"),
                      verify=trusting(pki))
        assert (result.outcome, result.status, result.address) == (
            PostOutcome.SENT, 200, "127.0.0.1")
        assert secure.server_names == ["localhost"]
        assert secure.requests[0].headers["host"] == f"localhost:{secure.port}"


def test_a_certificate_for_another_name_is_not_trusted(pki):
    """The name checked is the URL's: a certificate for localhost does not do for another."""
    with WebhookReceiver(ssl_context=pki.issued("localhost")) as secure:
        result = post(secure.url(host="hooks.test"), resolve=answering("127.0.0.1"),
                      verify=trusting(pki))
        assert result.outcome == PostOutcome.TRANSIENT and "CERTIFICATE" in result.answer
        assert secure.requests == []


def test_an_unknown_authority_is_not_trusted_by_default(pki):
    """With the default trust store, the test CA's certificate is refused."""
    with WebhookReceiver(ssl_context=pki.issued("localhost")) as secure:
        result = post(secure.url(host="localhost"), resolve=answering("127.0.0.1"))
        assert result.outcome == PostOutcome.TRANSIENT and secure.requests == []


def test_no_proxy_is_taken_from_the_environment(receiver, monkeypatch):
    """HTTP(S)_PROXY in the environment is ignored: the target itself is reached."""
    with WebhookReceiver() as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
            monkeypatch.setenv(name, proxy.url(path="/"))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        assert post(receiver.url()).outcome == PostOutcome.SENT
        assert proxy.requests == [] and len(receiver.requests) == 1
