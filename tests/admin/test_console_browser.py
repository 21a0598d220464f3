"""The console in a real Chromium: signing in, axe-core on every page, phone and desktop widths."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, update

from contact_site import create_app
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.schema import upgrade_schema
from contact_site.submissions.models import Submission
from support.admin import OWNER, PASSWORD, create_owner
from support.browser import OUTPUT, axe_violations, watch
from support.browser_server import LiveServer
from support.factories import create_submission
from support.outbox import mails_of
from support.settings import base_config
from support.smtp_server import SMTPTestServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# Fixed times, so the screenshots kept in docs/ change only when the pages do.
RECEIVED = datetime(2026, 11, 30, 9, 15)
# The screenshots shown in the README.
FOR_DOCS = {"admin-archive-1280", "admin-detail-375", "admin-outbox-1280"}
PAGES = {
    "login": "/admin/login",
    "archive": "/admin/",
    "detail": "/admin/submissions/{id}",
    "outbox": "/admin/outbox",
    "erase": "/admin/erase",
    "audit": "/admin/audit",
}


def at(app: Any, submission_id: str, minutes: int) -> None:
    """Give the submission and its mails fixed times, `minutes` after RECEIVED."""
    when = RECEIVED.replace(minute=RECEIVED.minute + minutes)
    with app.app_context():
        db.session.execute(update(Submission).where(Submission.id == submission_id)
                           .values(created_at=when))
        db.session.execute(update(OutboxMail).where(OutboxMail.submission_id == submission_id)
                           .values(created_at=when, next_attempt_at=when))
        db.session.commit()


def settle(app: Any, submission_id: str, status: Status, replies: list[tuple[str, str]]) -> None:
    """The owner's mail in `status`, with these (outcome, reply) attempts."""
    [mail] = [m for m in mails_of(app, submission_id) if m.kind == MailKind.OWNER]
    with app.app_context():
        for number, (outcome, reply) in enumerate(replies):
            db.session.execute(insert(DeliveryAttempt).values(
                mail_id=mail.id, outcome=outcome, reply=reply, seconds=0.4 + number,
                attempted_at=RECEIVED.replace(minute=RECEIVED.minute + 1 + number)))
        last = replies[-1][1] if status == Status.FAILED else None
        db.session.execute(update(OutboxMail).where(OutboxMail.id == mail.id).values(
            status=status, attempts=len(replies), last_error=last,
            sent_at=RECEIVED if status == Status.SENT else None))
        db.session.commit()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory,
            mail_server: SMTPTestServer,
            browser: Any) -> Iterator[dict[str, Any]]:
    """The app served over HTTP with an account and a few messages in each state."""
    root = tmp_path_factory.mktemp("console")
    app = create_app(base_config(root, mail_server))
    upgrade_schema(app)
    create_owner(app)
    delivered = create_submission(app, thank_you=True, attachment=b"%PDF-1.4 plans",
                                  name="Ada Lovelace", subject="Plans for the analytical engine")
    settle(app, delivered, Status.SENT, [("sent", "250 2.0.0 Ok: queued as 4F2A")])
    failed = create_submission(app, name="Grace Hopper", email="grace@example.com",
                               subject="A bug in the relay")
    settle(app, failed, Status.FAILED, [("transient", "451 4.3.0 Try again later"),
                                        ("failed", "550 5.7.1 Rejected by policy")])
    hostile = create_submission(app, name="<b>Mallory</b>", email="mallory@example.com",
                                subject="<script>alert(1)</script>",
                                message="Look: \u202egnp.exe\n<img src=x onerror=alert(1)>")
    for minutes, submission_id in enumerate((delivered, failed, hostile)):
        at(app, submission_id, minutes * 7)
    live = LiveServer(app)
    live.start()
    yield {"url": live.url, "app": app, "ids": {"detail": failed, "hostile": hostile}}
    live.stop()


