"""Scale-out, measured: the Celery + Redis + PostgreSQL deployment with 1, then 2 workers.

Run with `python -m benchmarks.scaleout` (about 2 minutes). Each configuration gets a
PostgreSQL schema of its own (`bench_scaleout_<random>`, dropped afterwards) and the
same Redis database (/14: /11, /12, /13 and /15 are the tests'; only /14 is flushed):

- web: gunicorn with the project's gunicorn.conf.py, `--workers 2`,
  DELIVERY_BACKEND=celery (requests only store and queue a task);
- workers: 1, then 2 processes of `celery -A contact_site.celery_app worker
  --concurrency 1` (the command `contact-site worker` execs), each one main process
  and one prefork pool process running one task at a time: the number of worker
  processes is the variable, each process's concurrency is not;
- the sink: benchmarks/sink.py, accepting every mail at once (0 s).

Measured per configuration, `--repeat` times each (the best run is the figure, all are
kept): submissions/s accepted at concurrency 8 for `--seconds`
(benchmarks.load.run_load, mails delivered meanwhile), and mails/s drained: a backlog of
`--drain` submissions × 2 mails stored straight into the database, due an hour later so
that no sweep starts on it early, then made due in one UPDATE with one deliver_due task
per worker (as a POST's wake-up queues one); rate = mails / (last arrival − first DATA),
as benchmarks/run.py's drain_rate. Around each measure the CPU seconds (utime + stime
from /proc/<pid>/stat) of each group of processes are read, and the machine's busy time
from /proc/stat, so that what limited it can be read off. Prints a table and writes
benchmarks/results/scaleout.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from celery import Celery

from benchmarks.load import run_load
from benchmarks.run import ROOT, Server, Sink, drain_rate, machine, product_env
from support.databases import postgres_schema
from support.processes import children, stop_process

RESULTS = ROOT / "benchmarks" / "results"
CELERY = str(Path(sys.executable).with_name("celery"))
BROKER_URL = "redis://127.0.0.1:6379/14"  # no test uses /14; flushed before and after
APP_NAME = f"bench_scaleout_{uuid.uuid4().hex[:8]}"  # marks this run's database sessions
TICKS = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
# The groups whose CPU is read, and how the table names them.
# (Each worker's own share is kept too, as celery_1, celery_2.)
GROUPS = {"web": "web (gunicorn)", "celery": "celery workers", "postgres": "postgres (all)",
          "postgres_ours": "postgres (this run's sessions)", "redis": "redis-server",
          "sink": "SMTP sink", "load": "load generator"}
SHORT = {"web": "web", "celery": "celery", "postgres": "pg_all", "postgres_ours": "pg_ours",
         "redis": "redis", "sink": "sink", "load": "loadgen", "other": "other"}
# The groups that add up to the machine's busy time (postgres_ours is part of postgres).
DISJOINT = ("web", "celery", "postgres", "redis", "sink", "load")


# --- CPU accounting ---------------------------------------------------------------------


def process_stat(pid: int) -> tuple[int, int] | None:
    """(utime + stime in ticks, start time in ticks) of a process, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12]), int(fields[19])


def pids_named(name: str) -> list[int]:
    """Every process whose command name is `name`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == name:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def machine_ticks() -> tuple[int, int]:
    """(busy, total) ticks of all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy, busy + idle + iowait


@dataclass
class Snapshot:
    """CPU ticks of each group's processes, of the machine, and the wall clock, at one time."""

    groups: dict[str, dict[int, int]]
    machine: tuple[int, int]
    at: float = field(default_factory=time.monotonic)


def snapshot(pids: dict[str, list[int]]) -> Snapshot:
    """Read the ticks of every process in `pids` (by group) and of the machine."""
    groups = {name: {pid: stat[0] for pid in members if (stat := process_stat(pid))}
              for name, members in pids.items()}
    return Snapshot(groups, machine_ticks())


