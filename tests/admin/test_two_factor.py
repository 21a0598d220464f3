"""Two-factor sign-in: an authenticator app (TOTP), recovery codes, re-authentication,
`users reset-2fa` and CONTACT_REQUIRE_2FA, on the real app and its database."""

from __future__ import annotations

import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyotp
import pytest
import segno
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contact_site.admin import auth, signin
from contact_site.admin.audit import AuditEntry
from contact_site.admin.factors import Passkey, RecoveryCode
from contact_site.extensions import db
from contact_site.security import CONTENT_SECURITY_POLICY
from support.admin import OWNER, PASSWORD, create_owner, csrf_token, sign_in
from support.inline_code import InlineCode

# No delivery thread: nothing changes behind the test's back.
pytestmark = pytest.mark.manual_delivery

STEP = 30
SECRET_SHOWN = re.compile(r'<code class="totp-secret">([A-Z2-7 ]+)</code>')
CODE_SHOWN = re.compile(r"<li><code>([A-Z2-7]{4}-[A-Z2-7]{4})</code></li>")


def steady_now() -> float:
    """Now, at least 4 seconds before the current time step ends (waiting if need be), so
    a code computed for it is still current when the request arrives."""
    if STEP - time.time() % STEP < 4:
        time.sleep(STEP - time.time() % STEP + 0.1)
    return time.time()


def code_at(secret: str, steps: int = 0) -> str:
    """The authenticator's code `steps` time steps from now."""
    return pyotp.TOTP(secret).at(steady_now() + steps * STEP)


def post_form(client: FlaskClient, path: str, page: str = "/admin/account",
              **data: str) -> Any:
    """POST a console form with the CSRF token of `page`, as its browser would."""
    return client.post(path, data={"csrf_token": csrf_token(client, page), **data})


def start_enrolment(client: FlaskClient) -> str:
    """Choose "Add an authenticator"; the key the account page then shows, spaces removed."""
    response = post_form(client, "/admin/account/totp")
    assert response.status_code == 303, response.status_code
    found = SECRET_SHOWN.search(client.get("/admin/account").get_data(as_text=True))
    assert found, "the key is shown as text"
    return found.group(1).replace(" ", "")


def enrol(client: FlaskClient) -> tuple[str, list[str]]:
    """Add an authenticator with one right code; its secret and the recovery codes shown."""
    secret = start_enrolment(client)
    response = post_form(client, "/admin/account/totp/confirm", code=code_at(secret))
    assert response.status_code == 200, response.get_data(as_text=True)
    codes = CODE_SHOWN.findall(response.get_data(as_text=True))
    assert len(codes) == 10 and len(set(codes)) == 10
    return secret, codes


