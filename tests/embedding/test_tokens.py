"""The embedded form's one-time token (`GET /f/<slug>/token`, posted as `_token`): signed for one
form, with a nonce and the time it was served, valid three days, under every key of the site
(contact_site.embedding.tokens)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from contact_site.embedding import tokens
from contact_site.keys import oldest_first
from contact_site.spam import issue_form_time

pytestmark = pytest.mark.manual_delivery

OLD_KEY = "the-key-before-the-rotation-0123456789"
NEW_KEY = "the-key-after-the-rotation-9876543210"


def signer_at(moment: datetime) -> type[TimestampSigner]:
    """itsdangerous' signer with its clock stopped at `moment`, as for a token served then."""

    class SignedAt(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(moment.timestamp())

    return SignedAt


def token_served_at(moment: datetime, payload: object) -> str:
    """A token signed as the site signs them (its keys, its salt) but at `moment`."""
    return URLSafeTimedSerializer(oldest_first(), salt=tokens.SALT,
                                  signer=signer_at(moment)).dumps(payload)


def test_a_token_verifies_for_its_form(app):
    """The token issued for a form verifies for it, with a fresh nonce and the time now."""
    with app.app_context():
        before = datetime.now(UTC).replace(microsecond=0)
        issued = tokens.issue("contact")
        token = tokens.verify(issued, "contact")
    assert token is not None
    assert token.slug == "contact"
    assert len(token.nonce) >= 32
    assert before <= token.served_at <= datetime.now(UTC)


def test_each_token_has_a_nonce_of_its_own(app):
    """Two tokens, two nonces: each is the key of one submission."""
    with app.app_context():
        first, second = (tokens.verify(tokens.issue("contact"), "contact") for _ in range(2))
    assert first is not None and second is not None
    assert first.nonce != second.nonce


def test_a_token_for_another_form_is_refused(app):
    """A form's token is no good for any other form."""
    with app.app_context():
        assert tokens.verify(tokens.issue("careers"), "contact") is None


def test_a_token_keeps_the_time_it_was_served(app):
    """The time a token carries is the one it was signed at (the time trap's)."""
    served = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    with app.app_context():
        token = tokens.verify(token_served_at(served, ["contact", "a-nonce"]), "contact")
    assert token is not None
    assert (token.served_at, token.nonce) == (served, "a-nonce")


@pytest.mark.parametrize(("age", "valid"), [
    (timedelta(days=3) - timedelta(minutes=1), True),
    (timedelta(days=3) + timedelta(minutes=1), False),
    (timedelta(days=30), False),
    (-timedelta(minutes=5), False),  # signed in the future: not one this site served
], ids=["within-three-days", "just-over", "a-month", "future"])
def test_a_token_is_valid_three_days(app, age, valid):
    """A tab left open over a weekend still sends; an older token, or a future one, does not."""
    with app.app_context():
        token = token_served_at(datetime.now(UTC) - age, ["contact", "a-nonce"])
        assert (tokens.verify(token, "contact") is not None) is valid


def tampered_tokens(good: str, secret: str) -> list[str | None]:
    """Tokens a bot could post instead of the one it fetched."""
    payload, timestamp, signature = good.rsplit(".", 2)
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    other_payload = URLSafeTimedSerializer(secret, salt=tokens.SALT).dumps(["careers", "n"])
    return [
        f"{payload}.{timestamp}.{flipped}",  # a changed signature
        f"{other_payload.split('.')[0]}.{timestamp}.{signature}",  # another form's payload
        URLSafeTimedSerializer("another-secret-key-entirely", salt=tokens.SALT).dumps(
            ["contact", "n"]),
        URLSafeTimedSerializer(secret, salt="another.salt").dumps(["contact", "n"]),
        # Signed by this site for another purpose: the time trap's token.
        issue_form_time(),
        # Our key and salt, but not a [slug, nonce] pair.
        URLSafeTimedSerializer(secret, salt=tokens.SALT).dumps({"slug": "contact"}),
        URLSafeTimedSerializer(secret, salt=tokens.SALT).dumps(["contact"]),
        URLSafeTimedSerializer(secret, salt=tokens.SALT).dumps(["contact", 7]),
        URLSafeTimedSerializer(secret, salt=tokens.SALT).dumps(["contact", "n", "x"]),
        "garbage", "....", "a.b.c", "é" * 40, " ", "", None, good + "A" * 600,
    ]


def test_a_tampered_or_foreign_token_is_refused(app):
    """Anything but a token this site signed for this form is refused."""
    with app.app_context():
        good = tokens.issue("contact")
        assert tokens.verify(good, "contact") is not None
        for token in tampered_tokens(good, app.config["SECRET_KEY"]):
            assert tokens.verify(token, "contact") is None, token


def test_a_token_signed_before_a_key_change_still_verifies(make_app):
    """With the old key in SECRET_KEY_FALLBACKS, a token fetched before the change posts after."""
    before = make_app(deliver=False, SECRET_KEY=OLD_KEY)
    with before.app_context():
        issued = tokens.issue("contact")
    forgot = make_app(deliver=False, SECRET_KEY=NEW_KEY)
    with forgot.app_context():
        assert tokens.verify(issued, "contact") is None
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, SECRET_KEY_FALLBACKS=OLD_KEY)
    with after.app_context():
        assert tokens.verify(issued, "contact") is not None
        fresh = tokens.issue("contact")
    with before.app_context():
        assert tokens.verify(fresh, "contact") is None, "new tokens are signed with the new key"
