"""Every check on text from outside costs time linear in its length, and a request's text
is bounded as a whole, so no post or server reply can hold a worker for long.

In-process checks are timed in CPU seconds against the same check on an input ten times
shorter (linear: about 10x; quadratic: about 100x). The running product is timed
against a plain valid post measured in the same test.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, LanguageAccept, MultiDict
from werkzeug.http import parse_accept_header
from werkzeug.test import encode_multipart

from contact_site.contact.characters import hidden_in_line, hidden_in_message
from contact_site.escaping import escape_controls, without_addresses
from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.limits import form_text_limit
from contact_site.spam.altcha import decode_solution
from contact_site.spam.content import link_count, normalise, parse_blocklist
from contact_site.submissions.models import MESSAGE_MAX, Submission
from support.forms import VALID, form_page, form_tokens
from support.outbox import statuses
from support.waiting import wait_until

MIB = 2**20
LONGER = 10
# Linear costs about LONGER times more; quadratic about LONGER² (100) times.
LINEAR_FACTOR = 25
# The least CPU time one measurement runs for, so that a short input is not lost in noise.
MEASURE_SECONDS = 0.02
# A request refused for its size is answered within this many plain posts' time.
PLAIN_POSTS_FACTOR = 10
# England's flag: black flag, the tag letters g b e n g, CANCEL TAG (7 characters).
FLAG = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"
STRAY_TAG = "\U000e0041"


def cpu_cost(check: Callable[[str], Any], text: str) -> float:
    """CPU seconds one call takes: the least of three measurements, each repeating the call
    for at least MEASURE_SECONDS."""
    best = math.inf
    for _ in range(3):
        calls, start = 0, time.process_time()
        while (spent := time.process_time() - start) < MEASURE_SECONDS or not calls:
            check(text)
            calls += 1
        best = min(best, spent / calls)
    return best


BLOCKLIST = parse_blocklist(["cheap pills", "spam.example", "a" * 40 + "b", "x-y-z"])

# (check, a text of `n` units, n): the longer input is the same text with LONGER times n.
TEXT_CHECKS: dict[str, tuple[Callable[[str], Any], Callable[[int], str], int]] = {
    "message: subdivision flags": (hidden_in_message, lambda n: FLAG * n, 800),
    "message: flags between words": (hidden_in_message, lambda n: ("a " + FLAG) * n, 800),
    "message: black flags without tags": (hidden_in_message, lambda n: "\U0001f3f4a" * n, 2000),
    "message: joiners after viramas": (hidden_in_message, lambda n: "\u0915\u094d\u200d" * n,
                                       2000),
    "message: flags, then a stray tag": (hidden_in_message,
                                         lambda n: FLAG * n + STRAY_TAG, 800),
    "line: emoji ZWJ sequences": (hidden_in_line, lambda n: "\U0001f469\u200d" * n, 50),
    "line: ZWNJ after transparent marks": (
        hidden_in_line, lambda n: ("\u0628" + "\u064b" * 8 + "\u200c") * n + "\u0628", 10),
    "line: ZWNJ and ZWJ after viramas": (hidden_in_line,
                                         lambda n: "\u0915\u094d\u200c\u0915\u094d\u200d" * n, 16),
    "line: modifiers before ZWJ": (
        hidden_in_line, lambda n: ("\U0001f469" + "\ufe0f\U0001f3fb" * 4 + "\u200d") * n, 10),
    "line: long text without joiners": (hidden_in_line, lambda n: "Ada Lovelace " * n, 1000),
    "line: joiners past idna's length": (hidden_in_line,
                                         lambda n: "ab" * n + "\U0001f469\u200d" * n, 1000),
    "reply: one long word": (without_addresses, lambda n: "a" * n, 2000),
    "reply: a@ repeated": (without_addresses, lambda n: "a@" * n, 2000),
    "reply: @a repeated": (without_addresses, lambda n: "@a" * n, 2000),
    "reply: dotted words": (without_addresses, lambda n: "x." * n + ":", 2000),
    "reply: quoted words": (without_addresses, lambda n: "<" + "a" * n + ">", 2000),
    "reply: SMTP lines": (without_addresses, lambda n: "550-5.1.1 " + "user" * n + "\r\n", 500),
    "reply: escaped for a terminal": (escape_controls, lambda n: "\x1b[31m\u202e" * n, 2000),
    "links: schemes": (link_count, lambda n: "http://" * n, 2000),
    "links: www": (link_count, lambda n: "www." * n, 2000),
    "links: scheme and www": (link_count, lambda n: "https://www." * n, 2000),
    "links: markup": (link_count, lambda n: "<a [url " * n, 2000),
    "links: almost a scheme": (link_count, lambda n: "httpsftp:/" * n, 2000),
    "blocklist: one long word": (lambda t: BLOCKLIST.first_match([t]), lambda n: "a" * n, 2000),
    "blocklist: almost the domain": (lambda t: BLOCKLIST.first_match([t]),
                                     lambda n: "spam.exampl " * n, 2000),
    "blocklist: hyphens and dots": (lambda t: BLOCKLIST.first_match([t]),
                                    lambda n: "x-y-" * n + "x." * n, 2000),
    "duplicate: normalised text": (normalise, lambda n: "\ufdfa \t A\u3000" * n, 2000),
    "proof of work: payload": (decode_solution, lambda n: "A" * n, 200),
    "language: Accept-Language": (
        lambda t: parse_accept_header(t, LanguageAccept).best_match(["en", "zh"]),
        lambda n: "zh-CN;q=0.5," * n, 100),
}


@pytest.mark.parametrize(("check", "make", "n"), TEXT_CHECKS.values(), ids=TEXT_CHECKS.keys())
def test_a_text_ten_times_longer_costs_about_ten_times_more(
        check: Callable[[str], Any], make: Callable[[int], str], n: int) -> None:
    short, long = cpu_cost(check, make(n)), cpu_cost(check, make(LONGER * n))
    assert long <= LINEAR_FACTOR * short, (
        f"{LONGER}x longer input cost {long / short:.0f}x more ({short:.6f}s → {long:.6f}s)")


def test_a_hostile_servers_long_reply_is_logged_without_its_addresses_quickly() -> None:
    """A 128 KiB reply quoting an address is redacted, in about the time of a short one."""
    reply = "550 5.1.1 <ada@example.com>: " + "x" * (128 * 1024) + " user@example.org"
    assert without_addresses(reply) == (
        "550 5.1.1 <<address>>: " + "x" * (128 * 1024) + " <address>")
    assert cpu_cost(without_addresses, reply) <= LINEAR_FACTOR * cpu_cost(
        without_addresses, reply[:len(reply) // LONGER])


# The running product: gunicorn as operators run it, mails to the real SMTP test server.


def post(port: int, cookie: str, body: bytes | Iterable[bytes], content_type: str,
         ) -> tuple[int, bytes, float]:
    """POST to the running site: the status, the body and the seconds until it was read.

    The body is sent from a thread while the answer is read, as a browser does: a site
    that refuses a body by its length answers before reading it, and may then close
    the connection on a client still sending.
    """
    length = (f"Content-Length: {len(body)}" if isinstance(body, bytes)
              else "Transfer-Encoding: chunked")
    head = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
            f"Cookie: {cookie}\r\nAccept: application/json\r\nConnection: close\r\n"
            f"{length}\r\n\r\n").encode()
    parts = [body] if isinstance(body, bytes) else chunk_encoded(body)
    with socket.create_connection(("127.0.0.1", port), timeout=60) as connection:
        start = time.perf_counter()
        sender = threading.Thread(target=send_all, args=(connection, [head, *parts]))
        sender.start()
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = response.read()
        seconds = time.perf_counter() - start
        with contextlib.suppress(OSError):  # the site may have closed it already
            connection.shutdown(socket.SHUT_RDWR)  # ends a send still under way
    sender.join(30)
    return response.status, answer, seconds


def send_all(connection: socket.socket, parts: Iterable[bytes]) -> None:
    """Send every part, until the site stops listening."""
    try:
        for part in parts:
            connection.sendall(part)
    except OSError:  # closed after an early answer: the rest is not wanted
        pass


def chunk_encoded(chunks: Iterable[bytes]) -> list[bytes]:
    """HTTP/1.1 chunked encoding of these chunks, with the closing empty chunk."""
    return [f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" for chunk in chunks] + [b"0\r\n\r\n"]


def urlencoded(fields: dict[str, str]) -> tuple[bytes, str]:
    """A body and its content type, as a browser encodes a form without a file."""
    return urlencode(fields).encode(), "application/x-www-form-urlencoded"


def multipart(fields: dict[str, Any]) -> tuple[bytes, str]:
    """A multipart body and its content type; a (bytes, name) value is sent as a file."""
    parts = MultiDict({name: FileStorage(io.BytesIO(value[0]), filename=value[1])
                       if isinstance(value, tuple) else value for name, value in fields.items()})
    boundary, body = encode_multipart(parts)
    return body, f"multipart/form-data; boundary={boundary}"


def stored(app: Any) -> int:
    """How many submissions the site has stored."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Submission)) or 0)


