"""The `contact-site` command of an installed package: `serve`, `worker`, and every command
group of `flask --app contact_site` (users, outbox, submissions, forms, db) by the same name.

It works from any folder, with no checkout: settings come from the environment as always,
and the database and uploads go where they say (or in the current folder's instance/ and
uploads/).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from typing import Any

import click
from flask.cli import FlaskGroup

from . import create_app
from .paths import resource_root


@click.group(cls=FlaskGroup, create_app=create_app, add_default_commands=False,
             set_debug_flag=False)
def main() -> None:
    """contact_site: a self-hosted contact backend. Settings come from the environment."""


@main.command("serve", context_settings={"ignore_unknown_options": True,
                                         "allow_extra_args": True})
@click.option("--bind", default="127.0.0.1:8000", show_default=True,
              help="Address and port to listen on (behind nginx: keep it on loopback).")
@click.pass_context
def serve_command(context: click.Context, bind: str) -> None:
    """Serve the site with gunicorn and the shipped settings (gunicorn.conf.py); any
    other option goes to gunicorn."""
    settings = resource_root() / "gunicorn.conf.py"
    _replace_with(["gunicorn", "--config", str(settings), "--bind", bind, *context.args])


@main.command("worker", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True})
@click.option("--once", is_flag=True, help="One pass over the outbox, then exit.")
@click.pass_context
def worker_command(context: click.Context, once: bool) -> None:
    """Deliver the outbox: a Celery worker when DELIVERY_BACKEND=celery (other options go
    to it), else the delivery loop of `outbox work` in this process."""
    if os.environ.get("DELIVERY_BACKEND", "thread").strip().lower() == "celery":
        _replace_with(["celery", "-A", "contact_site.celery_app", "worker", *context.args])
    outbox = main.get_command(context, "outbox")
    assert isinstance(outbox, click.Group)
    context.invoke(outbox.commands["work"], once=once)


@main.command("healthcheck")
@click.option("--url", envvar="HEALTHCHECK_URL", default="http://127.0.0.1:8000/healthz",
              show_default=True, help="The site's /healthz (HEALTHCHECK_URL overrides).")
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait.")
def healthcheck_command(url: str, timeout: float) -> None:
    """Exit 0 when the served site answers /healthz with 200 (a container's HEALTHCHECK)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            status = response.status
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{url}: {error}") from None
    if status != 200:
        raise click.ClickException(f"{url} answered {status}")
    click.echo(f"{url}: ok")


def _replace_with(argv: list[str]) -> Any:
    """Run a module of this Python (gunicorn, celery) in place of this process, so that
    signals from systemd or the container reach it."""
    os.execv(sys.executable, [sys.executable, "-m", *argv])
