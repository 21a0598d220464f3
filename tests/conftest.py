"""Fixtures every test folder shares: the app, set up by markers; servers; worker processes.

Plain helpers (posting the form, the submission factory, starting processes) are in the
`support` package; fixtures a single folder needs are in that folder's conftest.py.

The app of a test is configured by markers on the test, its class or its module:
`@pytest.mark.settings(NAME=value, ...)` changes settings (the nearest marker wins),
`@pytest.mark.manual_delivery` starts no delivery thread (the test delivers by hand or
through worker processes), and `@pytest.mark.each_database` runs the test once on SQLite
and once on PostgreSQL.
"""

from __future__ import annotations

import fcntl
import functools
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from contact_site import create_app
from contact_site.delivery.backend import backend_of
from contact_site.extensions import db
from contact_site.runtime import start_process
from contact_site.schema import upgrade_schema
from support import factories
from support.browser import CHROMIUM, CHROMIUM_ARGS, WatchedPage, watch
from support.databases import TEST_POSTGRES_URL, database_params, postgres_schema
from support.factories import MakeSubmission, create_submission
from support.forms_files import COMPANY_FIELD, site_forms, write_forms
from support.processes import (
    BROKER_URL,
    PROJECT_ROOT,
    flask_command,
    start_gunicorn,
    stop_process,
    worker_env,
)
from support.settings import base_config, skip_or_fail
from support.smtp_server import SMTPTestServer

StoreDeclared = Callable[..., str]


@pytest.fixture(scope="session", autouse=True)
def compiled_catalogues(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The .mo files are built, not committed: compile them, as `make install` does, when one
    is older than its .po. Under a lock: parallel workers (`-n`) must not read a .mo file
    while another writes it."""
    translations = PROJECT_ROOT / "translations"
    lock = tmp_path_factory.getbasetemp().parent / "catalogues.lock"
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if any(not po.with_suffix(".mo").exists()
               or po.with_suffix(".mo").stat().st_mtime < po.stat().st_mtime
               for po in translations.glob("*/LC_MESSAGES/*.po")):
            pybabel = Path(sys.executable).with_name("pybabel")
            subprocess.run([str(pybabel), "compile", "-d", str(translations)],
                           check=True, capture_output=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `-n N --dist loadgroup` (make test): a module's tests run on one worker, in
    order, as they share module fixtures and a Redis database of their own; the tests that
    start Celery workers form one group, as they share one broker."""
    if config.getoption("dist", default="no") != "loadgroup":
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            shared = "redis_broker" in getattr(item, "fixturenames", ())
            group = "celery-broker" if shared else item.nodeid.split("::")[0]
            item.add_marker(pytest.mark.xdist_group(group))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `each_database` runs once per database its app may use."""
    if (metafunc.definition.get_closest_marker("each_database")
            and "database_url" in metafunc.fixturenames):
        metafunc.parametrize("database_url", database_params(), indirect=True)


def marked_settings(node: pytest.Item) -> dict[str, Any]:
    """The settings of every `settings` marker on the test, the nearest one winning."""
    merged: dict[str, Any] = {}
    for marker in reversed(list(node.iter_markers("settings"))):
        merged.update(marker.kwargs)
    return merged


@pytest.fixture
def smtp_server() -> Iterator[SMTPTestServer]:
    """A real SMTP server on a free loopback port, recording what it receives."""
    with SMTPTestServer() as server:
        yield server


@pytest.fixture
def start_smtp() -> Iterator[Callable[..., SMTPTestServer]]:
    """Start SMTP test servers with options of their own (TLS, AUTH, SIZE, SMTPUTF8);
    closed afterwards."""
    servers: list[SMTPTestServer] = []

    def start(**options: Any) -> SMTPTestServer:
        server = SMTPTestServer(**options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL with a schema of its own, dropped afterwards."""
    with postgres_schema() as url:
        if url is None:
            skip_or_fail(f"PostgreSQL unreachable at {TEST_POSTGRES_URL}")
        yield url


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test's database: SQLite in its folder (make_app's default), then PostgreSQL too
    for a test marked `each_database`."""
    if getattr(request, "param", "sqlite") == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to the newest revision, once for the session: a test's new
    SQLite database starts as a copy, which `upgrade_schema` finds current at once (the
    migrations themselves are tested from release 0.1 in tests/test_migrations.py)."""
    folder = tmp_path_factory.mktemp("migrated")
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret-key-not-for-production",
                      "DATABASE_URL": f"sqlite:///{folder / 'template.sqlite'}",
                      "UPLOAD_FOLDER": str(folder / "uploads")})
    upgrade_schema(app)
    with app.app_context():
        db.engine.dispose()  # the last connection closed: the WAL is folded into the file
    return folder / "template.sqlite"


