"""Standard Webhooks signatures, checked by the standardwebhooks library as a receiver does."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from contact_site.forms.declaration import Declaration
from contact_site.forms.secrets import SecretError, check_secrets, secret_of
from contact_site.webhooks.signing import new_webhook_id, signature_headers

SECRET = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
BODY = json.dumps({"type": "submission.created", "data": {"id": "abc", "fields":
                                                          {"name": "Zoë 李"}}},
                  ensure_ascii=False).encode()


def declaration(*webhooks: dict[str, object]) -> Declaration:
    """Two forms: `contact` with these webhooks, `careers` with one needing CAREERS_SECRET."""
    fields = [{"name": "email", "type": "email", "label": "Email"}]
    return Declaration.model_validate({"forms": [
        {"slug": "contact", "title": "Contact", "fields": fields, "webhooks": list(webhooks)},
        {"slug": "careers", "title": "Careers", "fields": fields, "webhooks": [
            {"url": "https://hr.example.com/in", "secret_env": "CAREERS_SECRET"}]},
    ]})


def test_the_headers_verify_with_the_library():
    """A receiver using standardwebhooks accepts the body with our three headers."""
    headers = signature_headers(SECRET, "msg_1", BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-signature"].startswith("v1,")
    assert Verifier(SECRET).verify(BODY, headers) == json.loads(BODY)


def test_the_timestamp_is_whole_seconds_and_signed():
    """webhook-timestamp is the attempt's time in seconds; changing it breaks the signature."""
    at = datetime(2026, 5, 1, 12, 0, 30, 900_000, tzinfo=UTC)
    headers = signature_headers(SECRET, "msg_1", BODY, at=at)
    assert headers["webhook-timestamp"] == str(int(at.timestamp()))
    now = signature_headers(SECRET, "msg_1", BODY)
    with pytest.raises(WebhookVerificationError):
        Verifier(SECRET).verify(BODY, {**now, "webhook-timestamp": str(
            int(now["webhook-timestamp"]) - 1)})


@pytest.mark.parametrize("change", ["body", "id", "secret"])
def test_a_changed_body_id_or_secret_fails_verification(change):
    """The signature covers id, timestamp and body, with this secret only."""
    headers = signature_headers(SECRET, "msg_1", BODY)
    body, secret = BODY, SECRET
    if change == "body":
        body = BODY.replace(b"abc", b"abd")
    elif change == "id":
        headers["webhook-id"] = "msg_2"
    else:
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body, headers)


def test_an_old_signature_is_refused_by_the_receiver():
    """A replay ten minutes later fails the receiver's timestamp check."""
    headers = signature_headers(SECRET, "msg_1", BODY,
                                at=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        Verifier(SECRET).verify(BODY, headers)


def test_webhook_ids_are_new_each_time():
    """Each delivery gets its own id (its retries keep it: the caller stores it)."""
    ids = {new_webhook_id() for _ in range(100)}
    assert len(ids) == 100 and all(i.startswith("msg_") for i in ids)


def test_the_secret_comes_from_the_environment():
    """secret_of reads the variable named by secret_env, without surrounding whitespace."""
    webhook = declaration().forms[1].webhooks[0]
    assert secret_of(webhook, {"CAREERS_SECRET": f" {SECRET}\n"}) == SECRET


def test_missing_secrets_are_one_line_each():
    """Every missing, empty or unusable secret is named with its form and webhook."""
    found = check_secrets(declaration(
        {"url": "https://crm.example.com/in", "secret_env": "CRM_WEBHOOK_SECRET"},
        {"url": "https://hooks.slack.com/services/T/B/X", "format": "slack"},
        {"url": "https://crm.example.com/other", "secret_env": "EMPTY_SECRET"},
        {"url": "https://crm.example.com/third", "secret_env": "BROKEN_SECRET"},
        {"url": "https://crm.example.com/fourth"},
    ), {"EMPTY_SECRET": "  ", "BROKEN_SECRET": "whsec_a"})
    assert found == [
        "form 'contact': webhook 1: the environment variable CRM_WEBHOOK_SECRET is not set",
        "form 'contact': webhook 3: the environment variable EMPTY_SECRET is empty",
        "form 'contact': webhook 4: the environment variable BROKEN_SECRET does not hold "
        "a secret like whsec_<base64>",
        "form 'contact': webhook 5: format standard signs its deliveries: name the "
        "environment variable holding the whsec_ secret in secret_env",
        "form 'careers': webhook 1: the environment variable CAREERS_SECRET is not set",
    ]
    assert all("\n" not in line for line in found)


def test_set_secrets_leave_nothing_to_report():
    """With every variable set, there is no problem; a notice without secret_env needs none."""
    found = check_secrets(declaration(
        {"url": "https://crm.example.com/in", "secret_env": "CRM_WEBHOOK_SECRET"},
        {"url": "https://ntfy.sh/owner-topic", "format": "ntfy"},
    ), {"CRM_WEBHOOK_SECRET": SECRET, "CAREERS_SECRET": SECRET})
    assert found == []


def test_a_bad_secret_raises_a_clear_error():
    """The error type the start-up check reports."""
    webhook = declaration().forms[1].webhooks[0]
    with pytest.raises(SecretError, match="CAREERS_SECRET is not set"):
        secret_of(webhook, {})
