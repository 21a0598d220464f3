"""Export benchmark: peak memory of a CSV and a JSON export of 20,000 submissions.

Run with `python -m benchmarks.export_memory [--rows N]`. Memory is traced with
tracemalloc while every chunk is consumed and dropped (as a streamed response
does), beside the same export of a tenth of the rows: a flat export peaks at
about the same size for both, well below the size of the export itself.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask

from contact_site import create_app
from contact_site.database import utcnow
from contact_site.extensions import db
from contact_site.records import export
from contact_site.records.archive import filtered
from contact_site.schema import upgrade_schema

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers
from support.databases import postgres_schema  # noqa: E402
from support.factories import insert_submissions  # noqa: E402

MIB = 2**20
# About what a real message weighs: a couple of paragraphs.
MESSAGE = ("I would like to know more about the analytical engine and its uses. " * 30)[:2000]


def bench_app(database_url: str, folder: Path) -> Flask:
    """An app on this database, its schema made; no delivery is started (no start_process)."""
    app = create_app({
        "TESTING": True, "SECRET_KEY": "benchmark-secret-key-0123456789abcdef",
        "DATABASE_URL": database_url, "UPLOAD_FOLDER": str(folder / "uploads"),
        "CONTACT_RECIPIENTS": "Sales <sales@example.com>"})
    upgrade_schema(app)
    return app


def measure(app: Flask, chunks: Callable[[Any], Iterator[str]]) -> tuple[int, int, float]:
    """Peak traced bytes, bytes exported and seconds for one whole export, chunks dropped."""
    with app.app_context():
        tracemalloc.start()
        started, size = time.perf_counter(), 0
        for chunk in chunks(filtered()):
            size += len(chunk.encode())
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, size, elapsed


def run(database_url: str, folder: Path, rows: int) -> None:
    """Export `rows` submissions, then a tenth as many, and print the peaks."""
    app = bench_app(database_url, folder)
    for count in (rows // 10, rows):
        with app.app_context():
            db.session.execute(db.text("DELETE FROM submission"))
            db.session.commit()
        for start in range(0, count, 5000):  # in batches: one INSERT of 20,000 rows is heavy
            insert_submissions(app, min(5000, count - start), message=MESSAGE,
                               apart=timedelta(minutes=1),
                               created_at=utcnow() - start * timedelta(minutes=1))
        for name, chunks in (("csv", export.csv_chunks), ("json", export.json_chunks)):
            peak, size, elapsed = measure(app, chunks)
            print(f"{app.config['SQLALCHEMY_DATABASE_URI'].split(':')[0]:10} {name:4} "
                  f"{count:6} rows: {size / MIB:6.1f} MiB exported in {elapsed:5.2f} s, "
                  f"peak {peak / MIB:5.2f} MiB")
    with app.app_context():
        db.engine.dispose()


def main() -> None:
    """Run the export benchmark on SQLite, and on PostgreSQL when it is reachable."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000, help="submissions to export")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run(f"sqlite:///{folder}/export.sqlite", Path(folder), args.rows)
        with postgres_schema("bench") as postgres_url:
            if postgres_url is None:
                print("postgresql: skipped (unreachable)")
            else:
                run(postgres_url, Path(folder), args.rows)


if __name__ == "__main__":
    main()