class Site:
    """The running site, a visitor's session on it, and how long a plain post takes."""

    def __init__(self, app: Any, port: int) -> None:
        self.app, self.port = app, port
        self.cookie, self.tokens = form_page(port)
        self.plain_seconds = self._plain_posts()

    def fields(self, **changed: Any) -> dict[str, Any]:
        """The valid form with this session's token and a fresh submission key."""
        return {**VALID, "csrf_token": self.tokens["csrf_token"],
                "submission_key": uuid.uuid4().hex, **changed}

    def _plain_posts(self) -> float:
        """The median time of three valid posts (after one to warm the workers up)."""
        times = []
        for number in range(4):
            body, kind = urlencoded(self.fields(email=f"ada{number}@example.com"))
            status, answer, seconds = post(self.port, self.cookie, body, kind)
            assert status == 202, answer[:500]
            times.append(seconds)
        # Delivery of these mails is over before anything else is timed.
        wait_until(lambda: statuses(self.app)["queued"] + statuses(self.app)["sending"] == 0,
                   30, "the plain posts' mails to be sent")
        return sorted(times[1:])[1]

    def answer(self, body: bytes | Iterable[bytes] | Callable[[], Iterable[bytes]],
               kind: str) -> tuple[int, bytes, float]:
        """Post twice; the status and body of the faster try, and its time."""
        tries = [post(self.port, self.cookie, body() if callable(body) else body, kind)
                 for _ in range(2)]
        status, answer, seconds = min(tries, key=lambda found: found[2])
        assert {found[0] for found in tries} == {status}, "the two tries were answered apart"
        return status, answer, seconds

    def assert_quick(self, seconds: float, what: str) -> None:
        """Within PLAIN_POSTS_FACTOR plain posts' time."""
        assert seconds <= PLAIN_POSTS_FACTOR * self.plain_seconds, (
            f"{what} took {seconds:.3f}s, a plain post {self.plain_seconds:.3f}s")


