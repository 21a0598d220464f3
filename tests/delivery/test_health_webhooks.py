"""What the operator is told of webhook deliveries: /healthz counts them beside the mails, and
a webhook's URL is shown cut short, its token never."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import update

from contact_site.delivery import outbox
from contact_site.delivery.health import shown_target
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from support.factories import create_submission

STATES = ("queued", "sending", "sent", "failed")


@pytest.mark.parametrize(("url", "shown"), [
    ("https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/…"),
    ("https://discord.com/api/webhooks/1/t0ken/slack", "https://discord.com/…"),
    ("https://ntfy.sh/secret-topic", "https://ntfy.sh/…"),
    ("https://crm.example.com/hooks", "https://crm.example.com/…"),
    ("https://crm.example.com/", "https://crm.example.com/"),
    ("https://crm.example.com", "https://crm.example.com/"),
    ("https://crm.example.com/?token=t0ken", "https://crm.example.com/…"),
    ("https://crm.example.com/#t0ken", "https://crm.example.com/…"),
    ("http://127.0.0.1:8080/hook/t0ken", "http://127.0.0.1:8080/…"),
    ("https://user:pa55@crm.example.com/in", "https://crm.example.com/…"),
    ("https://[2001:db8::1]:8443/in/t0ken", "https://[2001:db8::1]:8443/…"),
    ("https://CRM.Example.com/In", "https://crm.example.com/…"),
])
def test_a_webhook_url_is_shown_to_its_host(url: str, shown: str) -> None:
    """Scheme, host and port; the path (an ntfy topic, a Slack token), a query, a fragment
    and any credentials are left out."""
    assert shown_target(url) == shown


def counts(**found: int) -> dict[str, int]:
    """Counts by state, zero where not given."""
    return {state: found.get(state, 0) for state in STATES}


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_healthz_counts_webhook_deliveries_beside_the_mails(app: Flask) -> None:
    """"outbox" still counts every row; "mails" and "webhooks" count each kind by state."""
    submission_id = create_submission(app, thank_you=True)
    with app.app_context():
        rows = [outbox.enqueue_webhook(submission_id, "https://hooks.example.com/in",
                                       "submission.created") for _ in range(3)]
        db.session.commit()
        db.session.execute(update(OutboxMail).where(OutboxMail.id == rows[0].id)
                           .values(status="failed"))
        db.session.execute(update(OutboxMail).where(OutboxMail.id == rows[1].id)
                           .values(status="sent"))
        db.session.commit()
    body = app.test_client().get("/healthz").get_json()
    assert body["outbox"] == counts(queued=3, sent=1, failed=1)
    assert body["mails"] == counts(queued=2)
    assert body["webhooks"] == counts(queued=1, sent=1, failed=1)
