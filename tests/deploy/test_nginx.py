"""deploy/nginx/contact-site.conf in a private nginx, in front of the product's real gunicorn.

The gunicorn is the one an operator runs (gunicorn.conf.py from the project folder) with its
own SQLite database and PROXY_FIX_X_FOR=1, PROXY_FIX_X_PROTO=1, as behind this proxy in
production; the site file is the deployment's own, with only its ports, certificate,
static folder and log folder changed (support.nginx.render_site).
"""

from __future__ import annotations

import http.client
import io
import json
import re
import socket
import ssl
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.forms import HIDDEN_FIELDS, VALID, form_page
from support.nginx import SITE_CONF, SiteServer, require_nginx, site_server
from support.processes import PROJECT_ROOT, start_gunicorn
from support.settings import SPAM_LAYERS_OFF
from support.waiting import wait_until

# The test's own view of the database, with no delivery of its own: gunicorn delivers.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.timeout(60)]

SPOOFED = "203.0.113.9"
WORKERS = 2
# A trickled upload: a piece every TRICKLE_PAUSE seconds, TRICKLE_PIECES of them.
TRICKLE_PIECES = 20
TRICKLE_PAUSE = 0.2
TRICKLE_SECONDS = TRICKLE_PIECES * TRICKLE_PAUSE
# What "promptly" means for a GET of the form page on a loaded two-core machine.
PROMPT_SECONDS = 2.0
# An access log line of gunicorn.conf.py's format: method, path, protocol, status, time.
ACCESS_LINE = re.compile(r'"(\w+) (\S+) (HTTP/[\d.]+)" (\d{3}) \S+ (\d+)ms$')


class Answer(NamedTuple):
    """An HTTP answer: its status, headers and body."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes


@dataclass
class Stack:
    """The product's gunicorn and the deployment's nginx in front of it."""

    app: Flask
    nginx: SiteServer
    gunicorn_port: int
    gunicorn_log: Path

    @property
    def origin(self) -> str:
        """The site's address as a browser has it."""
        return f"https://127.0.0.1:{self.nginx.https_port}"

    def requests_seen(self) -> list[tuple[str, str, str, int, int]]:
        """gunicorn's access log: (method, path, protocol, status, milliseconds) a request."""
        lines = self.gunicorn_log.read_text(errors="replace").splitlines()
        return [(m[1], m[2], m[3], int(m[4]), int(m[5]))
                for m in map(ACCESS_LINE.search, lines) if m]

    def settled_requests(self) -> list[tuple[str, str, str, int, int]]:
        """gunicorn's access log once a request sent after all the others has reached it."""
        marker = f"/marker-{uuid.uuid4().hex}"
        assert https_request(self, "GET", marker).status == 404
        wait_until(lambda: any(seen[1] == marker for seen in self.requests_seen()), 10,
                   "the marker request in gunicorn's access log")
        return [seen for seen in self.requests_seen() if seen[1] != marker]

    def submissions(self) -> list[Submission]:
        """Every submission the product stored."""
        with self.app.app_context():
            return list(db.session.scalars(db.select(Submission)).all())


@pytest.fixture
def stack(app: Flask, tmp_path: Path, processes: list[Any]) -> Iterator[Stack]:
    """gunicorn trusting one proxy, behind the deployment's nginx site."""
    require_nginx()
    process, log, port = start_gunicorn(app, tmp_path, "--workers", str(WORKERS),
                                        PROXY_FIX_X_FOR=1, PROXY_FIX_X_PROTO=1,
                                        **SPAM_LAYERS_OFF)
    processes.append(process)
    with site_server(port, tmp_path / "nginx") as nginx:
        yield Stack(app, nginx, port, log)


