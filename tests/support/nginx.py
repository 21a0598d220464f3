"""A private nginx running deploy/nginx/contact-site.conf in front of a test's gunicorn.

NginxServer runs Debian's nginx as an instance of its own: `nginx -p FOLDER -c FILE` with a
main configuration written here (its own temporary folders, logs and PID file) that
includes the site text it is given; the system's nginx and its files are never touched.
site_server() renders the deployment's site for a test: its listen ports become reserved
loopback ports, its certificate one issued by a local test CA for 127.0.0.1, its upstream
the test's gunicorn and its static folder the project's static/.

The ports stay reserved for the object's lifetime (bound, non-listening SO_REUSEADDR
sockets, as in support.clamd): nginx binds with SO_REUSEADDR too.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

import pytest

from support.processes import PROJECT_ROOT, stop_process
from support.settings import skip_or_fail
from support.tls_certs import LocalPKI
from support.waiting import came_up

__all__ = ["NGINX", "SITE_CONF", "NginxServer", "SiteServer", "render_site", "site_server"]

NGINX = Path("/usr/sbin/nginx")
MIME_TYPES = Path("/etc/nginx/mime.types")
SITE_CONF = PROJECT_ROOT / "deploy" / "nginx" / "contact-site.conf"
START_TIMEOUT = 15.0
TEMP_FOLDERS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

# The main configuration nginx.conf would give a site in sites-enabled/: the http block the
# site is included in, with every path inside the instance's folder.
MAIN_CONF = """\
{user}worker_processes 1;
events {{ worker_connections 256; }}
http {{
    include {mime_types};
    default_type application/octet-stream;
    sendfile on;
    access_log {folder}/logs/access.log;
{temp_paths}
    include {folder}/conf/site.conf;
}}
"""


def _reserve_port() -> socket.socket:
    """A bound, non-listening SO_REUSEADDR socket on a free loopback port."""
    reservation = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind(("127.0.0.1", 0))
    return reservation


def _user_line() -> str:
    """The `user` directive: as root, workers run as the test's own user (nginx's default,
    nobody, could not enter the test's private temporary folders); otherwise none."""
    if os.geteuid() != 0:
        return ""
    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


def require_nginx() -> None:
    """Skip (fail under CI=true) when Debian's nginx is not installed."""
    if not NGINX.exists() or not MIME_TYPES.exists():
        skip_or_fail(f"nginx not found at {NGINX} (scripts/ensure-system-packages installs it)")


