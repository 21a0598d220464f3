"""Operator commands: `flask --app contact_site outbox status|retry|work`."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from ..database import utcnow
from ..escaping import echo_escaped
from ..extensions import db
from ..submissions.queries import VERDICT_WINDOW, verdict_counts
from . import health, outbox
from .models import MailKind, OutboxMail, Status
from .pool import Wake
from .worker import run_delivery_pool

outbox_cli = AppGroup("outbox", help="Watch and drive the outbox (mails and webhooks).")


@outbox_cli.command("status")
def status_command() -> None:
    """Counts by status of mails and webhook deliveries, the oldest queued one's age, stale
    claims, the failures, the virus scanner (when scanning is on) and the spam verdicts of
    the last 24 hours."""
    counts = health.kind_counts()
    echo_escaped(f"{'':8} {health.MAILS:6} {health.WEBHOOKS}")
    for status, mails in counts[health.MAILS].items():
        echo_escaped(f"{status:8} {mails:<6} {counts[health.WEBHOOKS][status]}")
    rows, now = OutboxMail, utcnow()
    for which, label in ((outbox.MAILS, ""), (outbox.WEBHOOKS, " webhook")):
        oldest = db.session.scalar(
            select(func.min(rows.created_at)).where(rows.status == Status.QUEUED, which))
        if oldest is not None:
            echo_escaped(f"oldest queued{label}: {int((now - oldest).total_seconds())} s ago")
    stale = db.session.scalar(select(func.count()).select_from(rows).where(
        rows.status == Status.SENDING, rows.claimed_until < now))
    if stale:
        echo_escaped(f"stale claims: {stale} (their worker stopped; "
                     "another will take them over)")
    failed = db.session.scalars(
        select(rows).where(rows.status == Status.FAILED).order_by(rows.id))
    for row in failed:  # the address and the reply come from outside: escaped
        echo_escaped(f"failed {row.id} {_delivery(row)} after {row.attempts} attempt(s): "
                     f"{row.last_error or ''}")
    _echo_config_error(now)
    scanning = health.scanner()
    if scanning is not None:
        echo_escaped(f"scanner: {scanning.state} ({scanning.waiting} file(s) waiting for a scan)")
    # So that a rule catching real visitors is noticed (false positives).
    verdicts = verdict_counts(now - VERDICT_WINDOW)
    echo_escaped("verdicts of the last 24 h: "
                 + ", ".join(f"{verdict} {count}" for verdict, count in verdicts.items()))


def _delivery(row: OutboxMail) -> str:
    """What a row delivers where: a mail's kind and address, a webhook's event and target
    (cut short: its path may hold a token)."""
    if row.kind == MailKind.WEBHOOK:
        return f"webhook {row.event} to {health.shown_target(row.target)}"
    return f"{row.kind} to {row.to_address}"


def _echo_config_error(now: datetime) -> None:
    """The standing SMTP configuration error, if any, and when the held mails are tried."""
    state = health.config_error()
    if state is None:
        return
    echo_escaped(f"smtp configuration error since {state.since:%Y-%m-%d %H:%M:%S} UTC "
                 f"({state.failures} failure(s)): {state.error}")
    if state.retry_at is not None:
        wait = max(0, int((state.retry_at - now).total_seconds()))
        echo_escaped(f"queued mails are held, not counted as attempts; next try in {wait} s "
                     "(after fixing the settings: outbox retry --held)")


@outbox_cli.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True,
              help="Requeue every failed mail and webhook delivery.")
@click.option("--held", is_flag=True,
              help="Try now the mails held back by an SMTP configuration error.")
def retry_command(ids: tuple[int, ...], all_failed: bool, held: bool) -> None:
    """Requeue failed mails and webhook deliveries by id, or all of them with --failed;
    --held: try held mails now."""
    if not ids and not all_failed and not held:
        raise click.UsageError("name the mail ids to retry, or pass --failed or --held")
    if held:
        echo_escaped(f"released {health.release_held_mails()} held mail(s)")
    if ids or all_failed:
        count = health.requeue_failed(ids)
        webhooks = count[health.WEBHOOKS]
        echo_escaped(f"requeued {count[health.MAILS]} mail(s)"
                     + (f" and {webhooks} webhook(s)" if webhooks else ""))


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
def work_command(once: bool) -> None:
    """Deliver mails in the foreground until SIGTERM or Ctrl-C."""
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    wake = Wake()

    def on_signal(signum: int, _frame: Any) -> None:
        echo_escaped(f"signal {signum}: finishing the mail in hand, releasing the rest", err=True)
        stop.set()
        wake.set_all()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    echo_escaped("delivering; stop with SIGTERM or Ctrl-C", err=True)
    run_delivery_pool(app, stop, wake, on_idle=stop.set if once else None)


def init_app(app: Flask) -> None:
    """Register the command group."""
    app.cli.add_command(outbox_cli)