def cpu_use(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    """CPU seconds and % of one core per group between two snapshots, and the machine's."""
    wall = after.at - before.at
    groups = {}
    for name, ticks in after.groups.items():
        # A process that appeared in between (a new database session) counts from zero.
        used = sum(t - before.groups.get(name, {}).get(pid, 0) for pid, t in ticks.items())
        groups[name] = {"cpu_s": round(used / TICKS, 2),
                        "percent_of_core": round(100 * used / TICKS / wall, 1),
                        "processes": len(ticks)}
    busy = after.machine[0] - before.machine[0]
    total = after.machine[1] - before.machine[1]
    known = sum(groups[name]["cpu_s"] for name in DISJOINT if name in groups)
    other = max(0.0, busy / TICKS - known)
    groups["other"] = {"cpu_s": round(other, 2),
                       "percent_of_core": round(100 * other / wall, 1), "processes": None}
    return {"wall_s": round(wall, 2), "groups": groups,
            "machine_busy_cpu_s": round(busy / TICKS, 2),
            "machine_busy_percent": round(100 * busy / total, 1) if total else None}


# --- The processes ----------------------------------------------------------------------


class CeleryWorker:
    """One `celery worker` process (one pool process), stopped by its PID."""

    def __init__(self, number: int, env: dict[str, str], folder: Path) -> None:
        self.name = f"scaleout{number}@{os.uname().nodename}"
        self.log_path = folder / f"celery-{number}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
                 "--hostname", self.name, "--loglevel", "WARNING"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)

    def pids(self) -> list[int]:
        """The main process and its pool process."""
        return [self.process.pid, *children(self.process.pid)]

    def stop(self) -> None:
        """SIGTERM (warm shutdown), then SIGKILL; a pool process left behind is killed too."""
        pool = [(pid, stat[1]) for pid in children(self.process.pid)
                if (stat := process_stat(pid))]
        stop_process(self.process, timeout=20)
        for pid, started in pool:  # the same process only, not a reused PID
            if (stat := process_stat(pid)) is not None and stat[1] == started:
                os.kill(pid, signal.SIGKILL)


def wait_ready(control: Celery, workers: list[CeleryWorker], timeout: float = 60.0) -> None:
    """Until every worker answers a ping over the broker (it consumes tasks then)."""
    wanted, deadline = {worker.name for worker in workers}, time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in workers:
            if worker.process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited: {worker.log_path.read_text()[-2000:]}")
        answered = {name for reply in control.control.ping(timeout=1.0) for name in reply}
        if wanted <= answered:
            return
    raise RuntimeError(f"celery workers not ready within {timeout} s")


@dataclass
class Deployment:
    """One configuration's processes and the handles to read them."""

    server: Server
    workers: list[CeleryWorker]
    sink: Sink
    database: psycopg.Connection[Any]
    control: Celery
    broker: redis.Redis = field(default_factory=lambda: redis.Redis.from_url(BROKER_URL))

    def pids(self) -> dict[str, list[int]]:
        """The processes of each group, now."""
        rows = self.database.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (APP_NAME,))
        each = {f"celery_{n}": worker.pids() for n, worker in enumerate(self.workers, 1)}
        return {"web": [self.server.process.pid, *children(self.server.process.pid)],
                "celery": [pid for pids in each.values() for pid in pids], **each,
                "postgres": pids_named("postgres"),
                "postgres_ours": [int(pid) for (pid,) in rows.fetchall()],
                "redis": pids_named("redis-server"), "sink": [self.sink.process.pid],
                "load": [os.getpid()]}

    def snapshot(self) -> Snapshot:
        """CPU ticks of every group now."""
        return snapshot(self.pids())

    def pending(self) -> tuple[int, int]:
        """(mails queued or sending in the outbox, tasks waiting in the broker)."""
        row = self.database.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'sending')").fetchone()
        waiting = self.broker.llen("celery")
        return int(row[0]) if row else 0, int(waiting)


# --- The measures -----------------------------------------------------------------------


