"""`make bench`: the product and a tutorial-style baseline side by side, on loopback.

Both apps run under real gunicorn (the product with the project's gunicorn.conf.py,
2 workers, SQLite; the baseline, benchmarks/tutorial_app.py, with the same worker
model), in front of the same SMTP sink (benchmarks/sink.py, in a process of its
own, each mail taking 0 s or 2 s) and the same load generator (benchmarks/load.py,
which GETs the form and posts it back as a browser does). Measured: POST p50/p99
and submissions per second at several concurrencies, mails per second drained,
peak RSS and threads of the workers, the ceilings (GET /, plain smtplib over
one persistent connection and one connection per message), the product's recovery
of a backlog after a 451 outage, and how soon a freshly started gunicorn answers.
Prints a table and writes benchmarks/results/run.json (`--only` runs some parts);
`python -m benchmarks.summary` gathers it with the other benchmarks' results into
one table and results/latest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the benchmarks reuse the test suite's helpers

from benchmarks.load import run_load  # noqa: E402
from benchmarks.recovery import (  # noqa: E402
    Outbox,
    all_sent,
    all_tried,
    first_answer,
    read_outbox,
    recovery_figures,
    wait_for_outbox,
)

RESULTS = ROOT / "benchmarks" / "results"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
SECRET = "benchmark-secret-key-0123456789abcdef"
MIB = 2**20
APPS = ("product", "baseline")
PARTS = ("ceilings", "load", "drain", "recovery", "outage", "start", "memory")


class Sink:
    """The SMTP sink process, driven over its stdin."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.sink"], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(json.loads(self._line())["port"])

    def _line(self) -> str:
        return self.process.stdout.readline()  # type: ignore[union-attr]

    def ask(self, command: str) -> dict[str, Any]:
        """Send one command; its JSON answer."""
        self.process.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self._line())  # type: ignore[no-any-return]

    def wait_for(self, count: int, timeout: float) -> dict[str, Any]:
        """Stats once `count` mails arrived, or when `timeout` passed."""
        deadline = time.monotonic() + timeout
        while (stats := self.ask("stats"))["count"] < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return stats

    def close(self) -> None:
        """Stop it by PID."""
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_env(folder: Path, sink_port: int,
                settings: dict[str, str] | None = None) -> dict[str, str]:
    """The product's settings: defaults, but no rate limit or spam layers the load would trip;
    `settings` on top."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    env.update({
        "SECRET_KEY": SECRET, "DATABASE_URL": f"sqlite:///{folder}/bench.sqlite",
        "UPLOAD_FOLDER": str(folder / "uploads"), "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(sink_port), "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
        "CONTACT_RECIPIENTS": "Sales <sales@example.com>", "CONTACT_RATE_LIMIT": "off",
        # The load generator solves no proof of work and posts at once; with these on,
        # every submission would be suspect (no thank-you mail) or spam (no mail).
        "CONTACT_PROOF_OF_WORK": "off", "CONTACT_MIN_FILL_SECONDS": "0",
        "HOME": str(folder),  # gunicorn's control socket: one per instance (docs/stack-pitfalls.md)
    })
    env.update(settings or {})
    return env


class Server:
    """One gunicorn instance, its workers sampled for threads and RSS while it runs.

    `wait=False` returns as soon as it is spawned (at `spawned`, monotonic), not
    once it answers.
    """

    def __init__(self, app: str, folder: Path, sink_port: int,
                 settings: dict[str, str] | None = None, wait: bool = True) -> None:
        self.port = free_port()
        env = product_env(folder, sink_port, settings)
        if app == "product":
            args = ["-c", "gunicorn.conf.py", "--workers", "2"]
        else:  # the same worker model, none of the product's hooks
            empty = folder / "empty.conf.py"
            empty.write_text("")
            args = ["-c", str(empty), "--workers", "2", "--worker-class", "gthread",
                    "--threads", "4", "benchmarks.tutorial_app:app"]
        self.log = (folder / f"{app}.log").open("ab")
        self.spawned = time.monotonic()
        self.process = subprocess.Popen(
            [GUNICORN, *args, "--bind", f"127.0.0.1:{self.port}"], cwd=ROOT, env=env,
            stdout=self.log, stderr=subprocess.STDOUT)
        self.peak_threads, self.peak_rss = 0, 0
        self._stop = threading.Event()
        if wait:
            try:
                self._wait_ready()
            except BaseException:  # no caller holds this instance yet to stop it
                self.stop()
                raise
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET /thanks HTTP/1.0\r\n\r\n")
                    if sock.recv(12).startswith(b"HTTP/1"):
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("gunicorn did not answer in time")

    def workers(self) -> list[int]:
        """The worker PIDs (children of the master)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def cpu_seconds(self) -> float:
        """User and system CPU seconds of the master and its workers so far."""
        total = 0.0
        for pid in (self.process.pid, *self.workers()):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def _sample(self) -> None:
        while not self._stop.wait(0.2):
            for pid in self.workers():
                status = _proc_status(pid)
                self.peak_threads = max(self.peak_threads, status.get("Threads", 0))
                self.peak_rss = max(self.peak_rss, status.get("VmHWM", 0) * 1024)

    def stop(self) -> None:
        """SIGTERM by PID, then SIGKILL if it lingers."""
        self._stop.set()
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.log.close()


