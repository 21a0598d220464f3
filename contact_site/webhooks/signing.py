"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

A webhook's secret (`whsec_` and base64) is read from the environment variable its
declaration names, never from the forms file. The signature covers
"id.timestamp.body", so a receiver can refuse a replayed or altered delivery.
"""

from __future__ import annotations

import binascii
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from math import floor

from standardwebhooks.webhooks import EmptyWebhookSecretError
from standardwebhooks.webhooks import Webhook as Signer

from ..forms.declaration import Declaration, Webhook


class SecretError(Exception):
    """A webhook's secret is missing or unusable; the message says which, in one line."""


def new_webhook_id() -> str:
    """A fresh `webhook-id`: one per delivery, kept for its retries."""
    return f"msg_{uuid.uuid4().hex}"


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


def signature_headers(secret: str, webhook_id: str, body: bytes,
                      at: datetime | None = None) -> dict[str, str]:
    """The three headers signing `body` for delivery `webhook_id`, timestamped `at` (now)."""
    when = at or datetime.now(UTC)
    signature = Signer(secret).sign(msg_id=webhook_id, timestamp=when, data=body)
    seconds = floor(when.replace(tzinfo=when.tzinfo or UTC).timestamp())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(seconds),
            "webhook-signature": signature}
