"""The clamd client against a real clamd (the `clamd` fixture) and loopback sockets that
misbehave: a file is clean only when clamd says so; anything else is infected or unscanned
with a reason, never an exception."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contact_site.scanning import ClamdAddress, ScanResult, parse_address, ping, scan_file
from support.clamd import ClamdServer

TIMEOUT = 5.0
# Short enough to keep the suite quick, long enough to stand well above a clean scan.
SHORT_TIMEOUT = 1.5
# Generous: a loaded machine may be slow, but never this slow for a bounded operation.
SLACK = 5.0
MIB = 1024 * 1024
BOTH = pytest.mark.parametrize("which", ["tcp", "unix"])


def address_of(clamd: ClamdServer, which: str) -> ClamdAddress:
    """The server's tcp:// or unix:// address, parsed as a setting would be."""
    return parse_address(clamd.tcp_address if which == "tcp" else clamd.unix_address)


def write(path: Path, data: bytes) -> Path:
    """A file holding `data`."""
    path.write_bytes(data)
    return path


def timed_scan(address: ClamdAddress, path: Path, timeout: float) -> tuple[ScanResult, float]:
    """scan_file's result and the seconds it took."""
    began = time.monotonic()
    result = scan_file(address, path, timeout)
    return result, time.monotonic() - began


class LoopbackServer:
    """A loopback TCP server that accepts connections and does what `serve` says with each."""

    def __init__(self, serve: str, reply: bytes = b"") -> None:
        self.serve = serve
        self.reply = reply
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = parse_address(f"tcp://127.0.0.1:{self.listener.getsockname()[1]}")
        self.connections: list[socket.socket] = []
        self.closing = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        """Take every connection, each to its own handler thread."""
        # Polled: closing the listener does not wake a thread blocked in accept().
        self.listener.settimeout(0.05)
        while not self.closing.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.connections.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        """Trickle, reply or stay silent on one connection."""
        try:
            if self.serve == "trickle":
                # A byte every 0.2 s, never the NUL that ends a reply: each read succeeds.
                while not self.closing.wait(0.2):
                    conn.sendall(b"s")
            elif self.serve == "reply":
                read_stream(conn)
                conn.sendall(self.reply)
                conn.close()
            # "silent": accepted, read from by nobody, answered never.
        except OSError:
            pass

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.closing.set()
        self.thread.join(5)
        self.listener.close()
        for conn in self.connections:
            conn.close()


