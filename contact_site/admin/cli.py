"""Owner accounts from the command line: `flask --app contact_site users create|list|…`."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from sqlalchemy import func, select

from ..escaping import echo_escaped, escape_controls
from ..extensions import db
from ..forms import declaration_of
from ..paths import account_command
from . import audit, auth, twofactor
from .factors import Passkey

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


role_option = click.option(
    "--role", type=click.Choice(auth.ROLES), default=auth.OWNER, show_default=True,
    help="owner: everything; responder: only the messages for its --recipients.")
recipients_option = click.option(
    "--recipients", default="", metavar="SLUG,SLUG",
    help="A responder's recipients, by the slugs the forms give them.")


def _role(role: str, recipients: str) -> tuple[str, str]:
    """The role and its recipients as stored, checked against the declared recipients."""
    try:
        return role, auth.checked_recipients(role, recipients, declared_recipient_slugs())
    except auth.AccountError as error:
        raise click.ClickException(escape_controls(str(error))) from None


def declared_recipient_slugs() -> list[str]:
    """Every recipient slug the forms file (or CONTACT_RECIPIENTS) declares, once each."""
    return [recipient.slug for recipient in declaration_of().recipients()]


@users_cli.command("create")
@click.argument("name")
@role_option
@recipients_option
@stdin_option
def create_command(name: str, role: str, recipients: str, password_stdin: bool) -> None:
    """Create an account that may sign in to the console."""
    role, slugs = _role(role, recipients)
    try:
        user = auth.create_user(name, _password(password_stdin))
    except auth.AccountError as error:
        raise click.ClickException(escape_controls(str(error))) from None
    user.role, user.recipients = role, slugs
    db.session.commit()
    audit.record("account created", user.username, detail=_role_detail(user))
    echo_escaped(f"Account {user.username} ({_role_detail(user)}) created. "
                 "Sign in at /admin/login.")


def _role_detail(user: auth.User) -> str:
    """`owner`, or `responder for sales, support`."""
    return user.role if user.is_owner else f"{user.role} for {', '.join(user.recipient_slugs)}"


@users_cli.command("set-role")
@click.argument("name")
@click.argument("role", type=click.Choice(auth.ROLES))
@recipients_option
def set_role_command(name: str, role: str, recipients: str) -> None:
    """Make an account an owner, or a responder for some recipients; its sessions end."""
    user = _user(name)
    before = _role_detail(user)
    user.role, user.recipients = _role(role, recipients)
    auth.revoke_sessions(user)  # what it may see changed: it signs in again
    db.session.commit()
    audit.record("role changed", user.username, detail=f"{before} to {_role_detail(user)}")
    echo_escaped(f"{user.username} is now {_role_detail(user)}; its open sessions are ended.")


@users_cli.command("list")
def list_command() -> None:
    """The accounts: role and recipients, second factors, created, last signed in."""
    users = list(db.session.scalars(select(auth.User).order_by(auth.User.username)))
    if not users:
        echo_escaped(f"No accounts yet: create one with `{account_command(current_app.debug)}`.")
    for user in users:
        last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M} UTC" if user.last_sign_in_at else "never"
        factors = [name for name, on in (("totp", user.totp_secret is not None),
                                         ("passkeys", passkey_count(user) > 0)) if on]
        echo_escaped(f"{user.username}  {_role_detail(user)}  "
                     f"2fa {'+'.join(factors) or 'none'}  created {user.created_at:%Y-%m-%d}  "
                     f"last sign-in {last}")


def passkey_count(user: auth.User) -> int:
    """How many passkeys the account has."""
    return int(db.session.scalar(select(func.count()).select_from(Passkey)
                                 .where(Passkey.user_id == user.id)) or 0)


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


@users_cli.command("reset-2fa")
@click.argument("name")
def reset_2fa_command(name: str) -> None:
    """Remove an account's authenticator app, recovery codes and passkeys; its sessions end."""

    user = _user(name)
    twofactor.reset(user)
    db.session.commit()
    audit.record("2fa reset", user.username, detail="authenticator, recovery codes, passkeys")
    echo_escaped(f"Second factors of {user.username} removed: it signs in with its password "
                 "alone. Its open sessions are ended.")


def init_app(app: Flask) -> None:
    """Register the `users` command group."""
    app.cli.add_command(users_cli)
