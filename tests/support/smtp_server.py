"""A real, switchable SMTP server for tests, built on aiosmtpd.

The server runs an aiosmtpd ``Controller`` (asyncio loop in its own thread) on 127.0.0.1.
Its behaviour is switched at run time from the test thread through ``SMTPTestServer.mode``:

* ``accept``     - 250 to DATA, the mail is recorded in ``messages``.
* ``delay``      - sleep ``delay`` seconds (asyncio, so other connections proceed), then accept.
* ``421``        - ``421 4.3.0 Service shutting down`` to DATA, then the connection is closed.
* ``451``        - ``451 4.3.0 Try again later`` to DATA.
* ``550``        - ``550 5.7.1 Rejected by policy`` to DATA.
* ``552``        - ``552 5.3.4 Message too big`` to DATA.
* ``drop_data``  - the connection is closed after the data is received, without a reply.
* ``drop_quit``  - 250 to DATA (mail recorded), then QUIT closes the connection without a reply.
* ``silent``     - a raw listener accepts TCP connections and never sends the greeting.
* ``down``       - nothing listens on the port (connections are refused).
* ``reply``      - the text of ``reply`` (a whole SMTP reply line, code first) to DATA.

``fail_times = N`` limits the failing modes (421/451/550/552/drop_data/reply) to the next N DATA
commands; after that the mode resets to ``accept``.

TLS and AUTH are chosen when the server is made: ``ssl_context`` (a server context) offers
STARTTLS, or with ``implicit_tls=True`` wraps every connection in TLS from the start;
``auth=True`` offers AUTH PLAIN/LOGIN (after TLS only, unless ``auth_cleartext=True``).
Every AUTH command line is kept in ``auth_commands`` (credentials included, whether or not
the server would take them) and every login checked in ``logins``; ``refuse_logins = True``
answers 535 (or the text of ``login_refusal``) to each.

The port is reserved for the lifetime of the object (a bound, non-listening SO_REUSEADDR
socket), so ``stop()``/``start()`` and ``down``/``accept`` always come back on the same port
and no other socket (not even an ephemeral client port) can take it in between.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.message
import email.policy
import errno
import socket
import ssl
import threading
import time
import weakref
from dataclasses import dataclass, field
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

__all__ = ["MODES", "Login", "ReceivedMail", "SMTPTestServer"]

MODES = frozenset(
    {"accept", "delay", "421", "451", "550", "552", "drop_data", "drop_quit", "silent", "down",
     "reply"}
)
# Modes that make DATA fail and are therefore limited by ``fail_times``.
FAILING_MODES = frozenset({"421", "451", "550", "552", "drop_data", "reply"})
_REPLIES = {
    "421": "421 4.3.0 Service shutting down",
    "451": "451 4.3.0 Try again later",
    "550": "550 5.7.1 Rejected by policy",
    "552": "552 5.3.4 Message too big",
}
# Well above the 20 MB messages the app must handle; aiosmtpd's default is 32 MiB.
DATA_SIZE_LIMIT = 64 * 1024 * 1024
# Explicit greeting name: without it aiosmtpd calls socket.getfqdn() for EVERY connection,
# which can block on DNS in sandboxes.
SERVER_HOSTNAME = "smtp.test"
READY_TIMEOUT = 5.0
STOP_TIMEOUT = 2.0
BIND_RETRY_SECONDS = 5.0
# Upper bound for a handler that has closed its transport and waits to be cancelled by
# connection_lost(); that normally happens on the next loop iteration.
_DROP_GRACE = 5.0


@dataclass
class ReceivedMail:
    """One mail accepted by the test server."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    message: email.message.EmailMessage
    mail_options: list[str] = field(default_factory=list)  # MAIL FROM's, e.g. SMTPUTF8
    helo: str = ""  # the name the client greeted with


@dataclass(frozen=True)
class Login:
    """One login the server checked: mechanism, credentials, whether it came over TLS."""

    mechanism: str
    username: str
    password: str
    tls: bool