def signed_in(app: Flask) -> FlaskClient:
    """A client of the owner, signed in with the password alone (the account is created)."""
    create_owner(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


def enrolled(app: Flask) -> tuple[FlaskClient, str, list[str]]:
    """A signed-in owner who has just added an authenticator; client, secret, codes."""
    client = signed_in(app)
    secret, codes = enrol(client)
    return client, secret, codes


def give_code(client: FlaskClient, code: str, **query: str) -> Any:
    """Answer the code step of sign-in with `code`."""
    token = csrf_token(client, "/admin/login/code")
    return client.post("/admin/login/code", query_string=query,
                       data={"csrf_token": token, "code": code})


def password_then_code(app: Flask, code: str, address: str = "127.0.0.1") -> tuple[
        FlaskClient, Any]:
    """A new client gives the owner's password, then `code`; the client and the answer."""
    client = app.test_client()
    response = sign_in(client, REMOTE_ADDR=address)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/admin/login/code")
    return client, give_code(client, code)


def account_row(app: Flask) -> tuple[str | None, int | None, int]:
    """The owner's stored TOTP secret, last step accepted and session version."""
    with app.app_context():
        user = auth.find_user(OWNER)
        assert user is not None
        return user.totp_secret, user.totp_last_step, user.session_version


def recovery_rows(app: Flask) -> list[tuple[str, bool]]:
    """The owner's stored recovery codes: hash, and whether used."""
    with app.app_context():
        rows = db.session.scalars(select(RecoveryCode).order_by(RecoveryCode.id))
        return [(row.code_hash, row.used_at is not None) for row in rows]


def audit_lines(app: Flask) -> list[tuple[str, str | None, str]]:
    """Every audit line, oldest first: action, actor, detail."""
    with app.app_context():
        rows = db.session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        return [(row.action, row.actor, row.detail) for row in rows]


def actions_of(app: Flask) -> list[str]:
    """The audit log's actions, oldest first."""
    return [action for action, _, _ in audit_lines(app)]


def age_proof(client: FlaskClient, seconds: float) -> None:
    """Move the session's last proof `seconds` into the past."""
    with client.session_transaction(path="/admin/") as session:
        session[signin.PROOF_KEY] = int(time.time() - seconds)


@pytest.mark.each_database
def test_adding_an_authenticator_needs_one_right_code_and_a_wrong_one_stores_nothing(
        app: Flask) -> None:
    """The key lives in the session until a right code confirms it; a wrong code keeps
    nothing, a right one stores the key and ten hashed recovery codes."""
    client = signed_in(app)
    secret = start_enrolment(client)
    assert account_row(app)[0] is None, "not stored before it is confirmed"
    wrong = f"{(int(code_at(secret)) + 1) % 1_000_000:06d}"
    response = post_form(client, "/admin/account/totp/confirm", code=wrong)
    assert response.status_code == 422
    assert "This code is not right" in response.get_data(as_text=True)
    assert account_row(app)[0] is None and recovery_rows(app) == []
    now = steady_now()
    response = post_form(client, "/admin/account/totp/confirm",
                         code=pyotp.TOTP(secret).at(now))
    assert response.status_code == 200
    assert len(CODE_SHOWN.findall(response.get_data(as_text=True))) == 10
    stored_secret, last_step, _ = account_row(app)
    assert stored_secret == secret
    assert last_step == pyotp.TOTP(secret).timecode(now), "its code is used up"
    assert len(recovery_rows(app)) == 10
    page = client.get("/admin/account").get_data(as_text=True)
    assert "Recovery codes left" in page and "<dd>10</dd>" in page
    assert [line[:2] for line in audit_lines(app)][-2:] == [("2fa not added", OWNER),
                                                            ("2fa added", OWNER)]


def test_the_qr_code_is_inline_svg_under_the_unchanged_policy(app: Flask) -> None:
    """The QR code of the otpauth address is an inline SVG: the page keeps the console's
    Content-Security-Policy and holds no inline script, style or data: URI."""
    client = signed_in(app)
    secret = start_enrolment(client)
    response = client.get("/admin/account")
    page = response.get_data(as_text=True)
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    parser = InlineCode()
    parser.feed(page)
    assert parser.found == []
    uri = pyotp.TOTP(secret).provisioning_uri(name=OWNER, issuer_name="Contact")
    assert uri.startswith("otpauth://totp/Contact:owner?secret=")
    expected = segno.make(uri, error="m").svg_inline(
        scale=5, border=4, dark="#000", light="#fff",
        title="QR code for your authenticator app")
    assert expected in page, "the QR code encodes the otpauth address of the key shown"


def test_signing_in_asks_for_the_code_after_the_password(app: Flask) -> None:
    """With an authenticator, the right password leads to the code step and not yet into
    the console; the next code then signs in and goes where the owner was headed."""
    _, secret, _ = enrolled(app)
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/admin/login", query_string={"next": "/admin/outbox"},
                           data={"csrf_token": token, "username": OWNER,
                                 "password": PASSWORD})
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/login/code?next=/admin/outbox"
    assert client.get("/admin/").headers["Location"].startswith("/admin/login")
    response = give_code(client, code_at(secret, 1), next="/admin/outbox")
    assert response.status_code == 303 and response.headers["Location"] == "/admin/outbox"
    assert client.get("/admin/outbox").status_code == 200
    assert audit_lines(app)[-1][:3] == ("sign-in", OWNER, "password+totp")


