"""The spam defence as a visitor meets it: a solved challenge, a form served a while ago."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from altcha import PayloadV1, solve_challenge_v1

from contact_site.database import utcnow
from contact_site.spam import issue_form_time
from contact_site.spam.altcha import new_challenge

# The shipped defaults of the layers support.settings turns off for every other test.
LAYERS_ON = {"CONTACT_MIN_FILL_SECONDS": 3, "CONTACT_PROOF_OF_WORK": "altcha",
             "CONTACT_DUPLICATE_HOURS": 24}


def solve(challenge: Mapping[str, object]) -> str:
    """The `altcha` field solving a challenge of `GET /altcha` (brute force, as the page does)."""
    salt, target = str(challenge["salt"]), str(challenge["challenge"])
    found = solve_challenge_v1(target, salt, "SHA-256", int(str(challenge["maxnumber"])))
    assert found is not None, "the challenge has no solution within maxnumber"
    return PayloadV1("SHA-256", target, found.number, salt,
                     str(challenge["signature"])).to_base64()


def fresh_proof(now: datetime | None = None) -> str:
    """A solved challenge of this app (call inside an app context)."""
    return solve(new_challenge(now or utcnow()))


def served_ago(seconds: float) -> str:
    """A `form_time` token for a form served `seconds` ago (call inside an app context)."""
    return issue_form_time(utcnow() - timedelta(seconds=seconds))
