"""Podman for the container tests: its settings on these machines, the Debian base image
made here (no registry is reachable), image builds, and containers that are always removed.

Podman runs here only with runc (crun fails on this kernel's cgroups) and without default
ulimits; both are set in a containers.conf the tests write, named by CONTAINERS_CONF, so
nothing in /etc changes. The base, `docker.io/library/debian:bookworm-slim`, is built from
`debootstrap --variant=minbase` and imported; it carries this machine's certificate bundle
and a pip.conf naming it, so `pip install` inside `podman build` reaches the package index
the way this machine does, while the product's Dockerfile names neither. The debootstrap
tarball is cached under /var/cache/contact-site-tests/ (rebuilt when BASE_VERSION changes
or after MAX_AGE_DAYS), the image in Podman's store under a label that says which tarball
and which certificates it holds.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BASE_IMAGE = "docker.io/library/debian:bookworm-slim"
ROOTFS_IMAGE = "localhost/contact-site-tests/bookworm-minbase"
BASE_LABEL = "contact-site-tests.base"
SUITE = "bookworm"
# Raise to rebuild every cached base (a change in how it is made).
BASE_VERSION = "2"
# A month-old base is rebuilt, so that it picks up the suite's security updates.
MAX_AGE_DAYS = 30
CACHE = Path(os.environ.get("CONTACT_SITE_TEST_CACHE", "/var/cache/contact-site-tests"))
DEFAULT_MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# Where the image keeps the bundle: not in /etc/ssl/certs, which Debian's ca-certificates
# rewrites when a build installs it (python3 brings it in), dropping this machine's CAs.
IMAGE_BUNDLE = "/etc/ssl/machine-ca-bundle.pem"
TOOLS = ("podman", "runc", "debootstrap")
# As in Debian's published slim images: apt keeps no package files or caches in a layer,
# fetches no translations, and dpkg installs no documentation, manuals or locales.
_REMOVE_DEBS = ('"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb'
                ' /var/cache/apt/*.bin || true"')
APT_CLEAN = (f"DPkg::Post-Invoke {{ {_REMOVE_DEBS}; }};\n"
             f"APT::Update::Post-Invoke {{ {_REMOVE_DEBS}; }};\n"
             'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n')
SLIM_PATHS = ("usr/share/doc", "usr/share/groff", "usr/share/info", "usr/share/linda",
              "usr/share/lintian/overrides", "usr/share/locale", "usr/share/man")
DPKG_SLIM = "".join(f"path-exclude /{path}/*\n" for path in SLIM_PATHS)
DPKG_SLIM += "path-include /usr/share/doc/*/copyright\n"
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
runtime = "runc"
# No journald to write events to in a container or CI sandbox.
events_logger = "file"
"""


class PodmanError(RuntimeError):
    """A podman command failed; the message ends with what it printed."""


def missing_tools() -> list[str]:
    """The programs the container tests need that this machine lacks."""
    return [tool for tool in TOOLS if shutil.which(tool, path=_sbin_path()) is None]


def _sbin_path() -> str:
    """PATH with the sbin folders, where runc and debootstrap live."""
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])