def settle(deployment: Deployment, timeout: float) -> float | None:
    """Seconds until no mail is pending and no task waits, or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if deployment.pending() == (0, 0):
            return round(time.monotonic() - started, 2)
        time.sleep(0.1)
    return None


def measure_load(deployment: Deployment, seconds: float) -> dict[str, Any]:
    """Submissions/s at concurrency 8 with the mails delivered meanwhile, and the CPU."""
    port = deployment.server.port
    run_load(port, 2, 1.0)  # warm-up: imports, templates, connections, the workers' tasks
    settled_before = settle(deployment, 30)
    deployment.sink.ask("reset")
    before = deployment.snapshot()
    result = run_load(port, 8, seconds)
    after = deployment.snapshot()
    delivered = int(deployment.sink.ask("stats")["count"])
    cpu = cpu_use(before, after)
    return {"post_c8": result.summary(), "settled_before_s": settled_before,
            "mails_delivered_during_load": delivered,
            "mails_per_s_during_load": round(delivered / result.seconds, 1),
            "catch_up_after_load_s": settle(deployment, 60), "cpu": cpu,
            "cpu_ms": per_unit(cpu, LOAD_UNITS, {"submission": len(result.latencies),
                                                 "mail": delivered})}


QUEUE_SCRIPT = """\
import sys; sys.path.insert(0, 'tests')
from datetime import timedelta
from contact_site import create_app
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.factories import submission_values
app = create_app()
with app.app_context():
    later, recipient = utcnow() + timedelta(hours=1), app.config['CONTACT_RECIPIENTS'][0]
    for number in range({count}):
        submission = Submission(**submission_values(number, recipient, thank_you=True))
        db.session.add(submission)
        for mail in outbox.enqueue_submission(submission):
            mail.next_attempt_at = later
    db.session.commit()