def https_request(stack: Stack, method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> Answer:
    """One request to nginx's HTTPS port, the certificate checked against the test CA."""
    connection = http.client.HTTPSConnection(
        "127.0.0.1", stack.nginx.https_port, context=stack.nginx.client_context(), timeout=15)
    try:
        connection.request(method, path, body=body or None, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def secure_form_page(stack: Stack) -> tuple[str, dict[str, str]]:
    """The session cookie and hidden fields of the form, fetched through nginx."""
    answer = https_request(stack, "GET", "/")
    cookies = [value.split(";", 1)[0] for value in answer.headers.get_all("Set-Cookie", [])]
    return "; ".join(cookies), dict(HIDDEN_FIELDS.findall(answer.body.decode()))


def form_body(tokens: dict[str, str], subject: str,
              attachment: bytes | None = None) -> tuple[str, bytes]:
    """A multipart contact form (boundary, body), with a text file when given."""
    fields = MultiDict({**VALID, **tokens, "subject": subject})
    if attachment is not None:
        fields.add("attachment", FileStorage(io.BytesIO(attachment), filename="notes.txt",
                                             content_type="text/plain"))
    return encode_multipart(fields)


def browser_headers(origin: str, cookie: str, boundary: str) -> dict[str, str]:
    """What a browser sends with the form's POST from a page of `origin`."""
    return {"Cookie": cookie, "Origin": origin, "Referer": f"{origin}/", "Accept": "text/html",
            "Content-Type": f"multipart/form-data; boundary={boundary}"}


def read_head(sock: socket.socket) -> bytes:
    """The status line and headers of the answer on `sock`."""
    received = b""
    while b"\r\n\r\n" not in received:
        piece = sock.recv(65536)
        if not piece:
            break
        received += piece
    return received


@pytest.mark.timeout(30)
def test_https_serves_the_form_and_plain_http_redirects_to_it(stack):
    """TLS 1.3 with a certificate the client verifies; the app knows it is served over HTTPS
    (HSTS, a Secure cookie); HTTP answers only a redirect to the same path over HTTPS."""
    with stack.nginx.tls_socket() as tls:
        assert tls.version() == "TLSv1.3"
    answer = https_request(stack, "GET", "/")
    assert answer.status == 200
    assert set(dict(HIDDEN_FIELDS.findall(answer.body.decode()))) == {"csrf_token",
                                                                     "submission_key"}
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert "; Secure" in answer.headers["Set-Cookie"]
    plain = http.client.HTTPConnection("127.0.0.1", stack.nginx.http_port, timeout=10)
    try:
        plain.request("GET", "/f/contact?lang=en")
        redirect = plain.getresponse()
        redirect.read()
    finally:
        plain.close()
    assert redirect.status == 301
    assert redirect.headers["Location"] == "https://127.0.0.1/f/contact?lang=en"


def _post_direct(port: int, subject: str) -> int:
    """Post the form straight to gunicorn, naming SPOOFED in X-Forwarded-For; the status."""
    cookie, tokens = form_page(port)
    boundary, body = form_body(tokens, subject)
    headers = browser_headers(f"http://127.0.0.1:{port}", cookie, boundary)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request("POST", "/", body=body, headers={**headers, "X-Forwarded-For": SPOOFED})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


@pytest.mark.timeout(30)
def test_the_recorded_client_address_is_nginx_peer_not_a_header_the_visitor_sent(stack):
    """Through nginx, a visitor's own X-Forwarded-For is replaced: the stored address is the
    peer nginx saw. The same header sent straight to gunicorn is believed (one trusted hop),
    so it is nginx's overwriting that keeps the address honest."""
    cookie, tokens = secure_form_page(stack)
    boundary, body = form_body(tokens, "Through nginx")
    headers = {**browser_headers(stack.origin, cookie, boundary), "X-Forwarded-For": SPOOFED}
    assert https_request(stack, "POST", "/", body, headers).status == 303
    assert _post_direct(stack.gunicorn_port, "Straight to gunicorn") == 303
    recorded = {stored.subject: stored.remote_addr for stored in stack.submissions()}
    assert recorded == {"Through nginx": "127.0.0.1", "Straight to gunicorn": SPOOFED}
    # The operator's details of /healthz go to a direct loopback peer, never through nginx.
    assert "outbox" in _health(f"http://127.0.0.1:{stack.gunicorn_port}/healthz")
    health = https_request(stack, "GET", "/healthz")
    assert (health.status, json.loads(health.body)) == (200, {"status": "ok"})


def _health(url: str) -> dict[str, Any]:
    """The JSON of a /healthz answer."""
    with urllib.request.urlopen(url, timeout=10) as answer:
        return dict(json.loads(answer.read()))


def _configured_body_limit() -> int:
    """client_max_body_size of the deployment's site, in bytes."""
    (size,) = re.findall(r"^\s*client_max_body_size (\d+)m;", SITE_CONF.read_text(), re.M)
    return int(size) * 2**20


def _send_then_read(tls: ssl.SSLSocket, head: bytes, chunks: list[bytes]) -> bytes:
    """Send the head and the chunks (nginx reads and drops what follows its answer), then
    read the answer's head."""
    tls.sendall(head)
    for chunk in chunks:
        try:
            tls.sendall(chunk)
        except OSError:
            break  # nginx has answered and closed
    return read_head(tls)


@pytest.mark.timeout(30)
def test_a_body_over_the_limit_stops_at_nginx_and_never_reaches_gunicorn(stack):
    """The site's limit is the app's (11 MiB by default); one byte more, declared or sent
    chunked without a length, is refused by nginx with 413, and gunicorn sees neither."""
    limit = _configured_body_limit()
    assert limit == stack.app.config["MAX_CONTENT_LENGTH"] == 11 * 2**20
    cookie, tokens = secure_form_page(stack)
    boundary, _body = form_body(tokens, "Too large")
    common = "".join(f"{name}: {value}\r\n"
                     for name, value in browser_headers(stack.origin, cookie, boundary).items())
    declared = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{stack.nginx.https_port}\r\n{common}"
                f"Content-Length: {limit + 1}\r\n\r\n").encode()
    piece = b"x" * 65536
    with stack.nginx.tls_socket() as tls:
        answer = _send_then_read(tls, declared, [piece] * 4)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    chunked = declared.replace(f"Content-Length: {limit + 1}".encode(),
                               b"Transfer-Encoding: chunked")
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (limit // len(piece) + 2)
    with stack.nginx.tls_socket() as tls:
        answer = _send_then_read(tls, chunked, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert not [seen for seen in stack.settled_requests() if seen[0] == "POST"]
    assert stack.submissions() == []
    errors = stack.nginx.log("contact-site.error.log")
    assert "client intended to send too large body" in errors
    assert "client intended to send too large chunked body" in errors


def _configured_threads() -> int:
    """gunicorn's threads per worker, as gunicorn.conf.py sets them (gunicorn runs the file)."""
    path = PROJECT_ROOT / "gunicorn.conf.py"
    namespace: dict[str, Any] = {"__file__": str(path)}
    exec(compile(path.read_text(), str(path), "exec"), namespace)
    return int(namespace["threads"])


@dataclass
class Trickle:
    """An upload sent a piece at a time: where to, what, and what came of it."""

    connect: Callable[[], socket.socket]
    head: bytes
    body: bytes
    started: bool = False
    sent_at: float = 0.0
    answer: bytes = b""

    def run(self) -> Trickle:
        """Send the head, then the body in TRICKLE_PIECES pieces TRICKLE_PAUSE apart."""
        size = -(-len(self.body) // TRICKLE_PIECES)
        with self.connect() as sock:
            sock.sendall(self.head)
            for offset in range(0, len(self.body), size):
                sock.sendall(self.body[offset:offset + size])
                self.started = True
                time.sleep(TRICKLE_PAUSE)
            self.sent_at = time.monotonic()
            self.answer = read_head(sock)
        return self


def _trickles_through_nginx(stack: Stack, count: int, data: bytes) -> list[Trickle]:
    """`count` real form posts with a text file, to be trickled to nginx over HTTPS."""
    trickles = []
    for number in range(count):
        cookie, tokens = secure_form_page(stack)
        boundary, body = form_body(tokens, f"Trickled {number}", attachment=data)
        headers = browser_headers(stack.origin, cookie, boundary)
        head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{stack.nginx.https_port}\r\n"
                + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        trickles.append(Trickle(lambda: stack.nginx.tls_socket(timeout=30), head, body))
    return trickles


def _trickle_to_gunicorn(stack: Stack, data: bytes) -> Trickle:
    """The same kind of upload straight to gunicorn, as HTTP/1.0 to tell it apart in the log:
    what gunicorn's access log shows for a body that arrives slowly."""
    boundary, body = form_body({}, "Straight to gunicorn", attachment=data)
    head = (f"POST / HTTP/1.0\r\nHost: 127.0.0.1:{stack.gunicorn_port}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    port = stack.gunicorn_port
    return Trickle(lambda: socket.create_connection(("127.0.0.1", port), timeout=30), head, body)


def _timed_get(stack: Stack) -> tuple[int, float, float]:
    """GET / through nginx: the status, how long it took, and when it ended."""
    began = time.monotonic()
    status = https_request(stack, "GET", "/").status
    ended = time.monotonic()
    return status, ended - began, ended


@pytest.mark.timeout(45)
def test_trickled_uploads_hold_no_gunicorn_thread(stack):
    """More uploads trickling in at once than gunicorn has threads: meanwhile as many GETs
    all answer promptly, and gunicorn gets each upload only once nginx has all of it (it
    spends milliseconds on each, where a trickle straight to it lasts the whole upload)."""
    count = _configured_threads() * WORKERS + 1
    data = b"".join(b"line %05d of a slow upload\r\n" % n for n in range(700))
    trickles = _trickles_through_nginx(stack, count, data)
    direct = _trickle_to_gunicorn(stack, data)
    with ThreadPoolExecutor(max_workers=2 * count + 1) as pool:
        running = [pool.submit(trickle.run) for trickle in [*trickles, direct]]
        wait_until(lambda: all(trickle.started for trickle in [*trickles, direct]), 10,
                   "every upload to have begun")
        gets = [future.result() for future in
                [pool.submit(_timed_get, stack) for _ in range(count)]]
        for future in running:
            future.result()
    assert [status for status, _took, _ended in gets] == [200] * count
    assert max(took for _status, took, _ended in gets) < PROMPT_SECONDS
    assert max(ended for _status, _took, ended in gets) < min(t.sent_at for t in trickles), \
        "the GETs were answered while every upload was still trickling"
    assert [trickle.answer[:12] for trickle in trickles] == [b"HTTP/1.1 303"] * count
    posts = [seen for seen in stack.settled_requests() if seen[0] == "POST"]
    via_nginx = [millis for _m, _p, protocol, _s, millis in posts if protocol == "HTTP/1.1"]
    (straight,) = [millis for _m, _p, protocol, _s, millis in posts if protocol == "HTTP/1.0"]
    assert len(via_nginx) == count and max(via_nginx) < TRICKLE_SECONDS * 1000 / 2, via_nginx
    assert straight > TRICKLE_SECONDS * 1000 * 0.8, straight
    stored = stack.submissions()
    assert len(stored) == count
    folder = Path(stack.app.config["UPLOAD_FOLDER"])
    assert all((folder / str(s.files[0].path)).read_bytes() == data for s in stored)


@pytest.mark.timeout(30)
def test_static_files_come_from_nginx_and_never_reach_gunicorn(stack):
    """/static/ is the project's static/ folder served by nginx (cached an hour, nosniff);
    a path merely starting with /static is not served from beside that folder."""
    answer = https_request(stack, "GET", "/static/style.css")
    assert answer.status == 200
    assert answer.body == (PROJECT_ROOT / "static" / "style.css").read_bytes()
    assert answer.headers["Server"] == "nginx"
    assert answer.headers["Content-Type"] == "text/css"
    assert answer.headers["Cache-Control"] == "max-age=3600"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    beside = https_request(stack, "GET", "/static../gunicorn.conf.py")
    assert beside.status == 404 and b"wsgi_app" not in beside.body
    seen = [path for _m, path, _p, _s, _ms in stack.settled_requests()]
    assert not [path for path in seen if path.startswith("/static/")], seen
    assert '"GET /static/style.css HTTP/1.1" 200' in stack.nginx.log("contact-site.access.log")
