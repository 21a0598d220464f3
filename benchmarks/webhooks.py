"""Webhook benchmark: deliveries per second to a loopback receiver, and what a webhook adds
to a POST.

Run with `python -m benchmarks.webhooks [--deliveries N] [--posts N] [--mails N]
[--slow-hooks N]`, on SQLite and on PostgreSQL when it is reachable (the mails beside a
slow receiver on SQLite only). Writes benchmarks/results/webhooks.json: the raw figures
and "figures", one row per measure. In this process, no delivery thread started but
for the mails:

- **deliveries**: N submissions of a declared form are stored in one statement and a
  webhook delivery queued for each with `outbox.enqueue_webhook`; the product's
  `WebhookLoop` then runs in its thread until it finds nothing left (claim, body,
  signature, POST, outcomes written together, each pass sized by the last), to a
  receiver on 127.0.0.1 (`WEBHOOK_ALLOW_PRIVATE=true`; the test suite's receiver, a
  thread per connection, answering 200 at once). Every request is checked afterwards:
  one per delivery, each webhook-id once, each signature verified by `standardwebhooks`.
  The ceiling is httpx alone posting the same body to the same receiver with ONE
  persistent client (keep-alive), the target being at least half of it; a new client
  per POST (as the sender made before it kept connections), and the same with one TLS
  context shared, are kept as references. The receiver counts the connections the
  product opened (one per route and delivery pass).
- **mails beside a slow receiver**: on SQLite, the product's delivery pool
  (`run_delivery_pool`, DELIVERY_CONCURRENCY loops) runs with H submissions of the
  hooked form queued, their webhooks to a receiver answering after 2 s; once its loops
  are busy with them, M submissions of the plain form are queued and their mails
  drained to the SMTP sink process (benchmarks.run.Sink). The same again with H plain
  submissions first instead. Mails per second of the M, with and without, and their
  ratio (target: near 1, at least 0.9).
- **POST cost**: two forms identical but for a declared webhook are posted to in turn
  through the test client (only the POST is timed: its GET comes before, for the
  hidden fields), with the SQL statements of one POST of each counted by kind. The
  webhook is queued in the submission's own commit: one more outbox row, no more.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import ssl
import statistics
import sys
import tempfile
import threading
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
from contact_site.delivery.pool import Wake
from contact_site.delivery.webhook_delivery import WebhookLoop
from contact_site.delivery.worker import run_delivery_pool
from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.schema import upgrade_schema
from contact_site.submissions.answers import stored_entry
from contact_site.submissions.models import Submission
from contact_site.webhooks.payload import SUBMISSION_CREATED

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers
from benchmarks.run import Sink  # noqa: E402
from support.databases import postgres_schema  # noqa: E402
from support.factories import create_submissions, insert_submissions  # noqa: E402
from support.forms_files import hidden_fields  # noqa: E402
from support.webhook_receiver import WebhookReceiver  # noqa: E402

SECRET_ENV = "BENCH_WEBHOOK_SECRET"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
# A delivery that is not sent within this long means the run is broken, not slow.
DRAIN_LIMIT_SECONDS = 300.0
WARM_UP_POSTS = 5
RESULTS = ROOT / "benchmarks" / "results" / "webhooks.json"
SLOW_SECONDS = 2.0  # the slow receiver's answer time
# Mails not all at the sink within this long: the rate is what arrived meanwhile.
MAIL_LIMIT_SECONDS = 40.0
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


def bench_app(database_url: str, folder: Path, url: str,
              settings: dict[str, Any] | None = None) -> Flask:
    """An app on this database with the two forms, its schema made; no delivery started.
    `settings` on top of the benchmark's."""
    folder.mkdir(parents=True, exist_ok=True)
    app = create_app({
        "TESTING": True, "SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "DATABASE_URL": database_url, "UPLOAD_FOLDER": str(folder / "uploads"),
        "CONTACT_RECIPIENTS": "Sales <sales@example.com>",
        "CONTACT_FORMS_FILE": str(forms_file(folder, url)), "WEBHOOK_ALLOW_PRIVATE": True,
        # The client posts at once, without a proof of work, from one address: with these
        # on, the submissions would be suspect or limited, and not all hooked.
        "CONTACT_RATE_LIMIT": "off", "CONTACT_PROOF_OF_WORK": "off",
        "CONTACT_MIN_FILL_SECONDS": 0, **(settings or {})})
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
    """Seconds until `count` queued deliveries are sent by the product's WebhookLoop (its
    thread, as a delivery pool runs it); RuntimeError if some are not."""
    stop = threading.Event()
    loop = WebhookLoop(app, stop)
    thread = loop.thread()
    started = time.perf_counter()
    thread.start()
    try:
        with app.app_context():
            # Bounded: the loop is idle once nothing is left, sent or not.
            while time.perf_counter() - started < DRAIN_LIMIT_SECONDS:
                if loop.idle.wait(0.02):
                    break
            elapsed = time.perf_counter() - started
            sent = outbox.status_counts()["sent"]
    finally:
        stop.set()
        loop.close()
        thread.join(60)
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