"""


def queue_backlog(env: dict[str, str], submissions: int) -> None:
    """Store the submissions and their two mails in one commit, due an hour from now."""
    subprocess.run([sys.executable, "-c", QUEUE_SCRIPT.format(count=submissions)], cwd=ROOT,
                   env=env, check=True, timeout=120)


def release_backlog(deployment: Deployment) -> None:
    """Make the backlog due now, and queue one deliver_due task per worker."""
    deployment.database.execute(
        "UPDATE outbox SET next_attempt_at = next_attempt_at - interval '61 minutes' "
        "WHERE status = 'queued'")
    for _ in deployment.workers:
        deployment.control.send_task("contact_site.deliver_due")


def measure_drain(deployment: Deployment, env: dict[str, str], submissions: int,
                  timeout: float) -> dict[str, Any]:
    """Mails/s from the first DATA to the last arrival of a backlog, and the CPU meanwhile."""
    mails = 2 * submissions
    queue_backlog(env, submissions)
    deployment.sink.ask("reset")
    before = deployment.snapshot()
    release_backlog(deployment)
    stats = deployment.sink.wait_for(mails, timeout)
    after = deployment.snapshot()
    settle(deployment, 30)  # the last outcomes are written by group commit, a moment later
    sent = deployment.database.execute(
        "SELECT count(*) FROM outbox WHERE status = 'sent'").fetchone()
    cpu = cpu_use(before, after)
    return {"mails": mails, "received": stats["count"], "mails_per_s": drain_rate(stats),
            "outbox_sent_total": int(sent[0]) if sent else None, "cpu": cpu,
            "cpu_ms": per_unit(cpu, DRAIN_UNITS, {"mail": int(stats["count"])})}


# What each group's CPU is divided by: submissions accepted, or mails arrived at the sink.
LOAD_UNITS = {"web": "submission", "postgres_ours": "submission", "redis": "submission",
              "celery": "mail", "sink": "mail"}
DRAIN_UNITS = dict.fromkeys(("celery", "postgres_ours", "redis", "sink"), "mail")


def per_unit(cpu: dict[str, Any], units: dict[str, str],
             counts: dict[str, int]) -> dict[str, float | None]:
    """CPU milliseconds per unit (`units`: group → unit, `counts`: unit → how many)."""
    return {f"{name} per {unit}": round(1000 * cpu["groups"][name]["cpu_s"] / counts[unit], 2)
            if counts[unit] else None for name, unit in units.items()}


def configuration(workers: int, sink: Sink, args: argparse.Namespace) -> dict[str, Any]:
    """Both measures with `workers` Celery worker processes, on a schema of its own."""
    print(f"{workers} Celery worker process(es): starting", flush=True)
    with (postgres_schema("bench_scaleout") as url, tempfile.TemporaryDirectory() as folder,
          Celery(broker=BROKER_URL) as control):
        if url is None:
            raise SystemExit("PostgreSQL at 127.0.0.1:5432 does not answer")
        settings = {"DATABASE_URL": f"{url}&application_name={APP_NAME}",
                    "DELIVERY_BACKEND": "celery", "CELERY_BROKER_URL": BROKER_URL}
        env = product_env(Path(folder), sink.port, settings)
        server = Server("product", Path(folder), sink.port, settings)
        started: list[CeleryWorker] = []
        try:
            started.extend(CeleryWorker(n + 1, env, Path(folder)) for n in range(workers))
            wait_ready(control, started)
            with psycopg.connect(libpq_url(url), autocommit=True) as database:
                deployment = Deployment(server, started, sink, database, control)
                print(f"{workers} worker(s): load at concurrency 8", flush=True)
                loads = [measure_load(deployment, args.seconds) for _ in range(args.repeat)]
                print(f"{workers} worker(s): drain of {2 * args.drain} mails", flush=True)
                drains = [measure_drain(deployment, env, args.drain, 90)
                          for _ in range(args.repeat)]
        finally:
            for worker in started:
                worker.stop()
            server.stop()
    return {"celery_worker_processes": workers,
            "load": best(loads, lambda run: run["post_c8"]["rps"]), "load_runs": loads,
            "drain": best(drains, lambda run: run["mails_per_s"]), "drain_runs": drains}


def best(runs: list[dict[str, Any]], key: Callable[[dict[str, Any]], float | None]
         ) -> dict[str, Any]:
    """The run with the highest figure: the one least disturbed by other work."""
    return max(runs, key=lambda run: key(run) or 0.0)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq takes it (no driver name)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


# --- The report -------------------------------------------------------------------------


def limit_note(cpu: dict[str, Any], workers: int) -> str:
    """What limited a measure, read from its CPU shares (each in % of one core)."""
    groups, busy = cpu["groups"], cpu["machine_busy_percent"] or 0.0
    share = {name: groups[name]["percent_of_core"] for name in (*DISJOINT, "other")}
    each = [groups[f"celery_{n}"]["percent_of_core"] for n in range(1, workers + 1)]
    split = " (" + " + ".join(f"{s:.0f}" for s in each) + ")" if workers > 1 else ""
    label = {**SHORT, "other": "other work"}
    shares = ", ".join(f"{label[name]} {value:.0f}{split if name == 'celery' else ''}"
                       for name, value in share.items()) + " % of a core"
    if busy >= 85:
        return f"limit: CPU (both cores {busy:.0f}% busy; {shares})"
    if max(each) >= 85:
        return f"limit: worker CPU (busiest worker {max(each):.0f}% of a core; {shares})"
    for name, what in (("postgres", "database"), ("redis", "broker")):
        if share[name] >= 85:
            return f"limit: {what} CPU ({shares})"
    return (f"limit: no CPU saturated (machine {busy:.0f}% busy; {shares}): "
            "waiting on round trips (database, broker, SMTP)")


def figures(runs: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
    """The headline figures: each measure with 1 and 2 workers, 2 against 1."""
    found = []
    measures = (("web submissions/s at c8", "submissions/s", "load",
                 lambda run: run["load"]["post_c8"]["rps"]),
                ("mails/s delivered during the c8 load", "mails/s", "load",
                 lambda run: run["load"]["mails_per_s_during_load"]),
                ("drain", "mails/s", "drain", lambda run: run["drain"]["mails_per_s"]))
    for label, unit, part, value_of in measures:
        reference = value_of(runs[1])
        for workers, run in runs.items():
            value = value_of(run)
            compared = workers != 1
            ratio = (round(value / reference, 2) if compared and value is not None
                     and reference else None)
            found.append({
                "measure": f"{label}, {workers} Celery worker{'s' if workers > 1 else ''}",
                "value": value, "unit": unit, "reference": reference if compared else None,
                "reference_label": "1 worker" if compared else "", "ratio": ratio,
                "target": None, "met": None,
                "note": limit_note(run[part]["cpu"], workers) + cost_note(run, part)})
    return found


def cost_note(run: dict[str, Any], part: str) -> str:
    """The CPU one submission (load) or one mail (drain) cost each of the deployment's parts."""
    costs = run[part]["cpu_ms"].items()
    return "; CPU ms: " + ", ".join(
        f"{SHORT[name.split(' ')[0]]}/{name.rsplit(' ', 1)[1]} {cell(ms)}" for name, ms in costs)


