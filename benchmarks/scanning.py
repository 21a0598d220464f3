"""Virus scanning benchmark: what a clamd scan costs per MiB, and what scanning does to the
drain rate.

Run with `python -m benchmarks.scanning [--submissions N] [--runs N]`; skipped (exit 0)
when /usr/sbin/clamd is not installed. A private clamd (tests/support/clamd.py: its own
config, a one-signature database, loopback TCP, StreamMaxLength 64M) serves both parts:

- **scan cost**: `scan_file` of clean files of 1, 4 and 16 MiB of random bytes, `--runs`
  times each (median), after one warm-up scan. clamd keeps the hash of every file it found
  clean and answers a repeat from that cache, so each run changes the file's first bytes:
  every timed scan is a real one. One more scan of the unchanged file shows the cached
  answer. clamd's CPU (user + system, all threads) is read from /proc/<pid>/stat before
  and after the runs; the client's is this process's.
- **drain**: a backlog of N submissions, each with a 1 MiB file of its own (random bytes)
  and both mails (owner and thank-you), is queued in a fresh SQLite database before the
  product starts under gunicorn (the project's gunicorn.conf.py, 2 workers, in-process
  delivery) in front of the SMTP sink at 0 s; once with CONTACT_CLAMD unset, once set to
  the private clamd. For the second, the files are stored `pending`, as the form stores
  them when scanning is on. mails/s = mails / (last mail accepted - first DATA). Checked
  afterwards: every mail arrived and is recorded sent, and with scanning every stored
  file is `clean` (submission_file.scan_state, read from the database).
- **POST**: the same product, sink at 0 s, without and with CONTACT_CLAMD: `--posts`
  submissions one after another, each with a 1 MiB text file of its own; the POST's
  p50 and p90 (its GET, for the hidden fields, is not timed). Scanning happens in the
  delivery workers, so the two should not differ beyond noise.

Prints a table and writes benchmarks/results/scanning.json. With one signature, clamd's
cost here is reading, hashing and type-checking the stream; ClamAV's full database adds
pattern matching per byte, and a gigabyte of memory, on top.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from benchmarks.load import Visitor, hidden_fields
from benchmarks.recovery import all_sent, wait_for_outbox
from benchmarks.run import ROOT, Server, Sink, drain_rate, machine, product_env
from contact_site.scanning.clamd import ClamdAddress, parse_address, scan_file

sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers
from support.clamd import CLAMD, ClamdServer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MIB = 2**20
SCAN_SIZES_MIB = (1, 4, 16)
ATTACHMENT_MIB = 1
# Above every file scanned here: a stream over it would be answered "too large", unscanned.
STREAM_MAX_LENGTH = "64M"
# A scan that takes this long means the run is broken, not slow.
SCAN_TIMEOUT = 60.0
DRAIN_TIMEOUT = 120.0

# Stores the backlog in a process of its own, with the product's settings from the
# environment (as benchmarks.run.queue_for_drain does); argv: count, bytes, pending.
QUEUE_SCRIPT = """
import os, sys
sys.path.insert(0, 'tests')
from sqlalchemy import text
from contact_site import create_app
from contact_site.extensions import db
from contact_site.schema import upgrade_schema
from support.factories import create_submissions
count, size, pending = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == 'pending'
app = create_app()
upgrade_schema(app)
for _ in range(count):
    create_submissions(app, 1, attachment=os.urandom(size), thank_you=True)
if pending:
    with app.app_context():
        db.session.execute(text("UPDATE submission_file SET scan_state = 'pending'"))
        db.session.commit()
"""


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU seconds so far, all its threads, from /proc."""
    # The command name, in parentheses, may hold spaces: the fields follow its ")".
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def clamd_pid(clamd: ClamdServer) -> int:
    """The PID of the running clamd (started in the foreground: the child itself)."""
    assert clamd.process is not None, "clamd is not running"
    return int(clamd.process.pid)


def timed_scan(address: ClamdAddress, path: Path) -> float:
    """Seconds one scan_file of `path` takes; RuntimeError unless clamd says clean."""
    started = time.perf_counter()
    result = scan_file(address, path, SCAN_TIMEOUT)
    elapsed = time.perf_counter() - started
    if result.state != "clean":
        raise RuntimeError(f"{path.name}: {result.state} ({result.signature or result.reason})")
    return elapsed


def vary(path: Path, run: int) -> None:
    """Make the file's content new (its first 8 bytes): clamd's cache of clean files misses."""
    with path.open("r+b") as stream:
        stream.write(run.to_bytes(8, "big"))


