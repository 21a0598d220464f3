"""Passkeys: adding one, signing in with it alone, its counter, removing it, re-authenticating.

The fast tests answer the server's challenges with a small software authenticator (a P-256
key, the "none" attestation), as a browser would post them; the browser tests run the
real page in Chromium with its virtual authenticator (DevTools' WebAuthn domain) on
http://localhost, a secure context.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update

from contact_site import create_app
from contact_site.admin import signin
from contact_site.admin.audit import AuditEntry
from contact_site.admin.auth import find_user
from contact_site.admin.factors import Passkey
from contact_site.extensions import db
from contact_site.schema import upgrade_schema
from support.admin import OWNER, PASSWORD, create_owner, csrf_token, owner_client
from support.browser import axe_violations, screenshot
from support.browser_server import LiveServer
from support.settings import base_config
from support.smtp_server import SMTPTestServer

# No delivery thread: nothing changes behind the test's back.
pytestmark = pytest.mark.manual_delivery

ORIGIN = "http://localhost"  # the test client's host: the relying party is "localhost"
RP_ID = "localhost"
REGISTER_OPTIONS = "/admin/account/passkeys/options"
REGISTER = "/admin/account/passkeys"
LOGIN_OPTIONS = "/admin/login/passkey/options"
LOGIN = "/admin/login/passkey"
REAUTH_OPTIONS = "/admin/reauth/passkey/options"
REAUTH = "/admin/reauth/passkey"


def b64url(data: bytes) -> str:
    """base64url without padding, as WebAuthn's JSON writes binary."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    """The bytes of a base64url text."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass
class SoftAuthenticator:
    """One discoverable P-256 credential, answering as a browser's authenticator does."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    credential_id: bytes = field(default_factory=lambda: os.urandom(32))
    counter: int = 0
    user_handle: bytes = b""
    origin: str = ORIGIN
    rp_id: str = RP_ID

    def cose_key(self) -> bytes:
        """The public key as COSE (EC2, ES256)."""
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})

    def client_data(self, kind: str, challenge: str) -> bytes:
        """The browser's clientDataJSON."""
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """navigator.credentials.create(): the credential as JSON."""
        self.user_handle = from_b64url(options["user"]["id"])
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([0x45])
                     + self.counter.to_bytes(4, "big") + bytes(16)
                     + len(self.credential_id).to_bytes(2, "big") + self.credential_id
                     + self.cose_key())
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
                "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(self.client_data(
                    "webauthn.create", options["challenge"])),
                    "attestationObject": b64url(attestation), "transports": ["internal"]}}

    def get(self, options: dict[str, Any], counter: int | None = None) -> dict[str, Any]:
        """navigator.credentials.get(): a signed assertion, the counter one up (or given)."""
        self.counter = self.counter + 1 if counter is None else counter
        auth_data = (hashlib.sha256(self.rp_id.encode()).digest() + bytes([0x05])
                     + self.counter.to_bytes(4, "big"))
        client_data = self.client_data("webauthn.get", options["challenge"])
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id),
                "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64url(client_data),
                             "authenticatorData": b64url(auth_data),
                             "signature": b64url(signature),
                             "userHandle": b64url(self.user_handle)}}


def post_json(client: FlaskClient, path: str, body: Any, token: str | None) -> Any:
    """POST JSON as passkeys.js does, with the token in X-CSRFToken (when given)."""
    headers = {"Accept": "application/json"}
    if token is not None:
        headers["X-CSRFToken"] = token
    return client.post(path, data=json.dumps(body), content_type="application/json",
                       headers=headers)


def console_token(client: FlaskClient) -> str:
    """The CSRF token of the signed-in console session."""
    return csrf_token(client, "/admin/outbox")


def add_passkey(client: FlaskClient, authenticator: SoftAuthenticator,
                name: str = "Laptop") -> Any:
    """Ask for options and post the new credential under `name`; the last answer."""
    token = console_token(client)
    options = post_json(client, REGISTER_OPTIONS, {}, token)
    assert options.status_code == 200, options.get_data(as_text=True)
    return post_json(client, REGISTER, {"credential": authenticator.create(options.json),
                                        "name": name}, token)


