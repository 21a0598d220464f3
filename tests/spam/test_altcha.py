"""Proof of work: `GET /altcha` hands out signed challenges; each solution counts once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from altcha import ChallengeOptionsV1, create_challenge_v1
from altcha.v1 import verify_solution

from contact_site.database import utcnow
from contact_site.extensions import db
from contact_site.spam.altcha import (
    CHALLENGE_LIFETIME,
    KEY_SALT,
    MAX_NUMBER,
    check_proof,
    expiry_of,
    hmac_key,
    new_challenge,
)
from contact_site.spam.models import UsedChallenge
from support.spam import LAYERS_ON, fresh_proof, solve

# An app with proof of work on (the default); no delivery needed.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.settings(**LAYERS_ON)]


def test_get_altcha_answers_a_fresh_signed_challenge(app):
    """The JSON docs/spam-verdicts.md describes, never cached, different on every call, expiring
    in 20 minutes."""
    client = app.test_client()
    first, second = client.get("/altcha"), client.get("/altcha")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-store"
    body = first.get_json()
    assert set(body) == {"algorithm", "challenge", "salt", "signature", "maxnumber"}
    assert body["algorithm"] == "SHA-256" and body["maxnumber"] == MAX_NUMBER
    assert body["challenge"] != second.get_json()["challenge"]
    expires = expiry_of(body["salt"])
    assert expires is not None
    assert abs(expires - (utcnow() + CHALLENGE_LIFETIME)) < timedelta(seconds=5)


def test_a_solution_of_get_altcha_is_accepted_once(app):
    """The first post of a solution passes; the same solution again is `proof_replayed`."""
    payload = solve(app.test_client().get("/altcha").get_json())
    with app.app_context():
        assert check_proof(payload, utcnow()) is None
        assert check_proof(payload, utcnow()) == "proof_replayed"
        assert db.session.get(UsedChallenge, json.loads(base64.b64decode(payload))["challenge"])


def test_a_replay_through_another_app_instance_is_refused(make_app):
    """Two processes on one database share the record of used challenges."""
    first, second = make_app(deliver=False, **LAYERS_ON), make_app(deliver=False, **LAYERS_ON)
    with first.app_context():
        payload = fresh_proof()
        assert check_proof(payload, utcnow()) is None
    with second.app_context():
        assert check_proof(payload, utcnow()) == "proof_replayed"


@pytest.mark.parametrize("value", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_no_solution_is_no_proof(app, value):
    """A visitor without JavaScript posts no solution: `no_proof`, suspect
    (docs/spam-verdicts.md)."""
    with app.app_context():
        assert check_proof(value, utcnow()) == "no_proof"


def encoded(data: object) -> str:
    return base64.b64encode(json.dumps(data).encode()).decode()


def forgeries(payload: str, secret: str) -> dict[str, str]:
    """Solutions a bot could post instead of solving a challenge of ours."""
    real = json.loads(base64.b64decode(payload))
    other_key = create_challenge_v1(ChallengeOptionsV1(
        max_number=10, hmac_key=secret, expires=utcnow() + timedelta(minutes=5)))
    longer = real["salt"].replace("expires=", "expires=9")
    return {
        "wrong-number": encoded({**real, "number": real["number"] + 1}),
        "number-as-text": encoded({**real, "number": str(real["number"])}),
        "number-as-bool": encoded({**real, "number": True}),
        "negative-number": encoded({**real, "number": -1}),
        "longer-expiry": encoded({**real, "salt": longer}),
        "other-signature": encoded({**real, "signature": "0" * 64}),
        "sha-1": encoded({**real, "algorithm": "SHA-1"}),
        "missing-field": encoded({k: v for k, v in real.items() if k != "signature"}),
        "signed-with-the-raw-secret": solve({**other_key.to_dict(), "maxnumber": 10}),
        "json-list": encoded([real]),
        "json-number": encoded(7),
        "not-json": base64.b64encode(b"\xff\xfe not json").decode(),
        "not-base64": "!!!not base64!!!",
        "huge": encoded({**real, "pad": "x" * 5000}),
        "null-fields": encoded({k: None for k in real}),
    }


def test_anything_but_a_solution_we_signed_is_forged(app):
    """A changed, foreign or malformed solution is `proof_forged` (spam), never a 500."""
    with app.app_context():
        payload = fresh_proof()
        for name, value in forgeries(payload, app.config["SECRET_KEY"]).items():
            assert check_proof(value, utcnow()) == "proof_forged", name
        assert check_proof(payload, utcnow()) is None  # the forgeries did not use it up


def test_an_expired_solution_is_not_forged_but_expired(app):
    """A solution of ours posted after its challenge expired is `proof_expired` (suspect)."""
    with app.app_context():
        payload = fresh_proof(utcnow() - CHALLENGE_LIFETIME - timedelta(seconds=1))
        assert check_proof(payload, utcnow()) == "proof_expired"


def test_a_solution_is_checked_at_the_time_given(app):
    """The expiry is compared with the `now` passed in, not with the process's clock."""
    with app.app_context():
        payload = fresh_proof()
        assert check_proof(payload, utcnow() + CHALLENGE_LIFETIME) == "proof_expired"
        assert check_proof(payload, utcnow()) is None