def print_table(runs: dict[int, dict[str, Any]], found: list[dict[str, Any]]) -> None:
    """The figures, then the CPU shares of each measure."""
    print(f"\n{'measure':52} {'value':>9} {'1 worker':>9} {'ratio':>6}")
    for figure in found:
        print(f"{figure['measure']:52} {cell(figure['value']):>9} "
              f"{cell(figure['reference']):>9} {cell(figure['ratio']):>6}")
    names = (*GROUPS, "other")
    print(f"\n% of one core during each measure ({CORES} cores = {100 * CORES}%)")
    print(f"{'':16}" + "".join(f"{SHORT[name]:>9}" for name in names) + f"{'machine':>9}")
    for workers, run in runs.items():
        for part in ("load", "drain"):
            cpu = run[part]["cpu"]
            row = [cell(cpu["groups"][name]["percent_of_core"]) for name in names]
            busy = CORES * (cpu["machine_busy_percent"] or 0)
            print(f"{f'{workers}w {part}':16}" + "".join(f"{v:>9}" for v in row)
                  + f"{round(busy, 1):>9}")
    print("columns: " + ", ".join(f"{SHORT[key]} = {label}" for key, label in GROUPS.items())
          + ", other = the rest of the machine's busy time")
    print("\nCPU ms per submission accepted or mail arrived")
    for workers, run in runs.items():
        for part in ("load", "drain"):
            print(f"{f'{workers}w {part}':16}" + ", ".join(
                f"{name} {cell(ms)}" for name, ms in run[part]["cpu_ms"].items()))


def cell(value: Any) -> str:
    """A table cell: '-' for None."""
    return "-" if value is None else str(value)


def flush_broker() -> None:
    """Empty this benchmark's Redis database (and no other)."""
    redis.Redis.from_url(BROKER_URL).flushdb()


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of the c8 load")
    parser.add_argument("--drain", type=int, default=1000,
                        help="submissions in the backlog (2 mails each)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each measure per configuration; the best is reported")
    parser.add_argument("--output", type=Path, default=RESULTS / "scaleout.json")
    return parser.parse_args()


def main() -> None:
    """Both configurations, the table, results/scaleout.json."""
    args, started = arguments(), time.monotonic()
    results: dict[str, Any] = {"machine": machine(), "load_average_before": os.getloadavg(),
                               "settings": {"seconds": args.seconds, "drain": args.drain,
                                            "repeat": args.repeat,
                                            "broker": BROKER_URL, "web_workers": 2,
                                            "celery_concurrency_per_process": 1}}
    runs: dict[int, dict[str, Any]] = {}
    sink = Sink()
    try:
        flush_broker()
        sink.ask("delay 0")
        for workers in (1, 2):
            runs[workers] = configuration(workers, sink, args)
            flush_broker()
    finally:
        sink.close()
        flush_broker()
    found = figures(runs)
    results.update({"configurations": {str(k): v for k, v in runs.items()}, "figures": found,
                    "seconds": round(time.monotonic() - started, 1)})
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_table(runs, found)
    print(f"\n{results['seconds']} s; written to {args.output}")


if __name__ == "__main__":
    main()
