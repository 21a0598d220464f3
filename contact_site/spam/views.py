"""`GET /altcha`: a fresh proof-of-work challenge for the page's script (docs/spam-verdicts.md)."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify
from flask.typing import ResponseReturnValue

from ..database import utcnow
from .altcha import new_challenge

bp = Blueprint("spam", __name__)


@bp.get("/altcha")
def challenge() -> ResponseReturnValue:
    """A signed challenge with its expiry; 404 when CONTACT_PROOF_OF_WORK is off."""
    if current_app.config["CONTACT_PROOF_OF_WORK"] != "altcha":
        abort(404)
    # Each answer is new and for one visitor: no cache may keep or share it.
    return jsonify(new_challenge(utcnow())), 200, {"Cache-Control": "no-store"}
