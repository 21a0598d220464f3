"""A private ClamAV daemon (clamd) for tests, with one test signature and a small StreamMaxLength.

ClamdServer writes its own clamd.conf and signature database in a folder of its own and
runs `/usr/sbin/clamd --foreground` on a Unix socket in that folder and a loopback TCP port.
The database holds a single body signature (an .ndb hex pattern) that matches MARKER
anywhere in a file: clamd reports it as REPORTED_SIGNATURE (clamd adds ".UNOFFICIAL" to
the names of signatures that are not ClamAV's own). No freshclam, no ClamAV database.

stop() and start() take the scanner away and bring it back on the same addresses: the TCP
port stays reserved in between (a bound, non-listening SO_REUSEADDR socket, as in
support.smtp_server), so no other socket can take it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import pytest

from contact_site.scanning.clamd import parse_address, ping
from support.processes import stop_process
from support.settings import skip_or_fail
from support.waiting import came_up

CLAMD = Path("/usr/sbin/clamd")
SIGNATURE = "Contact.Test.Sig"
REPORTED_SIGNATURE = f"{SIGNATURE}.UNOFFICIAL"
# Bytes no real file holds by chance; a file containing them is "infected".
MARKER = b"CONTACT-SITE-TEST-MARKER-6e1f0c9a-clamd-signature"
STREAM_MAX_LENGTH = "1M"
# With one signature clamd answers within a second; a loaded machine may take longer.
START_TIMEOUT = 30.0
PING_TIMEOUT = 1.0


class ClamdServer:
    """One clamd of a test's own: its addresses, MARKER, stop() and start()."""

    def __init__(self, stream_max_length: str = STREAM_MAX_LENGTH, **options: str) -> None:
        # A short folder of its own: a Unix socket path holds at most 107 bytes, and
        # pytest's tmp_path for a long test name is longer than that.
        self.folder = Path(tempfile.mkdtemp(prefix="clamd-", dir="/tmp"))
        self.folder.chmod(0o755)
        self.socket_path = self.folder / "clamd.sock"
        self.log_path = self.folder / "clamd.log"
        self.config_path = self.folder / "clamd.conf"
        self._reservation = _reserve_port()
        self.port = int(self._reservation.getsockname()[1])
        self.tcp_address = f"tcp://127.0.0.1:{self.port}"
        self.unix_address = f"unix://{self.socket_path}"
        self.marker = MARKER
        self.signature = REPORTED_SIGNATURE
        self.start_seconds: float | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._write_database()
        self._write_config({"StreamMaxLength": stream_max_length, **options})

    def _write_database(self) -> None:
        """The signature database: one .ndb body signature matching MARKER at any offset."""
        database = self.folder / "db"
        database.mkdir(mode=0o755)
        (database / "contact-test.ndb").write_text(f"{SIGNATURE}:0:*:{MARKER.hex()}\n")

    def _write_config(self, options: dict[str, str]) -> None:
        """clamd.conf: both sockets, our database, a log in the folder, in the foreground."""
        settings = {
            "Foreground": "yes",
            "LocalSocket": str(self.socket_path),
            "LocalSocketMode": "666",
            "TCPSocket": str(self.port),
            "TCPAddr": "127.0.0.1",
            "DatabaseDirectory": str(self.folder / "db"),
            "LogFile": str(self.log_path),
            "LogTime": "yes",
            **options,
        }
        # No User line: clamd keeps the identity it is started with (root here, or the
        # developer), and every file above is readable by it.
        self.config_path.write_text("".join(f"{key} {value}\n" for key, value in settings.items()))

    @property
    def running(self) -> bool:
        """Whether the clamd process is alive."""
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        """What clamd wrote to its log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        """Start clamd and wait until both sockets answer PONG."""
        assert not self.running, "clamd is already running"
        began = time.monotonic()
        with (self.folder / "clamd.out").open("ab") as out:
            self.process = subprocess.Popen(
                [str(CLAMD), "--foreground", f"--config-file={self.config_path}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        addresses = [parse_address(self.tcp_address), parse_address(self.unix_address)]
        if not came_up(self.process,
                       lambda: all(ping(address, PING_TIMEOUT) for address in addresses),
                       began + START_TIMEOUT):
            self.stop()
            output = (self.folder / "clamd.out").read_text(errors="replace")
            pytest.fail(f"clamd did not answer PING within {START_TIMEOUT}s\n"
                        f"{output}\n{self.log()}")
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop clamd by its PID (SIGTERM, then SIGKILL); the addresses stay ours."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def close(self) -> None:
        """Stop clamd, release the port and remove the folder."""
        self.stop()
        self._reservation.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> ClamdServer:
        """Start clamd."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop clamd and remove its folder."""
        self.close()


def _reserve_port() -> socket.socket:
    """A bound, non-listening SO_REUSEADDR socket on a free loopback port.

    clamd binds with SO_REUSEADDR too, so it can listen there while no other socket,
    an ephemeral client port included, can take the port while clamd is stopped.
    """
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind(("127.0.0.1", 0))
    return reservation


def clamd_server(stream_max_length: str = STREAM_MAX_LENGTH, **options: str) -> ClamdServer:
    """A ClamdServer to use in a with block; skip (fail under CI=true) without clamd."""
    if not CLAMD.exists():
        skip_or_fail(f"clamd not found at {CLAMD} (scripts/ensure-system-packages installs "
                     "clamav-daemon)")
    return ClamdServer(stream_max_length, **options)
