"""Owner accounts from the command line: `flask --app contact_site users create|list|…`."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup
from sqlalchemy import select

from ..escaping import echo_escaped, escape_controls
from ..extensions import db
from . import audit, auth

users_cli = AppGroup("users", help="Manage the accounts that may sign in to /admin/.")
stdin_option = click.option(
    "--password-stdin", is_flag=True,
    help="Read the password from one line of standard input instead of a prompt.")


def _password(from_stdin: bool) -> str:
    """The new password: one line on stdin, or typed twice at a hidden prompt."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        return auth.check_password_rules(password)
    except auth.AccountError as error:
        raise click.ClickException(escape_controls(str(error))) from None


def _user(name: str) -> auth.User:
    """The account of this name, or a plain error."""
    user = auth.find_user(name)
    if user is None:
        raise click.ClickException(escape_controls(
            f"There is no account named {name.strip().lower()}."))
    return user


@users_cli.command("create")
@click.argument("name")
@stdin_option
def create_command(name: str, password_stdin: bool) -> None:
    """Create an account that may sign in to the console."""
    try:
        user = auth.create_user(name, _password(password_stdin))
    except auth.AccountError as error:
        raise click.ClickException(escape_controls(str(error))) from None
    db.session.commit()
    audit.record("account created", user.username)
    echo_escaped(f"Account {user.username} created. Sign in at /admin/login.")


@users_cli.command("list")
def list_command() -> None:
    """The accounts, with when each was created and last signed in."""
    users = list(db.session.scalars(select(auth.User).order_by(auth.User.username)))
    if not users:
        echo_escaped("No accounts yet: create one with "
                     "`flask --app contact_site users create NAME`.")
    for user in users:
        last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M} UTC" if user.last_sign_in_at else "never"
        echo_escaped(f"{user.username}  created {user.created_at:%Y-%m-%d}  last sign-in {last}")


@users_cli.command("set-password")
@click.argument("name")
@stdin_option
def set_password_command(name: str, password_stdin: bool) -> None:
    """Change an account's password; its open sessions end."""
    user = _user(name)
    auth.set_password(user, _password(password_stdin))
    db.session.commit()
    audit.record("password changed", user.username)
    echo_escaped(f"Password of {user.username} changed; its open sessions are ended.")


@users_cli.command("delete")
@click.argument("name")
def delete_command(name: str) -> None:
    """Delete an account; its open sessions end with it."""
    user = _user(name)
    username = user.username
    db.session.delete(user)
    db.session.commit()
    audit.record("account deleted", username)
    echo_escaped(f"Account {username} deleted.")


def init_app(app: Flask) -> None:
    """Register the `users` command group."""
    app.cli.add_command(users_cli)
