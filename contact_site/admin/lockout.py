"""At most 5 failed sign-ins a minute per client network and per username, then 429.

Failures are counted in the rate limiter's storage (the database, or Redis when
RATELIMIT_STORAGE_URI is set), so every process of the deployment sees the same
count. The limiter's strategy is used directly rather than through a decorator:
only failures count, and CONTACT_RATE_LIMIT=off (the public form's switch) must
not turn the lockout off.
"""

from __future__ import annotations

import hashlib
import time

from limits import RateLimitItemPerMinute

from ..ratelimit import client_address, limiter

FAILURES_PER_MINUTE = RateLimitItemPerMinute(5, namespace="console-sign-in")


def _identifiers(username: str) -> list[tuple[str, str]]:
    # The typed name is hashed: people type their password into the name field.
    name = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
    return [("ip", client_address()), ("user", name)]


def retry_after(username: str) -> int | None:
    """Seconds to wait when the client or the username used up its failures, else None."""
    strategy = limiter.limiter
    waits = [strategy.get_window_stats(FAILURES_PER_MINUTE, *key).reset_time - time.time()
             for key in _identifiers(username)
             if not strategy.test(FAILURES_PER_MINUTE, *key)]
    return max(1, int(max(waits)) + 1) if waits else None


def count_failure(username: str) -> None:
    """One more failed sign-in for this client and this username."""
    for key in _identifiers(username):
        limiter.limiter.hit(FAILURES_PER_MINUTE, *key)
