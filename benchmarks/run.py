"""Delivery benchmarks: mails per second drained by one worker, peak memory of a 10 MB mail.

Run with `make bench` (or `python -m benchmarks.run`). The SMTP server is the test
suite's aiosmtpd server, started in a process of its own so that neither its CPU
nor its memory is counted against the worker.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask

from contact_site import create_app
from contact_site.delivery import outbox, worker
from contact_site.extensions import db
from contact_site.schema import upgrade_schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers
from conftest import postgres_schema  # noqa: E402
from delivery_helpers import queue_submissions  # noqa: E402

MIB = 2**20
SERVER_SCRIPT = (
    "import sys; sys.path.insert(0, 'tests'); from smtp_server import SMTPTestServer;"
    "s = SMTPTestServer(); s.start(); print(s.port, flush=True); sys.stdin.read(); s.close()"
)


@contextmanager
def smtp_server_process() -> Iterator[int]:
    """The test SMTP server in a child process; yields its port, stops it by PID."""
    server = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT], cwd=ROOT,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield int(server.stdout.readline())  # type: ignore[union-attr]
    finally:
        server.stdin.close()  # type: ignore[union-attr]
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
        server.stdout.close()  # type: ignore[union-attr]


def bench_app(database_url: str, port: int, folder: Path, **settings: Any) -> Flask:
    """An app on this database and SMTP port, with no background delivery."""
    app = create_app({
        "TESTING": True, "SECRET_KEY": "benchmark-secret-key-0123456789",
        "DATABASE_URL": database_url, "UPLOAD_FOLDER": str(folder / "uploads"),
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": port, "MAIL_TIMEOUT": 10,
        "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
        "CONTACT_RECIPIENTS": "Sales <sales@example.com>",
        **settings,
    })
    upgrade_schema(app)
    return app


def drain(app: Flask) -> float:
    """Deliver everything due with one worker; the seconds it took."""
    started = time.perf_counter()
    with app.app_context():
        while worker.deliver_due():
            pass
        counts = outbox.status_counts()
    if counts["queued"] or counts["sending"] or counts["failed"]:
        raise RuntimeError(f"benchmark mails not all sent: {counts}")
    return time.perf_counter() - started


def throughput(database_url: str, port: int, count: int) -> float:
    """Mails per second one worker drains from a queue of `count` mails."""
    with tempfile.TemporaryDirectory() as folder:
        app = bench_app(database_url, port, Path(folder))
        queue_submissions(app, count)
        rate = count / drain(app)
        with app.app_context():
            db.engine.dispose()
    return rate


def peak_memory(port: int, size: int) -> tuple[int, float]:
    """Peak bytes allocated while composing and sending one mail with a `size`-byte file."""
    with tempfile.TemporaryDirectory() as folder:
        app = bench_app(f"sqlite:///{folder}/memory.sqlite", port, Path(folder))
        queue_submissions(app, 1, attachment=os.urandom(size))
        with app.app_context():
            rows = outbox.claim_due_mails()
            tracemalloc.start()
            started = time.perf_counter()
            worker.deliver_batch(rows)
            elapsed = time.perf_counter() - started
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            if outbox.status_counts()["sent"] != 1:
                raise RuntimeError("the large mail was not sent")
            db.engine.dispose()
    return peak, elapsed


def main() -> None:
    """Run the benchmarks and print one line per result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=500, help="mails per throughput run")
    parser.add_argument("--attachment-mb", type=int, default=10, help="size of the big file")
    args = parser.parse_args()
    with smtp_server_process() as port, tempfile.TemporaryDirectory() as folder:
        rate = throughput(f"sqlite:///{folder}/bench.sqlite", port, args.mails)
        print(f"throughput sqlite:     {rate:7.1f} mails/s (one worker, {args.mails} mails)")
        with postgres_schema("bench") as postgres_url:
            if postgres_url is None:
                print("throughput postgresql: skipped (unreachable)")
            else:
                rate = throughput(postgres_url, port, args.mails)
                print(f"throughput postgresql: {rate:7.1f} mails/s "
                      f"(one worker, {args.mails} mails)")
        size = args.attachment_mb * MIB
        peak, elapsed = peak_memory(port, size)
        print(f"peak memory, {args.attachment_mb} MiB attachment: {peak / MIB:.1f} MiB "
              f"({peak / size:.2f} x the file), sent in {elapsed:.2f} s")


if __name__ == "__main__":
    main()
