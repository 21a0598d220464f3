"""Each proof of work is accepted once, across every process that shares the database.

The altcha package keeps no record of what it verified (its `verify_solution`
accepts one solution any number of times), so the challenges already used are
kept here until they expire; after that the signature check refuses them anyway.
The database is the one store every process already shares (Redis would serve
as well, but it is optional in this deployment).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from .models import UsedChallenge


def use_challenge(challenge: str, expires_at: datetime, now: datetime) -> bool:
    """Record the challenge as used; False when it was used before (a replay).

    Committed at once in a transaction of its own, so a concurrent replay in
    another worker meets the row; a database that cannot be reached raises
    SQLAlchemyError, which the caller answers like any storage failure.
    """
    table = UsedChallenge.__table__
    try:
        with db.engine.begin() as conn:
            # Expired rows can no longer be replayed (their signature has expired): prune.
            conn.execute(delete(table).where(table.c.expires_at < now))
            conn.execute(insert(table).values(challenge=challenge, expires_at=expires_at))
    except IntegrityError:
        return False
    return True