def passkey_sign_in(client: FlaskClient, authenticator: SoftAuthenticator,
                    counter: int | None = None, next_path: str | None = None) -> Any:
    """Sign in with the passkey alone, from the sign-in page; the last answer."""
    token = csrf_token(client)
    options = post_json(client, LOGIN_OPTIONS, {}, token)
    assert options.status_code == 200, options.get_data(as_text=True)
    return post_json(client, LOGIN, {"credential": authenticator.get(options.json, counter),
                                     "next": next_path}, token)


def audit_lines(app: Flask, action: str) -> list[tuple[str | None, str]]:
    """The audit log's (actor, detail) of this action, oldest first."""
    with app.app_context():
        return [(entry.actor, entry.detail) for entry in db.session.scalars(
            select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id))]


def stored(app: Flask) -> list[Passkey]:
    """Every stored passkey."""
    with app.app_context():
        passkeys = list(db.session.scalars(select(Passkey).order_by(Passkey.id)))
        db.session.expunge_all()
        return passkeys


def owner_with_passkey(app: Flask) -> tuple[FlaskClient, SoftAuthenticator]:
    """A signed-in owner who has added one passkey, and that passkey's authenticator."""
    client = owner_client(app)
    authenticator = SoftAuthenticator()
    assert add_passkey(client, authenticator).status_code == 200
    return client, authenticator


def signed_out(app: Flask) -> FlaskClient:
    """A fresh client, signed in to nothing."""
    return app.test_client()


# Adding a passkey.

def test_registration_options_ask_for_a_discoverable_passkey(app: Flask) -> None:
    """The options ask for a resident key, prefer user verification, and exclude the
    account's passkeys; the user handle is not the username."""
    client, authenticator = owner_with_passkey(app)
    response = post_json(client, REGISTER_OPTIONS, {}, console_token(client))
    assert response.status_code == 200
    options = response.json
    assert options["rp"]["id"] == RP_ID
    assert options["user"]["name"] == OWNER
    assert OWNER.encode() not in from_b64url(options["user"]["id"])
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    assert [c["id"] for c in options["excludeCredentials"]] == [
        b64url(authenticator.credential_id)]


def test_an_added_passkey_is_stored_with_its_name_and_audited(app: Flask) -> None:
    """The new credential is checked and stored (key, counter, transports) under its name."""
    client = owner_client(app)
    authenticator = SoftAuthenticator(counter=3)
    response = add_passkey(client, authenticator, name="  Work laptop ")
    assert response.status_code == 200
    assert response.json == {"redirect": "/admin/account"}
    [passkey] = stored(app)
    assert passkey.name == "Work laptop"
    assert passkey.credential_id == b64url(authenticator.credential_id)
    assert passkey.sign_count == 3 and passkey.transports == "internal"
    assert passkey.last_used_at is None
    assert audit_lines(app, "passkey added") == [(OWNER, "Work laptop")]


def test_registration_refuses_a_request_without_csrf_token(app: Flask) -> None:
    """Without the X-CSRFToken header both steps answer 400 and nothing is stored."""
    client = owner_client(app)
    assert post_json(client, REGISTER_OPTIONS, {}, None).status_code == 400
    token = console_token(client)
    options = post_json(client, REGISTER_OPTIONS, {}, token).json
    credential = SoftAuthenticator().create(options)
    response = post_json(client, REGISTER, {"credential": credential, "name": "Laptop"}, None)
    assert response.status_code == 400
    assert stored(app) == [] and audit_lines(app, "passkey added") == []


def test_a_credential_for_another_site_or_challenge_is_not_added(app: Flask) -> None:
    """A credential made for another origin, or over another challenge, is refused."""
    client = owner_client(app)
    token = console_token(client)
    options = post_json(client, REGISTER_OPTIONS, {}, token).json
    elsewhere = SoftAuthenticator(origin="https://evil.example")
    response = post_json(client, REGISTER, {"credential": elsewhere.create(options),
                                            "name": "Laptop"}, token)
    assert response.status_code == 400 and "error" in response.json
    # The challenge was used up by that try: the same options do not serve again.
    response = post_json(client, REGISTER, {"credential": SoftAuthenticator().create(options),
                                            "name": "Laptop"}, token)
    assert response.status_code == 400
    assert stored(app) == []


