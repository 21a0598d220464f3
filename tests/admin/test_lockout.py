"""The sign-in lockout against a running product: a guesser cannot keep the owner out.

Real gunicorn (gunicorn.conf.py, two workers, no PROXY_FIX: the socket's peer address is
the client), with the counters in each store the product offers: the SQLite database,
PostgreSQL, and Redis (RATELIMIT_STORAGE_URI). The guesser's sockets are bound to
127.0.0.2 and 127.0.0.3, the owner's to 127.0.0.1 (Linux routes all of 127.0.0.0/8 to
the loopback), so the server sees three networks.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from contact_site.admin.audit import AuditEntry
from contact_site.extensions import db
from contact_site.ratelimit import RateLimitCounter
from support.admin import PASSWORD, TOKEN, create_owner
from support.settings import skip_or_fail

# A database of its own on the shared Redis; the keys this module makes are removed.
REDIS_URL = "redis://127.0.0.1:6379/13"
REDIS_KEYS = "LIMITS:console-sign-in/*"
GUESSER, SECOND_GUESSER, OWNER_NETWORK = "127.0.0.2", "127.0.0.3", "127.0.0.1"
BURST = 20


@dataclass
class Answer:
    """One HTTP answer: status, headers, body."""

    status: int
    headers: http.client.HTTPMessage
    body: str


@dataclass
class Browser:
    """A client whose connections leave from one source address, keeping its cookies."""

    port: int
    source: str
    cookies: dict[str, str] = field(default_factory=dict)

    def send(self, method: str, path: str, form: dict[str, str] | None = None) -> Answer:
        """One request on a new connection from `source`; cookies set by it are kept."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60,
                                                source_address=(self.source, 0))
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        body = urllib.parse.urlencode(form) if form is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            answer = Answer(response.status, response.msg, response.read().decode())
        finally:
            connection.close()
        for header in answer.headers.get_all("Set-Cookie") or []:
            self.cookies.update({k: m.value for k, m in SimpleCookie(header).items()})
        return answer

    def sign_in_token(self) -> str:
        """The CSRF token of the sign-in page (the console cookie comes with it)."""
        found = TOKEN.search(self.send("GET", "/admin/login").body)
        assert found, "the sign-in page has no CSRF token"
        return found.group(1)

    def sign_in(self, token: str, name: str, password: str) -> Answer:
        """POST the sign-in form."""
        return self.send("POST", "/admin/login",
                         {"csrf_token": token, "username": name, "password": password})


@dataclass
class Console:
    """A running product with an owner account; the app on its database, for reading it."""

    site: Flask
    port: int
    owner: str
    counted_in: Callable[[str], bool]  # whether the store under test holds a key like this


def redis_client() -> Any:
    """A client of the test's Redis database, or a skip (a failure under CI=true)."""
    import redis

    connection = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        connection.ping()
    except redis.RedisError as error:
        skip_or_fail(f"Redis unreachable at {REDIS_URL}: {error}")
    return connection


def database_holds(site: Flask) -> Callable[[str], bool]:
    """Whether the site's database keeps a rate-limit counter whose key contains `part`."""
    def holds(part: str) -> bool:
        with site.app_context():
            return bool(db.session.scalar(select(func.count()).select_from(RateLimitCounter)
                                          .where(RateLimitCounter.key.contains(part))))
    return holds


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres),
                        "redis"])
def console(request: pytest.FixtureRequest, app: Flask, make_app: Callable[..., Flask],
            gunicorn: Any) -> Iterator[Console]:
    """gunicorn serving an owner account, counting sign-ins in the store under test."""
    site, settings, connection = app, {}, None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        site, settings = make_app(DATABASE_URL=url, deliver=False), {"DATABASE_URL": url}
    counted_in = database_holds(site)
    if request.param == "redis":
        connection = redis_client()
        for key in connection.scan_iter(REDIS_KEYS):  # left by an interrupted run
            connection.delete(key)
        settings = {"RATELIMIT_STORAGE_URI": REDIS_URL}

        def counted_in(part: str) -> bool:
            return any(connection.scan_iter(f"LIMITS:*{part}*"))

    owner = f"owner-{uuid.uuid4().hex[:8]}"
    create_owner(site, owner)
    process, log, port = gunicorn(**settings)
    try:
        yield Console(site, port, owner, counted_in)
    finally:
        if connection is not None:
            for key in connection.scan_iter(REDIS_KEYS):
                connection.delete(key)
    assert process.poll() is None and "Traceback" not in log.read_text(), log.read_text()


def checked_passwords(site: Flask) -> int:
    """Wrong passwords the product verified for the owner's name (one audit line each)."""
    with site.app_context():
        return int(db.session.scalar(select(func.count()).select_from(AuditEntry)
                                     .where(AuditEntry.action == "sign-in refused")) or 0)


def burst(browser: Browser, token: str, name: str, size: int) -> list[Answer]:
    """`size` wrong passwords sent at once, each on its own connection and thread."""
    start, answers = threading.Barrier(size), []

    def guess(number: int) -> None:
        start.wait(30)
        answers.append(browser.sign_in(token, name, f"wrong password {number}"))

    threads = [threading.Thread(target=guess, args=(number,)) for number in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(answers) == size, "a try got no answer"
    return answers


def assert_refused(answer: Answer) -> None:
    """429 with a Retry-After within the minute, and the lockout's words."""
    assert answer.status == 429, answer.status
    assert 1 <= int(answer.headers["Retry-After"]) <= 61
    assert "Too many failed sign-ins" in answer.body


def test_a_guesser_on_another_network_cannot_keep_the_owner_out(console: Console) -> None:
    """A burst of 20 and 10 more wrong passwords from 127.0.0.2: exactly 5 are checked.
    A second guessing network gets one try at the name. The owner on 127.0.0.1 signs in
    at once; 127.0.0.2 is still refused, with the right password too."""
    guesser = Browser(console.port, GUESSER)
    token = guesser.sign_in_token()
    answers = burst(guesser, token, console.owner, BURST)
    answers += [guesser.sign_in(token, console.owner, "wrong again") for _ in range(10)]
    assert Counter(answer.status for answer in answers) == {422: 5, 429: BURST + 10 - 5}
    for answer in answers:
        if answer.status == 422:
            assert "The username or password is not right." in answer.body
        else:
            assert_refused(answer)
    assert checked_passwords(console.site) == 5
    assert console.counted_in(f"/network/{GUESSER}/"), "not counted in the store under test"

    second = Browser(console.port, SECOND_GUESSER)
    second_token = second.sign_in_token()
    assert second.sign_in(second_token, console.owner, "wrong password").status == 422
    assert_refused(second.sign_in(second_token, console.owner, PASSWORD))

    owner = Browser(console.port, OWNER_NETWORK)
    signed_in = owner.sign_in(owner.sign_in_token(), console.owner, PASSWORD)
    assert signed_in.status == 303 and signed_in.headers["Location"] == "/admin/"
    assert owner.send("GET", "/admin/").status == 200

    assert_refused(guesser.sign_in(token, console.owner, PASSWORD))
    assert checked_passwords(console.site) == 6