class Podman:
    """The podman command with this machine's settings (runc, no default ulimits)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "containers.conf"
        conf.write_text(CONTAINERS_CONF)
        self.env = {**os.environ, "CONTAINERS_CONF": str(conf), "PATH": _sbin_path()}

    def run(self, *args: str, timeout: float = 120, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """One podman command; raises PodmanError when it fails and `check` is set."""
        done = subprocess.run(["podman", *args], env=self.env, input=stdin, text=True,
                              capture_output=True, timeout=timeout)
        if check and done.returncode != 0:
            raise PodmanError(f"podman {' '.join(args[:3])} … exited {done.returncode}:\n"
                              f"{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return done

    def exists(self, kind: str, name: str) -> bool:
        """Whether an image, container or volume of that name exists."""
        return self.run(kind, "exists", name, check=False).returncode == 0

    def label(self, image: str, key: str) -> str | None:
        """A label of an image in the store, None when the image is absent."""
        if not self.exists("image", image):
            return None
        out = self.run("image", "inspect", "--format", "{{json .Labels}}", image).stdout
        return (json.loads(out) or {}).get(key)

    def image_id(self, image: str) -> str | None:
        """The id of an image in the store, None when it is absent."""
        if not self.exists("image", image):
            return None
        return self.run("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()

    def inspect(self, kind: str, name: str) -> dict[str, Any]:
        """`podman <kind> inspect` of one object, parsed."""
        [found] = json.loads(self.run(kind, "inspect", name).stdout)
        return dict(found)

    def build(self, context: Path, tag: str, log: Path, *args: str,
              timeout: float = 1500) -> None:
        """`podman build` of a context (with the registries reached through the host's
        network); the output goes to `log`, its end into the error when it fails."""
        command = ["podman", "build", "--pull=never", "--format", "docker", "--tag", tag,
                   *args, str(context)]
        with log.open("w") as out:
            done = subprocess.run(command, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, timeout=timeout)
        if done.returncode != 0:
            raise PodmanError(f"podman build of {tag} exited {done.returncode}:\n"
                              f"{log.read_text(errors='replace')[-6000:]}")

    def start(self, image: str, *command: str, name: str, env: dict[str, str],
              volumes: Sequence[str] = (), network: str = "host") -> str:
        """A detached container on a read-only root (only volumes and /tmp are writable);
        its name."""
        options = [f"--env={key}={value}" for key, value in env.items()]
        options += [f"--volume={volume}" for volume in volumes]
        self.run("run", "--detach", f"--name={name}", f"--network={network}", "--read-only",
                 *options, image, *command)
        return name

    def once(self, image: str, *command: str, env: dict[str, str],
             volumes: Sequence[str] = (), stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command in a new container that is removed when it ends (no network)."""
        options = [f"--env={key}={value}" for key, value in env.items()]
        options += [f"--volume={volume}" for volume in volumes]
        return self.run("run", "--rm", "--interactive", "--network=none", "--read-only",
                        *options, image, *command, stdin=stdin or "", check=False,
                        timeout=timeout)

    def logs(self, name: str) -> str:
        """What a container printed (empty when it is gone)."""
        done = self.run("logs", name, check=False)
        return done.stdout + done.stderr

    def remove_container(self, name: str) -> None:
        """Stop (at once) and remove a container, if it exists."""
        if self.exists("container", name):
            self.run("rm", "--force", "--time=0", name, check=False, timeout=60)

    def remove_volume(self, name: str) -> None:
        """Remove a volume, if it exists."""
        if self.exists("volume", name):
            self.run("volume", "rm", "--force", name, check=False, timeout=60)


