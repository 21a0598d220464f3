"""The console in a real Chromium: signing in, axe-core on every page, phone and desktop widths."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from contact_site import create_app
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.schema import upgrade_schema
from contact_site.submissions.models import READ, Submission
from contact_site.submissions.thread import Note, Reply
from support.admin import OWNER, PASSWORD, create_owner, csrf_token, sign_in
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
# The screenshots shown in the README, and those of the list and a thread at both widths.
FOR_DOCS = {"admin-archive-1280", "admin-detail-375", "admin-outbox-1280",
            "admin-list-375", "admin-list-1280", "admin-thread-375", "admin-thread-1280"}
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


def settle(app: Any, submission_id: str, status: Status, replies: list[tuple[str, str]],
           kind: MailKind = MailKind.OWNER) -> None:
    """The owner's mail (or the one mail of `kind`) in `status`, with these (outcome,
    reply) attempts."""
    [mail] = [m for m in mails_of(app, submission_id) if m.kind == kind]
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
    # Read already, as the tests that open them leave them: the list is the same in
    # whichever order the tests run; only the first message stays new.
    with app.app_context():
        db.session.execute(update(Submission).where(Submission.id.in_((failed, hostile)))
                           .values(state=READ))
        db.session.commit()
    live = LiveServer(app)
    live.start()
    yield {"url": live.url, "app": app,
           "ids": {"detail": failed, "hostile": hostile, "delivered": delivered}}
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


# Set through the CSSOM, which the console's Content-Security-Policy allows (a <style> it
# would not).
SAME_SIZE_CODES = """() => {
  for (const code of document.querySelectorAll('.mail-summary dd code')) {
    Object.assign(code.style, {display: 'inline-block', inlineSize: 'min(100%, 34ch)',
                               blockSize: '1.5em', overflow: 'hidden', verticalAlign: 'top'});
  }
}"""


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot in test-output/; copied to docs/screenshots/ when it changed."""
    OUTPUT.mkdir(exist_ok=True)
    path = OUTPUT / f"{name}.png"
    # Ids and Message-IDs are new each run, and not always as long: painted over, in boxes
    # of one size, so the picture stays the same.
    page.evaluate(SAME_SIZE_CODES)
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
    assert focused.split()[0] == "Messages"  # then the count of new ones, if any
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


def test_a_state_is_set_by_keyboard(signed_in: Callable[..., Any],
                                    console: dict[str, Any]) -> None:
    """On a message's page Tab reaches the labelled "Archive" button; Enter archives it, the
    notice says so, and the list no longer shows it."""
    page = signed_in(1280)
    watched = watch(page)
    # A message of its own, without mails: the others, and the outbox, stay as the
    # screenshots show them.
    submission_id = create_submission(console["app"], name="Mary Jackson",
                                      subject="Wind tunnel results")
    with console["app"].app_context():
        db.session.execute(delete(OutboxMail).where(OutboxMail.submission_id == submission_id))
        db.session.commit()
    page.goto(f"{console['url']}/admin/submissions/{submission_id}")
    for _ in range(40):  # the links and buttons before it, however many there are
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Archive":
            break
    assert page.evaluate("document.activeElement.tagName") == "BUTTON"
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "Archived." in page.locator(".console-notice").inner_text()
    assert page.locator(".mail-summary .inbox-state").inner_text() == "archived"
    page.goto(url_of(console, "archive"))
    assert page.locator("tbody tr", has_text="Mary Jackson").count() == 0
    with console["app"].app_context():
        stored = db.session.get(Submission, submission_id)
        assert stored is not None and stored.state == "archived"
    watched.assert_clean()


# A list and a thread as a phone and a desktop show them. Their own site, so the other
# tests' state changes never reach the screenshots kept in docs/.
LONG_ADDRESS = "grace.brewster.murray.hopper@computing-laboratory.navy.example.com"
LONG_SUBJECT = "Re: the COBOL-61-compiler-validation-report for our installation"
REPLY_TEXT = ("Dear Grace,\nthank you: the report is attached to our records, and the "
              "compiler passes every test but one.")
NOTE_TEXT = "Called back on Monday; she will send the missing test by the end of the week."