@pytest.fixture
def site(app: Any, gunicorn: Callable[..., Any]) -> Site:
    """The site under gunicorn on the app's database, with a plain post timed."""
    _process, _log, port = gunicorn()
    return Site(app, port)


def chunked(data: bytes, size: int = 64 * 1024) -> Callable[[], Iterable[bytes]]:
    """A body sent with chunked encoding: no Content-Length to refuse it by."""
    return lambda: (data[start:start + size] for start in range(0, len(data), size))


TEXT_LIMIT_WORDS = b"A message may have at most 10,000 characters"


def test_oversize_text_bodies_get_413_before_they_are_read(app: Any, site: Site) -> None:
    """1 MiB of text, urlencoded, multipart or chunked, and 11 MiB urlencoded: 413 with
    the text limit's words, as fast as a plain post, and nothing stored."""
    before = stored(app)
    megabyte = "x" * MIB
    bodies = {
        "1 MiB urlencoded": urlencoded(site.fields(message=megabyte)),
        "1 MiB multipart message": multipart(site.fields(message=megabyte)),
        "1 MiB in 100 KB multipart parts": multipart(site.fields(
            **{f"extra{number}": "x" * 100_000 for number in range(10)})),
        "text parts beside a small file": multipart(site.fields(
            website="y" * 90_000, subject="s" * 90_000, attachment=(b"%PDF-1.4\n", "a.pdf"))),
        "11 MiB urlencoded": urlencoded(site.fields(message="x" * (11 * MIB - 4096))),
    }
    for what, (body, kind) in bodies.items():
        status, answer, seconds = site.answer(body, kind)
        assert status == 413 and TEXT_LIMIT_WORDS in answer, (what, status, answer[:300])
        site.assert_quick(seconds, what)
    body, kind = urlencoded(site.fields(message=megabyte))
    status, answer, seconds = site.answer(chunked(body), kind)
    assert status == 413 and TEXT_LIMIT_WORDS in answer, ("chunked", status, answer[:300])
    site.assert_quick(seconds, "1 MiB urlencoded, chunked")
    assert stored(app) == before


