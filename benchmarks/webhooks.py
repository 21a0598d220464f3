"""Webhook benchmark: deliveries per second to a loopback receiver, and what a webhook adds
to a POST.

Run with `python -m benchmarks.webhooks [--deliveries N] [--posts N]`, on SQLite and on
PostgreSQL when it is reachable. In this process, no delivery thread started:

- **deliveries**: N submissions of a declared form are stored in one statement and a
  webhook delivery queued for each with `outbox.enqueue_webhook`; `deliver_due_webhooks`
  is then called until all are sent (claim, body, signature, POST, settle), to a
  receiver on 127.0.0.1 (`WEBHOOK_ALLOW_PRIVATE=true`; the test suite's receiver, a
  thread per connection, answering 200 at once). Every request is checked afterwards:
  one per delivery, each webhook-id once, each signature verified by `standardwebhooks`.
  The ceiling is httpx alone posting the same body to the same receiver, a new client
  per POST as the sender makes; and the same with one TLS context shared by the
  clients (a client makes its own otherwise, loading the CA bundle, even for http://).
- **POST cost**: two forms identical but for a declared webhook are posted to in turn
  through the test client (only the POST is timed: its GET comes before, for the
  hidden fields), with the SQL statements of one POST of each counted by kind. The
  webhook is queued in the submission's own commit: one more outbox row, no more.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select
from standardwebhooks import Webhook
from werkzeug.datastructures import MultiDict
from werkzeug.test import encode_multipart

from contact_site import create_app
from contact_site.delivery import outbox
from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.delivery.webhook_delivery import deliver_due_webhooks
from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.schema import upgrade_schema
from contact_site.submissions.answers import stored_entry
from contact_site.submissions.models import Submission
from contact_site.webhooks.payload import SUBMISSION_CREATED

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers
from support.databases import postgres_schema  # noqa: E402
from support.factories import insert_submissions  # noqa: E402
from support.forms_files import hidden_fields  # noqa: E402
from support.webhook_receiver import WebhookReceiver  # noqa: E402

SECRET_ENV = "BENCH_WEBHOOK_SECRET"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# A delivery that is not sent within this long means the run is broken, not slow.
DRAIN_LIMIT_SECONDS = 300.0
WARM_UP_POSTS = 5
FORM = """
[[forms]]
slug = "{slug}"
title = "Contact us"
recipients = ["Sales <sales@example.com>"]
thank_you = false

  [[forms.fields]]
  name = "name"
  type = "text"
  label = "Your name"

  [[forms.fields]]
  name = "email"
  type = "email"
  label = "Your email address"
  required = true

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = "Phone"

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = "Message"
  required = true
{webhook}"""
WEBHOOK = f"""
  [[forms.webhooks]]
  url = "{{url}}"
  secret_env = "{SECRET_ENV}"
