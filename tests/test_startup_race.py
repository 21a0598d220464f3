"""Processes starting at once on a fresh database all come up: the schema is made once, under
a lock, whoever starts first (gunicorn's master, or workers racing each other)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from support.databases import postgres_schema
from support.processes import (
    GUNICORN,
    PROJECT_ROOT,
    children,
    free_port,
    healthz,
    process_env,
    stop_process,
)
from support.settings import skip_or_fail
from support.waiting import wait_until

WORKERS = 4
ROUNDS = 3
BOOT_TIMEOUT = 40.0
# What a worker that failed to start leaves in gunicorn's log.
FAILURE_SIGNS = ("Worker failed to boot", "Traceback", "exited with code", "[ERROR]",
                 "already exists")
PG_PORT_HEX = f"{5432:04X}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_databases(request: pytest.FixtureRequest,
                    tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Make a new, empty database per call: a SQLite file, or a PostgreSQL schema."""
    with ExitStack() as stack:
        made: list[str] = []

        def fresh() -> str:
            if request.param == "sqlite":
                url = f"sqlite:///{tmp_path / f'fresh-{len(made)}.sqlite'}"
            else:
                url = stack.enter_context(postgres_schema("race"))
                if url is None:
                    skip_or_fail("PostgreSQL unreachable")
            made.append(url)
            return url

        yield fresh


def holds_database(pid: int, url: str) -> bool:
    """Whether the process has a connection to the database open: the file of a SQLite
    database, or a TCP connection to PostgreSQL's port. Workers connect only once their
    app is loaded and started (the master closes its connections before forking)."""
    try:
        targets = {os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
    except OSError:
        return False
    if url.startswith("sqlite"):
        return sa.make_url(url).database in targets
    postgres_sockets = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(f":{PG_PORT_HEX}"):
                postgres_sockets.add(f"socket:[{fields[9]}]")
    return bool(targets & postgres_sockets)


def heads() -> set[str]:
    """The newest revisions in migrations/."""
    return set(ScriptDirectory(str(PROJECT_ROOT / "migrations")).get_heads())


def alembic_versions(url: str) -> set[str]:
    """What alembic_version records."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return set(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
    finally:
        engine.dispose()


@dataclass
class Gunicorn:
    """One gunicorn master we started, its port and its log."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    def text(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace")


def start_gunicorn(app_spec: str, url: str, home: Path, cwd: Path, smtp_port: int,
                   processes: list[subprocess.Popen[bytes]]) -> Gunicorn:
    """`gunicorn --workers 4 <app_spec>` run from `cwd`, bound to a free loopback port."""
    port = free_port()
    log = home.with_suffix(".log")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [GUNICORN, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}", app_spec],
            cwd=cwd, env=process_env(url, home, smtp_port), stdout=out,
            stderr=subprocess.STDOUT)
    processes.append(process)
    return Gunicorn(process, port, log)


def assert_all_workers_up(server: Gunicorn, url: str) -> None:
    """The master lives, /healthz answers 200, and all four workers are up and connected."""
    def booted() -> bool:
        assert server.process.poll() is None, f"gunicorn exited:\n{server.text()}"
        workers = children(server.process.pid)
        return len(workers) == WORKERS and all(holds_database(pid, url) for pid in workers)

    wait_until(booted, timeout=BOOT_TIMEOUT, what="four workers with the database open",
               step=0.2)
    assert healthz(server.port) == 200
    log = server.text()
    assert log.count("Booting worker") == WORKERS, log  # none died and was replaced
    assert not [sign for sign in FAILURE_SIGNS if sign in log], log


def stop_gunicorn(server: Gunicorn) -> None:
    """SIGTERM to the master; it and every worker are gone afterwards."""
    workers = children(server.process.pid)
    assert stop_process(server.process, timeout=30) == 0, server.text()
    for pid in workers:  # the master waits for its workers; none may linger
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"worker {pid} lingers"
    assert not [sign for sign in FAILURE_SIGNS if sign in server.text()], server.text()


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.timeout(150)
@pytest.mark.parametrize(("app_spec", "with_hooks"), [
    ("contact_site:create_app()", True),  # the README's command: the master upgrades first
    ("contact_site.wsgi:app", False),  # no gunicorn.conf.py: the four workers race
], ids=["create_app-with-hooks", "wsgi-without-hooks"])
def test_four_gunicorn_workers_on_a_fresh_database_all_come_up(
        app_spec, with_hooks, fresh_databases, smtp_server, processes, tmp_path):
    """Round after round, four workers on a new database come up healthy; none fails to
    boot and the schema is at the newest revision."""
    rounds = ROUNDS if with_hooks else 1  # forked from no master: each worker imports all
    for number in range(rounds):
        url = fresh_databases()
        cwd = PROJECT_ROOT if with_hooks else tmp_path  # gunicorn.conf.py is read from cwd
        server = start_gunicorn(app_spec, url, tmp_path / f"home-{number}", cwd,
                                smtp_server.port, processes)
        assert_all_workers_up(server, url)
        assert alembic_versions(url) == heads()
        stop_gunicorn(server)