def test_registration_after_an_old_proof_asks_to_reauthenticate(app: Flask) -> None:
    """An account change 5 minutes after the last proof: 401 {"reauth": url}, nothing kept."""
    client = owner_client(app)
    token = console_token(client)
    with client.session_transaction(path="/admin/") as session:
        session[signin.PROOF_KEY] = int(time.time()) - signin.PROOF_SECONDS - 10
    for path in (REGISTER_OPTIONS, REGISTER):
        response = post_json(client, path, {}, token)
        assert response.status_code == 401
        assert response.json["reauth"].startswith("/admin/reauth?next=")
    assert stored(app) == []


@pytest.mark.parametrize("body", [
    "not json", [1, 2], {"credential": "x"}, {"credential": {}, "name": "Laptop"},
    {"credential": {"id": 5, "rawId": [], "response": "no"}, "name": "Laptop"},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                    "response": {"clientDataJSON": "!!", "attestationObject": "%%"}},
     "name": "Laptop"},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                    "response": {"clientDataJSON": "e30", "attestationObject": "oA"}},
     "name": "Laptop"},
    {"credential": {}, "name": "x" * 101}, {"credential": {}, "name": 7},
])
def test_registration_answers_garbage_with_a_plain_400(app: Flask, body: Any) -> None:
    """A body that is not a credential, or a name that cannot be kept: 400 JSON, not 500."""
    client = owner_client(app)
    token = console_token(client)
    post_json(client, REGISTER_OPTIONS, {}, token)
    if body == "not json":
        response = client.post(REGISTER, data="{{{", content_type="application/json",
                               headers={"X-CSRFToken": token, "Accept": "application/json"})
    else:
        response = post_json(client, REGISTER, body, token)
    assert response.status_code == 400
    assert isinstance(response.json["error"], str)
    assert stored(app) == []


def test_a_passkey_is_renamed_and_removed_with_plain_forms(app: Flask) -> None:
    """Rename and remove post plain forms; each is audited; another account's passkey is 404."""
    client, _ = owner_with_passkey(app)
    [passkey] = stored(app)
    token = console_token(client)
    response = client.post(f"/admin/account/passkeys/{passkey.id}/name",
                           data={"csrf_token": token, "name": "Phone"})
    assert response.status_code == 303
    assert [p.name for p in stored(app)] == ["Phone"]
    assert audit_lines(app, "passkey renamed") == [(OWNER, "Laptop to Phone")]
    create_owner(app, "grace", PASSWORD)
    other = app.test_client()
    assert other.post("/admin/login", data={"csrf_token": csrf_token(other),
                                            "username": "grace",
                                            "password": PASSWORD}).status_code == 303
    response = other.post(f"/admin/account/passkeys/{passkey.id}/delete",
                          data={"csrf_token": console_token(other)})
    assert response.status_code == 404
    response = client.post(f"/admin/account/passkeys/{passkey.id}/delete",
                           data={"csrf_token": token})
    assert response.status_code == 303
    assert stored(app) == []
    assert audit_lines(app, "passkey removed") == [(OWNER, "Phone")]


def test_removing_a_passkey_after_an_old_proof_asks_to_reauthenticate(app: Flask) -> None:
    """Removal 5 minutes after the last proof goes to re-authentication; the passkey stays."""
    client, _ = owner_with_passkey(app)
    [passkey] = stored(app)
    token = console_token(client)
    with client.session_transaction(path="/admin/") as session:
        session[signin.PROOF_KEY] = int(time.time()) - signin.PROOF_SECONDS - 10
    response = client.post(f"/admin/account/passkeys/{passkey.id}/delete",
                           data={"csrf_token": token})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/reauth?next=")
    assert len(stored(app)) == 1


# Signing in with a passkey alone.

