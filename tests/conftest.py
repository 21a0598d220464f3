"""Fixtures: the app on a real SMTP test server, a client, and form helpers."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site import create_app
from contact_site.extensions import db
from contact_site.runtime import start_process
from contact_site.schema import upgrade_schema
from smtp_server import SMTPTestServer

IN_CI = os.environ.get("CI") == "true"
TEST_POSTGRES_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RECIPIENTS = "Sales <sales@example.com>, Support Team <support@example.com>"


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogues() -> None:
    """The .mo files are built, not committed: compile them once, as `make install` does."""
    import subprocess
    import sys

    pybabel = Path(sys.executable).with_name("pybabel")
    root = Path(__file__).resolve().parent.parent
    subprocess.run([str(pybabel), "compile", "-d", str(root / "translations")],
                   check=True, capture_output=True)


def skip_or_fail(reason: str) -> None:
    """Skip when a service is absent, except under CI=true where it must be there."""
    if IN_CI:
        pytest.fail(f"{reason} (required under CI=true)")
    pytest.skip(reason)


@pytest.fixture
def smtp_server() -> Iterator[SMTPTestServer]:
    """A real SMTP server on a free loopback port, recording what it receives."""
    server = SMTPTestServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


def base_config(tmp_path: Path, smtp_server: SMTPTestServer) -> dict[str, Any]:
    """Settings every test app shares: its own database and folders, the test SMTP server."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-not-for-production",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'test.sqlite'}",
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": smtp_server.port,
        "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
        "MAIL_TIMEOUT": 3,
        "CONTACT_RECIPIENTS": RECIPIENTS,
        "CONTACT_RATE_LIMIT": "off",
        # Tests post at once, without a proof of work, the same message again and again;
        # the spam tests turn these layers on (spam_helpers.LAYERS_ON).
        "CONTACT_MIN_FILL_SECONDS": 0,
        "CONTACT_PROOF_OF_WORK": "off",
        "CONTACT_DUPLICATE_HOURS": 0,
        "DELIVERY_RETRY_BASE_SECONDS": 1,
        "DELIVERY_RETRY_MAX_SECONDS": 2,
        "DELIVERY_POLL_SECONDS": 1,
    }


@pytest.fixture
def make_app(tmp_path: Path, smtp_server: SMTPTestServer) -> Iterator[Callable[..., Flask]]:
    """Build apps with the test settings plus overrides; stop their workers afterwards."""
    apps: list[Flask] = []

    def build(deliver: bool = True, **overrides: Any) -> Flask:
        """The app on a migrated database; with `deliver`, its delivery thread started."""
        app = create_app({**base_config(tmp_path, smtp_server), **overrides})
        apps.append(app)
        if deliver:
            start_process(app)
        else:
            upgrade_schema(app)
        return app

    yield build
    for app in apps:
        app.extensions["contact_delivery"].stop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with its in-process delivery worker running."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    """A runner for the app's command-line commands."""
    return app.test_cli_runner()


@contextmanager
def postgres_schema(prefix: str = "t") -> Iterator[str | None]:
    """A PostgreSQL URL on a schema of its own (dropped afterwards), or None if unreachable."""
    import sqlalchemy as sa

    engine = sa.create_engine(TEST_POSTGRES_URL)
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    except sa.exc.OperationalError:
        engine.dispose()
        yield None
        return
    sep = "&" if "?" in TEST_POSTGRES_URL else "?"
    try:
        yield f"{TEST_POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        engine.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own, dropped afterwards."""
    with postgres_schema() as url:
        if url is None:
            skip_or_fail(f"PostgreSQL unreachable at {TEST_POSTGRES_URL}")
        yield url


def database_params() -> list[Any]:
    """The two databases the outbox tests run on."""
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=database_params())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def manual_app(database_url: str, make_app: Callable[..., Flask]) -> Flask:
    """An app on each database whose delivery is driven by hand: no background thread."""
    return make_app(deliver=False, DATABASE_URL=database_url)


def form_tokens(client: FlaskClient) -> dict[str, str]:
    """The csrf_token and submission_key of a freshly rendered form."""
    page = client.get("/").get_data(as_text=True)
    pattern = r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"'
    found = dict(re.findall(pattern, page))
    assert set(found) == {"csrf_token", "submission_key"}, "form lacks its hidden fields"
    return found


PDF_BYTES_FOR_TESTS = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

VALID = {
    "recipient": "sales",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "subject": "Engines",
    "message": "Hello,\nI have a question about the analytical engine.",
}


def post_form(client: FlaskClient, json: bool = False, tokens: dict[str, str] | None = None,
              **fields: Any) -> Any:
    """POST the contact form like a browser would, with fresh tokens unless given."""
    data = {**VALID, **(tokens or form_tokens(client)), **fields}
    data = {k: v for k, v in data.items() if v is not None}
    headers = {"Accept": "application/json"} if json else {"Accept": "text/html"}
    # Encoded in memory: the test client would spool bodies over 500 kB to a
    # temporary file it never closes, which shows up as a ResourceWarning.
    files = {k: FileStorage(v[0], filename=v[1]) for k, v in data.items() if isinstance(v, tuple)}
    boundary, body = encode_multipart(MultiDict({**data, **files}))
    return client.post("/", data=body, headers=headers,
                       content_type=f"multipart/form-data; boundary={boundary}")


@pytest.fixture
def workers(app: Flask, tmp_path: Path) -> Any:
    """Start `outbox work` processes; each is stopped by its PID afterwards."""
    # Imported here: delivery_helpers imports this module's settings.
    import subprocess

    from delivery_helpers import flask_command, stop_process, worker_env

    started: list[subprocess.Popen[bytes]] = []

    def start(**settings: Any) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"worker-{len(started)}.log"
        process = flask_command("outbox", "work", env=worker_env(app, **settings), log=log)
        started.append(process)
        return process, log

    yield start
    for process in started:
        stop_process(process)


@pytest.fixture
def gunicorn(app: Flask, tmp_path: Path) -> Any:
    """Start gunicorn as an operator runs it, on this app's database; each is stopped by PID."""
    import subprocess

    from delivery_helpers import start_gunicorn, stop_process

    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, **settings: Any) -> tuple[subprocess.Popen[bytes], Path, int]:
        process, log, port = start_gunicorn(app, tmp_path, *args, **settings)
        started.append(process)
        return process, log, port

    yield start
    for process in started:
        stop_process(process, timeout=30)