def read_stream(conn: socket.socket) -> bytes:
    """Read a zINSTREAM request up to its zero-length chunk; the bytes streamed."""
    conn.settimeout(TIMEOUT)
    data = b""
    while not data.startswith(b"zINSTREAM\0") or not data.endswith(b"\0\0\0\0"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def loopback() -> Iterator[type[LoopbackServer]]:
    """Make LoopbackServers; close them after the test."""
    made: list[LoopbackServer] = []

    class Tracked(LoopbackServer):
        def __init__(self, serve: str, reply: bytes = b"") -> None:
            super().__init__(serve, reply)
            made.append(self)

    yield Tracked
    for server in made:
        server.close()


@BOTH
def test_a_clean_file_is_clean(clamd: ClamdServer, tmp_path: Path, which: str) -> None:
    """A file without any signature is reported clean, with neither signature nor reason."""
    path = write(tmp_path / "letter.txt", b"Dear team,\nplease find my CV attached.\n" * 500)
    assert scan_file(address_of(clamd, which), path, TIMEOUT) == ScanResult("clean")


@BOTH
def test_a_file_with_the_signature_is_infected(clamd: ClamdServer, tmp_path: Path,
                                               which: str) -> None:
    """A file that matches a signature is infected, named as clamd names it."""
    path = write(tmp_path / "invoice.pdf", b"%PDF-1.7\n" + b"x" * 100_000 + clamd.marker + b"\n")
    result = scan_file(address_of(clamd, which), path, TIMEOUT)
    assert result == ScanResult("infected", signature="Contact.Test.Sig.UNOFFICIAL")


@BOTH
@pytest.mark.parametrize("size", [MIB + 1, 5 * MIB], ids=["one-byte-over", "five-times-over"])
def test_a_file_over_stream_max_length_is_unscanned_never_clean(
        clamd: ClamdServer, tmp_path: Path, which: str, size: int) -> None:
    """A file over clamd's StreamMaxLength (1M here) is unscanned as too large, never clean;
    a file of exactly the limit is still scanned."""
    address = address_of(clamd, which)
    over = write(tmp_path / "over.bin", b"a" * size)
    assert scan_file(address, over, TIMEOUT) == ScanResult(
        "unscanned", reason="too large for the scanner (StreamMaxLength)")
    at_limit = write(tmp_path / "at-limit.bin", b"a" * MIB)
    assert scan_file(address, at_limit, TIMEOUT).state == "clean"


@BOTH
def test_a_stopped_scanner_is_unavailable_until_it_comes_back(
        clamd: ClamdServer, tmp_path: Path, which: str) -> None:
    """With clamd down a scan is unscanned (scanner unavailable) within the timeout and ping
    is False; once clamd is back the same file scans clean."""
    address = address_of(clamd, which)
    path = write(tmp_path / "note.txt", b"hello\n")
    clamd.stop()
    result, seconds = timed_scan(address, path, SHORT_TIMEOUT)
    assert result.state == "unscanned"
    assert result.reason is not None and result.reason.startswith("scanner unavailable: ")
    assert seconds < SHORT_TIMEOUT
    assert ping(address, SHORT_TIMEOUT) is False
    clamd.start()
    assert ping(address, SHORT_TIMEOUT) is True
    assert scan_file(address, path, TIMEOUT) == ScanResult("clean")


def test_a_scanner_that_never_answers_times_out(clamd: ClamdServer, loopback: type[LoopbackServer],
                                                tmp_path: Path) -> None:
    """A server that takes the connection and never answers gives unscanned (timed out)
    after about the timeout, while a real scan with the same timeout is far quicker."""
    path = write(tmp_path / "note.txt", b"hello\n" * 100)
    clean, clean_seconds = timed_scan(parse_address(clamd.tcp_address), path, SHORT_TIMEOUT)
    assert clean == ScanResult("clean")
    silent = loopback("silent")
    result, seconds = timed_scan(silent.address, path, SHORT_TIMEOUT)
    assert result == ScanResult("unscanned", reason="scanner timed out after 1.5 s")
    assert SHORT_TIMEOUT <= seconds < SHORT_TIMEOUT + SLACK
    assert clean_seconds < seconds / 2
    assert ping(silent.address, SHORT_TIMEOUT) is False


def test_the_timeout_bounds_the_whole_scan(loopback: type[LoopbackServer],
                                           tmp_path: Path) -> None:
    """A server that trickles a reply that never ends cannot stretch the scan: each read
    succeeds, and the scan still ends as timed out at the deadline."""
    trickle = loopback("trickle")
    result, seconds = timed_scan(trickle.address, write(tmp_path / "a.txt", b"a"), SHORT_TIMEOUT)
    assert result == ScanResult("unscanned", reason="scanner timed out after 1.5 s")
    assert SHORT_TIMEOUT <= seconds < SHORT_TIMEOUT + SLACK


@pytest.mark.parametrize(("reply", "reason"), [
    (b"stream: Can't allocate memory ERROR\0",
     "scanner error: stream: Can't allocate memory ERROR"),
    (b"UNKNOWN COMMAND\0", "scanner error: UNKNOWN COMMAND"),
    (b"\0", "scanner error: empty reply"),
    (b"stream: O", "scanner unavailable: connection closed before the reply"),
    (b"", "scanner unavailable: connection closed before the reply"),
], ids=["clamd-error", "unknown-reply", "empty", "cut-short", "closed"])
def test_a_reply_other_than_a_verdict_is_unscanned(loopback: type[LoopbackServer],
                                                   tmp_path: Path, reply: bytes,
                                                   reason: str) -> None:
    """A reply that is neither OK nor FOUND, or none at all, leaves the file unscanned with
    the reply (or its absence) as the reason."""
    server = loopback("reply", reply)
    path = write(tmp_path / "a.txt", b"some text")
    assert scan_file(server.address, path, TIMEOUT) == ScanResult("unscanned", reason=reason)


def test_the_stream_is_sent_in_length_prefixed_chunks(tmp_path: Path) -> None:
    """What goes on the wire: zINSTREAM, the file in chunks of at most 64 KiB each after its
    4-byte big-endian length, then a zero length."""
    data = bytes(range(256)) * 1000  # 256,000 bytes: three full chunks and a short one
    received: list[bytes] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = parse_address(f"tcp://127.0.0.1:{listener.getsockname()[1]}")

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                received.append(read_stream(conn))
                conn.sendall(b"stream: OK\0")

        server = threading.Thread(target=answer)
        server.start()
        result = scan_file(address, write(tmp_path / "data.bin", data), TIMEOUT)
        server.join(TIMEOUT)
    assert result == ScanResult("clean")
    wire = received[0]
    assert wire.startswith(b"zINSTREAM\0")
    rest, chunks = wire[len(b"zINSTREAM\0"):], []
    while True:
        length, rest = int.from_bytes(rest[:4], "big"), rest[4:]
        if length == 0:
            break
        chunks.append(rest[:length])
        rest = rest[length:]
    assert rest == b""
    assert [len(chunk) for chunk in chunks] == [65536, 65536, 65536, 256_000 - 3 * 65536]
    assert b"".join(chunks) == data


def test_an_unresolvable_host_is_unavailable(tmp_path: Path) -> None:
    """A host name that does not resolve is a scanner that is unavailable, not an error."""
    address = parse_address("tcp://clamd.invalid:3310")
    result = scan_file(address, write(tmp_path / "a.txt", b"a"), SHORT_TIMEOUT)
    assert result.state == "unscanned"
    assert result.reason is not None and result.reason.startswith("scanner unavailable: ")


def test_the_callers_mistakes_raise(clamd: ClamdServer, tmp_path: Path) -> None:
    """A file that does not exist, or a timeout that is not positive, raise: they are the
    caller's errors, not the scanner's."""
    address = parse_address(clamd.tcp_address)
    with pytest.raises(FileNotFoundError):
        scan_file(address, tmp_path / "missing.txt", TIMEOUT)
    with pytest.raises(ValueError, match="positive number of seconds"):
        scan_file(address, write(tmp_path / "a.txt", b"a"), 0)
    with pytest.raises(ValueError, match="positive number of seconds"):
        ping(address, -1)


@pytest.mark.parametrize(("text", "expected"), [
    ("tcp://127.0.0.1:3310", ClamdAddress("tcp", host="127.0.0.1", port=3310)),
    ("tcp://clamav.internal:3310/", ClamdAddress("tcp", host="clamav.internal", port=3310)),
    ("tcp://[::1]:3310", ClamdAddress("tcp", host="::1", port=3310)),
    ("unix:///run/clamav/clamd.ctl", ClamdAddress("unix", path="/run/clamav/clamd.ctl")),
], ids=["ipv4", "name", "ipv6", "unix"])
def test_addresses_are_parsed(text: str, expected: ClamdAddress) -> None:
    """tcp://host:port and unix:///path are read into their parts, and written back."""
    assert parse_address(text) == expected
    assert parse_address(str(expected)) == expected


@pytest.mark.parametrize(("text", "words"), [
    ("", "must be tcp://host:port or unix:///path"),
    ("127.0.0.1:3310", "must be tcp://host:port or unix:///path"),
    ("http://127.0.0.1:3310", "must be tcp://host:port or unix:///path"),
    (" tcp://127.0.0.1:3310", "must be tcp://host:port or unix:///path"),
    ("tcp://127.0.0.1", "has no port"),
    ("tcp://:3310", "has no host"),
    ("tcp://127.0.0.1:0", "not 1-65535"),
    ("tcp://127.0.0.1:65536", "not 1-65535"),
    ("tcp://127.0.0.1:clam", "not 1-65535"),
    ("tcp://127.0.0.1:3310/scan", "has a path"),
    ("tcp://user@127.0.0.1:3310", "user name"),
    ("tcp://127.0.0.1:3310?x=1", "query or fragment"),
    ("tcp://::1:3310", "IPv6 host in brackets"),
    ("tcp://[::1:3310", "malformed [IPv6] host"),
    ("unix://run/clamav/clamd.ctl", "needs an absolute path"),
    ("unix://", "needs an absolute path"),
    ("unix:///" + "s" * 120, "at most 107 bytes"),
], ids=["empty", "no-scheme", "http", "space", "no-port", "no-host", "port-0", "port-too-big",
        "port-name", "tcp-path", "user", "query", "bare-ipv6", "open-bracket",
        "unix-two-slashes", "unix-no-path", "unix-too-long"])
def test_address_mistakes_are_named(text: str, words: str) -> None:
    """A malformed address raises ValueError naming what is wrong with it."""
    with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("?", r"\?")):
        parse_address(text)