def test_the_131_kb_message_of_emoji_flags_is_refused_as_fast_as_a_plain_post(
        app: Any, site: Site) -> None:
    """The post that took 25 s: a length error at once, and only that."""
    before = stored(app)
    body, kind = multipart(site.fields(message=FLAG * (131_000 // len(FLAG.encode()))))
    assert len(body) > 130_000
    status, answer, seconds = site.answer(body, kind)
    assert status == 422, answer[:300]
    assert http_errors(answer) == {"message": ["Use at most 10,000 characters."]}
    site.assert_quick(seconds, "the 131 KB flag message")
    assert stored(app) == before


def test_the_longest_message_of_flags_is_checked_whole_as_fast_as_a_plain_post(
        app: Any, site: Site) -> None:
    """A message of flags up to its limit, a stray tag at its end: found, quickly."""
    flags = FLAG * ((MESSAGE_MAX - 1) // len(FLAG))
    body, kind = multipart(site.fields(message=flags + STRAY_TAG))
    status, answer, seconds = site.answer(body, kind)
    assert status == 422 and "U+E0041" in http_errors(answer)["message"][0], answer[:300]
    site.assert_quick(seconds, "the longest flag message")
    body, kind = multipart(site.fields(message=flags, email="flags@example.com"))
    status, answer, seconds = site.answer(body, kind)
    assert status == 202, answer[:300]
    site.assert_quick(seconds, "the longest valid flag message")


def http_errors(answer: bytes) -> dict[str, list[str]]:
    """The field errors of a 422 JSON answer."""
    errors: dict[str, list[str]] = json.loads(answer)["errors"]
    return errors


# Every typed character four UTF-8 bytes (twelve once percent-encoded), every field full.
WIDEST = "\U0001f600"
WIDEST_FORM = {"name": WIDEST * 100, "subject": WIDEST * 200, "message": WIDEST * MESSAGE_MAX,
               "email": "a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 55 + ".com"}


@pytest.mark.manual_delivery
@pytest.mark.parametrize("encode", [urlencoded, multipart], ids=["urlencoded", "multipart"])
def test_the_longest_valid_form_fits_the_text_limit(client: Any, encode: Any) -> None:
    """The bound is derived from the fields' limits: a full form of the widest characters
    passes in either encoding, with the hidden fields beside it."""
    body, kind = encode({**VALID, **form_tokens(client), **WIDEST_FORM, "altcha": "p" * 2048})
    response = client.post("/", data=body, content_type=kind,
                           headers={"Accept": "application/json"})
    assert response.status_code == 202, response.get_data(as_text=True)[:300]


TOO_LONG_WORDS = {"en": ("The message is too long", "A message may have at most 10,000 characters"),
                  "zh": ("留言过长", "留言最多可输入 10,000 个字符")}


@pytest.mark.manual_delivery
@pytest.mark.parametrize("language", TOO_LONG_WORDS)
def test_too_much_text_is_refused_in_the_visitors_language(client: Any, language: str) -> None:
    """413 naming the message's limit (not the file's), as a page or as JSON."""
    client.set_cookie("lang", language)
    fields = {**VALID, **form_tokens(client), "message": "x" * MIB}
    title, words = TOO_LONG_WORDS[language]
    page = client.post("/", data=fields, headers={"Accept": "text/html"})
    assert page.status_code == 413
    assert title in page.get_data(as_text=True) and words in page.get_data(as_text=True)
    answer = client.post("/", data=fields, headers={"Accept": "application/json"})
    assert answer.status_code == 413
    [message] = answer.get_json()["errors"]["message"]
    assert words in message


def test_the_text_limit_is_the_widest_valid_form_with_little_room(app: Flask) -> None:
    """Derived from the fields' limits: the widest valid form, percent-encoded, and some room
    for the hidden fields; nowhere near the megabytes an attachment may take."""
    body, _kind = urlencoded({**VALID, **WIDEST_FORM})
    assert len(body) < form_text_limit(declaration_of(app)) <= 1.25 * len(body)