# Whether any value of a stacked table row runs under its label or past the screen's
# edge, and whether a label's word is wider than the label's column.
LABEL_OVERLAPS = """() => {
  const problems = [];
  const screen = document.documentElement.clientWidth;
  const measure = document.createElement('canvas').getContext('2d');
  for (const cell of document.querySelectorAll('.records td[data-label]')) {
    const name = cell.dataset.label;
    const style = getComputedStyle(cell);
    const label = getComputedStyle(cell, '::before');
    if (label.content === 'none' || label.display === 'none') {
      problems.push(`${name}: no label shown`);
      continue;
    }
    const box = cell.getBoundingClientRect();
    const left = box.left + parseFloat(style.borderLeftWidth) + parseFloat(style.paddingLeft)
      + parseFloat(label.marginLeft);
    const right = left + parseFloat(label.width);
    if (left < box.left - 0.5 || left < 0) problems.push(`${name}: label outside its row`);
    measure.font = label.font;
    for (const word of name.split(/\\s+/)) {
      if (measure.measureText(word).width > parseFloat(label.width) + 0.5) {
        problems.push(`${name}: "${word}" is wider than the label column`);
      }
    }
    const value = document.createRange();
    value.selectNodeContents(cell);
    for (const rect of value.getClientRects()) {
      if (rect.width === 0) continue;
      if (rect.left < right - 0.5) {
        problems.push(`${name}: value at x=${rect.left} under its label (to x=${right})`);
      }
      if (rect.right > screen + 0.5) problems.push(`${name}: value past the screen's edge`);
    }
  }
  return problems;
}"""

# Every line of every address in the list, where it is drawn and where its cell ends.
ADDRESS_LINES = """() => [...document.querySelectorAll('.records .address')].flatMap(address => {
  const cell = address.closest('td').getBoundingClientRect();
  const range = document.createRange();
  range.selectNodeContents(address);
  return [...range.getClientRects()].map(rect => ({
    left: rect.left, right: rect.right, cellLeft: cell.left, cellRight: cell.right}));
})"""

# Words of headings, captions, column headers, summaries, labels and buttons that are cut
# across two lines (codes and addresses may be), and any style that allows it.
BROKEN_WORDS = """() => {
  const broken = [];
  const clipped = element => {
    for (let e = element; e; e = e.parentElement) {
      if (getComputedStyle(e).clipPath !== 'none') return true;
    }
    return false;
  };
  const selector = 'h1, h2, h3, caption, th, summary, label, .button, .console-nav a';
  for (const heading of document.querySelectorAll(selector)) {
    if (clipped(heading) || !heading.checkVisibility()) continue;
    const style = getComputedStyle(heading);
    if (style.wordBreak === 'break-all' || style.overflowWrap === 'anywhere') {
      broken.push(`${heading.tagName} may break anywhere: ${heading.textContent.trim()}`);
    }
    const walker = document.createTreeWalker(heading, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      if (node.parentElement.closest('.address, code')) continue;
      for (const word of node.data.matchAll(/[^\\s\\-\\u2013\\/]+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map(rect => Math.round(rect.top)));
        if (lines.size > 1) broken.push(`${heading.tagName}: ${word[0]}`);
      }
    }
  }
  return broken;
}"""

# Where each part of a thread form is drawn.
FORM_PARTS = """selector => {
  const form = document.querySelector(selector);
  const box = element => {
    const rect = element.getBoundingClientRect();
    return {left: rect.left, right: rect.right, top: rect.top, bottom: rect.bottom,
            width: rect.width, height: rect.height};
  };
  const field = form.querySelector('textarea');
  return {form: box(form), inner: form.clientWidth, field: box(field),
          label: box(form.querySelector(`label[for="${field.id}"]`)),
          button: box(form.querySelector('button[type="submit"]'))};
}"""


@pytest.fixture(scope="module")
def inbox(tmp_path_factory: pytest.TempPathFactory, mail_server: SMTPTestServer,
          browser: Any) -> Iterator[dict[str, Any]]:
    """Its own site: a message from a long address with the owner's reply (sent at the
    second try) and a note in its thread, and a new message beside it."""
    root = tmp_path_factory.mktemp("inbox")
    app = create_app(base_config(root, mail_server))
    upgrade_schema(app)
    create_owner(app)
    other = create_submission(app, name="Ada Lovelace", subject="Plans for the engine")
    settle(app, other, Status.SENT, [("sent", "250 2.0.0 Ok: queued as 7D1E")])
    threaded = create_submission(app, name="Grace Brewster Murray Hopper", email=LONG_ADDRESS,
                                 subject=LONG_SUBJECT)
    settle(app, threaded, Status.SENT, [("sent", "250 2.0.0 Ok: queued as 4F2A")])
    client = app.test_client()
    assert sign_in(client).status_code == 303
    page = f"/admin/submissions/{threaded}"
    replied = client.post(f"{page}/reply", data={"csrf_token": csrf_token(client, page),
                                                  "body": REPLY_TEXT})
    assert replied.status_code == 303
    noted = client.post(f"{page}/notes", data={"csrf_token": csrf_token(client, page),
                                               "text": NOTE_TEXT})
    assert noted.status_code == 303
    settle(app, threaded, Status.SENT,
           [("transient", "451 4.7.1 Greylisted, please try again in 300 seconds"),
            ("sent", "250 2.0.0 Ok: queued as 9B1C")], kind=MailKind.REPLY)
    for minutes, submission_id in enumerate((threaded, other)):
        at(app, submission_id, minutes * 7)
    with app.app_context():  # the thread's times fixed too, for the screenshots
        db.session.execute(update(Reply).values(created_at=RECEIVED.replace(minute=40)))
        db.session.execute(update(Note).values(created_at=RECEIVED.replace(minute=55)))
        db.session.commit()
    live = LiveServer(app)
    live.start()
    yield {"url": live.url, "app": app, "ids": {"thread": threaded, "other": other}}
    live.stop()