def test_a_code_within_one_time_step_of_now_signs_in_and_two_steps_off_does_not(
        app: Flask) -> None:
    """A phone clock up to 30 seconds off still signs in; 60 seconds off does not."""
    _, secret, _ = enrolled(app)
    for steps, accepted in [(-2, False), (2, False), (-1, True), (0, True), (1, True)]:
        with app.app_context():  # no code used yet: only the window decides
            user = auth.find_user(OWNER)
            assert user is not None
            user.totp_last_step = None
            db.session.commit()
        client, response = password_then_code(app, code_at(secret, steps))
        assert response.status_code == (303 if accepted else 422), steps
        assert (client.get("/admin/").status_code == 200) is accepted


@pytest.mark.each_database
def test_the_same_code_signs_in_once(app: Flask) -> None:
    """A code that signed in is refused the second time, though still within its window;
    the code that confirmed the authenticator cannot sign in either."""
    _, secret, _ = enrolled(app)
    confirming_step = account_row(app)[1]
    assert confirming_step is not None
    confirming = pyotp.TOTP(secret).generate_otp(confirming_step)
    _, response = password_then_code(app, confirming)
    assert response.status_code == 422
    code = code_at(secret, 1)
    _, response = password_then_code(app, code)
    assert response.status_code == 303
    client, response = password_then_code(app, code)
    assert response.status_code == 422
    assert "used already" in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert actions_of(app)[-3:] == ["second factor refused", "sign-in", "second factor refused"]


@pytest.mark.each_database
def test_each_recovery_code_signs_in_once_and_is_shown_only_once(app: Flask) -> None:
    """A recovery code (in any case, spaces or no hyphen) signs in once; the codes never
    appear again on the account page."""
    client, _, codes = enrolled(app)
    page = client.get("/admin/account").get_data(as_text=True)
    assert not any(code in page for code in codes), "shown only on the answer that made them"
    typed = codes[0].lower().replace("-", " ")
    client, response = password_then_code(app, typed)
    assert response.status_code == 303
    assert audit_lines(app)[-1][:3] == ("sign-in", OWNER, "password+recovery code")
    assert "9 are left" in client.get("/admin/").get_data(as_text=True)
    _, response = password_then_code(app, codes[0])
    assert response.status_code == 422
    _, response = password_then_code(app, codes[1])
    assert response.status_code == 303
    assert [used for _, used in recovery_rows(app)].count(True) == 2
    page = client.get("/admin/account").get_data(as_text=True)
    assert "<dd>8</dd>" in page and not any(code in page for code in codes)


def test_recovery_codes_are_stored_as_argon2_hashes_only(app: Flask, tmp_path: Path) -> None:
    """No recovery code, nor the key, is stored in plain: not in their table, not in the
    audit log, not anywhere in the database's files."""
    _, secret, codes = enrolled(app)
    rows = recovery_rows(app)
    assert len(rows) == 10 and all(code_hash.startswith("$argon2id$") for code_hash, _ in rows)
    forms = [form for code in codes for form in (code, code.replace("-", ""))]
    for action, _, detail in audit_lines(app):
        assert not any(form in detail or form in action for form in forms + [secret])
    with app.app_context():
        db.engine.dispose()
    files = [path for path in tmp_path.glob("test.sqlite*")]
    assert files, "the test's SQLite database"
    stored = b"".join(path.read_bytes() for path in files)
    assert not any(form.encode() in stored for form in forms)