def test_a_passkey_alone_signs_in(app: Flask) -> None:
    """Options allow any passkey; the assertion signs in and names where to go; the counter
    and the time of use are kept; the sign-in is audited as by passkey."""
    _, authenticator = owner_with_passkey(app)
    client = signed_out(app)
    options = post_json(client, LOGIN_OPTIONS, {}, csrf_token(client)).json
    assert options["allowCredentials"] == [] and options["userVerification"] == "preferred"
    assert options["rpId"] == RP_ID
    response = passkey_sign_in(client, authenticator, next_path="/admin/audit")
    assert response.status_code == 200
    assert response.json == {"redirect": "/admin/audit"}
    assert client.get("/admin/").status_code == 200, "the session cookie was kept"
    [passkey] = stored(app)
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    assert audit_lines(app, "sign-in")[-1] == (OWNER, "passkey")
    again = signed_out(app)
    assert passkey_sign_in(again, authenticator).json == {"redirect": "/admin/"}
    assert stored(app)[0].sign_count == 2


@pytest.mark.settings(CONTACT_BASE_URL="https://Contact.example.com:443/forms")
def test_the_relying_party_is_the_host_of_the_base_url(app: Flask) -> None:
    """With CONTACT_BASE_URL set, passkeys are made for its host and its origin, whatever
    the request's host; one made for the request's host does not sign in."""
    client = owner_client(app)
    token = console_token(client)
    options = post_json(client, REGISTER_OPTIONS, {}, token).json
    assert options["rp"]["id"] == "contact.example.com"
    site = SoftAuthenticator(origin="https://contact.example.com", rp_id="contact.example.com")
    response = post_json(client, REGISTER, {"credential": site.create(options), "name": "Key"},
                         token)
    assert response.status_code == 200
    assert passkey_sign_in(signed_out(app), site).status_code == 200
    local = SoftAuthenticator(credential_id=site.credential_id, key=site.key,
                              user_handle=site.user_handle, counter=site.counter)
    assert passkey_sign_in(signed_out(app), local).status_code == 400


def test_sign_in_goes_nowhere_but_the_console(app: Flask) -> None:
    """A `next` outside the console is replaced by the console's first page."""
    _, authenticator = owner_with_passkey(app)
    response = passkey_sign_in(signed_out(app), authenticator, next_path="//evil.example/")
    assert response.json == {"redirect": "/admin/"}


def test_a_counter_that_does_not_rise_is_refused(app: Flask) -> None:
    """An assertion whose counter is not above the stored one (a copied key) is refused
    and audited; the stored counter stays."""
    _, authenticator = owner_with_passkey(app)
    with app.app_context():
        db.session.execute(update(Passkey).values(sign_count=50))
        db.session.commit()
    for counter in (50, 12):
        client = signed_out(app)
        response = passkey_sign_in(client, authenticator, counter=counter)
        assert response.status_code == 403 and "error" in response.json
        assert client.get("/admin/").status_code == 302, "not signed in"
    assert [p.sign_count for p in stored(app)] == [50]
    assert audit_lines(app, "passkey refused: counter") == [
        (OWNER, "Laptop: 50 after 50"), (OWNER, "Laptop: 12 after 50")]
    assert passkey_sign_in(signed_out(app), authenticator, counter=51).status_code == 200


def test_a_replayed_assertion_does_not_sign_in(app: Flask) -> None:
    """The same signed answer posted again: its challenge is used up, refused."""
    _, authenticator = owner_with_passkey(app)
    client = signed_out(app)
    token = csrf_token(client)
    options = post_json(client, LOGIN_OPTIONS, {}, token).json
    credential = authenticator.get(options)
    thief = signed_out(app)
    thief_token = csrf_token(thief)
    post_json(thief, LOGIN_OPTIONS, {}, thief_token)
    response = post_json(thief, LOGIN, {"credential": credential}, thief_token)
    assert response.status_code == 400
    assert thief.get("/admin/").status_code == 302
    assert post_json(client, LOGIN, {"credential": credential}, token).status_code == 200
    response = post_json(client, LOGIN, {"credential": credential}, console_token(client))
    assert response.status_code == 400
    assert [p.sign_count for p in stored(app)] == [1]


