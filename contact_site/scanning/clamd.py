"""A client for ClamAV's daemon (clamd): is a file clean, infected, or left unscanned.

The protocol is written here by hand rather than taken from a client library: scanning
needs two commands (zINSTREAM and zPING), and the libraries add nothing we can use.
python-clamd (PyPI `clamd`) has had no release since 2014. clamav-client is maintained,
but its INSTREAM connects before it sets its timeout (a host that drops packets hangs
the caller), writes with send() without looking at how much went out, has no deadline
for a whole scan, and lets a BrokenPipeError out instead of its BufferTooLongError when
clamd closes the socket mid-stream over StreamMaxLength (which it does for any stream
more than a socket buffer over the limit).

Every network problem becomes a ScanResult whose state is "unscanned", with a reason an
operator can read; nothing but a programming error (or a file the caller cannot read)
raises. A file is "clean" only when clamd said so.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal
from urllib.parse import urlsplit

__all__ = ["ClamdAddress", "ScanResult", "parse_address", "ping", "scan_file"]

ScanState = Literal["clean", "infected", "unscanned"]

# clamd reads a stream in chunks of any size up to StreamMaxLength; 64 KiB keeps the
# number of writes low without holding much of the file in memory.
CHUNK_SIZE = 64 * 1024
# A reply is one short line; more than this is not clamd talking.
MAX_REPLY = 4096
# The reply clamd sends (and then closes the connection) once a stream passes its
# StreamMaxLength: the only way a client learns that limit.
TOO_LARGE_REPLY = "INSTREAM size limit exceeded. ERROR"
TOO_LARGE_REASON = "too large for the scanner (StreamMaxLength)"
# Linux's sun_path holds 108 bytes, the last one the terminating NUL.
UNIX_PATH_MAX = 107
ADDRESS_FORMS = "tcp://host:port or unix:///path/to/clamd.sock"


@dataclass(frozen=True)
class ClamdAddress:
    """Where clamd listens: a TCP host and port, or the path of a Unix socket."""

    scheme: Literal["tcp", "unix"]
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        """The address as it is written in the settings."""
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"


@dataclass(frozen=True)
class ScanResult:
    """What the scanner said of one file: its state, the signature found, or why not scanned."""

    state: ScanState
    signature: str | None = None
    reason: str | None = None

    @property
    def scanner_away(self) -> bool:
        """Unscanned because the scanner could not be asked (down, slow, confused): trying
        again later may succeed, unlike a file too large for it."""
        return self.state == "unscanned" and self.reason != TOO_LARGE_REASON

    @classmethod
    def unscanned(cls, reason: str) -> ScanResult:
        """A file the scanner did not vouch for, and why."""
        return cls("unscanned", reason=reason)


class _ScannerTrouble(Exception):
    """The scan cannot go on; the message is the reason given for the unscanned file."""


class _ScannerTimedOut(_ScannerTrouble):
    """The deadline passed: no other address of the host is worth a try."""


def parse_address(text: str) -> ClamdAddress:
    """The clamd address of a setting: tcp://host:port or unix:///absolute/path."""
    if text != text.strip() or not text:
        raise ValueError(f"clamd address must be {ADDRESS_FORMS}, not {text!r}")
    try:
        parts = urlsplit(text)
    except ValueError as error:  # urlsplit's own words ("Invalid IPv6 URL") name no fix
        raise ValueError(f"clamd address {text!r} has a malformed [IPv6] host; "
                         "write tcp://[::1]:3310") from error
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"clamd address {text!r} has a query or fragment; "
                         f"it must be {ADDRESS_FORMS}")
    if parts.scheme == "tcp":
        return _tcp_address(text, parts.netloc, parts.path)
    if parts.scheme == "unix":
        return _unix_address(text, parts.netloc, parts.path)
    raise ValueError(f"clamd address must be {ADDRESS_FORMS}, not {text!r}")


