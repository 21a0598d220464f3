"""A real HTTP(S) receiver for webhook tests, on a free loopback port, switchable at run time.

    with WebhookReceiver() as receiver:     # plain HTTP; ssl_context=... for HTTPS
        receiver.mode = "429"               # 429 with Retry-After: receiver.retry_after
        post_webhook(receiver.url(), ...)
        receiver.requests[0].headers["webhook-id"]

Modes: ``ok`` (200 and ``answer``), ``500``, ``429`` (with ``Retry-After``), ``410``,
``redirect`` (302 to ``location``), ``hang`` (reads the request, never answers until
stopped) and ``drip`` (200's status line one byte every ``drip_seconds``, never done).
A path may have a mode of its own (``path_modes["/gone"] = "410"``), and
``answer_next("500")`` sets how the next requests are answered, whatever their path,
before ``mode`` applies again. ``on_request`` runs before each answer (what a test does
while a delivery waits for it). ``port`` chooses the port (one a test named in a forms
file before the receiver started). Every request is recorded (method, path, headers
with lower-case names, body, the number of the connection it came on) before it is
answered, and the TLS server name each connection asked for is kept in ``server_names``.
``connections`` counts the connections accepted, ``open_connections`` those the client
has not closed yet. ``close_after_answer`` answers with ``Connection: close`` and
closes; ``idle_close_seconds`` closes a connection idle that long, without a word (as
a server's keep-alive timeout does).
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = frozenset({"ok", "500", "429", "410", "redirect", "hang", "drip"})
STATUS = {"ok": 200, "500": 500, "429": 429, "410": 410, "redirect": 302}


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    connection: int = 0  # the receiver's number of the connection it came on, from 1


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    receiver: WebhookReceiver

    def finish_request(self, request: Any, client_address: Any) -> None:
        """TLS is set up in the connection's own thread, so one slow client holds no other."""
        context = self.receiver.ssl_context
        if context is None:
            super().finish_request(request, client_address)
            return
        try:
            secure = context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that refused our certificate: nothing to record
        with secure:  # the server closes the plain socket, which TLS has taken over
            super().finish_request(secure, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client gone mid-answer (a timeout, a watchdog) is expected here: no traceback."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm, the body of every
    # answer on a kept-alive connection would wait ~40 ms for the client's delayed ACK.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        """Number the connection; an idle one times out (and is closed) if the test says so."""
        receiver = self.server.receiver
        self.timeout = receiver.idle_close_seconds
        self.connection_number = receiver.connection_opened()
        super().setup()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.receiver.connection_closed()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        receiver = self.server.receiver
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        request = ReceivedRequest(self.command, self.path,
                                  {k.lower(): v for k, v in self.headers.items()}, body,
                                  self.connection_number)
        mode = receiver.record(request)
        if receiver.on_request is not None:
            receiver.on_request(request)
        if mode == "hang":
            receiver.released.wait(60)
        elif mode == "drip":
            self._drip(b"HTTP/1.1 200 OK\r\n", receiver)
        else:
            self._answer(STATUS[mode], receiver)

    def _answer(self, status: int, receiver: WebhookReceiver) -> None:
        self.send_response(status)
        if status == 429:
            self.send_header("Retry-After", receiver.retry_after)
        if status == 302:
            self.send_header("Location", receiver.location)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(receiver.answer)))
        if receiver.close_after_answer:
            self.send_header("Connection", "close")  # http.server then closes it
        self.end_headers()
        self.wfile.write(receiver.answer)

    def _drip(self, data: bytes, receiver: WebhookReceiver) -> None:
        for byte in data:
            if receiver.released.wait(receiver.drip_seconds):
                return
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
        receiver.released.wait(60)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `requests` instead."""


class WebhookReceiver:
    """A loopback webhook receiver (see the module's docstring)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.ssl_context = ssl_context
        self.mode = "ok"
        self.answer = b"ok"
        self.retry_after = "120"
        self.location = ""
        self.drip_seconds = 0.2
        self.requests: list[ReceivedRequest] = []
        self.path_modes: dict[str, str] = {}
        self._next_modes: list[str] = []
        self.on_request: Callable[[ReceivedRequest], None] | None = None
        self.server_names: list[str | None] = []
        self.close_after_answer = False
        self.idle_close_seconds: float | None = None
        self.connections = 0
        self.open_connections = 0
        self.released = threading.Event()
        self._lock = threading.Lock()
        if ssl_context is not None:
            ssl_context.sni_callback = self._note_server_name
        self._server = _Server((host, port), _Handler)
        self._server.receiver = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        """Its URL, naming it as `host` (an address or a name a test resolves)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def answer_next(self, *modes: str) -> None:
        """Answer the next requests in these modes, one each, then by `mode` again."""
        unknown = set(modes) - MODES
        assert not unknown, f"unknown receiver modes {unknown}"
        with self._lock:
            self._next_modes.extend(modes)

    def record(self, request: ReceivedRequest) -> str:
        """Keep a request (handler threads call this); the mode to answer it in."""
        with self._lock:
            self.requests.append(request)
            if self._next_modes:
                return self._next_modes.pop(0)
            return self.path_modes.get(request.path.partition("?")[0], self.mode)

    def connection_opened(self) -> int:
        """Count a new connection (handler threads call this); its number."""
        with self._lock:
            self.connections += 1
            self.open_connections += 1
            return self.connections

    def connection_closed(self) -> None:
        """Count a connection ended (handler threads call this)."""
        with self._lock:
            self.open_connections -= 1

    def received(self, path: str) -> list[ReceivedRequest]:
        """The requests made to one path, in order."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    def _note_server_name(self, connection: Any, name: str | None, context: Any) -> None:
        self.server_names.append(name)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

