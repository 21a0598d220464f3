"""Rate limits on posting the form, counted where every process of the deployment sees them."""

from __future__ import annotations

import ipaddress
import logging
import time
from typing import Any

from flask import Flask, Response, current_app, g, request
from flask_babel import lazy_gettext as _l
from flask_limiter import Limiter, RequestLimit
from flask_limiter._limits import RouteLimit
from limits.errors import ConfigurationError
from limits.storage import Storage
from sqlalchemy import String, case, delete, insert, select, text, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from .config import ConfigError
from .extensions import Model, db

log = logging.getLogger("contact_site")

DATABASE_STORAGE_URI = "contact-site-db://"
# An IPv6 client gets a whole /64 from its provider and picks addresses inside it freely.
IPV6_CLIENT_PREFIX = 64
RATE_LIMIT_MESSAGE = _l("You have sent several messages in a short time. "
                        "Please wait a while before sending another one.")


class RateLimitCounter(Model):
    """One fixed-window counter: the hits a key has had until its window ends."""

    __tablename__ = "rate_limit"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    count: Mapped[int]
    expires_at: Mapped[float] = mapped_column(index=True)  # epoch seconds, as `limits` uses


class DatabaseStorage(Storage):
    """A `limits` storage in the application's database, for the fixed-window strategy.

    Hand-written because `limits` ships no SQL storage and no maintained package
    adds one; the database is the one service every process already shares.
    """

    STORAGE_SCHEME = ["contact-site-db"]

    @property
    def base_exceptions(self) -> type[Exception]:
        """What a broken database raises."""
        return SQLAlchemyError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        """Add `amount` to the key's window; 0 (never over a limit) when the database fails."""
        if storage_error() is not None:  # it failed once in this request: do not wait again
            return 0
        try:
            for _ in range(3):
                try:
                    return self._incr(key, expiry, amount)
                except IntegrityError:  # a concurrent first hit inserted the key: update it
                    continue
            return self._incr(key, expiry, amount)
        except SQLAlchemyError as error:
            # Fail open, as for any limit store, but remember it: the view then answers
            # 503 at once instead of waiting for the same database a second time.
            g.contact_limit_storage_error = error
            log.warning("rate limit not counted: the database is unavailable (%s)",
                        type(error).__name__)
            return 0

    def _incr(self, key: str, expiry: int, amount: int) -> int:
        """One transaction: UPDATE the row under its lock, or INSERT it when missing."""
        table, now = RateLimitCounter.__table__, time.time()
        ended = table.c.expires_at <= now
        with db.engine.begin() as conn:
            updated = conn.execute(update(table).where(table.c.key == key).values(
                count=case((ended, amount), else_=table.c.count + amount),
                expires_at=case((ended, now + expiry), else_=table.c.expires_at),
            ))
            if updated.rowcount:
                return int(conn.scalar(select(table.c.count).where(table.c.key == key)) or 0)
            conn.execute(delete(table).where(ended))  # new keys are rare: prune old windows
            conn.execute(insert(table).values(key=key, count=amount, expires_at=now + expiry))
            return amount

    def get(self, key: str) -> int:
        """Hits in the key's current window (0 when it has ended)."""
        return self._live(RateLimitCounter.count, key) or 0

    def get_expiry(self, key: str) -> float:
        """When the key's current window ends (now when there is none)."""
        return self._live(RateLimitCounter.expires_at, key) or time.time()

    def _live(self, column: Any, key: str) -> Any:
        with db.engine.connect() as conn:
            return conn.scalar(select(column).where(
                RateLimitCounter.key == key, RateLimitCounter.expires_at > time.time()))

    def check(self) -> bool:
        """True when the database answers."""
        try:
            with db.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        """Forget every counter."""
        with db.engine.begin() as conn:
            return conn.execute(delete(RateLimitCounter.__table__)).rowcount

    def clear(self, key: str) -> None:
        """Forget one key's counter."""
        with db.engine.begin() as conn:
            conn.execute(delete(RateLimitCounter.__table__).where(
                RateLimitCounter.key == key))


def storage_error() -> SQLAlchemyError | None:
    """The database error the limit store met in this request, if any."""
    error: SQLAlchemyError | None = g.get("contact_limit_storage_error")
    return error


def network_of(address: str) -> str:
    """What one client is counted as: an IPv4 address (also IPv4-mapped IPv6), an IPv6 /64."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


def client_address() -> str:
    """The client's network; behind a proxy, ProxyFix (PROXY_FIX_X_FOR) gives its address."""
    return network_of(request.remote_addr or "unknown")


def contact_rate_limit() -> str:
    """CONTACT_RATE_LIMIT, read at request time."""
    return str(current_app.config["CONTACT_RATE_LIMIT"])


def _retry_after(limit: RequestLimit) -> Response:
    """The 429's Retry-After: whole seconds until the window that was passed ends."""
    seconds = max(1, int(limit.reset_at - time.time()))
    return Response(status=429, headers={"Retry-After": str(seconds)})


# A limit store that fails must not cost the owner messages: errors are logged and
# the request goes on (swallow_errors). The same instance serves every app of the
# process; its storage is the one of the app initialised last.
limiter = Limiter(client_address, strategy="fixed-window", on_breach=_retry_after,
                  swallow_errors=True, headers_enabled=False)


@limiter.request_filter
def _limits_off() -> bool:
    """CONTACT_RATE_LIMIT=off turns every limit off."""
    return bool(current_app.config["CONTACT_RATE_LIMIT"] == "off")


def rate_limit_message() -> str:
    """The 429's words, in the request's language."""
    return str(RATE_LIMIT_MESSAGE)


def limit_posts() -> RouteLimit:
    """Decorator for the view that takes the form: CONTACT_RATE_LIMIT per client address."""
    return limiter.limit(contact_rate_limit, methods=["POST"], error_message=rate_limit_message)


def init_app(app: Flask) -> None:
    """Count in Redis when RATELIMIT_STORAGE_URI is set, else in the application's database."""
    config = app.config
    config["RATELIMIT_STORAGE_URI"] = config.get("RATELIMIT_STORAGE_URI") or DATABASE_STORAGE_URI
    config.setdefault("RATELIMIT_ENABLED", True)
    try:
        limiter.init_app(app)
    except ConfigurationError as error:
        raise ConfigError("RATELIMIT_STORAGE_URI", f"is not usable: {error}") from None