def scan_size(address: ClamdAddress, pid: int, folder: Path, size_mib: int,
              runs: int) -> dict[str, Any]:
    """Median time of `runs` scans of a new clean file of `size_mib` MiB, and the CPU spent."""
    path = folder / f"clean-{size_mib}mib.bin"
    path.write_bytes(os.urandom(size_mib * MIB))
    seconds: list[float] = []
    clamd_before, client_before = cpu_seconds(pid), time.process_time()
    for run in range(runs):
        vary(path, run)
        seconds.append(timed_scan(address, path))
    clamd_cpu = (cpu_seconds(pid) - clamd_before) / runs
    client_cpu = (time.process_time() - client_before) / runs
    cached = timed_scan(address, path)  # unchanged since the last run
    path.unlink()
    median = statistics.median(seconds)
    return {"size_mib": size_mib, "runs": runs, "ms_per_file": round(1000 * median, 1),
            "ms_per_mib": round(1000 * median / size_mib, 2),
            "min_ms": round(1000 * min(seconds), 1), "max_ms": round(1000 * max(seconds), 1),
            "clamd_cpu_ms_per_file": round(1000 * clamd_cpu, 1),
            "client_cpu_ms_per_file": round(1000 * client_cpu, 1),
            "cached_repeat_ms": round(1000 * cached, 1)}


def scan_cost(clamd: ClamdServer, runs: int) -> list[dict[str, Any]]:
    """The scan figures of each size in SCAN_SIZES_MIB, after one warm-up scan."""
    address = parse_address(clamd.tcp_address)
    with tempfile.TemporaryDirectory() as folder:
        warm_up = Path(folder) / "warm-up.bin"
        warm_up.write_bytes(os.urandom(MIB))
        timed_scan(address, warm_up)  # clamd's first scan starts its thread pool
        return [scan_size(address, clamd_pid(clamd), Path(folder), size, runs)
                for size in SCAN_SIZES_MIB]


def queue_backlog(folder: Path, sink_port: int, settings: dict[str, str],
                  submissions: int, pending: bool) -> None:
    """Store the submissions, a new 1 MiB file and both mails each, in a fresh database."""
    subprocess.run([sys.executable, "-c", QUEUE_SCRIPT, str(submissions),
                    str(ATTACHMENT_MIB * MIB), "pending" if pending else "off"],
                   cwd=ROOT, check=True, timeout=120,
                   env=product_env(folder, sink_port, settings))