def test_new_recovery_codes_replace_the_old_ones(app: Flask) -> None:
    """"New recovery codes" shows ten new codes once; the old ones stop working."""
    client, _, old = enrolled(app)
    response = post_form(client, "/admin/account/recovery-codes")
    assert response.status_code == 200
    new = CODE_SHOWN.findall(response.get_data(as_text=True))
    assert len(new) == 10 and not set(new) & set(old)
    assert len(recovery_rows(app)) == 10
    assert audit_lines(app)[-1][:2] == ("recovery codes renewed", OWNER)
    _, response = password_then_code(app, old[0])
    assert response.status_code == 422
    _, response = password_then_code(app, new[0])
    assert response.status_code == 303


def test_removing_the_authenticator_signs_in_with_the_password_alone(app: Flask) -> None:
    """"Remove the authenticator" deletes the key and the recovery codes; the password
    then signs in on its own."""
    client, _, _ = enrolled(app)
    response = post_form(client, "/admin/account/totp/remove")
    assert response.status_code == 303
    assert account_row(app)[:2] == (None, None) and recovery_rows(app) == []
    assert audit_lines(app)[-1][:2] == ("2fa removed", OWNER)
    response = sign_in(app.test_client())
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"


def test_reset_2fa_leaves_the_password_alone_and_ends_sessions(app: Flask) -> None:
    """`users reset-2fa NAME` removes the key, the recovery codes and the passkeys, ends
    the account's sessions, and the password alone signs in again."""
    client, _, _ = enrolled(app)
    with app.app_context():
        user = auth.find_user(OWNER)
        assert user is not None
        db.session.add(Passkey(user_id=user.id, credential_id="Y3JlZGVudGlhbA",
                               public_key=b"key", name="Phone"))
        db.session.commit()
    version = account_row(app)[2]
    result = app.test_cli_runner().invoke(args=["users", "reset-2fa", OWNER.upper()])
    assert result.exit_code == 0, result.output
    assert "password alone" in result.output
    assert account_row(app) == (None, None, version + 1)
    assert recovery_rows(app) == []
    with app.app_context():
        assert db.session.scalars(select(Passkey)).all() == []
    assert audit_lines(app)[-1][:2] == ("2fa reset", OWNER)
    assert client.get("/admin/").status_code == 302, "the open session ended"
    response = sign_in(app.test_client())
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    result = app.test_cli_runner().invoke(args=["users", "reset-2fa", "nobody"])
    assert result.exit_code != 0 and "no account named nobody" in result.output


PAGES = [("GET", "/admin/"), ("GET", "/admin/outbox"), ("GET", "/admin/audit"),
         ("GET", "/admin/erase"), ("GET", "/admin/export.csv"), ("POST", "/admin/outbox/retry"),
         ("POST", "/admin/erase")]


def open_page(client: FlaskClient, method: str, path: str) -> Any:
    """GET the page, or POST its form with a valid token."""
    data = {"csrf_token": csrf_token(client, "/admin/account"), "address": "a@example.com"}
    return client.open(path, method=method, data=data if method == "POST" else None)


@pytest.mark.settings(CONTACT_REQUIRE_2FA=True)
@pytest.mark.parametrize(("method", "path"), PAGES)
def test_required_second_factor_sends_an_account_without_one_to_its_page(
        app: Flask, method: str, path: str) -> None:
    """With CONTACT_REQUIRE_2FA, an account with no second factor reaches only its
    account page (and what adding one needs) until it adds one: nothing else is done."""
    client = signed_in(app)
    response = open_page(client, method, path)
    assert response.status_code == 302 and response.headers["Location"] == "/admin/account"
    assert "export" not in actions_of(app) and "erase" not in actions_of(app)
    page = client.get("/admin/account")
    assert page.status_code == 200
    assert "asks every account for a second factor" in page.get_data(as_text=True)
    assert client.get("/admin/reauth").status_code == 200


@pytest.mark.settings(CONTACT_REQUIRE_2FA=True)
def test_required_second_factor_once_added_opens_every_page(app: Flask) -> None:
    """Once the authenticator is added, the same account opens the whole console."""
    client = signed_in(app)
    enrol(client)
    for method, path in PAGES:
        assert open_page(client, method, path).status_code in {200, 303}, path