def _tcp_address(text: str, netloc: str, path: str) -> ClamdAddress:
    """tcp://host:port, checked part by part so that each mistake is named."""
    if path not in ("", "/"):
        raise ValueError(f"clamd address {text!r} has a path; a TCP address is tcp://host:port")
    if "@" in netloc:
        raise ValueError(f"clamd address {text!r} has a user name; clamd takes none")
    host, port_text = _split_host_port(text, netloc)
    if not host:
        raise ValueError(f"clamd address {text!r} has no host; write tcp://host:port")
    if not port_text:
        raise ValueError(f"clamd address {text!r} has no port; write tcp://{host}:3310")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"clamd address {text!r} has a port that is not 1-65535: "
                         f"{port_text!r}")
    return ClamdAddress("tcp", host=host, port=int(port_text))


def _split_host_port(text: str, netloc: str) -> tuple[str, str]:
    """'host:port' or '[v6 address]:port' into host and port text ('' when missing)."""
    if netloc.startswith("["):
        host, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError(f"clamd address {text!r} has a malformed [IPv6] host")
        return host, rest[1:]
    host, _, port = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
    if ":" in host:
        raise ValueError(f"clamd address {text!r}: write an IPv6 host in brackets, "
                         "tcp://[::1]:3310")
    return host, port


def _unix_address(text: str, netloc: str, path: str) -> ClamdAddress:
    """unix:///path: three slashes, an absolute path that fits in a socket address."""
    if netloc or not path.startswith("/"):
        raise ValueError(f"clamd address {text!r} needs an absolute path after unix:// "
                         "(three slashes: unix:///run/clamav/clamd.ctl)")
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise ValueError(f"clamd address {text!r}: a Unix socket path holds at most "
                         f"{UNIX_PATH_MAX} bytes")
    return ClamdAddress("unix", path=path)


def scan_file(address: ClamdAddress, path: str | os.PathLike[str],
              timeout: float) -> ScanResult:
    """Stream the file to clamd (zINSTREAM) and say what it found, all within `timeout` s."""
    _check_timeout(timeout)
    # Opened before connecting: a file the caller cannot read is the caller's error, and
    # raises, rather than being reported as a scanner that is down.
    with Path(path).open("rb") as stream:
        deadline = time.monotonic() + timeout
        try:
            with _connect(address, timeout, deadline) as conn:
                reply = _stream(conn, stream, timeout, deadline)
        except _ScannerTrouble as trouble:
            return ScanResult.unscanned(str(trouble))
    return _result_of(reply)


def ping(address: ClamdAddress, timeout: float) -> bool:
    """Whether clamd answers PONG to PING within `timeout` seconds."""
    _check_timeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        with _connect(address, timeout, deadline) as conn:
            _send(conn, b"zPING\0", timeout, deadline)
            return _read_reply(conn, timeout, deadline) == "PONG"
    except _ScannerTrouble:
        return False


def _check_timeout(timeout: float) -> None:
    """A scan with no time limit could hold a worker forever: refuse it."""
    if not timeout > 0:
        raise ValueError(f"the clamd timeout must be a positive number of seconds: {timeout!r}")


def _connect(address: ClamdAddress, timeout: float, deadline: float) -> socket.socket:
    """A socket connected to clamd, or _ScannerTrouble."""
    if address.scheme == "unix":
        return _connect_to(socket.AF_UNIX, 0, address.path, timeout, deadline)
    try:
        # The lookup is not bounded by the timeout (the resolver has its own); clamd is
        # addressed by IP or by a name in /etc/hosts in practice.
        candidates = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise _ScannerTrouble(f"scanner unavailable: {_short(error)}") from error
    # Every address of the name in turn, as socket.create_connection does: "localhost"
    # may give ::1 first while clamd listens on 127.0.0.1 only.
    trouble = _ScannerTrouble("scanner unavailable: no address")
    for family, _, proto, _, target in candidates:
        try:
            return _connect_to(family, proto, target, timeout, deadline)
        except _ScannerTimedOut:
            raise
        except _ScannerTrouble as error:
            trouble = error
    raise trouble


