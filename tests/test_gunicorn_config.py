"""The production configuration: real gunicorn with gunicorn.conf.py from the project root."""

from __future__ import annotations

import http.client
import io
import re
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.forms import form_page
from support.processes import (
    GUNICORN,
    PROJECT_ROOT,
    free_port,
    start_gunicorn,
    stop_process,
    worker_env,
)
from support.waiting import wait_until

# The test's own view of the database, with no delivery of its own.
pytestmark = pytest.mark.manual_delivery


@pytest.mark.timeout(60)
def test_a_bad_setting_stops_gunicorn_at_start_with_one_line_naming_it(app, tmp_path):
    """DELIVERY_BACKEND=bogus: the master exits non-zero before any worker boots."""
    process, log, _port = start_gunicorn(app, tmp_path, wait=False, DELIVERY_BACKEND="bogus")
    try:
        assert process.wait(20) != 0
    finally:
        stop_process(process)
    output = log.read_text()
    errors = [line for line in output.splitlines() if "DELIVERY_BACKEND" in line]
    assert errors == ["contact_site: configuration error: DELIVERY_BACKEND must be 'thread' "
                      "or 'celery', got 'bogus'"]
    assert "Traceback" not in output
    assert "Booting worker" not in output, "no worker was started, so none is respawned"


def _load_settings() -> dict[str, Any]:
    """The names gunicorn.conf.py sets, as gunicorn reads them (it runs the file)."""
    path = PROJECT_ROOT / "gunicorn.conf.py"
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return namespace


def test_the_production_settings_suit_uploads_and_a_delivery_thread():
    """gthread workers (bodies read off the heartbeat), a grace for stopping, no query
    strings in the access log."""
    settings = _load_settings()
    assert settings["worker_class"] == "gthread" and settings["threads"] >= 2
    assert 1 <= settings["workers"] <= 8
    assert settings["graceful_timeout"] > 15, "longer than a delivery thread's stop"
    assert not re.search(r"%\((q|r|f)\)s", settings["access_log_format"])
    assert "%(U)s" in settings["access_log_format"]


def _trickle(port: int, head: bytes, body: bytes, seconds: float) -> bytes:
    """Send the request head, then the body in small pieces over `seconds`; the answer."""
    pieces = 200
    size = -(-len(body) // pieces)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        for offset in range(0, len(body), size):
            sock.sendall(body[offset:offset + size])
            time.sleep(seconds / pieces)
        return sock.recv(65536)


@pytest.mark.timeout(90)
def test_a_slow_upload_through_the_production_config_is_stored_intact(app, gunicorn):
    """1 MiB trickled over about 15 s, three times the worker timeout of 5 s: 303, file
    intact."""
    _process, log, port = gunicorn("--timeout", "5", DELIVERY_POLL_SECONDS=60)
    cookie, tokens = form_page(port)
    data = b"".join(b"line %06d of a slow upload\r\n" % n for n in range(40000))[:2**20]
    fields = MultiDict({"recipient": "sales", "name": "Ada Lovelace", "email": "ada@example.com",
                        "subject": "Slow line", "message": "The attached file, slowly.",
                        **tokens})
    fields.add("attachment", FileStorage(io.BytesIO(data), filename="notes.txt",
                                         content_type="text/plain"))
    boundary, body = encode_multipart(fields)
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {cookie}\r\n"
            f"Accept: text/html\r\nContent-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    answer = _trickle(port, head, body, seconds=15)
    assert answer.startswith(b"HTTP/1.1 303"), answer[:300]
    with app.app_context():
        (stored,) = db.session.scalars(db.select(Submission)).all()
        [file] = stored.files
        path = Path(app.config["UPLOAD_FOLDER"]) / str(file.path)
    assert path.read_bytes() == data
    assert "WORKER TIMEOUT" not in log.read_text()


def healthz_status(port: int) -> int | None:
    """The status of GET /healthz on 127.0.0.1:`port`, or None while nothing answers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@pytest.mark.timeout(120)
def test_two_deployments_under_one_user_share_no_control_socket(app, tmp_path):
    """One HOME, no XDG_RUNTIME_DIR: both serve, and neither opens gunicorn's per-user
    control socket (~/.gunicorn/gunicorn.ctl), which the second would take from the first."""
    home = tmp_path / "home"
    home.mkdir()
    env = {**worker_env(app), "HOME": str(home)}
    env.pop("XDG_RUNTIME_DIR", None)
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for name in ("first", "second"):
            port = free_port()
            with (tmp_path / f"{name}.log").open("ab") as out:
                started.append((subprocess.Popen(
                    [GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                     "contact_site:create_app()"],
                    cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT), port))
        for process, port in started:
            wait_until(lambda p=process, n=port: healthz_status(n) == 200 or p.poll() is not None,
                       60, "gunicorn to serve")
        assert [(process.poll(), healthz_status(port)) for process, port in started] == [
            (None, 200), (None, 200)]
        assert not (home / ".gunicorn").exists()
        assert list(home.rglob("*.ctl")) == []
    finally:
        for process, _port in started:
            stop_process(process, timeout=30)
    for name in ("first", "second"):
        assert "control" not in (tmp_path / f"{name}.log").read_text().lower()
