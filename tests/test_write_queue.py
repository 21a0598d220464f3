"""SQLite's writers queue for its one write lock: one at a time, across threads and processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from contact_site.write_queue import WriteQueue, queue_of, writing

HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from contact_site.write_queue import WriteQueue
queue = WriteQueue({path!r}, 5.0)
assert queue.acquire()
print("held", flush=True)
sys.stdin.readline()
queue.release()
print("released", flush=True)
"""


@pytest.mark.manual_delivery
def test_a_writer_waits_for_the_one_before_it_to_finish(app):
    """Two threads: the second enters only once the first has left, and then at once."""
    times: dict[str, float] = {}
    inside = threading.Event()

    def first() -> None:
        with app.app_context(), writing():
            inside.set()
            time.sleep(0.3)
            times["first left"] = time.monotonic()

    def second() -> None:
        inside.wait(5)
        with app.app_context(), writing():
            times["second entered"] = time.monotonic()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert times["second entered"] >= times["first left"]


@pytest.mark.manual_delivery
def test_a_thread_may_take_its_turn_again_inside_it(app):
    with app.app_context(), writing(), writing():
        queue = queue_of(app)
        assert queue is not None and queue._depth == 2


def test_another_process_holding_the_turn_makes_a_writer_wait_then_go_on(tmp_path: Path):
    """Across processes (an flock): held elsewhere, a writer waits up to its timeout and then
    goes on (SQLite's own lock decides); released, it gets its turn at once."""
    path = str(tmp_path / "db.sqlite-writers")
    root = str(Path(__file__).resolve().parent.parent)
    with subprocess.Popen([sys.executable, "-c", HOLD.format(root=root, path=path)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdin is not None
            assert holder.stdout.readline().strip() == "held"
            queue = WriteQueue(path, 0.3)
            started = time.monotonic()
            assert queue.acquire() is False
            assert time.monotonic() - started >= 0.3
            holder.stdin.write("\n")
            holder.stdin.flush()
            assert holder.stdout.readline().strip() == "released"
            assert queue.acquire() is True
            queue.release()
        finally:
            holder.kill()


def test_postgresql_has_no_queue(make_app, postgres_url):
    """PostgreSQL locks rows: its writers never wait here."""
    app = make_app(deliver=False, DATABASE_URL=postgres_url)
    assert queue_of(app) is None
    with app.app_context(), writing():
        pass
