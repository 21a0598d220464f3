"""A proof of work is accepted once by the whole deployment: two gunicorn workers share
the record of used challenges (docs/spam-verdicts.md).

Real gunicorn (with gunicorn.conf.py, from the project folder, its own HOME), two workers,
SQLite and PostgreSQL. The challenge comes from the real `GET /altcha` and is solved here
by brute force, as the page's worker does. The contact form is not wired to `judge` yet,
so the solution is posted to a test-only route (tests/support/altcha_replay_app.py) that calls
the real `judge` in whichever worker takes the connection, and answers with that worker's
PID; the same solution is posted until both workers have answered.
"""

from __future__ import annotations

import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.processes import (
    GUNICORN,
    PROJECT_ROOT,
    children,
    free_port,
    healthz,
    process_env,
    stop_process,
)
from support.spam import solve
from support.waiting import wait_until

# A test using database_url or app runs on SQLite, then on PostgreSQL.
pytestmark = pytest.mark.each_database

WORKERS = 2
MAX_POSTS = 200  # connections go to either worker; both answer long before this


@pytest.fixture
def gunicorn(database_url: str, smtp_server, tmp_path: Path) -> Iterator[int]:
    """gunicorn with two workers on `database_url`; its port. Stopped by PID afterwards."""
    port, home = free_port(), tmp_path / "home"
    env = process_env(database_url, home, smtp_server.port)
    env["CONTACT_MIN_FILL_SECONDS"] = "0"  # the proof alone is under test here
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [GUNICORN, "--workers", str(WORKERS), "--bind", f"127.0.0.1:{port}",
             "--pythonpath", str(PROJECT_ROOT / "tests"), "support.altcha_replay_app:create_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            assert process.poll() is None, log.read_text()
            return len(children(process.pid)) == WORKERS and healthz(port) == 200

        wait_until(up, timeout=40, what="gunicorn's two workers", step=0.2)
        yield port
    finally:
        stop_process(process, timeout=30)
    assert "Traceback" not in log.read_text(), log.read_text()


def get_json(url: str, data: dict[str, str] | None = None) -> dict[str, object]:
    """GET (or POST a form to) `url` on a new connection; the JSON answered."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    with urllib.request.urlopen(url, data=body, timeout=10) as answer:
        return dict(json.loads(answer.read()))


@pytest.mark.timeout(120)
def test_one_solution_is_accepted_once_across_two_gunicorn_workers(gunicorn):
    """The first post is ham; every later post of it, in either worker, is proof_replayed."""
    base = f"http://127.0.0.1:{gunicorn}"
    payload = solve(get_json(f"{base}/altcha"))
    answers = [get_json(f"{base}/test/judge", {"altcha": payload})]
    while len({a["pid"] for a in answers}) < WORKERS and len(answers) < MAX_POSTS:
        answers.append(get_json(f"{base}/test/judge", {"altcha": payload}))
    assert len({a["pid"] for a in answers}) == WORKERS, "one worker took every connection"
    assert (answers[0]["kind"], answers[0]["reasons"]) == ("ham", [])
    replays = {(a["kind"], tuple(a["reasons"])) for a in answers[1:]}
    assert replays == {("suspect", ("proof_replayed",))}
    other = next(a for a in answers if a["pid"] != answers[0]["pid"])
    assert other["reasons"] == ["proof_replayed"]  # the worker that never saw it first-hand
