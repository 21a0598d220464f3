"""The console's door: accounts, sign-in, lockout, cookies, revocation, idle limit."""

from __future__ import annotations

import itertools
import statistics
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contact_site.admin import auth
from contact_site.admin.audit import AuditEntry
from contact_site.admin.session import CONSOLE_COOKIE, IDLE_LIMIT
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.admin import OWNER, PASSWORD, create_owner, csrf_token, owner_client, sign_in
from support.factories import create_submission
from support.outbox import mails_of
from support.processes import FLASK, PROJECT_ROOT, worker_env

# No delivery thread: nothing changes behind the test's back.
pytestmark = pytest.mark.manual_delivery

# Every console route, with the method it answers; a new route must be added here.
ROUTES = [
    ("GET", "/admin/"),
    ("GET", "/admin/submissions/{id}"),
    ("GET", "/admin/submissions/{id}/files/{file}"),
    ("GET", "/admin/submissions/{id}/files/{file}/infected"),
    ("POST", "/admin/submissions/{id}/files/{file}/infected"),
    ("POST", "/admin/submissions/{id}/state"),
    ("POST", "/admin/submissions/{id}/reply"),
    ("POST", "/admin/submissions/{id}/notes"),
    ("POST", "/admin/submissions/{id}/resend"),
    ("POST", "/admin/submissions/{id}/webhooks/{delivery}/send-again"),
    ("POST", "/admin/submissions/{id}/spam"),
    ("POST", "/admin/submissions/{id}/not-spam"),
    ("POST", "/admin/submissions/{id}/delete"),
    ("GET", "/admin/outbox"),
    ("POST", "/admin/outbox/retry"),
    ("GET", "/admin/export.csv"),
    ("GET", "/admin/export.json"),
    ("GET", "/admin/erase"),
    ("POST", "/admin/erase"),
    ("GET", "/admin/audit"),
    ("POST", "/admin/logout"),
    ("GET", "/admin/account"),
    *((method, f"/admin/account/{action}")
      for action in ("totp", "totp/confirm", "totp/remove", "recovery-codes",
                     "passkeys/{passkey}/delete")
      for method in ("GET", "POST")),
    ("POST", "/admin/account/passkeys/options"),
    ("POST", "/admin/account/passkeys"),
    ("POST", "/admin/account/passkeys/{passkey}/name"),
    ("GET", "/admin/reauth"),
    ("POST", "/admin/reauth"),
    ("POST", "/admin/reauth/passkey/options"),
    ("POST", "/admin/reauth/passkey"),
]
# The sign-in steps, open to anyone (their own tests: test_two_factor.py, test_passkeys.py).
SIGN_IN = {("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/admin/login/code"),
           ("POST", "/admin/login/code"), ("POST", "/admin/login/passkey/options"),
           ("POST", "/admin/login/passkey")}


def cookie_headers(response: object, name: str) -> list[str]:
    """The Set-Cookie headers of the response that set `name`."""
    return [h for h in response.headers.getlist("Set-Cookie")  # type: ignore[attr-defined]
            if h.startswith(f"{name}=")]


def test_the_route_table_covers_every_console_route(app: Flask) -> None:
    """Each console URL rule and method is in ROUTES, so none escapes the checks below."""
    found = {(method, rule.rule.replace("<submission_id>", "{id}")
              .replace("<int:file_id>", "{file}").replace("<int:delivery_id>", "{delivery}")
              .replace("<int:passkey_id>", "{passkey}"))
             for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")
             for method in rule.methods or () if method in {"GET", "POST"}}
    assert found - SIGN_IN == set(ROUTES)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_console_route_sends_an_anonymous_visitor_to_sign_in(
        app: Flask, method: str, path: str) -> None:
    """Without a signed-in owner, even with a valid CSRF token: a redirect, and nothing done."""
    create_owner(app)
    submission_id = create_submission(app, attachment=b"%PDF-1.4 file")
    client = app.test_client()
    with app.app_context():
        [stored] = db.session.get(Submission, submission_id).files  # type: ignore[union-attr]
    [mail] = mails_of(app, submission_id)
    url = path.format(id=submission_id, file=stored.id, delivery=mail.id, passkey=1)
    data = {"csrf_token": csrf_token(client), "address": "ada@example.com", "state": "archived",
            "body": "Thanks!", "text": "Called back."}
    response = client.open(url, method=method, data=data if method == "POST" else None)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/admin/login")
    assert response.headers["Cache-Control"] == "no-store"
    assert len(mails_of(app, submission_id)) == 1, "no mail was added"
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None and submission.verdict != "spam"
        assert submission.state == "new", "nothing was opened or archived"