def _connect_to(family: int, proto: int, target: str | tuple[Any, ...], timeout: float,
                deadline: float) -> socket.socket:
    """One connection attempt within the time left."""
    try:
        conn = socket.socket(family, socket.SOCK_STREAM, proto)
    except OSError as error:
        raise _trouble(error, timeout) from error
    try:
        _arm(conn, deadline)
        conn.connect(target)
    except OSError as error:
        conn.close()
        raise _trouble(error, timeout) from error
    except BaseException:
        conn.close()
        raise
    return conn


def _stream(conn: socket.socket, stream: BinaryIO, timeout: float, deadline: float) -> str:
    """Send zINSTREAM and the file in length-prefixed chunks; clamd's reply."""
    _send(conn, b"zINSTREAM\0", timeout, deadline)
    try:
        while chunk := stream.read(CHUNK_SIZE):
            _send(conn, struct.pack(">I", len(chunk)) + chunk, timeout, deadline)
        _send(conn, struct.pack(">I", 0), timeout, deadline)
    except _ScannerTrouble as trouble:
        # clamd answers a stream over StreamMaxLength and closes the connection while
        # we are still writing: the reply is waiting to be read behind the broken pipe.
        if not isinstance(trouble.__cause__, (BrokenPipeError, ConnectionResetError)):
            raise
        try:
            return _read_reply(conn, timeout, deadline)
        except _ScannerTrouble:
            raise trouble from trouble.__cause__
    return _read_reply(conn, timeout, deadline)


def _send(conn: socket.socket, data: bytes, timeout: float, deadline: float) -> None:
    """sendall within the time left, or _ScannerTrouble."""
    try:
        _arm(conn, deadline)
        conn.sendall(data)
    except OSError as error:
        raise _trouble(error, timeout) from error


def _read_reply(conn: socket.socket, timeout: float, deadline: float) -> str:
    """clamd's NUL-terminated reply to a z-command, without the NUL."""
    reply = b""
    while not reply.endswith(b"\0"):
        try:
            _arm(conn, deadline)
            data = conn.recv(MAX_REPLY)
        except OSError as error:
            raise _trouble(error, timeout) from error
        if not data:
            # A reply cut short is not a verdict: say so rather than guess from half of it.
            raise _ScannerTrouble("scanner unavailable: connection closed before the reply")
        reply += data
        if len(reply) > MAX_REPLY:
            raise _ScannerTrouble(f"scanner error: {_printable(reply)}")
    return reply[:-1].decode("utf-8", "replace").strip()


def _arm(conn: socket.socket, deadline: float) -> None:
    """Give the next socket operation the time left before the deadline."""
    # The deadline is `timeout` seconds after the scan began, so it bounds each operation
    # and the whole scan at once: a server that trickles its reply cannot stretch it.
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    conn.settimeout(left)


def _trouble(error: OSError, timeout: float) -> _ScannerTrouble:
    """The unscanned reason for a socket error."""
    if isinstance(error, TimeoutError) or error.errno == errno.ETIMEDOUT:
        return _ScannerTimedOut(f"scanner timed out after {timeout:g} s")
    return _ScannerTrouble(f"scanner unavailable: {_short(error)}")


def _short(error: BaseException) -> str:
    """An error in a few words: its strerror when it has one."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _printable(reply: bytes | str) -> str:
    """A reply fit for a log line: one line, bounded."""
    text = reply if isinstance(reply, str) else reply.decode("utf-8", "replace")
    text = "".join(c if c.isprintable() else " " for c in text).strip()
    return text[:200] + ("…" if len(text) > 200 else "")


def _result_of(reply: str) -> ScanResult:
    """The ScanResult of clamd's reply to zINSTREAM."""
    if reply == TOO_LARGE_REPLY:
        return ScanResult.unscanned(TOO_LARGE_REASON)
    if reply == "stream: OK":
        return ScanResult("clean")
    if reply.startswith("stream: ") and reply.endswith(" FOUND"):
        signature = reply[len("stream: "):-len(" FOUND")].strip()
        if signature:
            return ScanResult("infected", signature=signature)
    return ScanResult.unscanned(f"scanner error: {_printable(reply) or 'empty reply'}")