def _proc_status(pid: int) -> dict[str, int]:
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"Threads", "VmHWM", "VmRSS"}:
                found[key] = int(value.split()[0])
    except OSError:
        pass
    return found


@contextmanager
def serving(app: str, sink: Sink) -> Iterator[Server]:
    """A fresh instance of the app (its own database) for the duration of the block."""
    with tempfile.TemporaryDirectory() as folder:
        server = Server(app, Path(folder), sink.port)
        try:
            yield server
        finally:
            server.stop()


def queue_for_drain(folder: Path, sink_port: int, submissions: int) -> None:
    """Store submissions and their two mails straight into a fresh product database."""
    script = (
        "import sys; sys.path.insert(0, 'tests')\n"
        "from contact_site import create_app\n"
        "from contact_site.schema import upgrade_schema\n"
        "from support.factories import queue_submissions\n"
        "app = create_app()\n"
        "upgrade_schema(app)\n"
        f"queue_submissions(app, {submissions}, thank_you=True)\n"
    )
    subprocess.run([sys.executable, "-c", script], cwd=ROOT, check=True,
                   env=product_env(folder, sink_port))


def drain_rate(stats: dict[str, Any]) -> float | None:
    """Mails per second from the first DATA command to the last mail accepted.

    Start-up (gunicorn booting its workers) is left out; the first mail's own
    time at the sink is not.
    """
    if not stats["count"] or stats["first_data"] is None or stats["last"] <= stats["first_data"]:
        return None
    return round(stats["count"] / (stats["last"] - stats["first_data"]), 1)


PY_SPY = str(Path(sys.executable).with_name("py-spy"))
# Where a drained mail's time goes: frames matched in each sampled stack.
PROFILE_PARTS = {
    "record outcomes (group commit: UPDATE, INSERT, commit)": ("settle (", "_finish ("),
    "claim and lease renewals": ("claim_due_mails", "_renew (", "due_count"),
    "compose (templates, headers)": ("compose (",),
    "serialise MIME (email.generator)": ("email/generator.py",),
    "SMTP round trips (smtplib)": ("smtplib.py",),
    "database commits (fsync)": ("do_commit (",),
}