def test_a_console_post_without_csrf_token_is_refused(app: Flask) -> None:
    """A signed-in owner's POST without the token: 400 with plain words, nothing queued."""
    client = owner_client(app)
    submission_id = create_submission(app)
    response = client.post(f"/admin/submissions/{submission_id}/resend")
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert len(mails_of(app, submission_id)) == 1


def test_a_console_post_with_the_public_pages_token_is_refused(app: Flask) -> None:
    """The public form's token lives in the public cookie: it does not open the console."""
    client = owner_client(app)
    submission_id = create_submission(app)
    public_token = csrf_token(client, "/")
    response = client.post(f"/admin/submissions/{submission_id}/resend",
                           data={"csrf_token": public_token})
    assert response.status_code == 400
    assert len(mails_of(app, submission_id)) == 1


@pytest.mark.parametrize("path", ["/admin/login", "/admin/", "/admin/outbox", "/admin/nowhere"])
def test_console_answers_are_not_cached_nor_indexed(app: Flask, path: str) -> None:
    """Cache-Control: no-store and X-Robots-Tag: noindex, signed in, on errors too."""
    response = owner_client(app).get(path)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["X-Robots-Tag"] == "noindex"


def test_sign_in_without_any_account_says_how_to_create_one(app: Flask) -> None:
    """With no account, /admin/login names the command that creates one: in a checkout
    served from its venv, that venv's flask (a bare `flask` may be another's)."""
    page = app.test_client().get("/admin/login").get_data(as_text=True)
    assert "<code>.venv/bin/flask --app contact_site users create NAME</code>" in page


def test_in_development_mode_the_login_page_names_make_user(make_app: Callable[..., Flask],
                                                            ) -> None:
    """Beside `make run` (debug mode) the command is `make user`, which uses that set-up."""
    app = make_app(deliver=False, DEBUG=True, DEV_MAILBOX=False)
    page = app.test_client().get("/admin/login").get_data(as_text=True)
    assert "<code>make user NAME=yourname</code>" in page


@pytest.mark.parametrize(("name", "password"), [
    (OWNER, "wrong password here"),
    ("nobody", PASSWORD),
    ("nobody", "wrong password here"),
    ("", ""),
])
def test_a_wrong_sign_in_gets_one_plain_message(app: Flask, name: str,
                                                password: str) -> None:
    """Whatever was wrong, the same words, which do not say which part was wrong."""
    create_owner(app)
    client = app.test_client()
    response = sign_in(client, name, password)
    assert response.status_code == 422
    assert "The username or password is not right." in response.get_data(as_text=True)
    assert client.get("/admin/").status_code == 302


