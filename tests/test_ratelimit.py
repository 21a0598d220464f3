"""Rate limits on POST / per client address, shared by every process, and the thank-you cap."""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from contact_site import ratelimit as limits_module
from contact_site.config import SETTINGS, ConfigError
from contact_site.extensions import db
from contact_site.ratelimit import DatabaseStorage
from contact_site.submissions.models import Submission
from support.forms import VALID, form_tokens, post_form
from support.outbox import deliver_everything
from support.settings import skip_or_fail

REDIS_URL = "redis://127.0.0.1:6379/15"


def post_from(client, address: str, json: bool = False, **fields):
    """POST the form as a client at `address`."""
    client.environ_base["REMOTE_ADDR"] = address
    return post_form(client, json=json, **fields)


def stored(app) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(Submission))


def test_default_is_5_a_minute_and_50_a_day():
    assert SETTINGS["CONTACT_RATE_LIMIT"][0] == "5 per minute;50 per day"


@pytest.mark.settings(CONTACT_RATE_LIMIT="2 per minute")
def test_passing_the_limit_answers_429_with_retry_after(app):
    """HTML and JSON both get 429 and Retry-After; nothing is stored for them."""
    client = app.test_client()
    assert [post_form(client).status_code for _ in range(2)] == [303, 303]

    page = post_form(client)
    assert page.status_code == 429
    assert 1 <= int(page.headers["Retry-After"]) <= 60
    assert "Please wait a while" in page.get_data(as_text=True)
    assert page.headers["Content-Type"].startswith("text/html")

    answer = post_form(client, json=True)
    assert answer.status_code == 429
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert "Please wait a while" in answer.get_json()["error"]
    assert stored(app) == 2


@pytest.mark.settings(CONTACT_RATE_LIMIT="1 per minute")
def test_only_posts_are_limited(app):
    client = app.test_client()
    assert post_form(client).status_code == 303
    assert post_form(client).status_code == 429
    assert {client.get(path).status_code for path in ("/", "/thanks", "/healthz") * 4} == {200}


@pytest.mark.settings(CONTACT_RATE_LIMIT="2 per minute")
def test_refused_posts_count_too(client):
    """A bot probing with invalid input uses up its allowance like anyone."""
    assert post_form(client, email="not an address").status_code == 422
    assert post_form(client, email="not an address").status_code == 422
    assert post_form(client).status_code == 429


@pytest.mark.settings(CONTACT_RATE_LIMIT="1 per minute")
def test_limit_is_per_client_address(client):
    assert post_from(client, "192.0.2.1").status_code == 303
    assert post_from(client, "192.0.2.1").status_code == 429
    assert post_from(client, "192.0.2.2").status_code == 303
    assert post_from(client, "2001:db8::1").status_code == 303


@pytest.mark.settings(CONTACT_RATE_LIMIT="1 per minute")
def test_spoofed_forwarded_for_changes_nothing(client):
    """Without a trusted proxy, X-Forwarded-For is the client's word and is ignored."""
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.1"
    assert post_form(client).status_code == 303
    client.environ_base["HTTP_X_FORWARDED_FOR"] = "198.51.100.2"
    assert post_form(client).status_code == 429


@pytest.mark.settings(CONTACT_RATE_LIMIT="1 per minute", PROXY_FIX_X_FOR=1)
def test_behind_a_proxy_the_forwarded_client_is_limited(client):
    """PROXY_FIX_X_FOR=1: the address the proxy saw is the one counted."""
    client.environ_base["REMOTE_ADDR"] = "10.0.0.1"  # the proxy
    for client_address, status in (("198.51.100.1", 303), ("198.51.100.2", 303),
                                   ("198.51.100.1", 429)):
        # A client-supplied entry in front of the proxy's is not believed.
        client.environ_base["HTTP_X_FORWARDED_FOR"] = f"203.0.113.9, {client_address}"
        assert post_form(client).status_code == status


@pytest.mark.settings(CONTACT_RATE_LIMIT="off")
def test_off_turns_the_limit_off(client):
    assert {post_form(client).status_code for _ in range(7)} == {303}


def test_two_processes_sharing_the_database_share_the_count(make_app):
    """Two app instances on one SQLite file, like two gunicorn workers, count together."""
    first = make_app(CONTACT_RATE_LIMIT="3 per minute").test_client()
    second = make_app(CONTACT_RATE_LIMIT="3 per minute").test_client()
    statuses = [post_form(c).status_code for c in (first, second, first, second, first)]
    assert statuses == [303, 303, 303, 429, 429]


