"""Driving a real Chromium: the served site, watched pages, filling the form, axe-core."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from contact_site import create_app, devmail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.browser_server import LiveServer
from support.settings import base_config
from support.smtp_server import SMTPTestServer

CHROMIUM = Path("/usr/bin/chromium")


CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


OUTPUT = Path(__file__).resolve().parents[2] / "test-output"


MIB = 2**20


# 5 MiB that sniff as a PDF; the bytes vary so a truncated or reordered upload shows.
FIVE_MB_PDF = b"%PDF-1.4\n" + bytes(range(256)) * (5 * MIB // 256)


# Slow enough that a 5 MB upload takes about a second and reports progress many times.
UPLOAD_BYTES_PER_SECOND = 5 * MIB


@dataclass
class Site:
    """The app under test, served over HTTP, and the SMTP server it delivers to."""

    url: str
    app: Any
    smtp: SMTPTestServer
    root: Path

    def submissions(self) -> int:
        """How many submissions are stored."""
        with self.app.app_context():
            return db.session.scalar(select(func.count()).select_from(Submission))

    def stored_files(self) -> list[Path]:
        """Every file under the upload folder."""
        return [p for p in (self.root / "uploads").rglob("*") if p.is_file()]


@dataclass
class WatchedPage:
    """A page with its CSP violations, script errors and POST requests recorded."""

    page: Any
    csp_violations: list[str] = field(default_factory=list)
    script_errors: list[str] = field(default_factory=list)
    posts: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No Content-Security-Policy violation and no script error so far."""
        assert self.csp_violations == [], f"CSP violations: {self.csp_violations}"
        assert self.script_errors == [], f"script errors: {self.script_errors}"


def watch(page: Any) -> WatchedPage:
    """Record what the page reports: Chromium logs CSP violations to the console."""
    watched = WatchedPage(page)

    def on_console(message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            watched.csp_violations.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: watched.script_errors.append(str(error)))
    page.on("request", lambda r: watched.posts.append(r.url) if r.method == "POST" else None)
    return watched


def serve(root: Path, smtp: SMTPTestServer, **overrides: Any) -> tuple[Site, LiveServer]:
    """Build the app on its own database and folders and serve it on a free port."""
    app = create_app({**base_config(root, smtp), **overrides})
    # The dev mailbox pages, reading captured mails from this test's folder.
    app.instance_path = str(root / "instance")
    app.register_blueprint(devmail.bp)
    devmail.state(app).started = True
    live = LiveServer(app)
    live.start()
    return Site(live.url, app, smtp, root), live


def visitor_email() -> str:
    """A fresh visitor address, so the 3-thank-you-mails-a-day rule never interferes."""
    return f"ada.{uuid.uuid4().hex[:8]}@example.com"


def fill_form(page: Any, subject: str, email: str, message: str = "Hello,\nA question.") -> None:
    """Fill the fields the way a visitor does."""
    page.select_option("#recipient", "sales")
    page.fill("#name", "Ada Lovelace")
    page.fill("#email", email)
    page.fill("#subject", subject)
    page.fill("#message", message)


def attach(page: Any, name: str, content: bytes, mime: str = "application/pdf") -> None:
    """Choose a file in the attachment input."""
    page.set_input_files("#attachment", files=[{"name": name, "mimeType": mime,
                                                "buffer": content}])


def screenshot(page: Any, name: str) -> None:
    """Save a full-page screenshot for a reviewer in test-output/ (not committed)."""
    OUTPUT.mkdir(exist_ok=True)
    page.screenshot(path=str(OUTPUT / f"{name}.png"), full_page=True)


def axe_violations(page: Any) -> list[str]:
    """axe-core's violations on the page, one readable line each."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            f"{[n['target'] for n in v['nodes']]}" for v in results.response["violations"]]


def assert_field_error(page: Any, name: str, text: str) -> None:
    """The message shows beside the field, and the field points to it as invalid."""
    error = page.locator(f"#{name}-error")
    assert error.is_visible()
    assert text in error.inner_text()
    control = page.locator(f"#{name}")
    assert control.get_attribute("aria-invalid") == "true"
    assert f"{name}-error" in (control.get_attribute("aria-describedby") or "").split()


RECORD_PROGRESS = """() => {
  const bar = document.getElementById('upload-progress');
  const button = document.getElementById('submit-button');
  const status = document.getElementById('upload-status');
  new MutationObserver(() => window.recordProgress({
    value: bar.value, disabled: button.disabled, button: button.textContent,
    status: status.textContent}))
    .observe(bar, {attributes: true, attributeFilter: ['value']});
}"""

