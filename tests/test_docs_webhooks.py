"""docs/examples/verify_webhook.py, the receiver docs/webhooks.md shows, verifies what the
site signs: it takes a good delivery once and refuses a forged, altered or replayed one."""

from __future__ import annotations

import importlib.util
import json
import re
from datetime import UTC, datetime, timedelta
from types import ModuleType
from typing import Any

import pytest

from contact_site.webhooks.signing import new_webhook_id, signature_headers
from support.processes import PROJECT_ROOT

EXAMPLE = PROJECT_ROOT / "docs" / "examples" / "verify_webhook.py"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
EVENT = {"type": "submission.created", "timestamp": "2026-12-07T06:23:53Z", "data": {
    "id": "104770a63aa34456b87c792e9bb5dd24", "form": "contact",
    "created_at": "2026-12-07T06:23:53Z", "verdict": "ham", "language": "en",
    "fields": {"name": "Ada Lovelace", "email": "ada@example.com", "message": "Hello"},
    "files": []}}
BODY = json.dumps(EVENT, separators=(",", ":")).encode()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example, loaded as its owner runs it: the secret in the environment."""
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", SECRET)
    spec = importlib.util.spec_from_file_location("verify_webhook", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def deliver(receiver: ModuleType, body: bytes, headers: dict[str, str]) -> Any:
    """POST a delivery to the example's route, as the site does."""
    return receiver.app.test_client().post(
        "/hooks/contact", data=body, headers={**headers, "Content-Type": "application/json"})


def test_a_signed_delivery_is_handled_once(receiver: ModuleType,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Signed by the site's own signing: 204 and handled; its retry (same id, signed again
    later) is answered 204 without being handled twice."""
    webhook_id = new_webhook_id()
    first = deliver(receiver, BODY, signature_headers(SECRET, webhook_id, BODY))
    retry = deliver(receiver, BODY, signature_headers(
        SECRET, webhook_id, BODY, datetime.now(UTC) + timedelta(seconds=60)))
    assert (first.status_code, retry.status_code) == (204, 204)
    printed = capsys.readouterr().out.splitlines()
    assert printed == [f"submission.created {EVENT['data']}"]


@pytest.mark.parametrize(("case", "body", "headers"), [
    ("another secret", BODY, signature_headers(OTHER_SECRET, "msg_1", BODY)),
    ("body altered", BODY.replace(b"Ada", b"Eve"), signature_headers(SECRET, "msg_2", BODY)),
    ("replayed an hour later", BODY, signature_headers(
        SECRET, "msg_3", BODY, datetime.now(UTC) - timedelta(hours=1))),
    ("unsigned", BODY, {}),
])
def test_a_delivery_not_signed_as_sent_is_refused(
        receiver: ModuleType, capsys: pytest.CaptureFixture[str], case: str, body: bytes,
        headers: dict[str, str]) -> None:
    """400, and nothing handled."""
    assert deliver(receiver, body, headers).status_code == 400, case
    assert capsys.readouterr().out == ""


def test_the_guide_shows_the_example_as_it_is() -> None:
    """docs/webhooks.md quotes the example file word for word: what it shows is what runs."""
    guide = (PROJECT_ROOT / "docs" / "webhooks.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", guide, flags=re.DOTALL)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks
