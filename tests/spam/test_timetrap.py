"""The time trap: a signed `form_time` field says when the form was served
(docs/spam-verdicts.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from contact_site.database import utcnow
from contact_site.spam import issue_form_time
from contact_site.spam.timetrap import SALT, check_form_time
from support.spam import LAYERS_ON, served_ago

# An app with the default minimum fill time (3 s); no delivery needed.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.settings(**LAYERS_ON)]


@pytest.mark.parametrize(("seconds", "reason"), [
    (0, "too_fast"),
    (1, "too_fast"),
    (2, "too_fast"),
    (4, None),
    (60, None),
    (3 * 3600, None),  # a form kept open for hours
    (10 * 86400, None),  # or for days: an old time is no sign of a bot
], ids=["at-once", "1s", "2s", "4s", "a-minute", "hours", "days"])
def test_a_post_sooner_than_the_minimum_after_serving_is_too_fast(app, seconds, reason):
    """CONTACT_MIN_FILL_SECONDS (3) after the form was served, a post passes the rule."""
    with app.app_context():
        assert check_form_time(served_ago(seconds), utcnow()) == reason


def test_a_time_in_the_future_is_too_fast(app):
    """A token whose time lies ahead of the server's clock passes no minimum."""
    with app.app_context():
        token = issue_form_time(utcnow() + timedelta(minutes=5))
        assert check_form_time(token, utcnow()) == "too_fast"


def tampered_tokens(good: str, secret: str) -> list[str]:
    """Tokens a bot could post instead of the one it was served."""
    value, _, signature = good.rpartition(".")
    # The first character: the last one's low bits are padding, which decoding ignores.
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    older = TimestampSigner(secret, salt=SALT)
    older.get_timestamp = lambda: 0  # type: ignore[method-assign]
    return [
        f"{value}.{flipped}",  # a changed signature
        older.sign("served").decode().rpartition(".")[0] + "." + signature,  # an older time
        TimestampSigner("another-secret-key-entirely", salt=SALT).sign("served").decode(),
        TimestampSigner(secret, salt="another.salt").sign("served").decode(),
        URLSafeTimedSerializer(secret, salt=SALT).dumps({"t": 0}),  # our key, another payload
        TimestampSigner(secret, salt=SALT).sign("other").decode(),
        "garbage", "....", "served.AAAA.BBBB", "é" * 40, " ",
    ]


def test_a_tampered_or_foreign_token_is_reported_as_tampered(app):
    """Anything but a token this app signed for this purpose is `time_tampered`."""
    with app.app_context():
        good = served_ago(60)
        secret = app.config["SECRET_KEY"]
        for token in tampered_tokens(good, secret):
            assert check_form_time(token, utcnow()) == "time_tampered", token


@pytest.mark.parametrize("token", [None, ""], ids=["absent", "empty"])
def test_a_missing_time_is_its_own_reason(app, token):
    """No `form_time` at all (a page served before the rule existed) is `no_form_time`."""
    with app.app_context():
        assert check_form_time(token, utcnow()) == "no_form_time"


def test_the_token_needs_no_session_and_is_valid_in_every_process(make_app):
    """Served by one app instance, checked by another with the same secret: no shared state."""
    first, second = make_app(deliver=False, **LAYERS_ON), make_app(deliver=False, **LAYERS_ON)
    with first.app_context():
        token = served_ago(30)
    with second.app_context():
        assert check_form_time(token, utcnow()) is None


def test_a_minimum_of_zero_turns_the_rule_off(make_app):
    """CONTACT_MIN_FILL_SECONDS=0: no time is asked, and none is judged."""
    app = make_app(deliver=False, CONTACT_MIN_FILL_SECONDS="0")
    with app.app_context():
        assert check_form_time(None, utcnow()) is None
        assert check_form_time("garbage", utcnow()) is None
        assert check_form_time(served_ago(0), utcnow()) is None


def test_the_token_holds_no_data_but_its_time(app):
    """What travels in the page is a fixed word, a timestamp and a signature."""
    with app.app_context():
        value, timestamp, signature = issue_form_time().split(".")
    assert value == "served"
    assert timestamp and signature


OLD_KEY = "the-key-before-the-rotation-0123456789"
NEW_KEY = "the-key-after-the-rotation-9876543210"


def test_a_token_signed_under_a_fallback_key_still_verifies(make_app):
    """A page served before a SECRET_KEY change posts after it, with the old key a fallback."""
    before = make_app(deliver=False, SECRET_KEY=OLD_KEY, **LAYERS_ON)
    with before.app_context():
        token = served_ago(60)
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY,
                     **LAYERS_ON)
    with after.app_context():
        assert check_form_time(token, utcnow()) is None
    forgot = make_app(deliver=False, SECRET_KEY=NEW_KEY, **LAYERS_ON)
    with forgot.app_context():
        assert check_form_time(token, utcnow()) == "time_tampered"


def test_new_tokens_are_signed_with_the_current_key(make_app):
    """After the change, tokens are signed with SECRET_KEY alone, never with a fallback."""
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY,
                     **LAYERS_ON)
    with after.app_context():
        token = served_ago(60)
    value, _, signature = token.rpartition(".")
    assert TimestampSigner(NEW_KEY, salt=SALT).verify_signature(value, signature)
    assert not TimestampSigner(OLD_KEY, salt=SALT).verify_signature(value, signature)