class NginxServer:
    """One private nginx serving `config_text` (the content of an http block's include)."""

    def __init__(self, config_text: str, folder: Path,
                 reservations: list[socket.socket]) -> None:
        """Write the configuration into `folder` (nothing runs before start())."""
        require_nginx()
        self.folder = folder
        self._reservations = reservations
        self.ports = [int(held.getsockname()[1]) for held in reservations]
        self.process: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        for name in ("conf", "logs", "temp"):
            (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / "conf" / "site.conf").write_text(config_text)
        temp_paths = "".join(f"    {name}_temp_path {folder}/temp/{name};\n"
                             for name in TEMP_FOLDERS)
        self.conf_path = folder / "conf" / "nginx.conf"
        self.conf_path.write_text(MAIN_CONF.format(
            user=_user_line(), mime_types=MIME_TYPES, folder=folder, temp_paths=temp_paths))

    @property
    def error_log_path(self) -> Path:
        """The log of the instance's startup and of every server without one of its own."""
        return self.folder / "logs" / "error.log"

    def log(self, name: str) -> str:
        """The text of logs/`name` so far ('' before it exists)."""
        path = self.folder / "logs" / name
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def running(self) -> bool:
        """Whether the nginx master process is alive."""
        return self.process is not None and self.process.poll() is None

    def check(self) -> None:
        """`nginx -t`: fail with nginx's words when the configuration is not valid."""
        result = subprocess.run(self._command("-t"), capture_output=True, timeout=30,
                                stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            pytest.fail(f"nginx -t refused the configuration:\n"
                        f"{result.stderr.decode(errors='replace')}")

    def _command(self, *extra: str) -> list[str]:
        """nginx with the instance's prefix, configuration, PID file and error log."""
        globals_ = f"daemon off; pid {self.folder}/nginx.pid; error_log {self.error_log_path};"
        return [str(NGINX), "-p", f"{self.folder}/", "-c", str(self.conf_path),
                "-e", str(self.error_log_path), "-g", globals_, *extra]

    def start(self) -> None:
        """Start nginx in the foreground (its PID is ours) and wait until every port accepts."""
        assert not self.running, "this nginx is already running"
        self.check()
        began = time.monotonic()
        with (self.folder / "logs" / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(self._command(), stdin=subprocess.DEVNULL,
                                            stdout=out, stderr=subprocess.STDOUT)
        if not came_up(self.process, lambda: all(_accepts(port) for port in self.ports),
                       began + START_TIMEOUT, step=0.02):
            self.stop()
            pytest.fail(f"nginx did not listen within {START_TIMEOUT}s\n"
                        f"{self.log('nginx.out')}\n{self.log('error.log')}")
        self.start_seconds = time.monotonic() - began

    def stop(self) -> None:
        """Stop nginx by its master's PID (SIGTERM: fast shutdown; its workers go with it)."""
        if self.process is not None:
            stop_process(self.process)
            self.process = None

    def close(self) -> None:
        """Stop nginx and release the ports."""
        self.stop()
        for held in self._reservations:
            held.close()

    def __enter__(self) -> NginxServer:
        """Start nginx (the ports are released if it cannot start)."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        """Stop nginx and release the ports."""
        self.close()


def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


class SiteServer(NginxServer):
    """The deployment's site in a private nginx: its HTTP and HTTPS ports, and the test CA."""

    http_port: int
    https_port: int
    ca_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A client TLS context trusting the test CA alone (hostnames checked)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def tls_socket(self, timeout: float = 10.0) -> ssl.SSLSocket:
        """A verified TLS connection to the HTTPS port."""
        raw = socket.create_connection(("127.0.0.1", self.https_port), timeout=timeout)
        return self.client_context().wrap_socket(raw, server_hostname="127.0.0.1")


def render_site(template: str, *, http_port: int, https_port: int, upstream_port: int,
                certificate: Path, key: Path, logs: Path) -> str:
    """The deployment's site with the test's ports, certificate, static folder and logs.

    Each placeholder must be found exactly as written: a change to the site file that a
    test would no longer follow fails here rather than test something else."""
    substitutions = [
        ("/etc/letsencrypt/live/contact.example.org/fullchain.pem", str(certificate)),
        ("/etc/letsencrypt/live/contact.example.org/privkey.pem", str(key)),
        ("server_name contact.example.org;", "server_name 127.0.0.1 localhost;"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};"),
        # IPv4 loopback only: the IPv6 listeners go.
        ("listen [::]:80;", ""),
        ("listen [::]:443 ssl http2;", ""),
        ("listen 80;", f"listen 127.0.0.1:{http_port};"),
        ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
        ("alias /srv/contact-site/static/;", f"alias {PROJECT_ROOT / 'static'}/;"),
        ("/var/log/nginx/", f"{logs}/"),
    ]
    for placeholder, value in substitutions:
        if placeholder not in template:
            raise ValueError(f"{SITE_CONF.name} no longer has {placeholder!r}")
        template = template.replace(placeholder, value)
    return template


def site_server(upstream_port: int, folder: Path) -> SiteServer:
    """deploy/nginx/contact-site.conf for a gunicorn on `upstream_port`, in a SiteServer to
    use in a with block; skip (fail under CI=true) without nginx."""
    require_nginx()
    folder.mkdir(parents=True, exist_ok=True)
    pki = LocalPKI.create(folder / "tls")
    leaf = pki.ca.issue_cert("127.0.0.1", "localhost")
    certificate, key = folder / "tls" / "site.crt", folder / "tls" / "site.key"
    certificate.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key.write_bytes(leaf.private_key_pem.bytes())
    key.chmod(0o600)
    reservations = [_reserve_port(), _reserve_port()]
    http_port, https_port = (int(held.getsockname()[1]) for held in reservations)
    try:
        text = render_site(SITE_CONF.read_text(), http_port=http_port, https_port=https_port,
                           upstream_port=upstream_port, certificate=certificate, key=key,
                           logs=folder / "logs")
        server = SiteServer(text, folder, reservations)
    except BaseException:
        for held in reservations:
            held.close()
        raise
    server.http_port, server.https_port, server.ca_file = http_port, https_port, pki.ca_file
    return server