@pytest.mark.settings(CONTACT_REQUIRE_2FA=True)
def test_required_second_factor_is_met_by_a_passkey_and_keeps_the_last_factor(
        app: Flask) -> None:
    """A passkey counts as the second factor; the authenticator cannot be removed while it
    is the only one."""
    client, _, _ = enrolled(app)
    response = post_form(client, "/admin/account/totp/remove")
    assert response.status_code == 303
    assert account_row(app)[0] is not None, "the only second factor stays"
    with app.app_context():
        user = auth.find_user(OWNER)
        assert user is not None
        db.session.add(Passkey(user_id=user.id, credential_id="cGFzc2tleQ",
                               public_key=b"key", name="Laptop"))
        db.session.commit()
    assert post_form(client, "/admin/account/totp/remove").status_code == 303
    assert account_row(app)[0] is None
    assert client.get("/admin/outbox").status_code == 200, "the passkey is enough"


def test_not_required_by_default(app: Flask) -> None:
    """Without CONTACT_REQUIRE_2FA an account with no second factor opens every page."""
    client = signed_in(app)
    assert app.config["CONTACT_REQUIRE_2FA"] is False
    assert client.get("/admin/outbox").status_code == 200


def test_changes_need_a_proof_less_than_five_minutes_old(app: Flask) -> None:
    """Right after sign-in an account change goes through; once the last proof is over
    5 minutes old it sends to /admin/reauth first, changes nothing, and the password
    there lets it go on."""
    client, _, codes = enrolled(app)
    hashes = recovery_rows(app)
    age_proof(client, signin.PROOF_SECONDS + 1)
    response = post_form(client, "/admin/account/recovery-codes")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/reauth?next=/admin/account/recovery-codes"
    assert recovery_rows(app) == hashes, "nothing changed"
    assert post_form(client, "/admin/account/totp/remove").headers["Location"].startswith(
        "/admin/reauth")
    assert account_row(app)[0] is not None
    page = client.get("/admin/reauth?next=/admin/account/recovery-codes")
    assert page.status_code == 200 and "Confirm it is you" in page.get_data(as_text=True)
    response = post_form(client, "/admin/reauth?next=/admin/account/recovery-codes",
                         page="/admin/reauth", password="not the password at all")
    assert response.status_code == 422
    assert audit_lines(app)[-1][:2] == ("re-authentication refused", OWNER)
    response = post_form(client, "/admin/reauth?next=/admin/account/recovery-codes",
                         page="/admin/reauth", password=PASSWORD)
    assert response.status_code == 303
    assert response.headers["Location"] == "/admin/account/recovery-codes"
    assert audit_lines(app)[-1][:3] == ("re-authenticated", OWNER, "password")
    assert client.get(response.headers["Location"]).headers["Location"] == "/admin/account"
    response = post_form(client, "/admin/account/recovery-codes")
    assert response.status_code == 200 and recovery_rows(app) != hashes
    assert not set(codes) & set(CODE_SHOWN.findall(response.get_data(as_text=True)))


def test_reauthentication_takes_a_code_once_and_only_goes_to_console_pages(
        app: Flask) -> None:
    """A code from the authenticator proves it too (each code once); ?next= outside the
    console lands on the console's home."""
    client, secret, _ = enrolled(app)
    age_proof(client, signin.PROOF_SECONDS + 60)
    code = code_at(secret, 1)
    response = post_form(client, "/admin/reauth?next=https://evil.example/",
                         page="/admin/reauth", code=code)
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    assert audit_lines(app)[-1][:3] == ("re-authenticated", OWNER, "totp")
    age_proof(client, signin.PROOF_SECONDS + 60)
    response = post_form(client, "/admin/reauth", page="/admin/reauth", code=code)
    assert response.status_code == 422, "the same code twice"
    assert post_form(client, "/admin/account/recovery-codes").status_code == 302


