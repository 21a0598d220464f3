"""The package as an operator installs it: a wheel built by its own backend carries the
templates, static files, compiled catalogues, migrations and gunicorn settings; installed
into a fresh virtual environment, its `contact-site` command runs from a folder far from
any checkout: the schema, an account, the site under gunicorn, a message delivered.

Built and installed offline (no build isolation, no index): the new environment reads the
dependencies from the test environment's site-packages through a .pth file, so nothing is
downloaded and only the package itself comes from the wheel.
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from urllib.parse import urlencode

import pytest

from support.forms import form_page
from support.processes import PROJECT_ROOT, RECIPIENTS, SECRET, reserved_port, stop_process
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel `pip wheel .` builds from the checkout."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-build-isolation",
                    "--no-deps", "--no-index", "--wheel-dir", str(folder), str(PROJECT_ROOT)],
                   check=True, capture_output=True, timeout=120)
    [built] = folder.glob("contact_site-*.whl")
    return built


@pytest.fixture(scope="module")
def command(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`contact-site` of a fresh venv the wheel is installed in."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)],
                   check=True, capture_output=True, timeout=120)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", where], check=True,
                               capture_output=True, text=True).stdout.strip())
    (site / "test-dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True, timeout=120)
    return venv / "bin" / "contact-site"


def test_the_wheel_carries_every_resource_and_compiled_catalogues(wheel: Path) -> None:
    """Templates, static files, the compiled catalogues, every migration and the gunicorn
    settings, under contact_site/resources/; the command among the entry points."""
    names = set(zipfile.ZipFile(wheel).namelist())
    resources = "contact_site/resources/"
    for path in ("templates/base.html", "templates/mail/thank_you.html", "static/style.css",
                 "static/thank-you.pdf", "translations/zh/LC_MESSAGES/messages.mo",
                 "migrations/env.py", "gunicorn.conf.py"):
        assert resources + path in names, path
    versions = {path.name for path in (PROJECT_ROOT / "migrations" / "versions").glob("*.py")}
    assert {name.rsplit("/", 1)[1] for name in names
            if name.startswith(resources + "migrations/versions/")} == versions
    entry_points = next(name for name in names if name.endswith("entry_points.txt"))
    assert "contact-site = contact_site.command:main" in zipfile.ZipFile(wheel).read(
        entry_points).decode()


def run(command: Path, *args: str, cwd: Path, env: dict[str, str],
        stdin: str | None = None) -> str:
    """One `contact-site` command; its output (it must succeed)."""
    done = subprocess.run([str(command), *args], cwd=cwd, env=env, input=stdin, text=True,
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def get(port: int, path: str) -> tuple[int, str]:
    """GET a page of the served site."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


def test_contact_site_serves_a_site_from_any_folder(command: Path, tmp_path: Path,
                                                     smtp_server: SMTPTestServer) -> None:
    """From an empty folder: `db upgrade` makes instance/ there; the login page names the
    package's own command; `users create` makes the account; `serve` runs gunicorn with the
    shipped settings, Chinese pages and static files included; a message is delivered."""
    site = tmp_path / "site"
    site.mkdir()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SECRET_KEY": SECRET,
           "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": str(smtp_server.port),
           "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
           "CONTACT_RECIPIENTS": RECIPIENTS, "CONTACT_RATE_LIMIT": "off",
           "CONTACT_PROOF_OF_WORK": "off", "CONTACT_MIN_FILL_SECONDS": "0",
           "DELIVERY_POLL_SECONDS": "1"}
    run(command, "db", "upgrade", cwd=site, env=env)
    assert (site / "instance" / "contact_site.sqlite").is_file()
    holder = reserved_port()
    port = holder.getsockname()[1]
    holder.close()
    with (tmp_path / "serve.log").open("wb") as log:
        server = subprocess.Popen([str(command), "serve", "--bind", f"127.0.0.1:{port}",
                                   "--workers", "1"], cwd=site, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _answers(port), 60, "the served site")
        status, login = get(port, "/admin/login")
        assert "<code>contact-site users create NAME</code>" in login
        status, chinese = get(port, "/?lang=zh")
        assert status == 200 and "联系" in chinese
        assert get(port, "/static/style.css")[0] == 200
        cookie, tokens = form_page(port)
        fields = {"recipient": "sales", "name": "Ada Lovelace", "email": "ada@example.com",
                  "subject": "Installed", "message": "Sent to a site installed with pip.",
                  **tokens}
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/", urlencode(fields), {
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert connection.getresponse().status == 303
        connection.close()
        [mail] = [m for m in smtp_server.wait_for(2, timeout=30) if "sales@example.com" in
                  m.rcpt_tos]
        assert "Sent to a site installed with pip." in mail.message.get_body(
            ("plain",)).get_content()
    finally:
        assert stop_process(server, timeout=30) is not None
    said = run(command, "users", "create", "ada", "--password-stdin", cwd=site, env=env,
               stdin="a-long-enough-password-42\n")
    assert "Account ada (owner) created" in said
    assert "ada" in run(command, "users", "list", cwd=site, env=env)
    run(command, "worker", "--once", cwd=site, env=env)
    assert not (PROJECT_ROOT / "site").exists()


def _answers(port: int) -> bool:
    """Whether the site answers /healthz with 200."""
    try:
        return get(port, "/healthz")[0] == 200
    except OSError:
        return False
