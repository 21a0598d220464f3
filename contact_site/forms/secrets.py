"""The secrets of a form's webhooks: read from the environment, never from the forms file.

A `standard` webhook (or any that names `secret_env`) signs what it sends with the
`whsec_` secret in the variable it names. Start-up and `forms check` both refuse a
declaration whose secrets are missing or unusable, with one line.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping

from standardwebhooks.webhooks import EmptyWebhookSecretError
from standardwebhooks.webhooks import Webhook as Signer

from .declaration import Declaration, Webhook


class SecretError(Exception):
    """A webhook's secret is missing or unusable; the message says which, in one line."""


def needs_secret(webhook: Webhook) -> bool:
    """Whether the webhook signs what it sends: the standard format always, another format
    when it names a secret."""
    return webhook.format == "standard" or webhook.secret_env is not None


def secret_of(webhook: Webhook, environ: Mapping[str, str]) -> str:
    """The webhook's secret from the environment; SecretError if absent or unusable."""
    name = webhook.secret_env
    if name is None:
        raise SecretError("format standard signs its deliveries: name the environment "
                          "variable holding the whsec_ secret in secret_env")
    if name not in environ:
        raise SecretError(f"the environment variable {name} is not set")
    secret = environ[name].strip()  # a trailing newline from a secrets file is no part of it
    if not secret:
        raise SecretError(f"the environment variable {name} is empty")
    try:
        Signer(secret)
    except (binascii.Error, EmptyWebhookSecretError):
        raise SecretError(f"the environment variable {name} does not hold a secret "
                          "like whsec_<base64>") from None
    return secret


def check_secrets(declaration: Declaration, environ: Mapping[str, str]) -> list[str]:
    """One line per declared webhook whose secret is missing or unusable."""
    problems = []
    for form in declaration.forms:
        for number, webhook in enumerate(form.webhooks, 1):
            if not needs_secret(webhook):
                continue
            try:
                secret_of(webhook, environ)
            except SecretError as error:
                problems.append(f"form {form.slug!r}: webhook {number}: {error}")
    return problems