def ensure_base_image(podman: Podman) -> str:
    """The base image in Podman's store, made (or remade) only when it is absent or stale;
    its name."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with _locked(CACHE / "base.lock"):
        tarball, built = _rootfs_tarball()
        bundle = machine_ca_bundle()
        pip_conf = machine_pip_conf(bundle is not None)
        digest = hashlib.sha256((bundle.read_bytes() if bundle else b"") + pip_conf.encode())
        key = f"v{BASE_VERSION} {built} {digest.hexdigest()[:16]}"
        if podman.label(BASE_IMAGE, BASE_LABEL) == key:
            return BASE_IMAGE
        rootfs = f"{ROOTFS_IMAGE}:{built}"
        if not podman.exists("image", rootfs):
            podman.run("import", "--change", 'CMD ["bash"]', str(tarball), rootfs, timeout=600)
        with tempfile.TemporaryDirectory(dir=CACHE) as folder:
            context = Path(folder)
            lines = [f"FROM {rootfs}"]
            if bundle is not None:
                shutil.copyfile(bundle, context / "ca-certificates.crt")
                lines.append(f"COPY ca-certificates.crt {IMAGE_BUNDLE}")
            (context / "pip.conf").write_text(pip_conf)
            lines.append("COPY pip.conf /etc/pip.conf")
            (context / "Containerfile").write_text("\n".join(lines) + "\n")
            podman.build(context, BASE_IMAGE, context / "build.log", "--network=none",
                         f"--label={BASE_LABEL}={key}", timeout=600)
        return BASE_IMAGE


def machine_ca_bundle() -> Path | None:
    """The certificate bundle this machine's pip and Python trust (PIP_CERT, SSL_CERT_FILE,
    else OpenSSL's default file), if there is one."""
    paths = ssl.get_default_verify_paths()
    for candidate in (os.environ.get("PIP_CERT"), os.environ.get("SSL_CERT_FILE"),
                      os.environ.get("REQUESTS_CA_BUNDLE"), paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def machine_pip_conf(with_bundle: bool) -> str:
    """A pip.conf with this machine's pip settings that make sense inside a build: the
    certificate bundle, the timeout, an index on the network."""
    lines = ["[global]"]
    if with_bundle:
        lines.append(f"cert = {IMAGE_BUNDLE}")
    if os.environ.get("PIP_DEFAULT_TIMEOUT"):
        lines.append(f"timeout = {os.environ['PIP_DEFAULT_TIMEOUT']}")
    index = os.environ.get("PIP_INDEX_URL", "")
    if index.startswith(("http://", "https://")):  # a file:// index is not in the build
        lines.append(f"index-url = {index}")
    lines.append("disable-pip-version-check = true")
    return "\n".join(lines) + "\n"


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (so debootstrap goes where apt may go),
    else deb.debian.org."""
    folder = Path("/etc/apt/sources.list.d")
    files = [Path("/etc/apt/sources.list")]
    files += sorted(folder.glob("*.sources")) + sorted(folder.glob("*.list"))
    pattern = re.compile(r"^\s*(?:deb\s+(?:\[[^\]]*\]\s+)?|URIs:\s*)(\S+)", re.MULTILINE)
    for path in files:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for uri in pattern.findall(text):
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _rootfs_tarball() -> tuple[Path, str]:
    """The cached debootstrap tarball and the day it was made; made when absent or stale."""
    stamp = CACHE / f"{SUITE}-minbase.json"
    tarball = CACHE / f"{SUITE}-minbase.tar"
    today = datetime.date.today()
    try:
        made = json.loads(stamp.read_text())
        built = datetime.date.fromisoformat(made["built"])
        if (made["version"] == BASE_VERSION and tarball.is_file()
                and (today - built).days < MAX_AGE_DAYS):
            return tarball, built.isoformat()
    except (OSError, ValueError, KeyError):
        pass
    _debootstrap(tarball)
    stamp.write_text(json.dumps({"version": BASE_VERSION, "built": today.isoformat()}))
    return tarball, today.isoformat()


def _debootstrap(tarball: Path) -> None:
    """A minimal Debian tree with the suite's updates and security sources, tarred."""
    mirror = debian_mirror()
    folder = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", SUITE, str(folder), mirror],
                       check=True, capture_output=True, timeout=1200,
                       env={**os.environ, "PATH": _sbin_path()})
        (folder / "etc/apt/sources.list").unlink(missing_ok=True)
        (folder / "etc/apt/sources.list.d/debian.sources").write_text(
            f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\n"
            f"Components: main\nSigned-By: {KEYRING}\n\n"
            f"Types: deb\nURIs: {mirror}-security\nSuites: {SUITE}-security\n"
            f"Components: main\nSigned-By: {KEYRING}\n")
        _slim(folder)
        partial = tarball.with_suffix(".tar.partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(folder), "-cf", str(partial), "."],
                       check=True, capture_output=True, timeout=600)
        partial.replace(tarball)
    finally:
        # --one-file-system: should debootstrap have left /proc or /sys mounted inside,
        # rm must not descend into them.
        subprocess.run(["rm", "-rf", "--one-file-system", str(folder)], check=False,
                       capture_output=True, timeout=300)


def _slim(folder: Path) -> None:
    """Make the tree like Debian's slim images: their apt and dpkg settings, and without
    the package files, documentation (but the copyrights), manuals and locales."""
    (folder / "etc/apt/apt.conf.d/docker-clean").write_text(APT_CLEAN)
    (folder / "etc/apt/apt.conf.d/docker-no-languages").write_text('Acquire::Languages "none";\n')
    (folder / "etc/dpkg/dpkg.cfg.d/docker").write_text(DPKG_SLIM)
    for leftover in ("var/cache/apt/archives", "var/cache/apt", "var/lib/apt/lists"):
        for path in (folder / leftover).glob("*"):
            if path.is_file():
                path.unlink()
    for slimmed in SLIM_PATHS:
        for path in sorted((folder / slimmed).rglob("*"), reverse=True):
            if path.is_dir() and not path.is_symlink():
                if not any(path.iterdir()):
                    path.rmdir()
            elif path.name != "copyright":
                path.unlink()


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock: two test runs must not debootstrap or tag the base at once."""
    with path.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield
