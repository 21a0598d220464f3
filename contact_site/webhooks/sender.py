"""One webhook POST: to the guard's checked address, its outcome classified for the outbox.

The request goes to the address guard.py checked, with the name kept in the Host
header and in TLS (SNI and the certificate's name), so DNS is asked once per attempt.
Redirects are not followed, no proxy is taken from the environment, each phase has
its own timeout and the whole exchange a deadline (deadline.py). At most ANSWER_BYTES
of the answer are read, for the attempt log. Given the KeptClients of a delivery pass,
a POST goes over the connection an earlier one to the same route left open
(keepalive.py); without, over a connection of its own, closed after it.
"""

from __future__ import annotations

import email.utils
import functools
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import certifi
import httpx

from ..escaping import escape_controls
from .deadline import Exchange
from .guard import Refused, Resolver, Target, Unresolved, check_target, resolve_host
from .keepalive import KeptClient, KeptClients, Route

TIMEOUT = httpx.Timeout(connect=5, read=10, write=10, pool=5)
DEADLINE_SECONDS = 30.0
ANSWER_CHARS = 200
ANSWER_BYTES = 4096
# A Retry-After further away than this waits this long (the give-up time still applies).
RETRY_AFTER_MAX_SECONDS = 3600
USER_AGENT = "contact_site-webhooks"
TRANSIENT_STATUSES = {408, 429}


class PostOutcome(StrEnum):
    """What one POST came to: the outbox retries TRANSIENT and fails FAILED and REFUSED."""

    SENT = "sent"  # a 2xx answer
    TRANSIENT = "transient"  # no answer, a timeout, 408, 429 or 5xx: try again later
    FAILED = "failed"  # any other answer, a redirect included: trying again will not help
    REFUSED = "refused"  # the guard refused the target: nothing was sent


@dataclass(frozen=True)
class PostResult:
    """An attempt's outcome, the status code, what the server said (or what went wrong)."""

    outcome: PostOutcome
    status: int | None = None
    answer: str = ""  # the first ANSWER_CHARS characters, control characters escaped
    retry_after: float | None = None  # seconds, when a 429 or 503 asked for a pause
    address: str | None = None  # the address connected to


def retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After in seconds (a number or an HTTP date), between 0 and the maximum; None
    when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_SECONDS)


def classified(status: int) -> PostOutcome:
    """The outcome an HTTP status means for a webhook."""
    if 200 <= status < 300:
        return PostOutcome.SENT
    if status in TRANSIENT_STATUSES or status >= 500:
        return PostOutcome.TRANSIENT
    return PostOutcome.FAILED


def read_answer(response: httpx.Response) -> str:
    """The first ANSWER_CHARS characters of the answer, read ANSWER_BYTES at most, escaped.

    The status decided the outcome: an answer cut short leaves what came of it."""
    raw = b""
    try:
        for chunk in response.iter_raw():
            raw += chunk
            if len(raw) >= ANSWER_BYTES:
                break
    except (httpx.HTTPError, OSError):
        pass  # kept for the log only: a 2xx whose body broke off was still received
    # Accept-Encoding: identity was asked; a server compressing anyway shows as escapes.
    text = raw[:ANSWER_BYTES].decode(response.encoding or "utf-8", errors="replace")
    return escape_controls(text[:ANSWER_CHARS])


def exchange(target: Target, body: bytes, headers: Mapping[str, str], timeout: httpx.Timeout,
             kept: KeptClient, watch: Exchange) -> PostResult:
    """POST `body` to the target's checked address, the name in Host and TLS."""
    sent_headers = {**headers, "Host": target.host_header, "User-Agent": USER_AGENT,
                    "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": target.host, "trace": watch.trace}
    with kept.client.stream("POST", target.connect_url, content=body, headers=sent_headers,
                            timeout=timeout, extensions=extensions) as response:
        kept.remember(response)
        status = response.status_code
        outcome = classified(status)
        pause = (retry_after(response.headers.get("Retry-After"))
                 if status in (429, 503) else None)
        return PostResult(outcome, status, read_answer(response), pause, target.address)


def posted(target: Target, body: bytes, headers: Mapping[str, str], timeout: httpx.Timeout,
           deadline: float, clients: KeptClients, route: Route) -> PostResult:
    """One POST over the route's client, within the deadline; network and HTTP errors come
    back as a TRANSIENT outcome, and the client is not used again after one."""
    kept = clients.client_for(route)
    with clients.watchdog.exchange(deadline) as watch:
        connected = kept.open_socket()
        if connected is not None:  # a kept connection: no connect event will show it
            watch.watch(connected)
        try:
            result = exchange(target, body, headers, timeout, kept, watch)
        except (httpx.HTTPError, OSError) as error:
            result = PostResult(PostOutcome.TRANSIENT, answer=failure_text(error, watch),
                                address=target.address)
    if result.status is None or watch.fired:  # the connection's state is in doubt
        clients.drop(route)
    return result


def failure_text(error: Exception, watch: Exchange) -> str:
    """What went wrong, in one line for the attempt log."""
    if watch.fired:
        return f"no complete answer within {watch.seconds:g} s"
    return escape_controls(f"{type(error).__name__}: {error}")[:ANSWER_CHARS]


@functools.cache
def public_trust() -> ssl.SSLContext:
    """The certificate authorities httpx trusts (certifi's), loaded once per process.

    httpx loads the whole bundle again for every client (about 16 ms), which each new
    client (one per route and pass) would pay; the context is only read once made.
    """
    return ssl.create_default_context(cafile=certifi.where())


def post_webhook(url: str, body: bytes, headers: Mapping[str, str], *, allow_private: bool,
                 resolve: Resolver = resolve_host, timeout: httpx.Timeout = TIMEOUT,
                 deadline: float = DEADLINE_SECONDS, verify: ssl.SSLContext | None = None,
                 clients: KeptClients | None = None) -> PostResult:
    """POST a webhook once, the target checked first; network and HTTP errors come back as
    a TRANSIENT outcome, not raised. `verify`: the authorities to trust (the public ones);
    `clients`: the delivery pass's kept connections (none: a connection for this POST)."""
    verify = verify or public_trust()
    try:
        target = check_target(url, allow_private=allow_private, resolve=resolve)
    except Refused as error:
        return PostResult(PostOutcome.REFUSED, answer=escape_controls(str(error)))
    except Unresolved as error:
        return PostResult(PostOutcome.TRANSIENT, answer=escape_controls(str(error)))
    route = Route.of(target, verify)
    if clients is not None:
        return posted(target, body, headers, timeout, deadline, clients, route)
    with KeptClients() as own:
        return posted(target, body, headers, timeout, deadline, own, route)