def profile(pid: int, output: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy recording one worker (raw collapsed stacks), if py-spy is installed."""
    if not Path(PY_SPY).exists():
        return None
    return subprocess.Popen([PY_SPY, "record", "--pid", str(pid), "--format", "raw",
                             "--output", str(output), "--duration", str(int(seconds)),
                             "--rate", "250", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_summary(raw: Path) -> dict[str, float]:
    """The share of a worker's delivery samples that fall in each part of PROFILE_PARTS.

    py-spy leaves idle threads out: the samples are the loops' busy time (CPU and I/O).
    """
    total, parts = 0, dict.fromkeys(PROFILE_PARTS, 0)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "run_delivery_loop" not in stack or not count.isdigit():
            continue
        total += int(count)
        for name, needles in PROFILE_PARTS.items():
            if any(needle in stack for needle in needles):
                parts[name] += int(count)
    return {name: round(100 * n / total, 1) for name, n in parts.items()} if total else {}


def drain(app: str, sink: Sink, submissions: int, timeout: float,
          profile_to: Path | None = None) -> dict[str, Any]:
    """How fast the app gets a backlog of `2 × submissions` mails to the sink.

    The product: the mails are queued before it starts (a backlog after an outage).
    The baseline has no queue: its submissions are posted at concurrency 8.
    """
    mails = 2 * submissions
    sink.ask("reset")
    with tempfile.TemporaryDirectory() as folder:
        if app == "product":
            queue_for_drain(Path(folder), sink.port, submissions)
        server = Server(app, Path(folder), sink.port)
        spy = None
        if profile_to is not None and server.workers():
            spy = profile(server.workers()[0], profile_to, 30)
        before = server.cpu_seconds()
        try:
            if app != "product":
                run_load(server.port, 8, 600, count=submissions)
            stats = sink.wait_for(mails, timeout)
            cpu = server.cpu_seconds() - before
        finally:
            if spy is not None:
                os.kill(spy.pid, signal.SIGINT)  # py-spy writes what it has on SIGINT
                spy.wait(30)
            server.stop()
    found = {"mails": mails, "received": stats["count"], "mails_per_s": drain_rate(stats),
             # The app's processes, per mail (the baseline's includes its requests).
             "cpu_ms_per_mail": round(1000 * cpu / stats["count"], 2) if stats["count"] else None,
             "peak_threads_per_worker": server.peak_threads,
             "peak_rss_mib": round(server.peak_rss / MIB, 1)}
    if profile_to is not None and profile_to.exists():
        found["profile_percent"] = profile_summary(profile_to)
    return found


# Retries soon (1 s, the minimum, doubling per attempt): the outage lasts seconds, not hours.
RECOVERY_SETTINGS = {"DELIVERY_RETRY_BASE_SECONDS": "1"}


def recovery(sink: Sink, submissions: int, outage: float,
             drain_rate: float | None) -> dict[str, Any]:
    """How soon the product delivers a backlog of `2 × submissions` mails once the SMTP
    server, which answered 451 to every mail for `outage` seconds or more, accepts again.

    Every mail is refused at least once before the switch. `drain_rate` (mails/s at
    sink 0 s, this run's) gives the prediction the recovery is compared with.
    """
    mails = 2 * submissions
    sink.ask("reset")
    sink.ask("delay 0")
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench.sqlite"
        queue_for_drain(Path(folder), sink.port, submissions)
        sink.ask("mode 451")
        try:
            server = Server("product", Path(folder), sink.port, RECOVERY_SETTINGS)
            try:
                if not wait_for_outbox(database, all_tried, outage, 60):
                    print("recovery: not every mail was refused within 60 s", flush=True)
                switched_at = float(sink.ask("mode delay")["at"])
                at_switch = read_outbox(database)  # at once: which mails are due when
                sink.wait_for(mails, 120)
                # Arrivals may count a mail twice: done when the outbox says all are sent.
                wait_for_outbox(database, all_sent, 0, 30)
                stats, after = sink.ask("stats"), read_outbox(database)
            finally:
                server.stop()
        finally:
            sink.ask("mode delay")  # never leave the sink refusing for the parts after
    return recovery_figures(switched_at, at_switch, after, stats, drain_rate)


def outage(app: str, sink: Sink, seconds: float, drain_rate: float | None) -> dict[str, Any]:
    """POSTs at concurrency 8 with the SMTP server up, then refusing connections, on one
    instance; for the product, how soon the mails taken during the outage arrive once
    the server is back, against the prediction (the probe interval, then the drain)."""
    sink.ask("delay 0")
    with tempfile.TemporaryDirectory() as folder:
        database = Path(folder) / "bench.sqlite"
        server = Server(app, Path(folder), sink.port,
                        RECOVERY_SETTINGS if app == "product" else None)
        try:
            run_load(server.port, 2, 1.0)
            found: dict[str, Any] = {"healthy_c8": run_load(server.port, 8, seconds).summary()}
            if app == "product":
                wait_for_outbox(database, all_sent, 0, 60)
            sink.ask("reset")
            sink.ask("mode down")
            try:
                found["down_c8"] = run_load(server.port, 8, seconds).summary()
            finally:
                switched_at = float(sink.ask("mode delay")["at"])
            if app == "product":
                at_switch = read_outbox(database)
                wait_for_outbox(database, all_sent, 0, 120)
                found["recovery"] = outage_recovery(switched_at, at_switch, sink.ask("stats"),
                                                    drain_rate)
        finally:
            server.stop()
    healthy, down = found["healthy_c8"]["rps"], found["down_c8"]["rps"]
    found["down_over_healthy"] = round(down / healthy, 2) if healthy else None
    return found


def outage_recovery(switched_at: float, at_switch: Outbox, stats: dict[str, Any],
                    drain_rate: float | None) -> dict[str, Any]:
    """Seconds from the server's return to the last mail's arrival, and the prediction: the
    wait for the next probe (or the latest retry), then the unsent mails at the drain rate."""
    unsent = sum(1 for status, _, _ in at_switch.values() if status != "sent")
    latest = max((due for status, _, due in at_switch.values() if status == "queued"),
                 default=switched_at)
    wait = max(latest - switched_at, float(RECOVERY_SETTINGS["DELIVERY_RETRY_BASE_SECONDS"]))
    found: dict[str, Any] = {
        "unsent_at_switch": unsent, "received": stats["count"],
        "recovery_s": round(stats["last"] - switched_at, 2) if stats["last"] else None,
        "prediction_s": round(wait + unsent / drain_rate, 2) if drain_rate else None}
    found["ratio"] = (round(found["recovery_s"] / found["prediction_s"], 2)
                      if found["recovery_s"] and found["prediction_s"] else None)
    return found


def start_times(app: str, sink: Sink, runs: int = 3) -> dict[str, Any]:
    """Seconds from spawning gunicorn to its first 200 to GET /, `runs` times, and the median."""
    with tempfile.TemporaryDirectory() as folder:
        if app == "product":  # a restart, not a first install: the schema is made already
            queue_for_drain(Path(folder), sink.port, 0)
        seconds = [start_once(app, Path(folder), sink.port) for _ in range(runs)]
    return {"median_s": round(statistics.median(seconds), 3),
            "runs_s": [round(s, 3) for s in seconds]}


def start_once(app: str, folder: Path, sink_port: int, timeout: float = 30.0) -> float:
    """One start of the app under gunicorn: seconds from the spawn to the first 200."""
    server = Server(app, folder, sink_port, wait=False)
    try:
        answered = first_answer(server.port, timeout)
    finally:
        server.stop()
    if answered is None:
        raise RuntimeError(f"{app}: no 200 to GET / within {timeout} s of the start")
    return answered - server.spawned


def sample_mail() -> bytes:
    """A mail like the thank-you (text and the PDF), for the smtplib ceilings."""
    message = EmailMessage()
    message["From"], message["To"] = "noreply@example.org", "visitor@example.com"
    message["Subject"] = "Thank you for your message"
    message.set_content("Thank you, we will answer soon.")
    message.add_attachment((ROOT / "static" / "thank-you.pdf").read_bytes(),
                           maintype="application", subtype="pdf", filename="thank-you.pdf")
    return message.as_bytes().replace(b"\n", b"\r\n")


def smtplib_ceilings(port: int, count: int) -> dict[str, float]:
    """Plain smtplib: mails per second over one persistent connection, and one per message."""
    data, rates = sample_mail(), {}
    started = time.perf_counter()
    # local_hostname given: smtplib would otherwise ask getfqdn() (DNS) on every connection.
    with smtplib.SMTP("127.0.0.1", port, timeout=10, local_hostname="localhost") as smtp:
        for _ in range(count):
            smtp.sendmail("noreply@example.org", ["visitor@example.com"], data)
    rates["persistent"] = round(count / (time.perf_counter() - started), 1)
    started = time.perf_counter()
    for _ in range(count // 2):
        with smtplib.SMTP("127.0.0.1", port, timeout=10, local_hostname="localhost") as smtp:
            smtp.sendmail("noreply@example.org", ["visitor@example.com"], data)
    rates["per_message"] = round((count // 2) / (time.perf_counter() - started), 1)
    return rates


def load_runs(app: str, sink: Sink, delay: float, concurrencies: list[int],
              seconds: float) -> dict[str, Any]:
    """POST latency and rate at each concurrency with the sink at `delay`, and GET / ceiling."""
    sink.ask(f"delay {delay}")
    found: dict[str, Any] = {}
    with serving(app, sink) as server:
        run_load(server.port, 2, 1.0)  # warm-up: imports, templates, connections
        found["get_c8"] = run_load(server.port, 8, seconds, get_only=True).summary()
        for concurrency in concurrencies:
            before = server.cpu_seconds()
            found[f"post_c{concurrency}"] = run = run_load(server.port, concurrency,
                                                           seconds).summary()
            # Its workers' CPU (the GET and POST of each submission, and for the product
            # the delivery of its mails in the same processes) per submission.
            run["cpu_ms"] = (round(1000 * (server.cpu_seconds() - before) / run["requests"], 2)
                             if run["requests"] else None)
    found["peak_threads_per_worker"] = server.peak_threads
    found["peak_rss_mib"] = round(server.peak_rss / MIB, 1)
    return found


SERVER_SCRIPT = (
    "import sys; sys.path.insert(0, 'tests'); from support.smtp_server import SMTPTestServer;"
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


def peak_memory(port: int, size: int) -> tuple[int, float]:
    """Peak bytes allocated while composing and sending one mail with a `size`-byte file.

    Only this process is traced: the SMTP server at `port` must run in another.
    """
    from contact_site import create_app
    from contact_site.delivery import outbox, worker
    from contact_site.extensions import db
    from contact_site.schema import upgrade_schema
    from support.factories import queue_submissions

    with tempfile.TemporaryDirectory() as folder:
        app = create_app({
            "TESTING": True, "SECRET_KEY": SECRET, "UPLOAD_FOLDER": f"{folder}/uploads",
            "DATABASE_URL": f"sqlite:///{folder}/memory.sqlite", "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": port, "MAIL_TIMEOUT": 10,
            "CONTACT_RECIPIENTS": "Sales <sales@example.com>",
            "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>"})
        upgrade_schema(app)
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


def attachment_memory(port: int, size_mb: int) -> dict[str, float]:
    """Peak allocation while sending one mail with a `size_mb` MiB file, against its size."""
    size = size_mb * MIB
    peak, elapsed = peak_memory(port, size)
    return {"attachment_mib": size_mb, "peak_mib": round(peak / MIB, 1),
            "times_file": round(peak / size, 2), "seconds": round(elapsed, 2)}


def machine() -> dict[str, Any]:
    """Where the figures come from."""
    model = next((line.split(":", 1)[1].strip() for line in
                  Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "cpu": model,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform()}


def print_table(results: dict[str, Any]) -> None:
    """The figures of both apps side by side (of the parts that ran)."""
    print(f"\n{'measure':44} {'product':>14} {'baseline':>14} {'ratio':>7}")
    runs = {app: results.get(app, {}) for app in APPS}
    for delay in ("0", "2"):
        if f"sink_{delay}s" in runs["product"]:
            _print_load(delay, {app: runs[app][f"sink_{delay}s"] for app in APPS})
    for delay in ("0", "2"):
        if f"drain_{delay}s" in runs["product"]:
            for key in ("mails_per_s", "cpu_ms_per_mail", "peak_threads_per_worker",
                        "peak_rss_mib"):
                _row(f"drain sink {delay}s {key}",
                     *(runs[app][f"drain_{delay}s"][key] for app in APPS))
    if "start" in runs["product"]:
        _row("start to first GET / 200, median s", *(runs[app]["start"]["median_s"]
                                                     for app in APPS))
    _print_recovery(runs["product"].get("recovery"))
    if "outage" in runs["product"]:
        for phase in ("healthy_c8", "down_c8"):
            for metric in ("rps", "p50_ms"):
                _row(f"POST c8, SMTP {phase.split('_')[0]}: {metric}",
                     *(runs[app]["outage"][phase][metric] for app in APPS))
        _row("POST c8 rps refused / healthy", *(runs[app]["outage"]["down_over_healthy"]
                                                for app in APPS))
        back = runs["product"]["outage"].get("recovery", {})
        print(f"after the outage: {back.get('unsent_at_switch')} mails sent in "
              f"{_cell(back.get('recovery_s'))} s, predicted {_cell(back.get('prediction_s'))} s"
              f" (ratio {_cell(back.get('ratio'))}, target <= 2)")
    ceilings = results.get("ceilings", {})
    if "smtplib_persistent" in ceilings:
        print(f"\nceilings: smtplib persistent {ceilings['smtplib_persistent']} mails/s, "
              f"per message {ceilings['smtplib_per_message']} mails/s")
    spied = runs["product"].get("drain_0s", {}).get("profile_percent")
    if spied:
        print("where a drained mail's time goes (py-spy, % of busy delivery samples): "
              + ", ".join(f"{name} {share}" for name, share in spied.items()))
    memory = results.get("attachment_memory")
    if memory:
        print(f"10 MiB attachment: peak {memory['peak_mib']} MiB allocated "
              f"({memory['times_file']} x the file)")


def _print_load(delay: str, runs: dict[str, dict[str, Any]]) -> None:
    """The rows of the load runs with the sink at `delay` seconds."""
    for key in sorted(runs["product"], key=_order):
        if not key.startswith(("post_", "get_")):
            continue
        for metric in ("p50_ms", "p99_ms", "rps", "cpu_ms"):
            if key.startswith("get_") and metric != "rps":
                continue
            values = [runs[app].get(key, {}).get(metric) for app in APPS]
            _row(f"sink {delay}s {key} {metric}", *values)
    for key in ("peak_threads_per_worker", "peak_rss_mib"):
        _row(f"sink {delay}s load {key}", *(runs[app][key] for app in APPS))


def _print_recovery(found: dict[str, Any] | None) -> None:
    """The product's recovery after the 451 outage, against its prediction."""
    if not found:
        return
    print(f"\nrecovery of {found['mails']} mails after {found['outage_s']} s of 451 "
          f"({found['sink_451s']} answered): {_cell(found['recovery_s'])} s after the switch "
          f"(first mail {_cell(found['first_arrival_s'])} s), predicted "
          f"{_cell(found['prediction_s'])} s = last retry due {found['last_retry_due_s']} s + "
          f"{found['mails']} at {_cell(found['drain_0s_mails_per_s'])} mails/s; "
          f"ratio {_cell(found['ratio'])} (target <= 1.3); "
          f"{found['sent']} recorded sent, {found['received_twice']} received twice")


def _order(key: str) -> tuple[int, int]:
    kind, _, number = key.partition("_c")
    return (0 if kind == "get" else 1, int(number) if number.isdigit() else 0)


def _row(label: str, product: Any, baseline: Any) -> None:
    ratio = (f"{product / baseline:7.2f}" if isinstance(product, int | float)
             and isinstance(baseline, int | float) and baseline else f"{'':7}")
    print(f"{label:44} {_cell(product):>14} {_cell(baseline):>14} {ratio}")


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def main() -> None:
    """Run the parts asked for, print the table, write results/run.json."""
    args = arguments()
    started = time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "settings": {
        key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}}
    sink = Sink()
    try:
        run_parts(args, sink, results)
    finally:
        sink.close()
    results["seconds"] = round(time.monotonic() - started, 1)
    # A run of some parts only would overwrite the figures of a whole one: only if asked.
    output = args.output or (RESULTS / "run.json" if set(args.only) == set(PARTS) else None)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\n{results['seconds']} s; " + (f"written to {output}" if output else "not written"))


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each load run")
    parser.add_argument("--concurrency", default="1,8,32", help="load concurrencies")
    parser.add_argument("--drain", type=int, default=1000,
                        help="submissions for the 0 s drain (2 mails each)")
    parser.add_argument("--slow-drain", type=int, default=24,
                        help="submissions for the 2 s drain")
    parser.add_argument("--smtplib", type=int, default=500, help="mails for the ceilings")
    parser.add_argument("--profile", action="store_true",
                        help="py-spy a product worker during the 0 s drain")
    parser.add_argument("--recovery", type=int, default=500,
                        help="submissions (2 mails each) refused, then recovered")
    parser.add_argument("--outage", type=float, default=3.0,
                        help="least seconds of 451 before the sink accepts again")
    parser.add_argument("--only", type=lambda text: text.split(","), default=list(PARTS),
                        help=f"comma-separated parts to run, of {','.join(PARTS)} (all by "
                             "default; the recovery's prediction needs drain)")
    parser.add_argument("--output", type=Path, default=None,
                        help="JSON file to write (default results/run.json, or none when "
                             "--only leaves parts out)")
    args = parser.parse_args()
    if unknown := set(args.only) - set(PARTS):
        parser.error(f"unknown parts {sorted(unknown)}; choose from {','.join(PARTS)}")
    return args


def run_parts(args: argparse.Namespace, sink: Sink, results: dict[str, Any]) -> None:
    """Each part asked for, in the order of PARTS, its figures into `results`."""
    if "ceilings" in args.only:
        sink.ask("delay 0")
        persistent_and_per_message = smtplib_ceilings(sink.port, args.smtplib)
        results["ceilings"] = {f"smtplib_{k}": v for k, v in persistent_and_per_message.items()}
    for app in APPS:
        results[app] = app_parts(app, args, sink)
    if "load" in args.only:
        results.setdefault("ceilings", {})["get_c8_rps"] = (
            results["product"]["sink_0s"]["get_c8"]["rps"])
    if "recovery" in args.only:
        print("product: recovery after a 451 outage", flush=True)
        rate = results["product"].get("drain_0s", {}).get("mails_per_s")
        results["product"]["recovery"] = recovery(sink, args.recovery, args.outage, rate)
    if "outage" in args.only:
        rate = results["product"].get("drain_0s", {}).get("mails_per_s")
        for app in APPS:
            print(f"{app}: POSTs while the SMTP server refuses connections", flush=True)
            results[app]["outage"] = outage(app, sink, args.seconds, rate)
    if "start" in args.only:
        for app in APPS:
            print(f"{app}: start to first answer", flush=True)
            results[app]["start"] = start_times(app, sink)
    if "memory" in args.only:
        sink.ask("delay 0")
        # In this process, the sink in its own: tracemalloc counts only the sending side.
        results["attachment_memory"] = attachment_memory(sink.port, 10)


def app_parts(app: str, args: argparse.Namespace, sink: Sink) -> dict[str, Any]:
    """The load runs and drains of one app, those asked for."""
    found: dict[str, Any] = {}
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    for delay in (0, 2):
        if "load" in args.only:
            print(f"{app}: load with the sink at {delay} s", flush=True)
            found[f"sink_{delay}s"] = load_runs(app, sink, delay, concurrencies, args.seconds)
    for delay, submissions in ((0, args.drain), (2, args.slow_drain)):
        if "drain" not in args.only:
            continue
        print(f"{app}: drain with the sink at {delay} s", flush=True)
        sink.ask(f"delay {delay}")
        spy_file = (RESULTS / "drain-profile.txt"
                    if app == "product" and delay == 0 and args.profile else None)
        found[f"drain_{delay}s"] = drain(app, sink, submissions, 120, spy_file)
    return found


if __name__ == "__main__":
    main()