def persistent_ceiling(url: str, body: bytes, headers: dict[str, str], count: int) -> float:
    """POSTs per second of httpx alone to the receiver over ONE persistent client
    (keep-alive: one connection for them all)."""
    started = time.perf_counter()
    with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as client:
        for _ in range(count):
            client.post(url, content=body, headers=headers).raise_for_status()
    return count / (time.perf_counter() - started)


def delivery_rate(database_url: str, folder: Path, count: int) -> dict[str, float]:
    """Webhook deliveries per second from the outbox to a loopback receiver, the connections
    it took, and the ceilings."""
    with WebhookReceiver() as receiver:
        app = bench_app(database_url, folder, receiver.url())
        try:
            queue_deliveries(app, count, receiver.url())
            elapsed = drain(app, count)
            check_received(receiver, count)
            connections = receiver.connections
            sample = receiver.requests[0]
            headers = {name: value for name, value in sample.headers.items()
                       if name in ("content-type", "webhook-id", "webhook-timestamp",
                                   "webhook-signature")}
            persistent = persistent_ceiling(receiver.url(), sample.body, headers, count)
            raw = ceiling(receiver.url(), sample.body, headers, count)
            shared = ceiling(receiver.url(), sample.body, headers, count,
                             ssl.create_default_context())
        finally:
            with app.app_context():
                db.engine.dispose()
    return {"deliveries_per_s": count / elapsed, "ms_each": 1000 * elapsed / count,
            "connections": connections, "persistent_per_s": persistent,
            "ceiling_per_s": raw, "shared_context_per_s": shared}


def slow_answer(request: Any) -> None:
    """The slow receiver's hook: every answer waits SLOW_SECONDS."""
    time.sleep(SLOW_SECONDS)


def queue_mails(app: Flask, count: int, slug: str) -> int:
    """Store `count` submissions of the form `slug` with their mails (and webhook deliveries,
    for `hooked`), as the form queues them; how many mails were queued."""
    before = outbox_rows(app)
    create_submissions(app, count, form_slug=slug, answers=declared_answers(app),
                       message=MESSAGE)
    queued = outbox_rows(app) - before
    return queued.total() - queued[MailKind.WEBHOOK]


def drain_mails(app: Flask, sink: Sink, first: int, slug: str,
                mails: int) -> dict[str, Any]:
    """The product's delivery pool runs; `first` submissions of `slug` are queued before it
    starts, `mails` more of `plain` once its loops are busy with the first (a slow
    receiver's POSTs, if hooked). Mails per second of the later ones: from their queueing
    to the last mail at the sink (or to the limit, if they do not all arrive)."""
    sink.ask("reset")
    early = queue_mails(app, first, slug)
    stop, wake = threading.Event(), Wake()
    pool = threading.Thread(target=run_delivery_pool, args=(app, stop, wake), daemon=True)
    pool.start()
    try:
        sink.wait_for(early, MAIL_LIMIT_SECONDS)
        time.sleep(SLOW_SECONDS / 4)  # the loops have claimed the webhooks and wait on them
        started = time.time()
        later = queue_mails(app, mails, "plain")
        wake.set()  # as a submission does
        stats = sink.wait_for(early + later, MAIL_LIMIT_SECONDS)
    finally:
        stop.set()
        wake.set_all()
        pool.join(60)
    arrived = stats["count"] - early
    ended = stats["last"] if arrived >= later else started + MAIL_LIMIT_SECONDS
    return {"mails": later, "received": arrived, "seconds": round(ended - started, 3),
            "mails_per_s": arrived / (ended - started) if ended > started else None}


