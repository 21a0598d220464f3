"""Every file the product writes is readable by its own user alone, whatever the umask: the
database with its -wal and -shm, the development key, uploads, exports, captured mails and
lock files are 0600, their folders 0700 (docs/guarantees.md, "Private files").

A copy of the project folder without instance/ is deployed as on a new host, under umask
022 (the usual default) and 000: `init-db`, a message with a file posted to gunicorn, an
export, and a message caught by the development mailbox of `flask run --debug`.
"""

from __future__ import annotations

import http.client
import io
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from support.forms import PDF_BYTES_FOR_TESTS
from support.processes import FLASK, GUNICORN, PROJECT_ROOT, free_port, stop_process
from support.settings import RECIPIENTS
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

SHARED = ("templates", "static", "translations", "migrations", "gunicorn.conf.py")
HIDDEN = re.compile(r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"')
DATABASE = "contact_site.sqlite"


@dataclass
class Deployment:
    """A copy of the project run under one umask, and the modes seen while it ran."""

    root: Path
    umask: int
    env: dict[str, str]
    modes: dict[str, int] = field(default_factory=dict)

    def run(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """`flask --app contact_site ARGS` in the copy, under its umask; it must succeed."""
        done = subprocess.run([FLASK, "--app", "contact_site", *args], cwd=self.root,
                              env={**self.env, **extra}, umask=self.umask, text=True,
                              capture_output=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    def start(self, command: list[str], log: str, **extra: str) -> subprocess.Popen[bytes]:
        """A server process in the copy, under its umask, output to `log`."""
        with (self.root / log).open("ab") as out:
            return subprocess.Popen(command, cwd=self.root, env={**self.env, **extra},
                                    umask=self.umask, stdout=out, stderr=subprocess.STDOUT)

    def note(self, *paths: Path) -> None:
        """Record the mode of each path (relative to the copy) as it is now."""
        for path in paths:
            self.modes[str(path.relative_to(self.root))] = stat.S_IMODE(path.stat().st_mode)

    def note_tree(self, top: Path) -> None:
        """Record the mode of `top` and of everything under it."""
        self.note(top, *sorted(top.rglob("*")))


def copy_project(root: Path) -> None:
    """The package copied (so its instance/ is the copy's), the rest linked."""
    root.mkdir()
    shutil.copytree(PROJECT_ROOT / "contact_site", root / "contact_site",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in SHARED:
        (root / name).symlink_to(PROJECT_ROOT / name)


def post_message(port: int) -> int:
    """GET the form, then POST it with a PDF, as a browser does; the answer's status."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        fields = dict(HIDDEN.findall(response.read().decode()))
        cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
        data = MultiDict({**fields, "recipient": "sales", "email": "ada@example.com",
                          "subject": "Engines", "message": "About the analytical engine.",
                          "attachment": FileStorage(io.BytesIO(PDF_BYTES_FOR_TESTS),
                                                    filename="notes.pdf")})
        boundary, body = encode_multipart(data)
        connection.request("POST", "/", body, {
            "Content-Type": f"multipart/form-data; boundary={boundary}", "Cookie": cookie,
            "Accept": "application/json"})
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


def answers(port: int) -> bool:
    """Whether something serves HTTP on the port."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status < 600
    except OSError:
        return False
    finally:
        connection.close()


def serve_with_gunicorn(site: Deployment) -> None:
    """gunicorn as an operator starts it; a message with a file; modes seen while it runs."""
    port = free_port()
    process = site.start([GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "2",
                          "contact_site:create_app()"], "gunicorn.log")
    try:
        wait_until(lambda: answers(port) or process.poll() is not None, 30, "gunicorn")
        assert process.poll() is None, (site.root / "gunicorn.log").read_text()
        assert post_message(port) == 202
        instance = site.root / "instance"
        # -wal and -shm exist while a connection is open: now, not after the server stops.
        site.note(*(instance / f"{DATABASE}{suffix}" for suffix in ("-wal", "-shm")))
        site.note_tree(instance)
        site.note_tree(site.root / "uploads")
    finally:
        stop_process(process, timeout=30)


def export_submissions(site: Deployment) -> None:
    """`submissions export --output` to a new file and over an old world-readable one."""
    exports = site.root / "exports"
    exports.mkdir()
    old = exports / "old.json"
    old.write_text("an older export\n")
    old.chmod(0o644)
    site.run("submissions", "export", "--output", str(exports / "new.csv"))
    site.run("submissions", "export", "--format", "json", "--output", str(old))
    assert "Engines" in (exports / "new.csv").read_text()
    assert "Engines" in old.read_text() and "older" not in old.read_text()
    site.note(exports / "new.csv", old)


def capture_with_devmail(site: Deployment) -> None:
    """`flask run --debug`: a message caught by the development mailbox in instance/devmail/."""
    port = free_port()
    settings = {"DEV_MAILBOX_PORT": str(free_port())}
    del site.env["SECRET_KEY"]  # the development key generated by init-db is used
    del site.env["MAIL_SERVER"], site.env["MAIL_PORT"]  # the mailbox takes the mail
    process = site.start([FLASK, "--app", "contact_site", "--debug", "run", "--no-reload",
                          "--port", str(port)], "flask-run.log", **settings)
    try:
        wait_until(lambda: answers(port) or process.poll() is not None, 30, "flask run")
        assert process.poll() is None, (site.root / "flask-run.log").read_text()
        assert post_message(port) == 202
        folder = site.root / "instance" / "devmail"
        wait_until(lambda: len(list(folder.glob("*.eml"))) >= 2, 30, "the captured mails")
        site.note_tree(folder)
    finally:
        stop_process(process, timeout=30)


@pytest.fixture(scope="module", params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def site(request: pytest.FixtureRequest,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """The copy deployed under one umask, every step run; the modes it left."""
    base = tmp_path_factory.mktemp("modes")
    (base / "home").mkdir()
    smtp = SMTPTestServer()
    smtp.start()
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FLASK_", "SECRET_KEY", "DATABASE_URL", "UPLOAD_FOLDER"))}
    env.update({"HOME": str(base / "home"), "PYTHONPATH": str(base / "project"),
                "PYTHONDONTWRITEBYTECODE": "1", "MAIL_SERVER": "127.0.0.1",
                "MAIL_PORT": str(smtp.port), "MAIL_TIMEOUT": "3",
                "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
                "CONTACT_RECIPIENTS": RECIPIENTS, "CONTACT_RATE_LIMIT": "off",
                "CONTACT_MIN_FILL_SECONDS": "0", "CONTACT_PROOF_OF_WORK": "off"})
    deployment = Deployment(base / "project", request.param, env)
    copy_project(deployment.root)
    try:
        # No SECRET_KEY: in debug mode the key is generated and kept in instance/.
        deployment.run("--debug", "init-db")
        deployment.env["SECRET_KEY"] = "a-long-random-key-for-the-file-modes-test"
        serve_with_gunicorn(deployment)
        export_submissions(deployment)
        capture_with_devmail(deployment)
        yield deployment
    finally:
        smtp.close()


def modes_of(site: Deployment, prefix: str) -> dict[str, str]:
    """The recorded modes under `prefix`, in octal for a readable failure."""
    return {path: oct(mode) for path, mode in site.modes.items()
            if path == prefix or path.startswith(prefix + "/")}


def expected(site: Deployment, prefix: str) -> dict[str, str]:
    """0700 for each recorded folder under `prefix`, 0600 for each file."""
    return {path: oct(0o700 if (site.root / path).is_dir() else 0o600)
            for path in modes_of(site, prefix)}


def test_the_instance_folder_and_all_it_holds_are_private(site):
    """instance/ 0700; the key, the database, its -wal and -shm, the lock files 0600."""
    found = modes_of(site, "instance")
    names = {Path(path).name for path in found}
    assert {"instance", "secret_key", DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm",
            f"{DATABASE}-writers", f"{DATABASE}.migrate-lock"} <= names, names
    assert found == expected(site, "instance")


def test_the_uploaded_file_and_its_folders_are_private(site):
    """uploads/, the submission's folder 0700; the stored file 0600."""
    found = modes_of(site, "uploads")
    assert any(path.endswith(".pdf") for path in found), found
    assert len(found) == 3 and found == expected(site, "uploads")


def test_exports_are_private_even_over_an_old_readable_file(site):
    """`submissions export --output` writes 0600, and narrows a file it overwrites."""
    assert modes_of(site, "exports") == {"exports/new.csv": "0o600", "exports/old.json": "0o600"}


def test_the_development_mailbox_keeps_its_mails_private(site):
    """instance/devmail/ 0700 and each captured .eml 0600."""
    found = modes_of(site, "instance/devmail")
    assert sum(path.endswith(".eml") for path in found) >= 2, found
    assert found == expected(site, "instance/devmail")