@pytest.fixture
def owner_page(browser: Any, inbox: dict[str, Any]) -> Iterator[Callable[[int], Any]]:
    """A page of the inbox's site at this width, signed in through the form."""
    contexts: list[Any] = []

    def opener(width: int) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{inbox['url']}/admin/login")
        page.get_by_label("Username").fill(OWNER)
        page.get_by_label("Password").fill(PASSWORD)
        with page.expect_navigation(url=f"{inbox['url']}/admin/"):
            page.get_by_role("button", name="Sign in").click()
        return page

    yield opener
    for context in contexts:
        context.close()


def unnamed_controls(page: Any) -> list[str]:
    """Buttons, links and disclosure summaries whose accessible name, as Chromium computes
    it for assistive technology, is empty."""
    session = page.context.new_cdp_session(page)
    try:
        nodes = session.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        session.detach()
    controls = [node for node in nodes if not node.get("ignored") and node.get("role", {})
                .get("value") in ("button", "link", "DisclosureTriangle")]
    assert len(controls) > 5, "the accessibility tree lists the page's controls"
    return [f"{node['role']['value']} (node {node.get('backendDOMNodeId')})" for node in controls
            if not str(node.get("name", {}).get("value", "")).strip()]


def assert_readable(page: Any, width: int) -> None:
    """No sideways scrolling, axe finds nothing, every control is named, no heading or
    label breaks inside a word, and every address is drawn whole inside its cell."""
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert axe_violations(page) == []
    assert unnamed_controls(page) == []
    assert page.evaluate(BROKEN_WORDS) == []
    for line in page.evaluate(ADDRESS_LINES):
        assert 0 <= line["left"] and line["right"] <= width, line
        assert line["cellLeft"] - 0.5 <= line["left"] and line["right"] <= line["cellRight"] + 0.5


@pytest.mark.parametrize("width", [375, 1280])
def test_the_message_list_is_readable_on_a_phone_and_a_desktop(
        owner_page: Callable[[int], Any], inbox: dict[str, Any], width: int) -> None:
    """On a phone each message is a card of short labels beside their values, never over
    them; on a desktop a table with its column headers; at both the long address is shown
    whole within the screen, and nothing scrolls sideways."""
    page = owner_page(width)
    watched = watch(page)
    page.goto(f"{inbox['url']}/admin/")
    row = page.locator("tbody tr", has_text="Grace Brewster Murray Hopper")
    assert "".join(row.locator(".address").inner_text().split()) == LONG_ADDRESS
    assert row.locator(".inbox-state").inner_text() == "answered"
    assert_readable(page, width)
    if width == 375:
        assert page.evaluate(LABEL_OVERLAPS) == []
        assert page.locator("thead").bounding_box()["width"] <= 1  # read out, not drawn
        # one card per message, its cells stacked
        first, second = row.locator("td").nth(0), row.locator("td").nth(1)
        assert first.bounding_box()["y"] < second.bounding_box()["y"]
    else:
        headers = page.locator("thead th").all_inner_texts()
        assert headers[:3] == ["Received", "From", "Subject"]
        cells = [row.locator("td").nth(index).bounding_box() for index in range(3)]
        assert cells[0]["y"] == cells[1]["y"] == cells[2]["y"]  # one row, side by side
        assert page.evaluate(
            "getComputedStyle(document.querySelector('.records td'), '::before').content"
        ) == "none"
    screenshot(page, f"admin-list-{width}")
    watched.assert_clean()