def test_a_removed_passkey_no_longer_signs_in(app: Flask) -> None:
    """After removal the credential is unknown: refused, audited, counted as a failure."""
    client, authenticator = owner_with_passkey(app)
    [passkey] = stored(app)
    client.post(f"/admin/account/passkeys/{passkey.id}/delete",
                data={"csrf_token": console_token(client)})
    stranger = signed_out(app)
    response = passkey_sign_in(stranger, authenticator)
    assert response.status_code == 400 and "error" in response.json
    assert stranger.get("/admin/").status_code == 302
    assert audit_lines(app, "sign-in refused") == [(None, "passkey")]


def test_failed_passkey_sign_ins_are_locked_out_per_network(app: Flask) -> None:
    """Five refused passkeys a minute from one network: the sixth try gets 429, the right
    passkey too, with Retry-After."""
    _, authenticator = owner_with_passkey(app)
    stranger = SoftAuthenticator()
    for _ in range(5):
        assert passkey_sign_in(signed_out(app), stranger).status_code == 400
    response = passkey_sign_in(signed_out(app), authenticator)
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("body", [
    "not json", [], {"credential": None}, {"credential": {"id": ["x"]}},
    {"credential": {"id": "AA", "rawId": "AA", "response": []}},
    {"credential": {"id": "x" * 5000}},
    {"credential": {"id": "AA", "rawId": "AA", "type": "public-key",
                    "response": {"clientDataJSON": "e30", "authenticatorData": "AA",
                                 "signature": "AA", "userHandle": 3}}},
])
def test_sign_in_answers_garbage_with_a_plain_4xx(app: Flask, body: Any) -> None:
    """A body that is not an assertion of a known passkey: 400 JSON, not 500, not signed in."""
    create_owner(app)
    client = signed_out(app)
    token = csrf_token(client)
    post_json(client, LOGIN_OPTIONS, {}, token)
    if body == "not json":
        response = client.post(LOGIN, data="{{{", content_type="application/json",
                               headers={"X-CSRFToken": token, "Accept": "application/json"})
    else:
        response = post_json(client, LOGIN, body, token)
    assert response.status_code == 400 and isinstance(response.json["error"], str)
    assert client.get("/admin/").status_code == 302


def test_a_known_passkey_with_a_bad_signature_is_refused(app: Flask) -> None:
    """The stored credential's id with another key's signature: refused and audited."""
    _, authenticator = owner_with_passkey(app)
    impostor = SoftAuthenticator(credential_id=authenticator.credential_id,
                                 user_handle=authenticator.user_handle)
    response = passkey_sign_in(signed_out(app), impostor)
    assert response.status_code == 400
    assert audit_lines(app, "sign-in refused") == [(OWNER, "passkey")]
    assert stored(app)[0].sign_count == 0


def test_sign_in_without_csrf_token_is_refused(app: Flask) -> None:
    """The passkey sign-in steps need the sign-in page's token too."""
    _, authenticator = owner_with_passkey(app)
    client = signed_out(app)
    assert post_json(client, LOGIN_OPTIONS, {}, None).status_code == 400
    token = csrf_token(client)
    options = post_json(client, LOGIN_OPTIONS, {}, token).json
    response = post_json(client, LOGIN, {"credential": authenticator.get(options)}, None)
    assert response.status_code == 400
    assert client.get("/admin/").status_code == 302


# Proving who one is again with a passkey.

def test_a_passkey_proves_who_one_is_again(app: Flask) -> None:
    """Options allow the account's passkeys only; the assertion renews the proof and names
    the page asked for."""
    client, authenticator = owner_with_passkey(app)
    with client.session_transaction(path="/admin/") as session:
        session[signin.PROOF_KEY] = int(time.time()) - signin.PROOF_SECONDS - 10
    token = console_token(client)
    options = post_json(client, REAUTH_OPTIONS, {}, token).json
    assert [c["id"] for c in options["allowCredentials"]] == [
        b64url(authenticator.credential_id)]
    response = post_json(client, REAUTH, {"credential": authenticator.get(options),
                                          "next": "/admin/account"}, token)
    assert response.status_code == 200 and response.json == {"redirect": "/admin/account"}
    with client.session_transaction(path="/admin/") as session:
        assert time.time() - session[signin.PROOF_KEY] < 60
    assert stored(app)[0].sign_count == 1
    assert audit_lines(app, "re-authenticated") == [(OWNER, "passkey")]