def _utf8(address: str) -> str:
    """An envelope address as sent: aiosmtpd keeps the bytes of a UTF-8 one as surrogates."""
    return address.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _reusable_socket(host: str) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    # SO_REUSEADDR on every socket we bind: lets the listener share the port with the
    # reservation socket and ignore TIME_WAIT leftovers from earlier runs.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return sock


def _listen(host: str, port: int) -> socket.socket:
    """Bind and listen on host:port, retrying EADDRINUSE for a few seconds."""
    deadline = time.monotonic() + BIND_RETRY_SECONDS
    while True:
        sock = _reusable_socket(host)
        try:
            sock.bind((host, port))
            sock.listen(128)
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class _Session(SMTP):
    """aiosmtpd protocol with connection/DATA bookkeeping for SMTPTestServer."""

    def __init__(self, owner: SMTPTestServer, handler: Any, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._owner = owner

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # connection_made() is called again after STARTTLS; count only the TCP connection.
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self._owner._session_opened(self, transport.get_extra_info("peername"))

    def connection_lost(self, error: Exception | None) -> None:
        self._owner._session_closed(self)
        super().connection_lost(error)

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        # Recorded before aiosmtpd looks at it: a refused AUTH still carried its credentials.
        self._owner._record_auth_command(arg)
        await super().smtp_AUTH(arg)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # Counted here rather than in handle_DATA so refused/dropped DATA commands count too.
        self._owner._count_data_command()
        await super().smtp_DATA(arg)


class _Handler:
    """aiosmtpd handler whose replies depend on the owner's current mode."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self._owner = owner

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        envelope.helo = session.host_name  # type: ignore[attr-defined]
        return await self._owner._on_data(server, envelope)

    async def handle_QUIT(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._owner.mode == "drop_quit":
            await _drop(server)
        return "221 Bye"


async def _drop(server: SMTP) -> None:
    """Close the client connection without replying and wait to be cancelled."""
    if server.transport is not None:
        server.transport.close()
    # connection_lost() cancels the session task, which interrupts this sleep, so no reply is
    # written. If that somehow doesn't happen, the reply goes to a closed transport (ignored).
    await asyncio.sleep(_DROP_GRACE)


class _Controller(Controller):
    """aiosmtpd Controller on a pre-bound socket, with a bounded stop()."""

    def __init__(self, owner: SMTPTestServer, handler: _Handler, sock: socket.socket) -> None:
        super().__init__(
            handler,
            hostname=owner.host,
            port=owner.port,
            ready_timeout=READY_TIMEOUT,
            server_hostname=SERVER_HOSTNAME,
            data_size_limit=owner.size_limit,
            decode_data=False,
            enable_SMTPUTF8=owner.smtputf8,
            **owner._tls_and_auth_kwargs(),
        )
        self._owner = owner
        self._sock = sock

    def factory(self) -> SMTP:
        return _Session(self._owner, self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        # Binding ourselves (in the caller's thread) makes bind errors immediate; the library
        # binds in its thread and only reports failure after the whole ready_timeout.
        return self.loop.create_server(self._factory_invoker, sock=self._sock,
                                       ssl=self.ssl_context)

    def _trigger_server(self) -> None:
        # Controller.start() opens a probe connection to force the lazy factory() call. We
        # open it from a known local address so it is not counted in ``connections``.
        host = self._owner.host
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            probe.bind((host, 0))
            local = probe.getsockname()
            self._owner._probe_peers.add(local)
            try:
                probe.connect((host, self._owner.port))
                if self.ssl_context is not None:  # implicit TLS: the greeting comes encrypted
                    client = ssl.create_default_context()
                    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
                    with client.wrap_socket(probe) as tls:
                        tls.recv(1024)
                else:
                    probe.recv(1024)
            finally:
                self._owner._probe_peers.discard(local)

    def stop(self, no_assert: bool = False) -> None:
        # The library's stop() joins the thread without a timeout and leaves open client
        # connections to be closed by garbage collection; close them first, then join bounded.
        loop = self.loop
        thread = self._thread
        if thread is not None and thread.is_alive() and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._owner._abort_sessions(), loop)
            try:
                future.result(timeout=1.0)
            except (concurrent.futures.TimeoutError, RuntimeError):
                future.cancel()
        try:
            loop.call_soon_threadsafe(self.cancel_tasks)
        except RuntimeError:
            pass  # the loop is already closed: the thread has finished
        if thread is not None:
            thread.join(STOP_TIMEOUT)
            if thread.is_alive():
                raise RuntimeError("SMTPTestServer: aiosmtpd thread did not stop in time")
            self._thread = None
        self._sock.close()
        self._cleanup()


class _SilentListener:
    """Raw TCP listener that accepts connections and never writes anything."""

    def __init__(self, sock: socket.socket, on_accept: Any) -> None:
        # A short accept timeout keeps the thread responsive to stop() without blocking.
        sock.settimeout(0.05)
        self._sock = sock
        self._on_accept = on_accept
        self._held: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="smtp-test-silent", daemon=True
        )

    def start(self) -> None:
        """Start accepting in a background thread."""
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._held.append(conn)
            self._on_accept()

    def stop(self) -> None:
        """Stop accepting and close the held connections."""
        self._stopping.set()
        self._thread.join(STOP_TIMEOUT)
        self._sock.close()
        for conn in self._held:
            conn.close()
        self._held.clear()


class SMTPTestServer:
    """Real SMTP server on 127.0.0.1 whose behaviour can be switched at run time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 ssl_context: ssl.SSLContext | None = None, implicit_tls: bool = False,
                 auth: bool = False, auth_cleartext: bool = False,
                 smtputf8: bool = True, size_limit: int = DATA_SIZE_LIMIT) -> None:
        if implicit_tls and ssl_context is None:
            raise ValueError("implicit_tls needs an ssl_context")
        self.host = host
        self.messages: list[ReceivedMail] = []
        self.delay: float = 1.0
        self.reply = "554 5.0.0 Custom reply"
        self.ssl_context = ssl_context
        self.implicit_tls = implicit_tls
        self.auth = auth
        self.auth_cleartext = auth_cleartext
        self.smtputf8 = smtputf8  # offers SMTPUTF8 (RFC 6531) after EHLO
        self.size_limit = size_limit  # announced in SIZE; a larger mail is refused with 552
        self.refuse_logins = False
        self.login_refusal = "535 5.7.8 Authentication credentials invalid"
        self.logins: list[Login] = []
        self.auth_commands: list[str] = []
        # Guards mode/fail_times/counters/messages; shared with the asyncio thread, so it is
        # only ever held briefly and never while waiting on another thread.
        self._cond = threading.Condition()
        # Serialises start/stop/mode transitions (which join threads) between test threads.
        self._lifecycle = threading.RLock()
        self._mode = "accept"
        self._fail_times: int | None = None
        self._data_commands = 0
        self._connections = 0
        self._in_data = 0  # DATA commands being answered right now
        self._peak_in_data = 0
        self._active = False
        self._handler = _Handler(self)
        self._controller: _Controller | None = None
        self._silent: _SilentListener | None = None
        self._sessions: set[_Session] = set()  # touched only in the asyncio thread
        self._probe_peers: set[Any] = set()
        self._parser = BytesParser(policy=email.policy.default)
        # Bound but not listening: connections are refused while down, yet the port cannot
        # be taken by anyone else, so restarts on the same port never race.
        self._reservation = _reusable_socket(host)
        try:
            self._reservation.bind((host, port))
        except OSError:
            self._reservation.close()
            raise
        self.port: int = self._reservation.getsockname()[1]
        self._finalizer = weakref.finalize(self, self._reservation.close)

    def __repr__(self) -> str:
        return f"<SMTPTestServer {self.host}:{self.port} mode={self.mode!r}>"

    def __enter__(self) -> SMTPTestServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start listening (a "down" mode is reset to "accept"); no-op if already listening."""
        with self._lifecycle:
            self._active = True
            if self.mode == "down":
                with self._cond:
                    self._mode = "accept"
            self._reconcile()

    def stop(self) -> None:
        """Stop listening and close open connections; the port stays reserved."""
        with self._lifecycle:
            self._active = False
            self._reconcile()

    def close(self) -> None:
        """Stop and release the reserved port (the object can't be started again)."""
        self.stop()
        self._finalizer()

    @property
    def mode(self) -> str:
        """Current behaviour; see the module docstring for the values."""
        with self._cond:
            return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in MODES:
            raise ValueError(f"unknown SMTPTestServer mode {value!r}; expected one of {MODES}")
        with self._lifecycle:
            with self._cond:
                self._mode = value
            self._reconcile()

    @property
    def fail_times(self) -> int | None:
        """How many more DATA commands the failing mode applies to (None = unlimited)."""
        with self._cond:
            return self._fail_times

    @fail_times.setter
    def fail_times(self, value: int | None) -> None:
        if value is not None and value < 0:
            raise ValueError("fail_times must be None or >= 0")
        with self._cond:
            self._fail_times = value

    @property
    def data_commands(self) -> int:
        """Number of DATA commands seen (accepted, refused or dropped)."""
        with self._cond:
            return self._data_commands

    @property
    def connections(self) -> int:
        """Number of TCP connections opened by clients (probe connections excluded)."""
        with self._cond:
            return self._connections

    @property
    def peak_concurrent_data(self) -> int:
        """The most DATA commands this server was answering at once (e.g. in ``delay`` mode)."""
        with self._cond:
            return self._peak_in_data

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMail]:
        """Block until at least ``count`` mails were accepted; AssertionError on timeout."""
        with self._cond:
            done = self._cond.wait_for(lambda: len(self.messages) >= count, timeout)
            received = list(self.messages)
            state = (
                f"mode={self._mode!r}, data_commands={self._data_commands}, "
                f"connections={self._connections}"
            )
        if not done:
            raise AssertionError(
                f"SMTPTestServer on port {self.port}: expected at least {count} mail(s) "
                f"within {timeout}s, got {len(received)} ({state})"
            )
        return received

    def clear(self) -> None:
        """Forget received mails and zero the counters (mode and fail_times are kept)."""
        with self._cond:
            self.messages.clear()
            self.logins.clear()
            self.auth_commands.clear()
            self._data_commands = 0
            self._connections = 0
            self._peak_in_data = 0

    # -- listener management (test thread, under _lifecycle) ----------------------------

    def _reconcile(self) -> None:
        if not self._active or self.mode == "down":
            want = None
        elif self.mode == "silent":
            want = "silent"
        else:
            want = "smtp"
        have = "smtp" if self._controller else "silent" if self._silent else None
        if want == have:
            return
        if self._controller is not None:
            controller, self._controller = self._controller, None
            controller.stop()
        if self._silent is not None:
            silent, self._silent = self._silent, None
            silent.stop()
        if want == "smtp":
            self._start_controller()
        elif want == "silent":
            self._silent = _SilentListener(_listen(self.host, self.port), self._count_connection)
            self._silent.start()

    def _start_controller(self) -> None:
        controller = _Controller(self, self._handler, _listen(self.host, self.port))
        try:
            controller.start()
        except BaseException:
            controller.stop(no_assert=True)
            raise
        self._controller = controller

    def _tls_and_auth_kwargs(self) -> dict[str, Any]:
        """The Controller's arguments for the TLS and AUTH chosen at construction."""
        kwargs: dict[str, Any] = {}
        if self.implicit_tls:
            kwargs["ssl_context"] = self.ssl_context
        elif self.ssl_context is not None:
            kwargs["tls_context"] = self.ssl_context
        if self.auth:
            kwargs["authenticator"] = self._authenticate
            # aiosmtpd counts only STARTTLS as TLS; an implicit TLS connection is one too.
            kwargs["auth_require_tls"] = not (self.auth_cleartext or self.implicit_tls)
        return kwargs

    # -- callbacks from the server threads ----------------------------------------------

    def _record_auth_command(self, arg: str) -> None:
        with self._cond:
            self.auth_commands.append(arg)

    def _authenticate(self, server: SMTP, session: Session, envelope: Envelope,
                      mechanism: str, auth_data: Any) -> AuthResult:
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        if isinstance(auth_data, LoginPassword):
            login = Login(mechanism, auth_data.login.decode(errors="replace"),
                          auth_data.password.decode(errors="replace"), tls)
        else:
            login = Login(mechanism, "", "", tls)
        with self._cond:
            self.logins.append(login)
            refuse, refusal = self.refuse_logins, self.login_refusal
        if refuse:
            return AuthResult(success=False, handled=False, message=refusal)
        return AuthResult(success=True, auth_data=auth_data)

    def _count_connection(self) -> None:
        with self._cond:
            self._connections += 1

    def _count_data_command(self) -> None:
        with self._cond:
            self._data_commands += 1

    def _session_opened(self, session: _Session, peer: Any) -> None:
        self._sessions.add(session)
        if peer not in self._probe_peers:
            self._count_connection()

    def _session_closed(self, session: _Session) -> None:
        self._sessions.discard(session)

    async def _abort_sessions(self) -> None:
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.abort()
        # Let the scheduled connection_lost() callbacks close the sockets and cancel the
        # session tasks before the loop is stopped.
        for _ in range(3):
            await asyncio.sleep(0)

    def _take_mode(self) -> str:
        """Return the mode for this DATA command, consuming one ``fail_times`` credit."""
        with self._cond:
            mode = self._mode
            if mode in FAILING_MODES and self._fail_times is not None:
                if self._fail_times <= 0:
                    mode = self._mode = "accept"
                    self._fail_times = None
                else:
                    self._fail_times -= 1
                    if self._fail_times == 0:
                        # This DATA still fails; the following ones are accepted.
                        self._mode = "accept"
                        self._fail_times = None
            return mode

    def _record(self, envelope: Envelope) -> None:
        data = bytes(envelope.original_content or b"")
        mail = ReceivedMail(
            mail_from=_utf8(envelope.mail_from or ""),
            rcpt_tos=[_utf8(address) for address in envelope.rcpt_tos],
            data=data,
            message=self._parser.parsebytes(data),  # type: ignore[arg-type]
            mail_options=list(envelope.mail_options),
            helo=str(getattr(envelope, "helo", "") or ""),
        )
        with self._cond:
            self.messages.append(mail)
            self._cond.notify_all()

    async def _on_data(self, server: SMTP, envelope: Envelope) -> str:
        with self._cond:
            self._in_data += 1
            self._peak_in_data = max(self._peak_in_data, self._in_data)
        try:
            return await self._answer_data(server, envelope)
        finally:
            with self._cond:
                self._in_data -= 1

    async def _answer_data(self, server: SMTP, envelope: Envelope) -> str:
        mode = self._take_mode()
        if mode == "delay":
            await asyncio.sleep(self.delay)
        elif mode == "421":
            await server.push(_REPLIES["421"])
            await _drop(server)
            return _REPLIES["421"]
        elif mode in _REPLIES:
            return _REPLIES[mode]
        elif mode == "reply":
            return self.reply
        elif mode == "drop_data":
            await _drop(server)
            return "451 4.3.0 Connection should have been dropped"
        # accept, delay, drop_quit (and silent/down during a switch-over) accept the mail.
        self._record(envelope)
        return "250 OK"
