"""The site's signing keys: SECRET_KEY, then the SECRET_KEY_FALLBACKS it replaced.

Everything the site signs (sessions, CSRF tokens, the time trap, proof-of-work
challenges, message fingerprints) is signed with the current key and accepted
under any of these, so SECRET_KEY can be rotated without losing a page left open,
a console session or a duplicate seen before the change (README: rotating the key).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Flask, current_app


def secret_keys(app: Flask | None = None) -> list[str]:
    """SECRET_KEY first, then each of SECRET_KEY_FALLBACKS, without repeats."""
    config = (app or current_app).config
    keys = [str(config["SECRET_KEY"]), *map(str, config.get("SECRET_KEY_FALLBACKS") or ())]
    return list(dict.fromkeys(keys))


def oldest_first(app: Flask | None = None) -> list[str]:
    """The keys in itsdangerous' order: it signs with the last and accepts any."""
    return secret_keys(app)[::-1]


def keyed_digests(data: bytes) -> list[str]:
    """HMAC-SHA-256 of `data` in hex under each key, current first: store the first, look
    for all of them."""
    return [hmac.new(key.encode(), data, hashlib.sha256).hexdigest() for key in secret_keys()]
