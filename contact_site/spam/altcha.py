"""Proof of work with the ALTCHA protocol (v1): signed challenges, checked solutions.

`GET /altcha` hands out a challenge: a random secret number in 0..MAX_NUMBER is
hidden in `challenge = SHA-256(salt + number)`, and the challenge is signed with
an HMAC key derived from SECRET_KEY (one signed under a key of SECRET_KEY_FALLBACKS
still verifies, so a key change loses no open page). The page's script finds the
number by trying them in turn, and posts `{algorithm, challenge, number, salt,
signature}` as base64 JSON in the `altcha` field. The expiry travels inside the
salt, so it is covered by the hash and the signature. The altcha package creates and verifies;
it keeps no record of what it accepted, so replay.py does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

# The ALTCHA protocol's first version (docs/spam-verdicts.md; the package's default is v2).
from altcha.v1 import ChallengeOptions, Payload, create_challenge, verify_solution
from flask import current_app

from ..keys import secret_keys
from . import replay
from .clock import as_utc, naive_utc

FIELD = "altcha"
ALGORITHM: Final[Literal["SHA-256"]] = "SHA-256"
# Difficulty. The secret number is uniform in 0..MAX_NUMBER, so a solver hashes
# MAX_NUMBER / 2 times on average and MAX_NUMBER at worst. Measured with
# static/altcha-worker.js in headless Chromium on a shared 2-core server: 100,000 to
# 190,000 digests a second; a mid-range phone is taken as 3 to 4 times slower (about
# 40,000 a second): some 0.6 s on average, 1.3 s at worst. To be measured on a real
# phone (and in the browser test) before changing it. It costs a bot the same per
# message, and a bot that runs no JavaScript cannot pay it at all.
MAX_NUMBER = 50_000
# Long enough to solve and write a message; the page fetches a fresh challenge
# before this runs out, so a form kept open for hours still posts a live one.
CHALLENGE_LIFETIME = timedelta(minutes=20)
KEY_SALT = b"contact_site.spam.altcha"
# Far above any honest payload (about 250 bytes): longer ones are not even decoded.
MAX_PAYLOAD_CHARS = 2048


@dataclass(frozen=True)
class Solution:
    """A decoded `altcha` field, with every field of the right type."""

    challenge: str
    number: int
    salt: str
    signature: str

    def as_payload(self) -> Payload:
        """What the altcha package verifies (the algorithm is always ALGORITHM)."""
        return Payload(ALGORITHM, self.challenge, self.number, self.salt, self.signature)


def hmac_key(secret: str | None = None) -> bytes:
    """The challenges' signing key: derived from SECRET_KEY (or the key given), so it is not
    the key itself."""
    key = str(current_app.config["SECRET_KEY"] if secret is None else secret).encode()
    return hmac.new(key, KEY_SALT, hashlib.sha256).digest()


def is_signed_by_us(solution: Solution) -> bool:
    """Whether the solution is right and its challenge was signed under one of our keys."""
    return any(verify_solution(solution.as_payload(), hmac_key(key), check_expires=False)[0]
               for key in secret_keys())


def new_challenge(now: datetime) -> dict[str, object]:
    """A fresh signed challenge, as `GET /altcha` answers it (docs/spam-verdicts.md)."""
    options = ChallengeOptions(algorithm=ALGORITHM, max_number=MAX_NUMBER,
                                 hmac_key=hmac_key(), expires=as_utc(now) + CHALLENGE_LIFETIME)
    challenge = create_challenge(options)
    return {"algorithm": challenge.algorithm, "challenge": challenge.challenge,
            "salt": challenge.salt, "signature": challenge.signature,
            "maxnumber": challenge.max_number}


def check_proof(value: str | None, now: datetime) -> str | None:
    """The proof's reason code, or None when it is valid and used for the first time.

    `no_proof` (suspect): no solution (no JavaScript, or a bot); `proof_expired`
    (suspect): ours, but older than its lifetime; `proof_replayed` (suspect): ours,
    accepted once already; `proof_forged` (spam): not a solution we signed.
    """
    if not value or not value.strip():
        return "no_proof"
    solution = decode_solution(value)
    if solution is None:
        return "proof_forged"
    if not is_signed_by_us(solution):
        return "proof_forged"
    expires_at = expiry_of(solution.salt)
    if expires_at is None:  # every challenge we sign has one
        return "proof_forged"
    if expires_at <= naive_utc(now):
        return "proof_expired"
    if not replay.use_challenge(solution.challenge, expires_at, naive_utc(now)):
        return "proof_replayed"
    return None


def decode_solution(value: str) -> Solution | None:
    """The base64 JSON solution, or None when it is not one (any shape a bot may post)."""
    if len(value) > MAX_PAYLOAD_CHARS:
        return None
    try:
        data = json.loads(base64.b64decode(value.strip(), validate=True))
    except (binascii.Error, ValueError):  # also UnicodeDecodeError and JSONDecodeError
        return None
    if not isinstance(data, dict):
        return None
    texts = [data.get(name) for name in ("algorithm", "challenge", "salt", "signature")]
    number = data.get("number")
    # bool is an int in Python; a number must be a plain non-negative JSON integer.
    if not all(isinstance(t, str) for t in texts) or type(number) is not int or number < 0:
        return None
    algorithm, challenge, salt, signature = (str(t) for t in texts)
    if algorithm != ALGORITHM:  # ours are all SHA-256; no other is accepted
        return None
    return Solution(challenge, number, salt, signature)


def expiry_of(salt: str) -> datetime | None:
    """The naive UTC expiry written in a challenge's salt (`…?expires=<epoch>&`)."""
    _nonce, _, query = salt.partition("?")
    values = urllib.parse.parse_qs(query).get("expires", [])
    if len(values) != 1 or not (values[0].isascii() and values[0].isdigit()):
        return None
    try:
        return naive_utc(datetime.fromtimestamp(int(values[0]), UTC))
    except (OverflowError, ValueError, OSError):
        return None