def test_a_proof_over_five_minutes_old_moved_by_the_clock(app: Flask,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Time itself passing (not the session edited): 4 minutes on the change goes through,
    6 minutes on it asks for the password again."""
    client, _, _ = enrolled(app)
    start = time.time()
    monkeypatch.setattr(signin, "time", SimpleNamespace(time=lambda: start + 240))
    assert post_form(client, "/admin/account/recovery-codes").status_code == 200
    monkeypatch.setattr(signin, "time", SimpleNamespace(time=lambda: start + 360))
    response = post_form(client, "/admin/account/recovery-codes")
    assert response.status_code == 302 and response.headers["Location"].startswith(
        "/admin/reauth")


def test_a_code_step_left_too_long_goes_back_to_the_password(app: Flask) -> None:
    """Over 5 minutes after the password, the code step says so plainly and sends back to
    sign in; without a password given it simply sends there."""
    _, secret, _ = enrolled(app)
    assert app.test_client().get("/admin/login/code").headers["Location"] == "/admin/login"
    client = app.test_client()
    assert sign_in(client).status_code == 303
    with client.session_transaction(path="/admin/") as session:
        account, version, at = session[signin.PENDING_KEY]
        session[signin.PENDING_KEY] = [account, version, at - signin.PENDING_SECONDS - 1]
    token = csrf_token(client, "/admin/login")
    response = client.post("/admin/login/code", data={"csrf_token": token,
                                                      "code": code_at(secret, 1)})
    assert response.status_code == 303 and response.headers["Location"] == "/admin/login"
    assert "took too long" in client.get("/admin/login").get_data(as_text=True)
    assert client.get("/admin/").status_code == 302
    assert "sign-in" not in actions_of(app)[-1:]


def test_wrong_codes_count_with_the_password_lockout(app: Flask) -> None:
    """Each wrong code is audited and counted like a wrong password: past five in a
    minute, even the right code gets 429 with Retry-After."""
    _, secret, codes = enrolled(app)
    client = app.test_client()
    assert sign_in(client, REMOTE_ADDR="192.0.2.7").status_code == 303
    for wrong in ["000000", "999999", "AAAA-AAAA", "12345", "not a code"]:
        token = csrf_token(client, "/admin/login/code")
        response = client.post("/admin/login/code", environ_base={"REMOTE_ADDR": "192.0.2.7"},
                               data={"csrf_token": token, "code": wrong})
        assert response.status_code == 422, wrong
    token = csrf_token(client, "/admin/login/code")
    response = client.post("/admin/login/code", environ_base={"REMOTE_ADDR": "192.0.2.7"},
                           data={"csrf_token": token, "code": code_at(secret, 1)})
    assert response.status_code == 429 and int(response.headers["Retry-After"]) > 0
    assert actions_of(app).count("second factor refused") == 5
    assert client.get("/admin/").status_code == 302


def test_every_sign_in_failure_and_change_is_audited_without_secrets(app: Flask) -> None:
    """The audit log tells the whole story of an account's second factor, never its key
    or codes."""
    client, secret, codes = enrolled(app)
    password_then_code(app, "000000")
    password_then_code(app, code_at(secret, 1))
    password_then_code(app, codes[0])
    post_form(client, "/admin/account/recovery-codes")
    post_form(client, "/admin/account/totp/remove")
    app.test_cli_runner().invoke(args=["users", "reset-2fa", OWNER])
    lines = audit_lines(app)
    assert [(action, detail) for action, _, detail in lines] == [
        ("sign-in", "password"),
        ("2fa added", "authenticator app, 10 recovery codes"),
        ("second factor refused", ""),
        ("sign-in", "password+totp"),
        ("sign-in", "password+recovery code"),
        ("recovery codes renewed", "10 recovery codes"),
        ("2fa removed", "authenticator app"),
        ("2fa reset", "authenticator, recovery codes, passkeys"),
    ]
    assert {actor for _, actor, _ in lines} == {OWNER}
    text = repr(lines)
    assert secret not in text and not any(code in text for code in codes)