def test_another_accounts_passkey_does_not_prove_who_one_is(app: Flask) -> None:
    """Grace's passkey posted in the owner's session: refused, the proof stays old."""
    _, authenticator = owner_with_passkey(app)
    create_owner(app, "grace", PASSWORD)
    grace = app.test_client()
    grace.post("/admin/login", data={"csrf_token": csrf_token(grace), "username": "grace",
                                     "password": PASSWORD})
    old = int(time.time()) - signin.PROOF_SECONDS - 10
    with grace.session_transaction(path="/admin/") as session:
        session[signin.PROOF_KEY] = old
    token = console_token(grace)
    options = post_json(grace, REAUTH_OPTIONS, {}, token).json
    response = post_json(grace, REAUTH, {"credential": authenticator.get(options)}, token)
    assert response.status_code == 400
    with grace.session_transaction(path="/admin/") as session:
        assert session[signin.PROOF_KEY] == old
    assert audit_lines(app, "re-authentication refused") == [("grace", "passkey")]


@pytest.mark.parametrize("body", ["not json", {"credential": 1},
                                  {"credential": {"id": "AA", "response": 3}}])
def test_reauthentication_answers_garbage_with_a_plain_400(app: Flask, body: Any) -> None:
    """A body that is not an assertion: 400 JSON, never 500."""
    client = owner_client(app)
    token = console_token(client)
    post_json(client, REAUTH_OPTIONS, {}, token)
    if body == "not json":
        response = client.post(REAUTH, data="{{{", content_type="application/json",
                               headers={"X-CSRFToken": token, "Accept": "application/json"})
    else:
        response = post_json(client, REAUTH, body, token)
    assert response.status_code == 400 and isinstance(response.json["error"], str)


# In Chromium, with its virtual authenticator.

@pytest.fixture(scope="module")
def live_site(tmp_path_factory: pytest.TempPathFactory,
              mail_server: SMTPTestServer) -> Iterator[tuple[str, Flask]]:
    """The app served over HTTP with an owner account; its address on localhost."""
    root = tmp_path_factory.mktemp("passkeys")
    app = create_app(base_config(root, mail_server))
    upgrade_schema(app)
    create_owner(app)
    live = LiveServer(app)
    live.start()
    port = live.url.rsplit(":", 1)[1]
    yield f"http://localhost:{port}", app
    live.stop()


def virtual_authenticator(page: Any) -> tuple[Any, str]:
    """A platform authenticator with resident keys that verifies its user; (CDP, its id)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
        "hasUserVerification": True, "isUserVerified": True}})
    return cdp, added["authenticatorId"]


def sign_in_with_password(page: Any, url: str) -> None:
    """The sign-in form, typed."""
    page.goto(f"{url}/admin/login")
    page.get_by_label("Username").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation(url=f"{url}/admin/"):
        page.get_by_role("button", name="Sign in", exact=True).click()


def sign_out(page: Any, url: str) -> None:
    """The header's sign-out button."""
    with page.expect_navigation(url=f"{url}/admin/login"):
        page.get_by_role("button", name="Sign out").click()


