"""A private Postfix, with Dovecot for SASL, playing the mail provider the product relays through.

PostfixServer builds a folder of its own under /tmp holding everything the instance uses:
its main.cf and master.cf (etc/), its queue and data directories, a certificate issued by a
local test CA (tls/), the mail log (maillog, written by postlogd) and a private Dovecot
(dovecot/) that answers Postfix's SASL questions from a passwd-file with one user. Postfix
is started with `postfix -c FOLDER/etc start`; the system's instance is never touched.

The provider listens on 127.0.0.1 only, offers STARTTLS and, after it only, AUTH PLAIN/LOGIN,
relays for authenticated clients only (and from 127.0.0.1 without AUTH when asked), applies
strict HELO and envelope rules, and hands every mail it accepts to a sink: a
support.smtp_server.SMTPTestServer, whose `messages` show what arrived.

The SMTP port is reserved for the object's lifetime (a bound, non-listening SO_REUSEADDR
socket, as in support.clamd), so stop() and start() come back on the same port.
"""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from support.settings import skip_or_fail
from support.smtp_server import SMTPTestServer
from support.tls_certs import LocalPKI

__all__ = ["DOVECOT", "HOSTNAME", "POSTFIX", "PostfixServer", "postfix_server"]

POSTFIX = Path("/usr/sbin/postfix")
POSTCONF = Path("/usr/sbin/postconf")
POSTQUEUE = Path("/usr/sbin/postqueue")
DOVECOT = Path("/usr/sbin/dovecot")
# The provider's name: in its banner, in the certificate (with 127.0.0.1) and in Received:.
HOSTNAME = "mail.example.test"
USERNAME = "contact-form@example.test"
PASSWORD = "test-relay-password"
MESSAGE_SIZE_LIMIT = 10_240_000  # Postfix's own default
# Postfix starts in well under a second; a loaded machine may need longer.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_SECONDS = 0.02

# The main.cf settings every instance shares: a relay-only provider on IPv4 loopback that
# delivers nothing itself, asks no DNS, and holds clients to the rules strictly.
STRICT_PROVIDER = {
    "compatibility_level": "3.6",
    "myhostname": HOSTNAME,
    "mydomain": "example.test",
    "myorigin": "$myhostname",
    "mydestination": "",
    "local_recipient_maps": "",
    "alias_maps": "",
    "alias_database": "",
    "local_transport": "error:local delivery is disabled",
    "inet_protocols": "ipv4",
    "mynetworks": "127.0.0.1/32",
    "smtp_dns_support_level": "disabled",
    "smtpd_peername_lookup": "no",
    "smtp_tls_security_level": "none",  # the sink offers no STARTTLS
    "smtpd_banner": "$myhostname ESMTP",
    "smtpd_tls_security_level": "may",
    "smtpd_tls_auth_only": "yes",
    "smtpd_tls_loglevel": "1",
    "smtpd_sasl_auth_enable": "yes",
    "smtpd_sasl_type": "dovecot",
    "smtpd_sasl_security_options": "noanonymous",
    "smtpd_sasl_tls_security_options": "noanonymous",
    "smtpd_helo_required": "yes",
    "smtpd_sender_restrictions": "reject_non_fqdn_sender",
    "smtpd_recipient_restrictions": "reject_non_fqdn_recipient",
    "smtpd_reject_unlisted_sender": "yes",
    "strict_rfc821_envelopes": "yes",
    "disable_vrfy_command": "yes",
    # Postfix's default sleeps a second after each refused command: too slow for tests.
    "smtpd_error_sleep_time": "0",
    # A sink that was down is tried again within seconds, not minutes.
    "queue_run_delay": "1s",
    "minimal_backoff_time": "1s",
    "maximal_backoff_time": "4s",
    "smtp_connect_timeout": "5s",
}