"""
# About what a real message weighs: a couple of paragraphs.
MESSAGE = ("I would like to know more about the analytical engine and its uses. " * 30)[:2000]
VALUES = {"name": "Ada Lovelace", "phone": "+44 20 7946 0000", "message": MESSAGE}


def forms_file(folder: Path, url: str) -> Path:
    """Two forms alike but for the webhook: `plain` without one, `hooked` posting to `url`."""
    path = folder / "forms.toml"
    path.write_text(FORM.format(slug="plain", webhook="")
                    + FORM.format(slug="hooked", webhook=WEBHOOK.format(url=url)))
    return path


def bench_app(database_url: str, folder: Path, url: str) -> Flask:
    """An app on this database with the two forms, its schema made; no delivery started."""
    folder.mkdir(parents=True, exist_ok=True)
    app = create_app({
        "TESTING": True, "SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "DATABASE_URL": database_url, "UPLOAD_FOLDER": str(folder / "uploads"),
        "CONTACT_RECIPIENTS": "Sales <sales@example.com>",
        "CONTACT_FORMS_FILE": str(forms_file(folder, url)), "WEBHOOK_ALLOW_PRIVATE": True,
        # The client posts at once, without a proof of work, from one address: with these
        # on, the submissions would be suspect or limited, and not all hooked.
        "CONTACT_RATE_LIMIT": "off", "CONTACT_PROOF_OF_WORK": "off",
        "CONTACT_MIN_FILL_SECONDS": 0})
    # One log line per delivery would bury the table (and time the terminal).
    logging.getLogger("contact_site.delivery").setLevel(logging.WARNING)
    upgrade_schema(app)
    return app


def declared_answers(app: Flask) -> list[dict[str, Any]]:
    """The stored answers of a `hooked` submission, as the form writes them."""
    with app.app_context():
        form = declaration_of().form("hooked")
        assert form is not None
        return [stored_entry(field.name, field.type, field.label, VALUES.get(field.name))
                for field in form.fields]


def queue_deliveries(app: Flask, count: int, url: str) -> None:
    """Store `count` submissions of `hooked` in one statement, then a delivery for each in
    one commit."""
    insert_submissions(app, count, form_slug="hooked", answers=declared_answers(app),
                       message=MESSAGE)
    with app.app_context():
        for submission_id in db.session.scalars(select(Submission.id)):
            outbox.enqueue_webhook(submission_id, url, SUBMISSION_CREATED)
        db.session.commit()


def drain(app: Flask, count: int) -> float:
    """Seconds until `count` queued deliveries are sent, `deliver_due_webhooks` called over
    and over; RuntimeError if some are not."""
    started = time.perf_counter()
    with app.app_context():
        for _ in range(count):  # each call sends one delivery at least while any is due
            if not deliver_due_webhooks() or time.perf_counter() - started > DRAIN_LIMIT_SECONDS:
                break
        elapsed = time.perf_counter() - started
        sent = outbox.status_counts()["sent"]
    if sent != count:
        raise RuntimeError(f"{sent} of {count} webhook deliveries sent")
    return elapsed


def check_received(receiver: WebhookReceiver, count: int) -> None:
    """One request per delivery, each webhook-id once, every signature good."""
    signer = Webhook(SECRET)
    ids = {request.headers["webhook-id"] for request in receiver.requests}
    if len(receiver.requests) != count or len(ids) != count:
        raise RuntimeError(f"{len(receiver.requests)} requests, {len(ids)} webhook-ids "
                           f"for {count} deliveries")
    for request in receiver.requests:
        signer.verify(request.body, request.headers)  # raises if one is not good


def ceiling(url: str, body: bytes, headers: dict[str, str], count: int,
            verify: ssl.SSLContext | bool = True) -> float:
    """POSTs per second of httpx alone to the receiver, a new client per POST (each making
    its own TLS context unless given one, even for http://)."""
    started = time.perf_counter()
    for _ in range(count):
        with httpx.Client(timeout=10, follow_redirects=False, trust_env=False,
                          verify=verify) as client:
            client.post(url, content=body, headers=headers).raise_for_status()
    return count / (time.perf_counter() - started)


def delivery_rate(database_url: str, folder: Path, count: int) -> dict[str, float]:
    """Webhook deliveries per second from the outbox to a loopback receiver, and the ceiling."""
    with WebhookReceiver() as receiver:
        app = bench_app(database_url, folder, receiver.url())
        try:
            queue_deliveries(app, count, receiver.url())
            elapsed = drain(app, count)
            check_received(receiver, count)
            sample = receiver.requests[0]
            headers = {name: value for name, value in sample.headers.items()
                       if name in ("content-type", "webhook-id", "webhook-timestamp",
                                   "webhook-signature")}
            raw = ceiling(receiver.url(), sample.body, headers, count)
            shared = ceiling(receiver.url(), sample.body, headers, count,
                             ssl.create_default_context())
        finally:
            with app.app_context():
                db.engine.dispose()
    return {"deliveries_per_s": count / elapsed, "ms_each": 1000 * elapsed / count,
            "ceiling_per_s": raw, "shared_context_per_s": shared}


def statement_kind(statement: str) -> str:
    """A statement's kind and table: `INSERT INTO outbox`, `UPDATE submission`, `SELECT`."""
    words = statement.split()
    verb = words[0].upper() if words else "?"
    table = {"INSERT": 2, "UPDATE": 1, "DELETE": 2}.get(verb)
    return f"{' '.join(words[:table])} {words[table].strip(chr(34))}" if table else verb


@contextmanager
def counted_statements(app: Flask) -> Iterator[Counter[str]]:
    """The SQL statements the app runs meanwhile, counted by kind."""
    seen: Counter[str] = Counter()

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen[statement_kind(statement)] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def post_once(client: FlaskClient, slug: str, number: int) -> float:
    """POST the form `slug` once (its GET first, untimed); the POST's seconds."""
    path = f"/f/{slug}"
    # A text of its own: the same address and text again would be a duplicate (spam).
    fields = {**hidden_fields(client, path), **VALUES, "email": f"visitor{number}@example.com",
              "message": f"{slug} {number}: {MESSAGE}"}
    boundary, body = encode_multipart(MultiDict(fields))
    started = time.perf_counter()
    answer = client.post(path, data=body, headers={"Accept": "application/json"},
                         content_type=f"multipart/form-data; boundary={boundary}")
    elapsed = time.perf_counter() - started
    if answer.status_code >= 400:
        raise RuntimeError(f"POST {path}: {answer.status_code} {answer.get_data(as_text=True)}")
    return elapsed


def outbox_rows(app: Flask) -> Counter[str]:
    """The outbox's rows by kind."""
    with app.app_context():
        return Counter(dict(db.session.execute(
            select(OutboxMail.kind, func.count()).group_by(OutboxMail.kind)).tuples().all()))


def post_cost(database_url: str, folder: Path, posts: int) -> dict[str, Any]:
    """Median and p90 POST time of the form without and with a webhook, posted in turn, and
    the SQL statements of one POST of each."""
    # Not delivered: the webhook only has to be valid, and its row queued.
    app = bench_app(database_url, folder, "https://crm.example.com/hooks/contact")
    client = app.test_client()
    times: dict[str, list[float]] = {"plain": [], "hooked": []}
    hooks_before = outbox_rows(app)[MailKind.WEBHOOK]
    try:
        for number in range(WARM_UP_POSTS):
            for slug in times:
                post_once(client, slug, number)
        statements, queued = {}, {}
        for slug in times:
            before = outbox_rows(app)
            with counted_statements(app) as seen:
                post_once(client, slug, WARM_UP_POSTS)
            statements[slug], queued[slug] = seen, outbox_rows(app) - before
        for number in range(WARM_UP_POSTS + 1, WARM_UP_POSTS + 1 + posts):
            for slug, seconds in times.items():
                seconds.append(post_once(client, slug, number))
        hooks = outbox_rows(app)[MailKind.WEBHOOK] - hooks_before
    finally:
        with app.app_context():
            db.engine.dispose()
    if hooks != posts + WARM_UP_POSTS + 1:
        raise RuntimeError(f"{hooks} webhook rows queued for "
                           f"{posts + WARM_UP_POSTS + 1} POSTs of the hooked form")
    return {slug: {"p50_ms": 1000 * statistics.median(seconds),
                   "p90_ms": 1000 * statistics.quantiles(seconds, n=10)[-1],
                   "statements": statements[slug], "queued": queued[slug]}
            for slug, seconds in times.items()}


def run(database_url: str, folder: Path, deliveries: int, posts: int) -> None:
    """Both parts on one database, their rows printed."""
    name = database_url.split(":")[0].split("+")[0]
    rate = delivery_rate(database_url, folder / "rate", deliveries)
    _row(name, f"webhook deliveries/s ({deliveries}, one loop)", f"{rate['deliveries_per_s']:.0f}")
    _row(name, "  time per delivery, ms", f"{rate['ms_each']:.2f}")
    _row(name, "  ceiling: httpx alone, a client per POST, /s", f"{rate['ceiling_per_s']:.0f}")
    _row(name, "  the same, one TLS context shared, /s", f"{rate['shared_context_per_s']:.0f}")
    cost = post_cost(database_url, folder / "posts", posts)
    plain, hooked = cost["plain"], cost["hooked"]
    _row(name, f"POST p50 ms, without / with webhook ({posts} each)",
         f"{plain['p50_ms']:.2f} / {hooked['p50_ms']:.2f}",
         f"{hooked['p50_ms'] - plain['p50_ms']:+.2f}")
    _row(name, "POST p90 ms, without / with webhook",
         f"{plain['p90_ms']:.2f} / {hooked['p90_ms']:.2f}",
         f"{hooked['p90_ms'] - plain['p90_ms']:+.2f}")
    change = _changes(hooked["statements"], plain["statements"])
    _row(name, "SQL statements per POST, without / with",
         f"{plain['statements'].total()} / {hooked['statements'].total()}", change)
    _row(name, "outbox rows per POST, without / with",
         f"{plain['queued'].total()} / {hooked['queued'].total()}",
         _changes(hooked["queued"], plain["queued"]))


def _changes(hooked: Counter[str], plain: Counter[str]) -> str:
    """What the hooked form's POST does more (+) or less (-) than the plain one's, by kind."""
    return ", ".join([f"+{n} {kind}" for kind, n in (hooked - plain).items()]
                     + [f"-{n} {kind}" for kind, n in (plain - hooked).items()]) or "none"


def _row(database: str, measure: str, value: str, note: str = "") -> None:
    print(f"{database:10} {measure:48} {value:>15}  {note}", flush=True)


def with_secret(action: Callable[[], None]) -> None:
    """Run `action` with the webhook's secret in the environment, as the site reads it."""
    os.environ[SECRET_ENV] = SECRET
    try:
        action()
    finally:
        del os.environ[SECRET_ENV]


def main() -> None:
    """Run the webhook benchmark on SQLite, and on PostgreSQL when it is reachable."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000,
                        help="webhook deliveries to drain")
    parser.add_argument("--posts", type=int, default=200, help="timed POSTs of each form")
    args = parser.parse_args()

    def both() -> None:
        print(f"\n{'database':10} {'measure':48} {'value':>15}  difference")
        with tempfile.TemporaryDirectory() as folder:
            run(f"sqlite:///{folder}/webhooks.sqlite", Path(folder) / "sqlite",
                args.deliveries, args.posts)
            with postgres_schema("bench") as postgres_url:
                if postgres_url is None:
                    print("postgresql: skipped (unreachable)")
                else:
                    run(postgres_url, Path(folder) / "postgresql", args.deliveries, args.posts)

    with_secret(both)


if __name__ == "__main__":
    main()