def test_used_challenges_are_forgotten_once_expired(app):
    """The record of used challenges holds only challenges that could still be replayed."""
    with app.app_context():
        old = fresh_proof(utcnow() - CHALLENGE_LIFETIME + timedelta(seconds=30))
        assert check_proof(old, utcnow()) is None
        later = utcnow() + timedelta(minutes=1)
        assert check_proof(fresh_proof(), later) is None  # its record prunes the expired one
        assert db.session.query(UsedChallenge).count() == 1


def test_the_signing_key_is_derived_from_the_secret_not_the_secret_itself(app):
    """A leak of one challenge's key would not be a leak of SECRET_KEY, nor the reverse."""
    with app.app_context():
        assert hmac_key() != app.config["SECRET_KEY"].encode()
        assert len(hmac_key()) == 32


def test_proof_of_work_off_serves_no_challenge(make_app):
    """CONTACT_PROOF_OF_WORK=off: `GET /altcha` is 404 (the page's script then does nothing)."""
    app = make_app(deliver=False, CONTACT_PROOF_OF_WORK="off")
    assert app.test_client().get("/altcha").status_code == 404


def test_new_challenges_take_a_bounded_search(app):
    """The secret number lies within maxnumber, so an honest solver always finds it."""
    with app.app_context():
        challenge = new_challenge(utcnow())
    number = json.loads(base64.b64decode(solve(challenge)))["number"]
    assert 0 <= number <= MAX_NUMBER


OLD_KEY = "the-key-before-the-rotation-0123456789"
NEW_KEY = "the-key-after-the-rotation-9876543210"


def test_a_challenge_signed_under_a_fallback_key_still_verifies(make_app):
    """A challenge fetched before a SECRET_KEY change is solved and posted after it."""
    before = make_app(deliver=False, SECRET_KEY=OLD_KEY, **LAYERS_ON)
    with before.app_context():
        payload, spare = fresh_proof(), fresh_proof()
    forgot = make_app(deliver=False, SECRET_KEY=NEW_KEY, **LAYERS_ON)
    with forgot.app_context():
        assert check_proof(spare, utcnow()) == "proof_forged"
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY,
                     **LAYERS_ON)
    with after.app_context():
        assert check_proof(payload, utcnow()) is None
        assert check_proof(payload, utcnow()) == "proof_replayed"  # still counted once


def test_new_challenges_are_signed_with_the_current_key(make_app):
    """After the change, challenges are signed with a key derived from SECRET_KEY alone."""
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY,
                     **LAYERS_ON)
    with after.app_context():
        payload = fresh_proof()
        assert hmac_key() == hmac_key(NEW_KEY) != hmac_key(OLD_KEY)
    assert verify_solution(payload, hmac_key_of(NEW_KEY))[0]
    assert not verify_solution(payload, hmac_key_of(OLD_KEY))[0]


def hmac_key_of(secret: str) -> bytes:
    """The challenges' key for `secret`, computed here as the module documents it."""
    return hmac.new(secret.encode(), KEY_SALT, hashlib.sha256).digest()