def webhooks_sent(app: Flask) -> int:
    """The webhook deliveries sent so far."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).where(
            OutboxMail.kind == MailKind.WEBHOOK, OutboxMail.status == "sent")) or 0)


def mails_beside_slow_hooks(folder: Path, sink: Sink, mails: int,
                            hooks: int) -> dict[str, Any]:
    """Mails per second drained to the sink while the pool's loops are busy: with `hooks`
    webhook deliveries to a receiver answering after SLOW_SECONDS queued just before
    them, and the same with submissions of the form without a webhook instead; each on a
    fresh SQLite database."""
    found: dict[str, Any] = {}
    with WebhookReceiver() as slow:
        slow.on_request = slow_answer
        for label, slug in (("without_webhooks", "plain"), ("with_slow_webhooks", "hooked")):
            where = folder / label
            app = bench_app(f"sqlite:///{where}.sqlite", where, slow.url(), {
                "TESTING": False, "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": sink.port,
                "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>"})
            try:
                found[label] = {**drain_mails(app, sink, hooks, slug, mails),
                                "webhooks_queued": hooks if slug == "hooked" else 0,
                                "webhooks_sent": webhooks_sent(app)}
            finally:
                with app.app_context():
                    db.engine.dispose()
        found["slow_requests_received"] = len(slow.requests)
    return found


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


def run(database_url: str, folder: Path, deliveries: int, posts: int) -> dict[str, Any]:
    """Both parts on one database, their rows printed; the raw figures."""
    name = database_url.split(":")[0].split("+")[0]
    rate = delivery_rate(database_url, folder / "rate", deliveries)
    _row(name, f"webhook deliveries/s ({deliveries}, one loop)", f"{rate['deliveries_per_s']:.0f}",
         f"{rate['deliveries_per_s'] / rate['persistent_per_s']:.2f} of the ceiling")
    _row(name, "  time per delivery, ms", f"{rate['ms_each']:.2f}")
    _row(name, "  connections the receiver saw", f"{rate['connections']}",
         "one per pass")
    _row(name, "  ceiling: httpx alone, one persistent client, /s",
         f"{rate['persistent_per_s']:.0f}")
    _row(name, "  httpx alone, a client per POST, /s", f"{rate['ceiling_per_s']:.0f}")
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
    return {"rate": rate, "post_cost": {slug: {**found, "statements": dict(found["statements"]),
                                               "queued": dict(found["queued"])}
                                        for slug, found in cost.items()}}


def print_mails(found: dict[str, Any]) -> None:
    """The rows of the mails-beside-a-slow-receiver measure."""
    alone, slow = found["without_webhooks"], found["with_slow_webhooks"]
    for label, part in (("without webhooks", alone),
                        (f"with {slow['webhooks_queued']} webhooks to a 2 s receiver", slow)):
        _row("sqlite", f"mails/s {label}", _number(part["mails_per_s"]),
             f"{part['received']} of {part['mails']} in {part['seconds']} s")
    _row("sqlite", "  ratio with / without", _number(mails_ratio(found), 2),
         f"{slow['webhooks_sent']} webhooks sent by the time the pool stopped")


def mails_ratio(found: dict[str, Any]) -> float | None:
    """Mails per second with the slow webhooks over without them."""
    alone = found["without_webhooks"]["mails_per_s"]
    slow = found["with_slow_webhooks"]["mails_per_s"]
    return slow / alone if alone and slow is not None else None


def figure(measure: str, value: float | None, unit: str, reference: float | None = None,
           reference_label: str = "", target: float | None = None,
           note: str = "") -> dict[str, Any]:
    """One row of "figures": the ratio to its reference, and whether it meets the target."""
    ratio = value / reference if value is not None and reference else None
    return {"measure": measure, "value": _rounded(value), "unit": unit,
            "reference": _rounded(reference), "reference_label": reference_label,
            "ratio": _rounded(ratio, 3), "target": None if target is None else f">= {target}",
            "met": None if target is None or ratio is None else ratio >= target, "note": note}


def figures(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary rows of every measure that ran."""
    rows = []
    for database, found in results["databases"].items():
        rate = found["rate"]
        for label, key in (("one persistent client", "persistent_per_s"),
                           ("a client per POST", "ceiling_per_s")):
            rows.append(figure(
                f"{database}: webhook deliveries/s vs httpx alone, {label}",
                rate["deliveries_per_s"], "deliveries/s", rate[key],
                f"httpx alone, {label}", 0.5 if key == "persistent_per_s" else None,
                f"{rate['connections']} connections at the receiver for "
                f"{results['deliveries']} deliveries"))
    mails = results.get("mails")
    if mails:
        slow = mails["with_slow_webhooks"]
        rows.append(figure(
            f"sqlite: mails/s with {slow['webhooks_queued']} webhooks to a 2 s receiver",
            slow["mails_per_s"], "mails/s", mails["without_webhooks"]["mails_per_s"],
            "the same mails without webhooks", 0.9,
            f"{slow['received']} of {slow['mails']} mails; "
            f"{slow['webhooks_sent']} webhooks sent by the time the pool stopped"))
    return rows


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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
    parser.add_argument("--deliveries", type=int, default=2000,
                        help="webhook deliveries to drain")
    parser.add_argument("--posts", type=int, default=100, help="timed POSTs of each form")
    parser.add_argument("--mails", type=int, default=400,
                        help="submissions whose mails are drained beside the slow receiver")
    parser.add_argument("--slow-hooks", type=int, default=20,
                        help="webhook deliveries queued to the slow receiver")
    args = parser.parse_args()
    results: dict[str, Any] = {"deliveries": args.deliveries, "posts": args.posts,
                               "databases": {}}

    def every_part() -> None:
        print(f"\n{'database':10} {'measure':48} {'value':>15}  difference")
        with tempfile.TemporaryDirectory() as folder:
            results["databases"]["sqlite"] = run(
                f"sqlite:///{folder}/webhooks.sqlite", Path(folder) / "sqlite",
                args.deliveries, args.posts)
            with postgres_schema("bench") as postgres_url:
                if postgres_url is None:
                    print("postgresql: skipped (unreachable)")
                else:
                    results["databases"]["postgresql"] = run(
                        postgres_url, Path(folder) / "postgresql", args.deliveries, args.posts)
            sink = Sink()
            try:
                results["mails"] = mails_beside_slow_hooks(Path(folder) / "mails", sink,
                                                           args.mails, args.slow_hooks)
            finally:
                sink.close()
            print_mails(results["mails"])

    with_secret(every_part)
    results["figures"] = figures(results)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
