"""Every submission's verdict: ham, suspect or spam, with each reason (docs/spam-verdicts.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from contact_site.database import utcnow
from contact_site.extensions import db
from contact_site.forms import form_of
from contact_site.spam import Verdict, VerdictKind, judge
from contact_site.spam.verdict import REASONS, kind_of, reasons_from_text
from support.spam import LAYERS_ON, fresh_proof, served_ago

ADDRESS = "192.0.2.50"
MESSAGE = "Hello,\nI have a question about the analytical engine."
# The owner's blocklist, naming one word: "lottery".
BLOCKLIST = Path(__file__).resolve().parents[1] / "fixtures" / "blocklist.txt"

# Default settings, plus the blocklist; no delivery needed.
pytestmark = [pytest.mark.manual_delivery,
              pytest.mark.settings(CONTACT_BLOCKLIST_FILE=str(BLOCKLIST), **LAYERS_ON)]


def person(**changes: Any) -> dict[str, str]:
    """What a person's browser posts, with JavaScript: a time, a proof, nothing in the trap.

    A change may be a function, called in the app's context (to sign or solve there).
    """
    values = {"website": "", "form_time": served_ago(20), "altcha": fresh_proof(),
              "message": MESSAGE, "subject": "Engines", "name": "Ada",
              "email": "ada@example.com"}
    values.update({key: value() if callable(value) else value for key, value in changes.items()})
    return {key: value for key, value in values.items() if value is not None}


def verdict_of(app, **changes: Any) -> Verdict:
    """The verdict on one post, committed as the submission would be."""
    with app.test_request_context(method="POST"):
        verdict = judge(person(**changes), ADDRESS, utcnow(), form_of(None))
        db.session.add_all(verdict.remember)
        db.session.commit()
        return verdict


def test_a_normal_visitor_is_ham_without_reasons(app):
    """Time, proof and content all fine: ham, both mails."""
    assert verdict_of(app) == Verdict(VerdictKind.HAM, ())


@pytest.mark.parametrize(("changes", "kind", "reasons"), [
    ({"website": "https://bot.example"}, VerdictKind.SPAM, ("honeypot",)),
    ({"form_time": lambda: served_ago(0)}, VerdictKind.SPAM, ("too_fast",)),
    ({"form_time": "served.AAAAAA.forged"}, VerdictKind.SPAM, ("time_tampered",)),
    ({"form_time": None}, VerdictKind.SUSPECT, ("no_form_time",)),
    ({"altcha": None}, VerdictKind.SUSPECT, ("no_proof",)),
    ({"altcha": "eyJhbGdvcml0aG0iOiAiU0hBLTI1NiJ9"}, VerdictKind.SPAM, ("proof_forged",)),
    ({"message": "a https://x.example b https://y.example c https://z.example "
                 "d https://w.example"}, VerdictKind.SUSPECT, ("too_many_links",)),
    ({"message": "You won the LOTTERY"}, VerdictKind.SPAM, ("blocklist:lottery",)),
    ({"subject": "lottery"}, VerdictKind.SPAM, ("blocklist:lottery",)),
], ids=["honeypot", "too-fast", "tampered-time", "no-time", "no-proof", "forged-proof",
        "too-many-links", "blocklist-in-message", "blocklist-in-subject"])
def test_each_rule_gives_its_reason_and_kind(app, changes, kind, reasons):
    """One failed rule: its reason code, and the kind docs/spam-verdicts.md gives it."""
    assert verdict_of(app, **changes) == Verdict(kind, reasons)


def test_a_replayed_proof_is_suspect(app):
    """The same solution on a second submission: `proof_replayed`, suspect."""
    with app.app_context():
        proof = fresh_proof()
    assert verdict_of(app, altcha=proof) == Verdict(VerdictKind.HAM, ())
    replayed = verdict_of(app, altcha=proof, message="Another question, about the mill.")
    assert replayed == Verdict(VerdictKind.SUSPECT, ("proof_replayed",))


def test_the_same_message_again_from_the_same_address_is_spam(app):
    """A second post of one text from one address within a day: `duplicate`, spam."""
    assert verdict_of(app).kind is VerdictKind.HAM
    assert verdict_of(app) == Verdict(VerdictKind.SPAM, ("duplicate",))


def test_spam_outranks_suspect_and_every_reason_is_kept(app):
    """A bot without JavaScript that also fills the trap: spam, with both reasons."""
    verdict = verdict_of(app, website="x", altcha=None)
    assert verdict == Verdict(VerdictKind.SPAM, ("honeypot", "no_proof"))


def test_a_visitor_without_javascript_reaches_the_owner_as_suspect(app):
    """No script: a served time but no proof. Suspect (owner's mail), never spam (lost)."""
    assert verdict_of(app, altcha=None) == Verdict(VerdictKind.SUSPECT, ("no_proof",))


def test_with_proof_of_work_off_its_absence_is_not_suspect(make_app):
    """CONTACT_PROOF_OF_WORK=off: no proof is asked, and a post without one is ham."""
    app = make_app(deliver=False, **{**LAYERS_ON, "CONTACT_PROOF_OF_WORK": "off"})
    assert verdict_of(app, altcha=None) == Verdict(VerdictKind.HAM, ())
    assert verdict_of(app, altcha="garbage", message="Other text") == Verdict(VerdictKind.HAM, ())


def test_the_link_limit_is_a_setting(make_app):
    """CONTACT_MAX_LINKS: more than this many links is suspect; this many is not."""
    app = make_app(deliver=False, CONTACT_MAX_LINKS="1", **LAYERS_ON)
    assert verdict_of(app, message="see https://a.example").kind is VerdictKind.HAM
    two = verdict_of(app, message="see https://a.example and https://b.example")
    assert two == Verdict(VerdictKind.SUSPECT, ("too_many_links",))


def test_every_reason_code_has_a_kind():
    """Suspect for what a person may do (no script, an old page), spam for what only bots do."""
    suspect = {r for r, k in REASONS.items() if k is VerdictKind.SUSPECT}
    assert suspect == {"no_form_time", "no_proof", "proof_expired", "proof_replayed",
                       "too_many_links", "embedded_no_proof", "no_origin"}
    assert kind_of("blocklist:anything") is VerdictKind.SPAM


def test_reasons_are_stored_as_text_and_read_back():
    """`verdict_reasons` holds the codes one a line; a blocklist phrase keeps its spaces."""
    verdict = Verdict(VerdictKind.SPAM, ("honeypot", "blocklist:cheap pills"))
    assert reasons_from_text(verdict.reasons_text()) == verdict.reasons
    assert reasons_from_text("") == () and reasons_from_text(None) == ()
    assert Verdict(VerdictKind.HAM).reasons_text() == ""


def test_a_verdict_cannot_be_changed_after_judging():
    """Verdict is frozen; its kind is stored as its plain value."""
    verdict = Verdict(VerdictKind.SUSPECT, ("no_proof",))
    with pytest.raises(dataclasses.FrozenInstanceError):
        verdict.kind = VerdictKind.HAM  # type: ignore[misc]
    assert VerdictKind.SUSPECT == "suspect" and str(VerdictKind.SPAM) == "spam"