def test_two_processes_sharing_redis_share_the_count(make_app):
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        skip_or_fail(f"Redis unreachable at {REDIS_URL}: {error}")
    address = f"10.{random.randrange(256)}.{random.randrange(256)}.{random.randrange(1, 255)}"
    apps = [make_app(CONTACT_RATE_LIMIT="2 per minute", RATELIMIT_STORAGE_URI=REDIS_URL)
            for _ in range(2)]
    clients = [app.test_client() for app in apps]
    try:
        statuses = [post_from(c, address).status_code for c in (*clients, clients[0])]
        assert statuses == [303, 303, 429]
        keys = redis.Redis.from_url(REDIS_URL).keys(f"*{address}*")
        assert keys, "the count was not kept in Redis"
    finally:
        connection = redis.Redis.from_url(REDIS_URL)
        for key in connection.keys(f"*{address}*"):
            connection.delete(key)


def test_unknown_storage_uri_fails_at_start_naming_the_variable(make_app):
    with pytest.raises(ConfigError, match="RATELIMIT_STORAGE_URI"):
        make_app(RATELIMIT_STORAGE_URI="nosuchstore://localhost")


@pytest.mark.manual_delivery
def test_database_storage_counts_and_ends_windows(app, monkeypatch):
    """incr/get/get_expiry/clear of the hand-written storage, with a controlled clock."""
    # No delivery thread: its daily retention pass would prune these fake-clock windows.
    now = [1_000_000.0]
    monkeypatch.setattr(limits_module, "time", type("Clock", (), {"time": lambda: now[0]}))
    storage = DatabaseStorage()
    with app.app_context():
        assert storage.check()
        assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
        assert storage.get("k") == 3 and storage.get_expiry("k") == now[0] + 60
        assert storage.incr("k", 60, amount=5) == 8
        now[0] += 60  # the window ends: the next hit starts a new one
        assert storage.get("k") == 0
        assert storage.incr("k", 60) == 1 and storage.get_expiry("k") == now[0] + 60
        storage.clear("k")
        assert storage.get("k") == 0
        storage.incr("a", 60), storage.incr("b", 60)
        assert storage.reset() == 2


def concurrent_increments(app, threads: int = 6, each: int = 20) -> list[int]:
    """What every incr returned, with `threads` threads hitting one key at once."""
    storage, results, start = DatabaseStorage(), [], threading.Barrier(threads)

    def hit() -> None:
        with app.app_context():
            start.wait()
            results.extend(storage.incr("shared", 60) for _ in range(each))

    workers = [threading.Thread(target=hit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results


@pytest.mark.manual_delivery
def test_database_storage_is_atomic_on_sqlite(app):
    assert sorted(concurrent_increments(app)) == list(range(1, 121))


@pytest.mark.postgres
def test_database_storage_is_atomic_on_postgresql(make_app, postgres_url):
    app = make_app(DATABASE_URL=postgres_url, deliver=False)
    assert sorted(concurrent_increments(app)) == list(range(1, 121))


def test_thank_you_cap_per_address_holds_across_addresses(app, smtp_server):
    """Five posts naming one visitor from five IPs: the owner gets 5 mails, the visitor 3."""
    client = app.test_client()
    for i in range(5):
        email = "Victim@EXAMPLE.com" if i % 2 else "Victim@example.com"  # domains normalised
        assert post_from(client, f"192.0.2.{i + 1}", email=email).status_code == 303
    deliver_everything(app)
    received = Counter(mail.rcpt_tos[0] for mail in smtp_server.messages)
    assert received == {"sales@example.com": 5, "Victim@example.com": 3}


@pytest.mark.settings(CONTACT_THANK_YOU_PER_DAY=1)
def test_thank_you_cap_follows_the_setting(app, smtp_server):
    client = app.test_client()
    tokens = [form_tokens(client) for _ in range(2)]
    for token in tokens:
        assert post_form(client, tokens=token, **VALID).status_code == 303
    deliver_everything(app)
    received = Counter(mail.rcpt_tos[0] for mail in smtp_server.messages)
    assert received == {"sales@example.com": 2, "ada@example.com": 1}


def test_unreachable_limit_store_lets_messages_through(make_app, caplog):
    """Fail open: a broken Redis must not cost the owner messages; the failure is logged."""
    client = make_app(CONTACT_RATE_LIMIT="1 per minute",
                      RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0").test_client()
    assert [post_form(client).status_code for _ in range(2)] == [303, 303]
    assert "Failed to rate limit" in caplog.text