@pytest.mark.parametrize("width", [375, 1280])
def test_a_message_thread_is_readable_on_a_phone_and_a_desktop(
        owner_page: Callable[[int], Any], inbox: dict[str, Any], width: int) -> None:
    """The reply and the note are shown in order, the reply's delivery opens to its
    attempts; each form has its label above a full-width field and a button on screen,
    reached by Tab; the forms sit side by side on a desktop, one above the other on a
    phone; nothing scrolls sideways."""
    page = owner_page(width)
    watched = watch(page)
    page.goto(f"{inbox['url']}/admin/submissions/{inbox['ids']['thread']}")
    entries = page.locator("article.thread-entry")
    assert entries.count() == 2
    assert "thread-reply" in (entries.nth(0).get_attribute("class") or "")
    assert "thread-note" in (entries.nth(1).get_attribute("class") or "")
    assert entries.nth(0).locator(".message-text").inner_text() == REPLY_TEXT
    assert entries.nth(1).locator(".message-text").inner_text() == NOTE_TEXT
    delivery = page.locator("details.thread-delivery")
    delivery.locator("summary").focus()
    page.keyboard.press("Enter")  # opens it, as a click would
    attempts = delivery.locator("table.attempts tbody tr")
    assert attempts.count() == 2 and attempts.nth(1).is_visible()
    assert "Greylisted" in attempts.nth(0).inner_text()
    assert_readable(page, width)
    if width == 375:
        assert page.evaluate(LABEL_OVERLAPS) == []
    parts = {name: page.evaluate(FORM_PARTS, f".{name}-form") for name in ("reply", "note")}
    for name, part in parts.items():
        assert abs(part["field"]["width"] - part["inner"]) <= 1, f"{name}: field not full width"
        assert part["label"]["bottom"] <= part["field"]["top"] + 0.5, f"{name}: label not above"
        assert part["label"]["left"] == part["field"]["left"]
        assert 0 <= part["button"]["left"] and part["button"]["right"] <= width
        assert part["button"]["height"] >= 44  # a target a thumb can hit
        assert part["field"]["width"] >= (300 if width == 375 else 350)
    if width == 375:
        assert parts["note"]["form"]["top"] >= parts["reply"]["form"]["bottom"]
    else:
        assert parts["note"]["form"]["left"] >= parts["reply"]["form"]["right"]
        assert parts["note"]["form"]["top"] == parts["reply"]["form"]["top"]
    page.locator("#body").focus()
    page.keyboard.press("Tab")  # the file field
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Send the reply"
    page.locator("#text").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Add the note"
    page.evaluate("document.activeElement.blur()")
    screenshot(page, f"admin-thread-{width}")
    watched.assert_clean()


def test_a_state_is_set_by_keyboard_on_a_phone(
        owner_page: Callable[[int], Any], inbox: dict[str, Any]) -> None:
    """At phone width Tab reaches "Mark as new" and Enter sets it: the list shows the
    message as new and the header counts one more; then "Archive", by keyboard too, takes
    it out of the list."""
    app = inbox["app"]
    submission_id = create_submission(app, name="Katherine Johnson",
                                      email="katherine@example.com", subject="Trajectories")
    page = owner_page(375)
    watched = watch(page)
    detail = f"{inbox['url']}/admin/submissions/{submission_id}"
    page.goto(detail)
    assert page.locator(".mail-summary .inbox-state").inner_text() == "read"  # opened
    count = page.locator(".console-count")
    before = int(count.inner_text().split()[0]) if count.count() else 0

    def press(label: str) -> None:
        page.locator(".console-nav a").first.focus()
        for _ in range(60):  # the links, fields and buttons before it
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent") == label:
                break
        assert page.evaluate("document.activeElement.tagName") == "BUTTON"
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") == "solid"
        right = page.evaluate("document.activeElement.getBoundingClientRect().right")
        assert right <= 375  # on the screen, not beyond its edge
        with page.expect_navigation():
            page.keyboard.press("Enter")

    press("Mark as new")
    assert "Marked as new." in page.locator(".console-notice").inner_text()
    row = page.locator("tbody tr", has_text="Katherine Johnson")
    assert row.locator(".inbox-state").inner_text() == "new"
    assert int(page.locator(".console-count").inner_text().split()[0]) == before + 1
    page.goto(detail)
    press("Archive")
    assert "Archived." in page.locator(".console-notice").inner_text()
    assert page.locator(".mail-summary .inbox-state").inner_text() == "archived"
    page.goto(f"{inbox['url']}/admin/")
    assert page.locator("tbody tr", has_text="Katherine Johnson").count() == 0
    with app.app_context():
        stored = db.session.get(Submission, submission_id)
        assert stored is not None and stored.state == "archived"
    watched.assert_clean()