# master.cf: the services a relay-only provider needs, none chrooted (the queue lives in our
# folder), pickup (postqueue -f asks it to flush) and postlog, without which maillog_file
# stays empty.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
tlsmgr    unix  - - n 1000? 1 tlsmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

DOVECOT_CONF = """\
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols =
ssl = no
# Postfix already refuses AUTH before STARTTLS; Dovecot only checks the password.
disable_plaintext_auth = no
auth_mechanisms = plain login
# Dovecot waits 2 s before each refusal; tests of a wrong password need no such wait.
auth_failure_delay = 0
default_login_user = dovenull
default_internal_user = dovecot
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {folder}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home=/nonexistent
}}
# Nor does each further refusal from 127.0.0.1 wait longer (anvil's auth penalty, up to
# 15 s): an auth process that cannot reach this socket applies none.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {socket} {{
    mode = 0660
    user = postfix
    group = postfix
  }}
}}
"""


class PostfixServer:
    """One private Postfix relaying to a sink, with Dovecot SASL: start(), stop(), its log."""

    def __init__(self, sink: SMTPTestServer | None = None, *, username: str = USERNAME,
                 password: str = PASSWORD, message_size_limit: int = MESSAGE_SIZE_LIMIT,
                 smtputf8_enable: bool = True, relay_from_loopback: bool = False,
                 refuse_helo_literals: bool = True,
                 main_cf: dict[str, str] | None = None) -> None:
        """Write the configuration (nothing runs before start()); skip without the programs."""
        _require_programs()
        if any(char in username + password for char in ":\n") or not username or not password:
            raise ValueError("username and password must be non-empty, without ':' or newline")
        self.host = "127.0.0.1"
        self.username, self.password = username, password
        self.message_size_limit = message_size_limit
        self.smtputf8_enable = smtputf8_enable
        self.relay_from_loopback = relay_from_loopback
        self.refuse_helo_literals = refuse_helo_literals
        self._own_sink = sink is None
        self.sink = SMTPTestServer() if sink is None else sink
        # Short and world-traversable: Postfix's processes run as the postfix user, and the
        # Unix socket paths below must stay under 108 bytes.
        self.folder = Path(tempfile.mkdtemp(prefix="postfix-", dir="/tmp"))
        self.folder.chmod(0o755)
        self.config_directory = self.folder / "etc"
        self.queue_directory = self.folder / "queue"
        self.log_path = self.folder / "maillog"
        self.dovecot_folder = self.folder / "dovecot"
        self.sasl_socket = self.folder / "sasl-auth"
        self._reservation = _reserve_port()
        self.port = int(self._reservation.getsockname()[1])
        self.ca_file = self._write_certificate()
        self._dovecot: subprocess.Popen[bytes] | None = None
        self._master_pid: int | None = None
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._write_dovecot()
        self._write_postfix(main_cf or {})

    # -- configuration -------------------------------------------------------------------

    def _write_certificate(self) -> Path:
        """A certificate for HOSTNAME and 127.0.0.1 from a fresh test CA; the CA's PEM file."""
        pki = LocalPKI.create(self.folder / "tls")
        leaf = pki.ca.issue_cert(HOSTNAME, self.host)
        (self.folder / "tls" / "server.key").write_bytes(leaf.private_key_pem.bytes())
        (self.folder / "tls" / "server.key").chmod(0o600)
        chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        (self.folder / "tls" / "server.crt").write_bytes(chain)
        return pki.ca_file

    def _write_dovecot(self) -> None:
        """dovecot.conf with only the auth service, and the passwd-file of the one user."""
        self.dovecot_folder.mkdir(mode=0o755)
        (self.dovecot_folder / "passwd").write_text(
            f"{self.username}:{{PLAIN}}{self.password}::::::\n")
        # Dovecot's auth process reads it as the dovecot user, and nobody else needs to.
        (self.dovecot_folder / "passwd").chmod(0o640)
        shutil.chown(self.dovecot_folder / "passwd", group="dovecot")
        (self.dovecot_folder / "dovecot.conf").write_text(
            DOVECOT_CONF.format(folder=self.dovecot_folder, socket=self.sasl_socket))

    def main_cf(self) -> dict[str, str]:
        """The main.cf settings before the caller's extra ones."""
        relay = "permit_sasl_authenticated, permit_mynetworks, reject" \
            if self.relay_from_loopback else "permit_sasl_authenticated, reject"
        helo = "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname"
        if self.refuse_helo_literals:
            # Postfix takes [192.0.2.1] as fully qualified; some providers refuse it.
            helo += ", check_helo_access regexp:{{/^\\[/ REJECT address literals refused}}"
        tls = self.folder / "tls"
        return STRICT_PROVIDER | _newer_protections() | {
            "queue_directory": str(self.queue_directory),
            "data_directory": str(self.folder / "data"),
            "maillog_file": str(self.log_path),
            # Postfix refuses log files outside these prefixes (default /var, /dev/stdout).
            "maillog_file_prefixes": str(self.folder),
            "inet_interfaces": self.host,
            "relayhost": f"[{self.sink.host}]:{self.sink.port}",
            "smtpd_tls_chain_files": f"{tls / 'server.key'}, {tls / 'server.crt'}",
            "smtpd_sasl_path": str(self.sasl_socket),
            "smtpd_relay_restrictions": relay,
            "smtpd_helo_restrictions": helo,
            "message_size_limit": str(self.message_size_limit),
            "smtputf8_enable": "yes" if self.smtputf8_enable else "no",
        }

    def _write_postfix(self, extra: dict[str, str]) -> None:
        """main.cf (ours, then the caller's settings) and master.cf in etc/."""
        self.config_directory.mkdir(mode=0o755)
        # Root's, as Postfix wants it; `postfix start` makes the subfolders it needs inside.
        self.queue_directory.mkdir(mode=0o755)
        settings = self.main_cf() | extra
        (self.config_directory / "main.cf").write_text(
            "".join(f"{name} = {value}\n" for name, value in settings.items()))
        (self.config_directory / "master.cf").write_text(
            MASTER_CF.format(listen=f"{self.host}:{self.port}"))
        # Postfix rereads a main.cf changed in the last two seconds until it stops changing
        # (300 ms a time, up to 2 s per command): files dated a minute back are read at once.
        past = time.time() - 60
        for name in ("main.cf", "master.cf"):
            os.utime(self.config_directory / name, (past, past))

    # -- what the product and the tests read ---------------------------------------------

    def mail_settings(self) -> dict[str, Any]:
        """The product's MAIL_* settings for sending through this provider."""
        return {"MAIL_SERVER": self.host, "MAIL_PORT": self.port, "MAIL_USE_TLS": True,
                "MAIL_USE_SSL": False, "MAIL_USERNAME": self.username,
                "MAIL_PASSWORD": self.password, "MAIL_TLS_CA_FILE": str(self.ca_file)}

    def log(self) -> str:
        """What Postfix wrote to its mail log so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_lines(self) -> list[str]:
        """The mail log, one entry a line."""
        return self.log().splitlines()

    def dovecot_log(self) -> str:
        """What Dovecot wrote to its log so far."""
        path = self.dovecot_folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 10.0) -> str:
        """The first log line containing `text`, waiting for it up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if text in line:
                    return line
            if time.monotonic() > deadline:
                pytest.fail(f"no {text!r} in the Postfix log after {timeout}s:\n{self.log()}")
            time.sleep(POLL_SECONDS * 5)

    def flush(self) -> None:
        """Try every deferred mail again now (postqueue -f)."""
        subprocess.run([str(POSTQUEUE), "-c", str(self.config_directory), "-f"],
                       check=True, capture_output=True, timeout=STOP_TIMEOUT)

    @property
    def master_pid(self) -> int | None:
        """The Postfix master's PID (its process group holds every Postfix process)."""
        return self._master_pid

    @property
    def dovecot_pid(self) -> int | None:
        """Dovecot's master PID (its process group holds every Dovecot process)."""
        return self._dovecot.pid if self._dovecot is not None else None

    @property
    def running(self) -> bool:
        """Whether our Postfix master process is alive."""
        return self._master_pid is not None and _alive(self._master_pid)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the sink (if ours), Dovecot and Postfix; return once the 220 banner comes."""
        assert not self.running, "this Postfix is already running"
        began = time.monotonic()
        if self._own_sink:
            self.sink.start()
        try:
            self._start_dovecot()
            self._start_postfix()
            self._wait(self._banner, "Postfix to greet with 220")
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def _start_dovecot(self) -> None:
        """Dovecot in the foreground (its PID is ours), ready once its auth socket answers."""
        with (self.dovecot_folder / "dovecot.out").open("ab") as out:
            # A session of its own: its children share its process group, checked at stop.
            self._dovecot = subprocess.Popen(
                [str(DOVECOT), "-F", "-c", str(self.dovecot_folder / "dovecot.conf")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self._wait(self._auth_answers, "Dovecot's auth socket")

    def _start_postfix(self) -> None:
        """`postfix -c etc start`: it returns once the master has initialised."""
        result = subprocess.run(
            [str(POSTFIX), "-c", str(self.config_directory), "start"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=START_TIMEOUT)
        if result.returncode != 0:
            pytest.fail(f"postfix start failed ({result.returncode}):\n"
                        f"{result.stdout.decode(errors='replace')}"
                        f"{result.stderr.decode(errors='replace')}\n{self.log()}")
        self._master_pid = int((self.queue_directory / "pid" / "master.pid").read_text())

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        """Poll `ready` until it holds; fail with both logs after START_TIMEOUT."""
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            dovecot_died = self._dovecot is not None and self._dovecot.poll() is not None
            if dovecot_died or time.monotonic() > deadline:
                out = self.dovecot_folder / "dovecot.out"
                pytest.fail(f"timed out waiting for {what}\n{self.log()}\n{self.dovecot_log()}"
                            f"\n{out.read_text(errors='replace') if out.exists() else ''}")
            time.sleep(POLL_SECONDS)

    def _auth_answers(self) -> bool:
        """Whether Dovecot's auth socket accepts a connection and greets (VERSION line)."""
        try:
            with socket.socket(socket.AF_UNIX) as probe:
                probe.settimeout(1.0)
                probe.connect(str(self.sasl_socket))
                return probe.recv(64).startswith(b"VERSION")
        except OSError:
            return False

    def _banner(self) -> bool:
        """Whether the SMTP port answers with a 220 greeting."""
        try:
            with socket.create_connection((self.host, self.port), timeout=2.0) as probe:
                greeting = probe.recv(512)
                probe.sendall(b"QUIT\r\n")
                return greeting.startswith(b"220 ")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop Postfix and Dovecot and wait until none of their processes runs."""
        # The port stays reserved and the queue keeps what it holds, for a later start().
        began = time.monotonic()
        leaders = []
        if self._master_pid is not None:
            _terminate(self._master_pid)
            leaders.append(self._master_pid)
        if self._dovecot is not None:
            # The whole group, log process included: signalled alone, Dovecot's master waits
            # a second for its log process. The group is the session Dovecot was started in.
            _terminate(-self._dovecot.pid)
            leaders.append(self._dovecot.pid)
        for leader in leaders:
            _wait_group_gone(leader, self._dovecot)
        if self._dovecot is not None:
            self._dovecot.wait(STOP_TIMEOUT)
        self._master_pid, self._dovecot = None, None
        if self._own_sink:
            self.sink.stop()
        self.stop_seconds = time.monotonic() - began

    def close(self) -> None:
        """Stop, release the port (and our sink's) and remove the folder."""
        self.stop()
        self._reservation.close()
        if self._own_sink:
            self.sink.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostfixServer:
        """Start the provider."""
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop everything and remove the folder."""
        self.close()

    def __repr__(self) -> str:
        """Where it listens and where it relays."""
        return f"<PostfixServer {self.host}:{self.port} -> {self.sink.host}:{self.sink.port}>"

    # -- checks --------------------------------------------------------------------------

    def ehlo(self, name: str = "client.example.test") -> tuple[int, str]:
        """The provider's answer to EHLO `name` before STARTTLS (code, text)."""
        with smtplib.SMTP(self.host, self.port, timeout=5) as client:
            code, text = client.ehlo(name)
            return code, text.decode(errors="replace")


def _require_programs() -> None:
    """Skip (fail under CI=true) without Postfix, Dovecot or the root that starts them."""
    for program in (POSTFIX, DOVECOT):
        if not program.exists():
            skip_or_fail(f"{program} not found (scripts/ensure-system-packages installs "
                         "postfix and dovecot-core)")
    if os.geteuid() != 0:
        skip_or_fail("a private Postfix is started by root only (postfix start)")


def postfix_server(sink: SMTPTestServer | None = None, **options: Any) -> PostfixServer:
    """A PostfixServer to use in a with block; skip (fail under CI=true) without Postfix."""
    return PostfixServer(sink, **options)


@cache
def _newer_protections() -> dict[str, str]:
    """Protections only recent Postfix releases know: turned on where postconf lists them."""
    known = subprocess.run([str(POSTCONF), "-c", "/", "-d", "-H"], capture_output=True,
                           text=True, timeout=STOP_TIMEOUT)
    names = set(known.stdout.split())
    settings = {}
    if "smtpd_forbid_bare_newline" in names:
        # A bare LF ends a line for some servers and not others (SMTP smuggling). "yes" only
        # normalises it since 3.7.10, the release that added "reject" and its reply code.
        reject = "smtpd_forbid_bare_newline_reject_code" in names
        settings["smtpd_forbid_bare_newline"] = "reject" if reject else "yes"
        # The default exempts $mynetworks, which here is the client's own address.
        settings["smtpd_forbid_bare_newline_exclusions"] = ""
    if "smtpd_forbid_unauth_pipelining" in names:
        settings["smtpd_forbid_unauth_pipelining"] = "yes"
    return settings


def _reserve_port() -> socket.socket:
    """A bound, non-listening SO_REUSEADDR socket on a free loopback port."""
    # Postfix binds with SO_REUSEADDR too, so it can listen there, while no other socket (an
    # ephemeral client port included) can take the port while Postfix is stopped.
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind(("127.0.0.1", 0))
    return reservation


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists and is not a zombie."""
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name: state, ppid, pgrp, ..."""
    return (Path("/proc") / str(pid) / "stat").read_text().rpartition(")")[2].split()


def group_members(pgid: int) -> set[int]:
    """The live processes in process group `pgid` (a master and the children it started)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = _stat_fields(int(entry.name))
            except OSError:
                continue  # it ended meanwhile
            if fields[0] != "Z" and int(fields[2]) == pgid:
                found.add(int(entry.name))
    return found


def _terminate(pid: int) -> None:
    """SIGTERM a master we started (or, given -PGID, its process group)."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def _wait_group_gone(leader: int, child: subprocess.Popen[bytes] | None) -> None:
    """Wait for every process of the master's group to end; SIGKILL the group if it lingers."""
    deadline = time.monotonic() + STOP_TIMEOUT
    while group_members(leader) and time.monotonic() < deadline:
        if child is not None:
            child.poll()  # reaps our direct child, which would otherwise linger as a zombie
        time.sleep(POLL_SECONDS)
    if group_members(leader):
        os.killpg(leader, signal.SIGKILL)