@pytest.fixture
def signed_in(browser: Any, console: dict[str, Any]
              ) -> Iterator[Callable[..., Any]]:
    """Open pages in a fresh browser context that signed in through the form."""
    contexts: list[Any] = []

    def opener(width: int = 1280, javascript: bool = True) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900},
                                      java_script_enabled=javascript)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{console['url']}/admin/login")
        page.get_by_label("Username").fill(OWNER)
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_navigation(url=f"{console['url']}/admin/"):
            page.get_by_role("button", name="Sign in").click()
        return page

    yield opener
    for context in contexts:
        context.close()


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot in test-output/; copied to docs/screenshots/ when it changed."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    # Ids and Message-IDs are new each run: painted over, so the picture stays the same.
    page.screenshot(path=str(path), full_page=True, mask_color="#f3f2f1",
                    mask=[page.locator(".mail-summary dd code")])
    if name in FOR_DOCS:
        kept = DOCS / path.name
        if not kept.exists() or kept.read_bytes() != path.read_bytes():
            DOCS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, kept)


def url_of(console: dict[str, Any], name: str) -> str:
    """The full URL of one console page."""
    return console["url"] + PAGES[name].format(id=console["ids"]["detail"])


@pytest.mark.parametrize("name", list(PAGES))
@pytest.mark.parametrize("width", [375, 1280])
def test_every_console_page_passes_axe_at_phone_and_desktop_width(
        signed_in: Callable[..., Any], console: dict[str, Any], name: str, width: int) -> None:
    """axe-core finds nothing; the page fits the width without sideways scrolling; no
    script error or CSP violation."""
    page = signed_in(width)
    if name == "login":  # signed out, in a context of its own
        page = page.context.browser.new_page(viewport={"width": width, "height": 900})
    watched = watch(page)
    page.goto(url_of(console, name))
    assert axe_violations(page) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, f"admin-{name}-{width}")
    watched.assert_clean()
    if name == "login":
        page.close()


def test_the_login_page_without_an_account_passes_axe(
        browser: Any, tmp_path: Path, mail_server: SMTPTestServer) -> None:
    """The page that tells how to create the first account is accessible too."""
    app = create_app(base_config(tmp_path, mail_server))
    upgrade_schema(app)
    with LiveServer(app) as live:
        page = browser.new_page()
        page.goto(f"{live.url}/admin/login")
        assert "users create NAME" in page.inner_text("main")
        assert axe_violations(page) == []
        page.close()


def test_hostile_visitor_text_stays_text_in_the_browser(
        signed_in: Callable[..., Any], console: dict[str, Any]) -> None:
    """The visitor's markup is shown, not run; its bidi override is written out."""
    page = signed_in(1280)
    watched = watch(page)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(f"{console['url']}/admin/submissions/{console['ids']['hostile']}")
    assert page.locator("h1").inner_text() == "<script>alert(1)</script>"
    assert "\\u202egnp.exe" in page.locator(".message-text").inner_text()
    assert page.locator("main img").count() == 0
    assert dialogs == []
    watched.assert_clean()


def test_the_console_works_by_keyboard(signed_in: Callable[..., Any],
                                       console: dict[str, Any]) -> None:
    """Tab reaches the console's navigation after the site's header, with a visible focus
    ring; the search works from the keyboard."""
    page = signed_in(1280)
    for _ in range(3):  # the skip link, the site's name, then the console's first link
        page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.textContent")
    assert focused == "Messages"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"
    page.get_by_label("Search").fill("grace")
    page.keyboard.press("Enter")
    page.wait_for_url("**/admin/?q=grace*")
    assert page.locator("tbody tr").count() == 1


def test_delete_asks_first_and_cancelling_keeps_the_message(
        signed_in: Callable[..., Any], console: dict[str, Any]) -> None:
    """With JavaScript, Delete asks; answering no posts nothing."""
    page = signed_in(1280)
    watched = watch(page)
    page.goto(url_of(console, "detail"))
    asked: list[str] = []
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_timeout(300)
    assert asked and "cannot be undone" in asked[0]
    assert watched.posts == []
    with console["app"].app_context():
        assert db.session.get(Submission, console["ids"]["detail"]) is not None
