"""A load generator that submits the contact form as a browser does, on loopback.

Each virtual visitor (a thread with its own keep-alive connection and cookies)
GETs the form, takes every hidden field from it (CSRF token, submission key,
whatever else the page carries) and POSTs it back as multipart/form-data. Only
the POST is timed; every visitor writes from an address of its own, so no
per-mailbox cap applies, and a text of its own, so none is a duplicate.
"""

from __future__ import annotations

import http.client
import itertools
import re
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

HIDDEN = re.compile(r"<input\b[^>]*>", re.IGNORECASE)
ATTRIBUTE = re.compile(r'(\w[\w-]*)="([^"]*)"')
_visitor_numbers = itertools.count(1)


@dataclass
class LoadResult:
    """What one run measured."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    # Why the failed requests failed (their ValueError's words, or the exception's name).
    refusals: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        """p50/p99 in milliseconds and completed requests per second."""
        ordered = sorted(self.latencies)
        if not ordered:
            return {"p50_ms": None, "p99_ms": None, "rps": 0.0, "requests": 0,
                    "errors": self.errors}
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
                "p99_ms": round(p99 * 1000, 2),
                "rps": round(len(ordered) / self.seconds, 1), "requests": len(ordered),
                "errors": self.errors}


def hidden_fields(page: str) -> dict[str, str]:
    """The name and value of every hidden input of a page."""
    fields = {}
    for tag in HIDDEN.findall(page):
        attributes = dict(ATTRIBUTE.findall(tag))
        if attributes.get("type", "").lower() == "hidden" and "name" in attributes:
            fields[attributes["name"]] = attributes.get("value", "")
    return fields


# One file of a multipart body: (field name, file name, bytes, content type).
Upload = tuple[str, str, bytes, str]


def multipart(fields: dict[str, str], files: Sequence[Upload] = ()) -> tuple[bytes, str]:
    """The fields, then the files, encoded as a browser encodes a form with file inputs."""
    boundary = f"----bench{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
             f"{value}\r\n".encode() for name, value in fields.items()]
    parts += [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
              f'filename="{filename}"\r\nContent-Type: {kind}\r\n\r\n'.encode()
              + data + b"\r\n" for name, filename, data, kind in files]
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Visitor:
    """One browser: a keep-alive connection and its cookies."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookies: dict[str, str] = {}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request; reconnects once if the server closed the keep-alive connection."""
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                data = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        for name, value in response.getheaders():
            if name.lower() == "set-cookie":
                key, _, rest = value.partition("=")
                self.cookies[key.strip()] = rest.split(";", 1)[0]
        return response.status, data

    def submit(self) -> float:
        """GET the form, POST it filled in; the POST's seconds (ValueError if refused)."""
        _, page = self.fetch("/")
        number = next(_visitor_numbers)
        fields = {**hidden_fields(page.decode()), "recipient": "sales", "name": "Ada Lovelace",
                  "email": f"visitor{number}@example.com", "subject": f"Question {number}",
                  # A text of its own: the same text again from one address is a duplicate
                  # (spam: stored, never mailed), and every post here comes from 127.0.0.1.
                  "message": f"Hello,\nI have question {number} about the analytical engine.",
                  "website": ""}
        return self.post("/", fields)

    def get_page(self) -> float:
        """GET the form alone; its seconds."""
        return self.fetch("/")[0]

    def fetch(self, path: str, headers: dict[str, str] | None = None) -> tuple[float, bytes]:
        """GET `path`; its seconds and body (ValueError unless it answered 200)."""
        started = time.perf_counter()
        status, body = self.request("GET", path, headers=headers)
        elapsed = time.perf_counter() - started
        if status != 200:
            raise ValueError(f"GET {path} answered {status}")
        return elapsed, body

    def post(self, path: str, fields: dict[str, str], files: Sequence[Upload] = (),
             headers: dict[str, str] | None = None, expect: int = 303) -> float:
        """POST fields and files as multipart/form-data; its seconds (ValueError unless
        it answered `expect`)."""
        body, content_type = multipart(fields, files)
        started = time.perf_counter()
        status, answer = self.request("POST", path, body,
                                      {"Accept": "text/html", **(headers or {}),
                                       "Content-Type": content_type})
        elapsed = time.perf_counter() - started
        if status != expect:
            raise ValueError(f"POST {path} answered {status}: {answer[:200]!r}")
        return elapsed

    def close(self) -> None:
        """Close the connection."""
        self.connection.close()


def run_load(port: int, concurrency: int, seconds: float, get_only: bool = False,
             count: int | None = None) -> LoadResult:
    """`concurrency` visitors submitting for `seconds` (or `count` submissions in all)."""
    action = Visitor.get_page if get_only else Visitor.submit
    return run_visits(port, concurrency, seconds, action, count=count)


def run_visits(port: int, concurrency: int, seconds: float, action: Callable[[Visitor], float],
               count: int | None = None,
               make_visitor: Callable[[int], Visitor] = Visitor) -> LoadResult:
    """`concurrency` visitors each doing `action` (its timed seconds) over and over for
    `seconds` (or `count` actions in all)."""
    result, lock = LoadResult(), threading.Lock()
    deadline = time.monotonic() + seconds
    budget = itertools.count() if count is not None else None

    def visit() -> None:
        visitor = make_visitor(port)
        try:
            while time.monotonic() < deadline:
                if budget is not None and next(budget) >= (count or 0):
                    return
                try:
                    elapsed = action(visitor)
                except (ValueError, OSError, http.client.HTTPException) as error:
                    with lock:
                        result.errors += 1
                        result.refusals[str(error)[:120] or type(error).__name__] += 1
                    continue
                with lock:
                    result.latencies.append(elapsed)
        finally:
            visitor.close()

    threads = [threading.Thread(target=visit, name=f"visitor-{n}") for n in range(concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.monotonic() - started
    return result
