"""Failed sign-ins slow down and stop a guesser, never the owner on a network of their own.

The rule (README, "Sign-in rules"); a network is one IPv4 address or one IPv6 /64, as the
form's rate limit counts clients:

- Per network: 5 tries a minute that are not right passwords, whatever the username.
  Further tries in that minute get 429 with Retry-After, the right password too.
- Per account (the typed username): 5 tries a minute that are not right passwords from
  networks that have not signed in to it in the last 30 days. Past that, a network that
  has failed for this username in the last 15 minutes gets 429 until the account's minute
  ends, the right password too.
- A network with no failure for the username, or one that signed in to it in the last
  30 days, is never refused because of the account's count: guessing at the owner's
  name from elsewhere cannot keep the owner out.

Each try is counted before its password is checked: one atomic increment in the limit
store (an UPDATE in the database, a script in Redis) returns the new count, and that
count decides. So parallel tries cannot all read "4" and all pass: of a burst, exactly
the allowed number is checked. A right password takes its try back afterwards.

The counters live in the rate limiter's storage (the database, or Redis when
RATELIMIT_STORAGE_URI is set), shared by every process. The storage is used directly,
not through a decorator, so CONTACT_RATE_LIMIT=off (the public form's switch) does not
turn the lockout off. Should the store fail, sign-in goes on (and the failure is logged)
rather than shutting the owner out.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, replace

from limits import RateLimitItem, RateLimitItemPerDay, RateLimitItemPerMinute

from ..ratelimit import client_address, limiter

log = logging.getLogger("contact_site")

NAMESPACE = "console-sign-in"
PER_NETWORK = RateLimitItemPerMinute(5, namespace=NAMESPACE)
PER_ACCOUNT = RateLimitItemPerMinute(5, namespace=NAMESPACE)
# How long a failure marks a network as a suspect for that username, and a sign-in as trusted.
FAILED_HERE = RateLimitItemPerMinute(1, 15, namespace=NAMESPACE)
SIGNED_IN_HERE = RateLimitItemPerDay(1, 30, namespace=NAMESPACE)


@dataclass(frozen=True)
class Attempt:
    """One sign-in try, already counted; `retry_after` is set when it is refused."""

    network: str
    account: str | None  # the account's counter, when this try was counted against it
    failed_here: str
    signed_in_here: str
    retry_after: int | None = None


def _account_id(username: str) -> str:
    """The typed name as counted: hashed, since people type their password into it."""
    return hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]


def _add(key: str, item: RateLimitItem, amount: int = 1) -> int:
    """Add to the key's counter in one atomic step; its new value (0 if the store fails)."""
    storage = limiter.storage
    try:
        return int(storage.incr(key, item.get_expiry(), amount))
    except storage.base_exceptions as error:
        log.warning("sign-in not counted: the limit store failed (%s)", type(error).__name__)
        return 0


def _read(key: str) -> int:
    """The key's counter in its current window (0 if the store fails)."""
    storage = limiter.storage
    try:
        return int(storage.get(key))
    except storage.base_exceptions as error:
        log.warning("sign-in count not read: the limit store failed (%s)", type(error).__name__)
        return 0


def _seconds_left(key: str) -> int:
    """Whole seconds until the key's window ends, at least 1."""
    try:
        ends = float(limiter.storage.get_expiry(key))
    except limiter.storage.base_exceptions:
        ends = time.time() + 60
    return max(1, math.ceil(ends - time.time()))


def begin(username: str) -> Attempt:
    """Count a try at `username` from this client's network; refused if a limit is passed."""
    account, network = _account_id(username), client_address()
    per_account = PER_ACCOUNT.key_for("account", account)
    attempt = Attempt(network=PER_NETWORK.key_for("network", network), account=per_account,
                      failed_here=FAILED_HERE.key_for("failed", account, network),
                      signed_in_here=SIGNED_IN_HERE.key_for("signed-in", account, network))
    if _add(attempt.network, PER_NETWORK) > PER_NETWORK.amount:
        return replace(attempt, retry_after=_seconds_left(attempt.network))
    if _read(attempt.signed_in_here):  # the account signed in from here: not a suspect
        return replace(attempt, account=None)
    over = _add(per_account, PER_ACCOUNT) > PER_ACCOUNT.amount
    if over and _read(attempt.failed_here):  # only a network that failed here is stopped
        return replace(attempt, retry_after=_seconds_left(per_account))
    return attempt


def succeeded(attempt: Attempt) -> None:
    """The password was right: take the try back and trust this network for the account."""
    # A refund landing just after its window ended starts the next window one lower; only
    # the right password gets here, so a guesser cannot use that.
    _add(attempt.network, PER_NETWORK, -1)
    if attempt.account is not None:
        _add(attempt.account, PER_ACCOUNT, -1)
    try:
        limiter.storage.clear(attempt.signed_in_here)  # the 30 days start again from now
    except limiter.storage.base_exceptions:
        pass  # _add below logs a failing store
    _add(attempt.signed_in_here, SIGNED_IN_HERE)


def failed(attempt: Attempt) -> None:
    """The password was wrong: this network is now a suspect for this username."""
    _add(attempt.failed_here, FAILED_HERE)
