"""Operator commands: `flask --app contact_site submissions list|export|purge|erase`."""

from __future__ import annotations

import json
import re
from typing import Any

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import Select

from ..database import utcnow
from ..escaping import echo_escaped, escape_controls
from ..forms import Form, declaration_of
from . import archive, export, privacy, retention

submissions_cli = AppGroup("submissions", help="List, export, purge and erase submissions.")

STATUS = click.Choice(archive.FILTERS)


def _query(q: str | None, status: str | None, email: str | None,
           form: str | None = None) -> Select[Any]:
    """The submissions asked for; with --email, all of that visitor's unless --status narrows."""
    if email:
        return archive.of_visitor(email, q, status, form)
    return archive.filtered(q, status or "all", form)


def _filters(function: Any) -> Any:
    """The options shared by `list` and `export`."""
    function = click.option("--form", "form_slug", metavar="SLUG",
                            help="Only the submissions of this form.")(function)
    function = click.option("--email", help="Only the submissions from this address "
                            "(spam included).")(function)
    function = click.option("--status", type=STATUS,
                            help="Only this state (default: all but spam).")(function)
    return click.option("--q", help="Search the address, name, subject, message and the "
                        "other fields' values.")(function)


@submissions_cli.command("list")
@_filters
@click.option("--limit", default=50, show_default=True, help="At most this many, newest first.")
def list_command(q: str | None, status: str | None, email: str | None, form_slug: str | None,
                 limit: int) -> None:
    """Submissions, newest first: id, time, state, address, subject."""
    shown = 0
    for rows in export.pages(_query(q, status, email, form_slug)):
        for row in rows[:limit - shown]:
            found = row.submission
            echo_escaped(f"{found.id}  {export.timestamp(found.created_at)}  "
                         f"{row.status:9} {found.email}  {found.subject}")
        shown += min(len(rows), limit - shown)
        if shown >= limit:
            break
    if not shown:
        echo_escaped("no submissions", err=True)


def _as_written(text: str, output: Any) -> str:
    """Export text for `output`: exact into a file or a pipe (it is data); on a terminal
    every control character escaped but the line breaks, as any other command prints."""
    if not output.isatty():
        return text
    return "\n".join(escape_controls(line) for line in re.split(r"\r?\n", text))


def _declared(slug: str | None) -> Form | None:
    """The declared form of this slug: its fields are the export's columns."""
    return declaration_of().form(slug) if slug else None


@submissions_cli.command("export")
@click.option("--format", "kind", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@_filters
@click.option("--output", type=export.PrivateOutput(), default="-",
              help="Write to this file instead of standard output.")
def export_command(kind: str, q: str | None, status: str | None, email: str | None,
                   form_slug: str | None, output: Any) -> None:
    """Export submissions; `--form SLUG` gives a column per field of that form;
    `--email ADDRESS --format json` gives everything held about the visitor."""
    if email and kind == "json":
        if q or status or form_slug:
            raise click.UsageError("--email with --format json exports everything held about "
                                   "the visitor: leave out --q, --status and --form")
        everything = json.dumps(privacy.visitor_export(email), ensure_ascii=False, indent=2)
        output.write(_as_written(everything + "\n", output))
        return
    chunks = export.json_chunks if kind == "json" else export.csv_chunks
    for chunk in chunks(_query(q, status, email, form_slug), _declared(form_slug)):
        output.write(_as_written(chunk, output))


@submissions_cli.command("purge")
def purge_command() -> None:
    """Apply the retention settings now and print what was removed."""
    echo_escaped(retention.purge(utcnow()).summary())


@submissions_cli.command("erase")
@click.argument("address")
def erase_command(address: str) -> None:
    """Remove everything held about ADDRESS; prints counts, never the address."""
    echo_escaped(privacy.erase_address(address).summary())


def init_app(app: Flask) -> None:
    """Register the command group."""
    app.cli.add_command(submissions_cli)