def start_from_template(url: str, template: Path) -> None:
    """A SQLite database that does not exist yet begins as a copy of the migrated template."""
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.exists() and path.parent.is_dir():
            shutil.copyfile(template, path)


@pytest.fixture
def make_app(tmp_path: Path, smtp_server: SMTPTestServer,
             migrated_sqlite: Path) -> Iterator[Callable[..., Flask]]:
    """Build apps from the test settings plus `overrides` (markers do not apply); stop their
    delivery afterwards. For tests that need two apps, or settings known only at run time."""
    apps: list[Flask] = []

    def build(deliver: bool = True, **overrides: Any) -> Flask:
        """The app on a migrated database; with `deliver`, its delivery thread started."""
        config = {**base_config(tmp_path, smtp_server), **overrides}
        start_from_template(str(config["DATABASE_URL"]), migrated_sqlite)
        app = create_app(config)
        apps.append(app)
        if deliver:
            start_process(app)
        else:
            upgrade_schema(app)
        return app

    yield build
    for app in apps:
        backend_of(app).stop()
        with app.app_context():
            db.engine.dispose()


@pytest.fixture
def app(request: pytest.FixtureRequest, make_app: Callable[..., Flask],
        database_url: str) -> Flask:
    """The app of the test, set up by its markers; its delivery thread running unless the
    test is marked `manual_delivery`."""
    deliver = request.node.get_closest_marker("manual_delivery") is None
    return make_app(deliver=deliver, DATABASE_URL=database_url, **marked_settings(request.node))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> Any:
    """A runner for the app's command-line commands."""
    return app.test_cli_runner()


@pytest.fixture
def make_submission(app: Flask) -> MakeSubmission:
    """Store a submission in the app's database with its mails queued; its id (the factory,
    support.factories.create_submission, bound to the app)."""
    def make(**fields: Any) -> str:
        return create_submission(app, **fields)

    return make


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; each is stopped by its PID afterwards."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        stop_process(process, timeout=30)


@pytest.fixture
def workers(app: Flask, tmp_path: Path,
            processes: list[subprocess.Popen[bytes]]) -> Callable[..., Any]:
    """Start `outbox work` processes on the app's database."""
    def start(**settings: Any) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"worker-{len(processes)}.log"
        process = flask_command("outbox", "work", env=worker_env(app, **settings), log=log)
        processes.append(process)
        return process, log

    return start


@pytest.fixture
def gunicorn(app: Flask, tmp_path: Path,
             processes: list[subprocess.Popen[bytes]]) -> Callable[..., Any]:
    """Start gunicorn as an operator runs it, on the app's database."""
    def start(*args: str, **settings: Any) -> tuple[subprocess.Popen[bytes], Path, int]:
        process, log, port = start_gunicorn(app, tmp_path, *args, **settings)
        processes.append(process)
        return process, log, port

    return start


@pytest.fixture(scope="session")
def redis_broker() -> str:
    """The broker URL, or a skip (a failure under CI=true) when Redis is absent."""
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        skip_or_fail(f"Redis unreachable at {BROKER_URL}: {error}")
    finally:
        client.close()
    return BROKER_URL


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole module."""
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def mail_server() -> Iterator[SMTPTestServer]:
    """The SMTP test server of a module whose site is shared by its tests."""
    with SMTPTestServer() as server:
        yield server


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., WatchedPage]]:
    """Open watched pages in fresh contexts (JavaScript on unless told); close them after."""
    contexts: list[Any] = []

    def opener(javascript: bool = True, width: int = 1280, height: int = 900) -> WatchedPage:
        context = browser.new_context(java_script_enabled=javascript,
                                      viewport={"width": width, "height": height})
        contexts.append(context)
        return watch(context.new_page())

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def forms_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The site's forms file (contact, with a company field, and careers), named by a
    `settings` marker for the app this test builds next."""
    assert "app" not in request.node.funcargs, "forms_file must come before app"
    path = write_forms(tmp_path / "site", site_forms(extra=COMPANY_FIELD))
    request.node.add_marker(pytest.mark.settings(CONTACT_FORMS_FILE=str(path)))
    return path


@pytest.fixture
def store_declared(app: Flask) -> StoreDeclared:
    """Store a submission of a declared form (support.factories.store_declared); its id."""
    return functools.partial(factories.store_declared, app)


@pytest.fixture
def clamd() -> Iterator[Any]:
    """A private clamd of this test (support.clamd.ClamdServer): the test signature,
    StreamMaxLength 1M, tcp:// and unix:// addresses, stop() and start()."""
    from support.clamd import clamd_server

    with clamd_server() as server:
        yield server