def use_passkey(page: Any) -> None:
    """The sign-in page's passkey button, no username or password typed."""
    page.get_by_role("button", name="Use a passkey").click()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_browser_adds_a_passkey_and_signs_in_with_it_alone(
        live_site: tuple[str, Flask], open_page: Any) -> None:
    """An owner adds a named passkey on the account page, signs out, signs in with the
    passkey alone, and proves who they are again with it; each use raises the stored
    counter."""
    url, app = live_site
    watched = open_page()
    page = watched.page
    virtual_authenticator(page)
    sign_in_with_password(page, url)
    page.goto(f"{url}/admin/account")
    page.get_by_label("Name of the new passkey").fill("Chromium test")
    with page.expect_navigation(url=f"{url}/admin/account"):
        page.get_by_role("button", name="Add a passkey").click()
    assert page.get_by_role("cell", name="Chromium test", exact=True).is_visible()
    assert axe_violations(page) == []
    screenshot(page, "admin-passkeys-1280")
    [passkey] = [p for p in stored(app) if p.name == "Chromium test"]
    assert ("owner", "Chromium test") in audit_lines(app, "passkey added")
    counters = [passkey.sign_count]
    for _ in range(2):
        sign_out(page, url)
        assert page.get_by_label("Password").input_value() == ""
        assert axe_violations(page) == []
        with page.expect_navigation(url=f"{url}/admin/"):
            use_passkey(page)
        assert page.get_by_text("Signed in as owner").is_visible()
        [passkey] = [p for p in stored(app) if p.name == "Chromium test"]
        counters.append(passkey.sign_count)
        assert passkey.last_used_at is not None
    assert audit_lines(app, "sign-in")[-1] == ("owner", "passkey")
    # The same passkey proves who the owner is again, and the page asked for follows.
    page.goto(f"{url}/admin/reauth?next=/admin/account")
    with page.expect_navigation(url=f"{url}/admin/account"):
        use_passkey(page)
    [passkey] = [p for p in stored(app) if p.name == "Chromium test"]
    counters.append(passkey.sign_count)
    assert counters == sorted(set(counters)), f"the counter rises each time: {counters}"
    assert audit_lines(app, "re-authenticated")[-1] == ("owner", "passkey")
    watched.assert_clean()


@pytest.mark.browser
@pytest.mark.timeout(120)
def test_browser_refuses_a_stale_counter_and_a_removed_passkey(
        live_site: tuple[str, Flask], open_page: Any) -> None:
    """A passkey whose stored counter is ahead of the authenticator's is refused with words
    on the page; the password alone then opens nothing (it asks for the passkey); once
    removed on the account page (in a session opened before it was added) the passkey no
    longer signs in."""
    url, app = live_site
    owners = open_page()  # signed in while the account had no passkey
    sign_in_with_password(owners.page, url)
    watched = open_page()
    page = watched.page
    cdp, authenticator_id = virtual_authenticator(page)
    # A credential the authenticator holds, stored as if added, its counter far ahead.
    key = ec.generate_private_key(ec.SECP256R1())
    soft = SoftAuthenticator(key=key)
    with app.app_context():
        owner = find_user(OWNER)
        assert owner is not None
        db.session.add(Passkey(user_id=owner.id, credential_id=b64url(soft.credential_id),
                               public_key=soft.cose_key(), sign_count=1000, name="Copied"))
        db.session.commit()
        handle = str(owner.id).encode()
    cdp.send("WebAuthn.addCredential", {"authenticatorId": authenticator_id, "credential": {
        "credentialId": base64.b64encode(soft.credential_id).decode(),
        "isResidentCredential": True, "rpId": "localhost",
        "privateKey": base64.b64encode(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())).decode(),
        "userHandle": base64.b64encode(handle).decode(), "signCount": 5}})
    page.goto(f"{url}/admin/login")
    use_passkey(page)
    alert = page.locator("[data-passkey-error]")
    alert.filter(has_text="counter went back").wait_for()
    assert page.url == f"{url}/admin/login"
    assert ("owner", "Copied: 6 after 1000") in audit_lines(app, "passkey refused: counter")
    # The password alone asks for the passkey: it does not sign in.
    page.get_by_label("Username").fill(OWNER)
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_navigation(url=f"{url}/admin/login/code?next=/admin/"):
        page.get_by_role("button", name="Sign in", exact=True).click()
    page.goto(f"{url}/admin/")
    assert page.url.startswith(f"{url}/admin/login")
    # Removed on the account page, it is no passkey of this site any more.
    owners.page.goto(f"{url}/admin/account")
    owners.page.once("dialog", lambda dialog: dialog.accept())
    with owners.page.expect_navigation(url=f"{url}/admin/account"):
        owners.page.get_by_role("button", name="Remove “Copied”").click()
    assert [p for p in stored(app) if p.name == "Copied"] == []
    page.goto(f"{url}/admin/login")
    refused_before = len(audit_lines(app, "sign-in refused"))
    use_passkey(page)
    alert.filter(has_text="not one of this site").wait_for()
    assert page.url == f"{url}/admin/login"
    assert len(audit_lines(app, "sign-in refused")) == refused_before + 1
    watched.assert_clean()
