"""Starting the processes an operator runs (flask commands, gunicorn, celery) and stopping them."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from flask import Flask

from support.settings import RECIPIENTS, SECRET
from support.waiting import wait_until

PROJECT_ROOT = Path(__file__).resolve().parents[2]
FLASK = str(Path(sys.executable).with_name("flask"))
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))
CELERY = str(Path(sys.executable).with_name("celery"))
# A database of its own on the shared Redis, so these tasks meet only these workers.
BROKER_URL = "redis://127.0.0.1:6379/11"


def worker_env(app: Flask, **extra: Any) -> dict[str, str]:
    """The environment a worker process needs to share this app's database and mail server."""
    config = app.config
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    env.update({
        "SECRET_KEY": SECRET, "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "UPLOAD_FOLDER": config["UPLOAD_FOLDER"], "MAIL_SERVER": config["MAIL_SERVER"],
        "MAIL_PORT": str(config["MAIL_PORT"]), "MAIL_TIMEOUT": str(config["MAIL_TIMEOUT"]),
        "MAIL_DEFAULT_SENDER": config["MAIL_DEFAULT_SENDER"], "CONTACT_RECIPIENTS": RECIPIENTS,
        "CONTACT_RATE_LIMIT": "off", "DELIVERY_RETRY_BASE_SECONDS": "1",
        "DELIVERY_RETRY_MAX_SECONDS": "2", "DELIVERY_POLL_SECONDS": "1",
        # One loop per process: these tests count DATA commands and claims one
        # connection at a time; the pool has its own (tests/delivery/test_parallel_delivery.py).
        "DELIVERY_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({key: str(value) for key, value in extra.items()})
    return env


def process_env(url: str, home: Path, smtp_port: int) -> dict[str, str]:
    """The environment of one instance started outside any test app: its database, its own
    HOME (gunicorn's control socket lives under it), the test SMTP server."""
    home.mkdir(parents=True, exist_ok=True)
    keep = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {key: value for key, value in os.environ.items() if key in keep}
    env.update({
        "HOME": str(home), "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1",
        "SECRET_KEY": SECRET, "DATABASE_URL": url, "UPLOAD_FOLDER": str(home / "uploads"),
        "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_port), "MAIL_TIMEOUT": "3",
        "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
        "CONTACT_RECIPIENTS": RECIPIENTS, "CONTACT_RATE_LIMIT": "off",
        "DELIVERY_POLL_SECONDS": "1",
    })
    return env


def flask_command(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `flask --app contact_site <args>` in the project folder, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)
    return process.returncode


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def reserved_port() -> socket.socket:
    """A loopback port held by a bound socket that does not listen: a client is refused
    there, and no other test can take the port until the socket is closed."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("127.0.0.1", 0))
    return holder


def start_gunicorn(app: Flask, tmp_path: Path, *args: str, wait: bool = True,
                   **settings: Any) -> tuple[subprocess.Popen[bytes], Path, int]:
    """gunicorn as an operator runs it (gunicorn.conf.py from the project folder), with a
    HOME of its own (docs/stack-pitfalls.md: the control socket); the process, its log and
    its port."""
    home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    # gunicorn is handed a socket already listening: a port only chosen here could be taken
    # (by any client's ephemeral port) in the seconds before a loaded machine's gunicorn binds.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = int(listener.getsockname()[1])
    log = tmp_path / f"gunicorn-{port}.log"
    env = {**worker_env(app, **settings), "HOME": str(home)}
    with listener, log.open("ab") as out:
        process = subprocess.Popen(
            [GUNICORN, "--bind", f"fd://{listener.fileno()}", "--workers", "2", *args,
             "contact_site:create_app()"], pass_fds=(listener.fileno(),),
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if wait:
        wait_until(lambda: answers(port) or process.poll() is not None, 30, "gunicorn to serve")
        assert process.poll() is None, log.read_text()
    return process, log, port


def answers(port: int) -> bool:
    """Whether a server on the port answers /healthz (healthy or not)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status in {200, 503}
    except OSError:
        return False
    finally:
        connection.close()


def healthz(port: int) -> int | None:
    """The status of GET /healthz, or None when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def children(pid: int) -> set[int]:
    """The live child processes of `pid`."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        fields = stat.rpartition(")")[2].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found