def test_signing_in_opens_the_console_and_is_audited(app: Flask) -> None:
    """The right answer: 303 to the archive, and a sign-in line in the audit log."""
    client = app.test_client()
    create_owner(app)
    response = sign_in(client, "  Owner ", PASSWORD)  # names are trimmed, any case
    assert response.status_code == 303 and response.headers["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    with app.app_context():
        actions = db.session.scalars(select(AuditEntry.action)).all()
    assert "sign-in" in actions


@pytest.mark.parametrize(("target", "landing"), [
    ("/admin/outbox", "/admin/outbox"),
    ("https://evil.example/admin/", "/admin/"),
    ("//evil.example/", "/admin/"),
    ("/", "/admin/"),
])
def test_after_sign_in_only_a_console_page_is_followed(app: Flask, target: str,
                                                       landing: str) -> None:
    """The `next` page is followed only inside the console: never to another site."""
    create_owner(app)
    client = app.test_client()
    token = csrf_token(client)
    response = client.post("/admin/login", query_string={"next": target},
                           data={"csrf_token": token, "username": OWNER, "password": PASSWORD})
    assert response.headers["Location"] == landing


def test_five_failures_from_one_address_lock_it_out(app: Flask) -> None:
    """After 5 failed tries in a minute from one address, even the right password gets 429."""
    create_owner(app)
    client = app.test_client()
    for number in range(5):
        assert sign_in(client, f"guess{number}", "wrong password here").status_code == 422
    response = sign_in(client)
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert "Too many failed sign-ins" in response.get_data(as_text=True)
    other = app.test_client()
    assert sign_in(other, REMOTE_ADDR="192.0.2.7").status_code == 303, "others still get in"


def test_an_ipv6_client_is_counted_by_its_64(app: Flask) -> None:
    """Five failures spread over one /64 lock the whole /64; the next /64 still gets in."""
    create_owner(app)
    for number in range(5):
        response = sign_in(app.test_client(), OWNER, "wrong password",
                           REMOTE_ADDR=f"2001:db8:0:1::{number + 1}")
        assert response.status_code == 422
    assert sign_in(app.test_client(), REMOTE_ADDR="2001:db8:0:1::99").status_code == 429
    assert sign_in(app.test_client(), REMOTE_ADDR="2001:db8:0:2::1").status_code == 303


def fail_from_networks(app: Flask, name: str, count: int) -> list[str]:
    """One wrong password for `name` from each of `count` new networks; those networks."""
    networks = [f"192.0.2.{number + 10}" for number in range(count)]
    for network in networks:
        response = sign_in(app.test_client(), name, "wrong password", REMOTE_ADDR=network)
        assert response.status_code == 422
    return networks


def test_failures_for_one_username_stop_the_networks_that_failed(app: Flask) -> None:
    """5 failures at one name from 5 networks: those networks (and the next one to fail)
    get 429 for that name even with the right password; other names are not affected."""
    create_owner(app)
    create_owner(app, "second", PASSWORD)
    networks = fail_from_networks(app, OWNER, 5)
    for network in networks:
        response = sign_in(app.test_client(), OWNER, PASSWORD, REMOTE_ADDR=network)
        assert response.status_code == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 61
    newcomer = app.test_client()
    assert sign_in(newcomer, OWNER, "wrong password", REMOTE_ADDR="198.51.100.2").status_code == 422
    assert sign_in(newcomer, OWNER, PASSWORD, REMOTE_ADDR="198.51.100.2").status_code == 429, \
        "a new network gets one guess at a name under attack, not five"
    other_name = sign_in(app.test_client(), "second", PASSWORD, REMOTE_ADDR=networks[0])
    assert other_name.status_code == 303


def test_guessing_at_the_owners_name_does_not_keep_the_owner_out(app: Flask) -> None:
    """However many networks failed at the name, the right password from a clean one opens."""
    create_owner(app)
    fail_from_networks(app, OWNER, 12)
    owner = app.test_client()
    assert sign_in(owner, OWNER, PASSWORD, REMOTE_ADDR="198.51.100.1").status_code == 303
    assert owner.get("/admin/").status_code == 200


def test_a_network_the_owner_signed_in_from_is_not_stopped_for_a_typo(app: Flask) -> None:
    """A network that signed in before keeps in after a typo, while the name is under attack;
    a network with the same typo that never signed in is stopped."""
    create_owner(app)
    assert sign_in(app.test_client(), REMOTE_ADDR="198.51.100.9").status_code == 303
    for network in ("198.51.100.9", "198.51.100.10"):
        typo = sign_in(app.test_client(), OWNER, "a typo", REMOTE_ADDR=network)
        assert typo.status_code == 422
    fail_from_networks(app, OWNER, 5)
    assert sign_in(app.test_client(), REMOTE_ADDR="198.51.100.9").status_code == 303
    assert sign_in(app.test_client(), REMOTE_ADDR="198.51.100.10").status_code == 429


def test_a_right_password_takes_its_try_back(app: Flask) -> None:
    """Sign-ins that succeed do not use up the network's 5 tries: failures alone do."""
    create_owner(app)
    client = app.test_client()
    for _ in range(4):
        assert sign_in(client, OWNER, "wrong password").status_code == 422
    for _ in range(3):
        assert sign_in(app.test_client()).status_code == 303
    assert sign_in(client, OWNER, "wrong password").status_code == 422
    assert sign_in(client).status_code == 429


def test_the_lockout_does_not_tell_which_names_exist(app: Flask) -> None:
    """A name without an account is counted and stopped exactly like the owner's."""
    create_owner(app)
    answers = {}
    for name in (OWNER, "nobody"):
        networks = fail_from_networks(app, name, 5)
        again = sign_in(app.test_client(), name, "wrong password", REMOTE_ADDR=networks[0])
        answers[name] = again.status_code
    assert answers == {OWNER: 429, "nobody": 429}


def refused_sign_ins(app: Flask) -> int:
    """How many wrong passwords for the owner's name were checked (one audit line each)."""
    with app.app_context():
        return len(db.session.scalars(select(AuditEntry).where(
            AuditEntry.action == "sign-in refused")).all())


def test_a_parallel_burst_gets_exactly_five_passwords_checked(app: Flask) -> None:
    """7 tries at once from one network: 5 are checked (422), 2 refused (429) unchecked.

    Seven, as each request here holds two of the pool's 15 connections; the burst of 20
    runs against gunicorn (test_lockout_gunicorn.py)."""
    create_owner(app)
    clients = [app.test_client() for _ in range(7)]
    tokens = [csrf_token(client) for client in clients]
    start, statuses = threading.Barrier(len(clients)), []

    def guess(client: FlaskClient, token: str) -> None:
        start.wait(30)
        statuses.append(client.post("/admin/login", data={
            "csrf_token": token, "username": OWNER, "password": "wrong password"},
            environ_base={"REMOTE_ADDR": "203.0.113.5"}).status_code)

    threads = [threading.Thread(target=guess, args=pair)
               for pair in zip(clients, tokens, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(statuses) == {422: 5, 429: 2}
    assert refused_sign_ins(app) == 5


def test_every_checked_password_costs_one_argon2_verification(app: Flask) -> None:
    """A right password, a wrong one and an unknown name cost about the same CPU time;
    a refused (429, unchecked) try shows what a skipped verification would look like."""
    create_owner(app)
    cases = {"right": (OWNER, PASSWORD), "wrong": (OWNER, "wrong password"),
             "unknown": ("nobody", PASSWORD)}
    networks = (f"198.51.100.{number}" for number in itertools.count(1))
    costs: dict[str, list[float]] = {case: [] for case in cases}
    for _ in range(5):
        for case, (name, password) in cases.items():
            client, network = app.test_client(), next(networks)  # never locked out
            costs[case].append(cpu_cost(client, name, password, REMOTE_ADDR=network))
    locked = app.test_client()
    for _ in range(5):
        sign_in(locked, "nobody", "wrong password")
    costs["refused"] = [cpu_cost(locked) for _ in range(5)]
    right, wrong, unknown, refused = (statistics.median(costs[case]) for case in costs)
    assert 0.5 * right < wrong < 2 * right and 0.5 * right < unknown < 2 * right, costs
    assert refused < 0.5 * right, costs


def cpu_cost(client: FlaskClient, *args: str, **environ: str) -> float:
    """The CPU seconds this process spent signing in (argon2 included, whatever its thread)."""
    before = time.process_time()
    sign_in(client, *args, **environ)
    return time.process_time() - before


def test_the_failure_count_is_shared_by_every_process(make_app: Callable[..., Flask]) -> None:
    """Two app instances on one database (as two workers) count failures together."""
    first = make_app(deliver=False)
    second = make_app(deliver=False)
    create_owner(first)
    for app in (first, second, first, second, first):
        assert sign_in(app.test_client(), OWNER, "wrong password").status_code == 422
    assert sign_in(second.test_client()).status_code == 429


def test_the_lockout_holds_when_the_form_rate_limit_is_off(make_app: Callable[..., Flask]) -> None:
    """CONTACT_RATE_LIMIT=off (the tests' default) turns off the form's limit, not this one."""
    app = make_app(deliver=False, CONTACT_RATE_LIMIT="off")
    create_owner(app)
    client = app.test_client()
    for _ in range(5):
        sign_in(client, OWNER, "wrong password")
    assert sign_in(client).status_code == 429


def test_a_broken_limit_store_does_not_shut_the_owner_out(make_app: Callable[..., Flask],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable: passwords are still checked (the owner gets in) and it is logged."""
    app = make_app(deliver=False, RATELIMIT_STORAGE_URI="redis://127.0.0.1:1/0")
    create_owner(app)
    assert sign_in(app.test_client(), OWNER, "wrong password").status_code == 422
    assert sign_in(app.test_client()).status_code == 303
    assert "sign-in not counted: the limit store failed" in caplog.text


def test_the_console_cookie_is_strict_http_only_and_kept_to_admin(app: Flask) -> None:
    """Over plain HTTP: HttpOnly, SameSite=Strict, Path=/admin, no Secure (it would be lost)."""
    create_owner(app)
    [header] = cookie_headers(app.test_client().get("/admin/login"), CONSOLE_COOKIE)
    morsel = SimpleCookie(header)[CONSOLE_COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict" and morsel["path"] == "/admin"
    assert not morsel["secure"]


def test_the_console_cookie_is_secure_over_https(app: Flask) -> None:
    """Over HTTPS the console's cookie is marked Secure."""
    create_owner(app)
    client = app.test_client()
    response = client.get("/admin/login", base_url="https://localhost")
    [header] = cookie_headers(response, CONSOLE_COOKIE)
    assert SimpleCookie(header)[CONSOLE_COOKIE]["secure"]


def test_the_public_page_keeps_its_own_lax_cookie(app: Flask) -> None:
    """The contact page never sets the console cookie; its own stays SameSite=Lax on /."""
    response = app.test_client().get("/")
    assert cookie_headers(response, CONSOLE_COOKIE) == []
    [header] = cookie_headers(response, "session")
    morsel = SimpleCookie(header)["session"]
    assert morsel["samesite"] == "Lax" and morsel["path"] == "/"


def console_cookie(client: object) -> str:
    """The value of the console cookie the client holds."""
    cookie = client.get_cookie(CONSOLE_COOKIE, path="/admin")  # type: ignore[attr-defined]
    assert cookie is not None
    return str(cookie.value)


def test_signing_out_revokes_a_copied_cookie(app: Flask) -> None:
    """A copy of the session cookie taken before sign-out no longer opens the console."""
    client = owner_client(app)
    copied = console_cookie(client)
    thief = app.test_client()
    thief.set_cookie(CONSOLE_COOKIE, copied, path="/admin")
    assert thief.get("/admin/").status_code == 200, "the copy works while signed in"
    token = csrf_token(client, "/admin/outbox")
    assert client.post("/admin/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/admin/").status_code == 302
    assert thief.get("/admin/").status_code == 302


def test_a_new_password_ends_open_sessions(app: Flask) -> None:
    """`users set-password` raises the account's session version: signed-in clients are out."""
    client = owner_client(app)
    result = app.test_cli_runner().invoke(
        args=["users", "set-password", OWNER, "--password-stdin"], input="another long password\n")
    assert result.exit_code == 0, result.output
    assert client.get("/admin/").status_code == 302


def test_a_session_idle_for_12_hours_ends(app: Flask) -> None:
    """The console session's last answer 12 h and a minute ago: signed out."""
    client = owner_client(app)
    with client.session_transaction(path="/admin/") as session:
        session[auth.SEEN_KEY] = int(time.time() - IDLE_LIMIT.total_seconds() - 60)
    response = client.get("/admin/")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/login"
    assert client.get("/admin/").status_code == 302


def test_a_session_in_use_stays_open(app: Flask) -> None:
    """The last answer 11 h ago: still signed in, and the clock starts again."""
    client = owner_client(app)
    with client.session_transaction(path="/admin/") as session:
        session[auth.SEEN_KEY] = int(time.time() - 11 * 3600)
    assert client.get("/admin/").status_code == 200
    with client.session_transaction(path="/admin/") as session:
        assert time.time() - session[auth.SEEN_KEY] < 60


def test_passwords_are_stored_as_argon2id_hashes(app: Flask) -> None:
    """The stored hash is argon2id with a salt: never the password."""
    create_owner(app)
    with app.app_context():
        user = auth.find_user(OWNER)
        assert user is not None
        assert user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash


def run_users(app: Flask, *args: str, password: str | None = None) -> tuple[int, str]:
    """`flask users …` through Click's runner; exit code and output."""
    result = app.test_cli_runner().invoke(args=["users", *args], input=password)
    return result.exit_code, result.output


def test_users_create_list_set_password_delete(app: Flask) -> None:
    """The account's life from the command line, each step checked by signing in."""
    assert run_users(app, "create", "Owner", "--password-stdin",
                     password=PASSWORD + "\n")[0] == 0
    code, output = run_users(app, "list")
    assert code == 0 and "owner" in output and "never" in output
    assert sign_in(app.test_client()).status_code == 303
    assert run_users(app, "set-password", OWNER, "--password-stdin",
                     password="a different long password\n")[0] == 0
    assert sign_in(app.test_client(), REMOTE_ADDR="192.0.2.50").status_code == 422
    assert sign_in(app.test_client(), OWNER, "a different long password").status_code == 303
    assert run_users(app, "delete", OWNER)[0] == 0
    assert "No accounts yet" in run_users(app, "list")[1]


@pytest.mark.parametrize(("args", "password", "message"), [
    (["create", "owner"], "short\n", "at least 12 characters"),
    (["create", "bad name!"], PASSWORD + "\n", "A username is"),
    (["create", OWNER], PASSWORD + "\n", "already an account"),
    (["set-password", "nobody"], PASSWORD + "\n", "no account named nobody"),
    (["delete", "nobody"], None, "no account named nobody"),
])
def test_users_commands_refuse_in_plain_words(app: Flask, args: list[str],
                                              password: str | None, message: str) -> None:
    """A bad name or password: exit code 1 and one line saying why."""
    create_owner(app)
    extra = ["--password-stdin"] if password is not None else []
    code, output = run_users(app, *args, *extra, password=password)
    assert code == 1
    assert message in output


def test_users_create_prompts_twice_for_the_password(app: Flask) -> None:
    """Without --password-stdin the password is asked for, hidden, and confirmed."""
    code, output = run_users(app, "create", OWNER, password=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0, output
    assert PASSWORD not in output
    assert sign_in(app.test_client()).status_code == 303


def test_users_create_works_from_the_real_command_line(app: Flask, tmp_path: Path) -> None:
    """`flask --app contact_site users create NAME --password-stdin`, as an operator runs it."""
    env = worker_env(app)
    result = subprocess.run([FLASK, "--app", "contact_site", "users", "create", OWNER,
                             "--password-stdin"], cwd=PROJECT_ROOT, env=env, input=PASSWORD + "\n",
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert sign_in(app.test_client()).status_code == 303