def scan_states(database: Path) -> dict[str, int]:
    """How many stored files are in each scan state (`none` when never asked to scan)."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as conn:
        found = conn.execute(
            "SELECT scan_state, count(*) FROM submission_file GROUP BY scan_state").fetchall()
    return {state or "none": count for state, count in found}


def drain(sink: Sink, submissions: int, clamd: ClamdServer | None) -> dict[str, Any]:
    """Mails per second of the product draining the backlog, scanning with `clamd` if given."""
    mails = 2 * submissions
    settings = {"CONTACT_CLAMD": clamd.tcp_address} if clamd is not None else {}
    sink.ask("reset")
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench.sqlite"
        queue_backlog(Path(folder), sink.port, settings, submissions, clamd is not None)
        clamd_before = cpu_seconds(clamd_pid(clamd)) if clamd is not None else 0.0
        server = Server("product", Path(folder), sink.port, settings)
        try:
            stats = sink.wait_for(mails, DRAIN_TIMEOUT)
            # The sink counts a mail when accepted; the outcome is recorded just after.
            recorded = wait_for_outbox(database, all_sent, 0, 30)
        finally:
            server.stop()
        clamd_cpu = cpu_seconds(clamd_pid(clamd)) - clamd_before if clamd is not None else None
        states = scan_states(database)
    elapsed = (stats["last"] - stats["first_data"]) if stats["count"] else None
    return {"scanning": clamd is not None, "mails": mails, "received": stats["count"],
            "all_recorded_sent": recorded, "mails_per_s": drain_rate(stats),
            "seconds": round(elapsed, 2) if elapsed else None,
            "scan_states": states,
            "clamd_cpu_s": round(clamd_cpu, 2) if clamd_cpu is not None else None,
            "peak_rss_mib": round(server.peak_rss / MIB, 1)}


def post_with_file(visitor: Visitor, number: int, size: int) -> float:
    """GET the form, POST it back with a text file of `size` bytes; the POST's seconds."""
    _, page = visitor.fetch("/")
    fields = {**hidden_fields(page.decode()), "recipient": "sales", "name": "Ada Lovelace",
              "email": f"scan{number}@example.com", "subject": f"Scan {number}",
              "message": f"Question {number} with a file.", "website": ""}
    line = f"line of notes number {number}\n".encode()
    text = (line * (size // len(line) + 1))[:size]
    return visitor.post("/", fields, [("attachment", f"notes-{number}.txt", text, "text/plain")])


def post_latency(sink: Sink, posts: int, clamd: ClamdServer | None) -> dict[str, Any]:
    """POST p50 and p90, one at a time, each with a 1 MiB file, scanning with `clamd` if given."""
    settings = {"CONTACT_CLAMD": clamd.tcp_address} if clamd is not None else {}
    with tempfile.TemporaryDirectory() as folder:
        server = Server("product", Path(folder), sink.port, settings)
        visitor = Visitor(server.port)
        try:
            post_with_file(visitor, 0, ATTACHMENT_MIB * MIB)  # warm-up
            times = sorted(post_with_file(visitor, number, ATTACHMENT_MIB * MIB)
                           for number in range(1, posts + 1))
        finally:
            visitor.close()
            server.stop()
    return {"scanning": clamd is not None, "posts": posts,
            "p50_ms": round(1000 * statistics.median(times), 2),
            "p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))], 2)}


def drain_check(found: dict[str, Any], submissions: int) -> list[str]:
    """What went wrong in one drain: mails missing, not recorded, files not scanned clean."""
    problems = []
    if found["received"] != found["mails"]:
        problems.append(f"{found['received']} of {found['mails']} mails arrived")
    if not found["all_recorded_sent"]:
        problems.append("not every mail is recorded sent")
    if found["scanning"] and found["scan_states"] != {"clean": submissions}:
        problems.append(f"scan states {found['scan_states']}, not {submissions} clean")
    return problems


def print_table(results: dict[str, Any]) -> None:
    """The scan cost by size, then the drain without and with scanning."""
    print(f"\n{'scan_file, clean file':22} {'ms/file':>9} {'ms/MiB':>8} {'min-max ms':>14} "
          f"{'clamd CPU ms':>13} {'client CPU ms':>14} {'cached ms':>10}")
    for row in results["scan"]:
        spread = f"{row['min_ms']}-{row['max_ms']}"
        print(f"{str(row['size_mib']) + ' MiB (median of ' + str(row['runs']) + ')':22} "
              f"{row['ms_per_file']:>9} {row['ms_per_mib']:>8} {spread:>14} "
              f"{row['clamd_cpu_ms_per_file']:>13} {row['client_cpu_ms_per_file']:>14} "
              f"{row['cached_repeat_ms']:>10}")
    off, on = results["drain"]["off"], results["drain"]["on"]
    print(f"\n{'drain, ' + str(off['mails']) + ' mails, 1 MiB file each':36} "
          f"{'no scanning':>12} {'clamd':>12}")
    for key in ("mails_per_s", "seconds", "received", "all_recorded_sent", "clamd_cpu_s",
                "peak_rss_mib"):
        print(f"{key:36} {_cell(off[key]):>12} {_cell(on[key]):>12}")
    print(f"{'scan states':36} {_states(off):>12} {_states(on):>12}")
    print(f"{'ratio mails/s, clamd / none':36} {_cell(results['drain']['ratio']):>12}")
    posted = results["post"]
    for key in ("p50_ms", "p90_ms"):
        print(f"{'POST with a 1 MiB file, ' + key:36} {_cell(posted['off'][key]):>12} "
              f"{_cell(posted['on'][key]):>12}")


def _states(found: dict[str, Any]) -> str:
    """Scan states as `clean 200`."""
    return ", ".join(f"{state} {count}" for state, count in found["scan_states"].items())


def _cell(value: Any) -> str:
    """A table cell: `-` for a missing figure."""
    return "-" if value is None else str(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both parts with one private clamd and one sink; their figures."""
    results: dict[str, Any] = {"machine": machine(), "settings": {
        **vars(args), "stream_max_length": STREAM_MAX_LENGTH, "attachment_mib": ATTACHMENT_MIB}}
    with ClamdServer(STREAM_MAX_LENGTH) as clamd:
        print("scan cost by file size", flush=True)
        results["scan"] = scan_cost(clamd, args.runs)
        sink = Sink()
        try:
            sink.ask("delay 0")
            print("drain without scanning", flush=True)
            off = drain(sink, args.submissions, None)
            print("drain with clamd", flush=True)
            on = drain(sink, args.submissions, clamd)
            print("POSTs with a 1 MiB file, without and with clamd", flush=True)
            results["post"] = {"off": post_latency(sink, args.posts, None),
                               "on": post_latency(sink, args.posts, clamd)}
        finally:
            sink.close()
    ratio = (round(on["mails_per_s"] / off["mails_per_s"], 2)
             if on["mails_per_s"] and off["mails_per_s"] else None)
    results["drain"] = {"off": off, "on": on, "ratio": ratio}
    return results


def main() -> None:
    """Run the benchmark, print the table, write results/scanning.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=200,
                        help="submissions in the drain backlog (2 mails each)")
    parser.add_argument("--runs", type=int, default=5, help="timed scans of each file size")
    parser.add_argument("--posts", type=int, default=40,
                        help="timed POSTs with a file, without and with scanning")
    args = parser.parse_args()
    if not CLAMD.exists():
        print(f"scanning benchmark skipped: clamd not found at {CLAMD} "
              "(scripts/ensure-system-packages installs clamav-daemon)")
        return
    started = time.monotonic()
    results = run(args)
    results["seconds"] = round(time.monotonic() - started, 1)
    output = RESULTS / "scanning.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    problems = [f"{name}: {problem}" for name in ("off", "on")
                for problem in drain_check(results["drain"][name], args.submissions)]
    print(f"\n{results['seconds']} s; written to {output}")
    if problems:
        sys.exit("checks failed: " + "; ".join(problems))


if __name__ == "__main__":
    main()
