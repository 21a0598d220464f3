"""Standard Webhooks signatures: `webhook-id`, `webhook-timestamp`, `webhook-signature`.

A webhook's secret (`whsec_` and base64) is read from the environment variable its
declaration names, never from the forms file (contact_site.forms.secrets). The signature covers
"id.timestamp.body", so a receiver can refuse a replayed or altered delivery.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from math import floor

from standardwebhooks.webhooks import Webhook as Signer


def new_webhook_id() -> str:
    """A fresh `webhook-id`: one per delivery, kept for its retries."""
    return f"msg_{uuid.uuid4().hex}"


def signature_headers(secret: str, webhook_id: str, body: bytes,
                      at: datetime | None = None) -> dict[str, str]:
    """The three headers signing `body` for delivery `webhook_id`, timestamped `at` (now)."""
    when = at or datetime.now(UTC)
    signature = Signer(secret).sign(msg_id=webhook_id, timestamp=when, data=body)
    seconds = floor(when.replace(tzinfo=when.tzinfo or UTC).timestamp())
    return {"webhook-id": webhook_id, "webhook-timestamp": str(seconds),
            "webhook-signature": signature}
