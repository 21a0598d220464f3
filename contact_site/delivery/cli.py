"""Operator commands: `flask --app contact_site outbox status|retry|work`."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from ..database import utcnow
from ..extensions import db
from . import outbox
from .models import OutboxMail, Status
from .worker import run_delivery_loop

outbox_cli = AppGroup("outbox", help="Watch and drive the mail outbox.")


@outbox_cli.command("status")
def status_command() -> None:
    """Counts by status, the oldest queued mail's age, stale claims and the failed mails."""
    for status, count in outbox.status_counts().items():
        click.echo(f"{status:8} {count}")
    mails, now = OutboxMail, utcnow()
    oldest = db.session.scalar(
        select(func.min(mails.created_at)).where(mails.status == Status.QUEUED))
    if oldest is not None:
        click.echo(f"oldest queued: {int((now - oldest).total_seconds())} s ago")
    stale = db.session.scalar(select(func.count()).select_from(mails).where(
        mails.status == Status.SENDING, mails.claimed_until < now))
    if stale:
        click.echo(f"stale claims: {stale} (their worker stopped; another will take them over)")
    failed = db.session.scalars(
        select(mails).where(mails.status == Status.FAILED).order_by(mails.id))
    for row in failed:
        click.echo(f"failed {row.id} {row.kind} to {row.to_address} after {row.attempts} "
                   f"attempt(s): {row.last_error}")


@outbox_cli.command("retry")
@click.argument("ids", nargs=-1, type=int)
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed mail.")
def retry_command(ids: tuple[int, ...], all_failed: bool) -> None:
    """Requeue failed mails by id, or all of them with --failed."""
    if not ids and not all_failed:
        raise click.UsageError("name the mail ids to retry, or pass --failed")
    count = outbox.requeue(list(ids) if ids else None)
    click.echo(f"requeued {count} mail(s)")


@outbox_cli.command("work")
@click.option("--once", is_flag=True, help="Deliver what is due, then exit.")
def work_command(once: bool) -> None:
    """Deliver mails in the foreground until SIGTERM or Ctrl-C."""
    app: Any = current_app._get_current_object()  # type: ignore[attr-defined]
    stop = threading.Event()
    wake = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        click.echo(f"signal {signum}: finishing the mail in hand, releasing the rest", err=True)
        stop.set()
        wake.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _log_attempts()
    click.echo("delivering; stop with SIGTERM or Ctrl-C", err=True)
    run_delivery_loop(app, stop, wake, on_idle=stop.set if once else None)


def _log_attempts() -> None:
    """Show the one-line attempt log on stderr, unless logging is already set up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("contact_site.delivery").setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    """Register the command group."""
    app.cli.add_command(outbox_cli)
