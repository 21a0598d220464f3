"""The settings every test app starts from, and the rule for services a test needs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from support.smtp_server import SMTPTestServer

IN_CI = os.environ.get("CI") == "true"
RECIPIENTS = "Sales <sales@example.com>, Support Team <support@example.com>"
# The SECRET_KEY of processes the tests start (workers, gunicorn, flask commands).
SECRET = "test-secret-key-for-worker-processes"
# Posted at once, without a proof of work, the same message again and again: the spam
# tests turn these layers back on (support.spam.LAYERS_ON).
SPAM_LAYERS_OFF = {"CONTACT_MIN_FILL_SECONDS": 0, "CONTACT_PROOF_OF_WORK": "off",
                   "CONTACT_DUPLICATE_HOURS": 0}


def skip_or_fail(reason: str) -> None:
    """Skip when a service is absent, except under CI=true where it must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


def base_config(tmp_path: Path, smtp_server: SMTPTestServer) -> dict[str, Any]:
    """Settings every test app shares: its own database and folders, the test SMTP server."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite'}",
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
        "MAIL_TIMEOUT": 3,
        "CONTACT_RECIPIENTS": RECIPIENTS,
        "CONTACT_RATE_LIMIT": "off",
        **SPAM_LAYERS_OFF,
        "DELIVERY_RETRY_BASE_SECONDS": 1,
        "DELIVERY_RETRY_MAX_SECONDS": 2,
        "DELIVERY_POLL_SECONDS": 1,
    }