UPGRADER = """
import sys, time
from pathlib import Path
from contact_site import create_app
from contact_site.schema import upgrade_schema

go, urls = Path(sys.argv[1]), sys.argv[2:]
for number, url in enumerate(urls):
    app = create_app({"DATABASE_URL": url})
    print(f"ready {number}", flush=True)
    deadline = time.monotonic() + 60
    while not go.with_suffix(f".{number}").exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    upgrade_schema(app)
    print(f"upgraded {number}", flush=True)
"""


@pytest.mark.timeout(120)
def test_processes_upgrading_a_fresh_database_at_the_same_moment_all_succeed(
        fresh_databases, processes, tmp_path):
    """Four processes call upgrade_schema at one moment on a new database, round after
    round: every one succeeds and the schema is made once."""
    urls = [fresh_databases() for _ in range(ROUNDS)]
    go = tmp_path / "go"
    logs = []
    for number in range(WORKERS):
        log = tmp_path / f"upgrader-{number}.log"
        with log.open("wb") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-c", UPGRADER, str(go), *urls], cwd=tmp_path,
                env=process_env(urls[0], tmp_path / f"home-{number}", 25),
                stdout=out, stderr=subprocess.STDOUT))
        logs.append(log)
    def all_say(words: str) -> bool:
        for log, process in zip(logs, processes, strict=True):
            assert process.poll() is None or words in log.read_text(), log.read_text()
        return all(words in log.read_text() for log in logs)

    for number, url in enumerate(urls):
        wait_until(lambda n=number: all_say(f"ready {n}"), timeout=60,
                   what=f"the four processes to be ready for round {number}")
        go.with_suffix(f".{number}").touch()  # all four upgrade now
        wait_until(lambda n=number: all_say(f"upgraded {n}"), timeout=60,
                   what=f"round {number} to end")
        assert alembic_versions(url) == heads()
    for process, log in zip(processes, logs, strict=True):
        assert process.wait(30) == 0, log.read_text()
        expected = [f"{word} {n}" for n in range(ROUNDS) for word in ("ready", "upgraded")]
        assert log.read_text().splitlines() == expected, log.read_text()


def waits_for_the_migration_lock(holder: sa.Connection, pid: int) -> bool:
    """Whether process `pid` is blocked on the migration lock `holder` holds."""
    if holder.dialect.name == "postgresql":
        return bool(holder.scalar(sa.text(
            "SELECT count(*) FROM pg_locks AS waiting JOIN pg_locks AS held"
            " ON (waiting.classid, waiting.objid) = (held.classid, held.objid)"
            " WHERE held.locktype = 'advisory' AND held.granted"
            " AND held.pid = pg_backend_pid() AND waiting.locktype = 'advisory'"
            " AND NOT waiting.granted")))
    # /proc/locks lists a process blocked on a flock with "->" before the lock's kind.
    return any(line.split()[1:3] == ["->", "FLOCK"] and str(pid) in line.split()
               for line in Path("/proc/locks").read_text().splitlines())


@pytest.mark.timeout(90)
def test_flask_db_upgrade_waits_while_another_process_migrates(
        fresh_databases, smtp_server, processes, tmp_path):
    """`flask db upgrade` takes the same lock as a starting process: it waits for the
    holder, then migrates."""
    from contact_site.schema import migration_lock

    url = fresh_databases()
    engine = sa.create_engine(url)
    log = tmp_path / "db-upgrade.log"
    try:
        with engine.connect() as holder, migration_lock(holder):
            with log.open("wb") as out:
                # "heads": every branch, as the app's own start-up upgrades.
                upgrade = subprocess.Popen(
                    [str(Path(sys.executable).with_name("flask")), "--app", "contact_site",
                     "db", "upgrade", "heads"], cwd=PROJECT_ROOT,
                    env=process_env(url, tmp_path / "home", smtp_server.port),
                    stdout=out, stderr=subprocess.STDOUT)
            processes.append(upgrade)
            wait_until(lambda: waits_for_the_migration_lock(holder, upgrade.pid), timeout=60,
                       what="flask db upgrade to wait for the lock")
            assert upgrade.poll() is None, log.read_text()
        assert upgrade.wait(60) == 0, log.read_text()
    finally:
        engine.dispose()
    assert alembic_versions(url) == heads()
