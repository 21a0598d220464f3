"""Upload limits that hold under abuse, tried from outside against gunicorn with the shipped
configuration, a real SMTP server and the real upload folder (README, "Limits that hold
under abuse").

- A 9 MB .docx whose [Content_Types].xml holds 2 million entries is refused (422) for
  about what a plain upload of its size costs to accept, and the memory of gunicorn's
  processes hardly grows (before the limits: 5 to 16 s of CPU and about 300 MiB).
- Past CONTACT_UPLOAD_QUOTA_MB a new file gets 507 in plain words and nothing is kept (no
  row, no folder, no mail); the same message without the file still passes, and files
  that retention or erasure removes free their room.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site.database import utcnow
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.records.privacy import erase_address
from contact_site.records.retention import purge
from contact_site.submissions.models import Submission
from support.forms import form_page, post_form
from support.outbox import statuses
from support.upload_samples import MIB, content_types_flood, stored_docx
from support.waiting import wait_until

# Stored and mailed at once: the spam layers would hold a post made this quickly.
HAM = {"CONTACT_PROOF_OF_WORK": "off", "CONTACT_MIN_FILL_SECONDS": "0",
       "CONTACT_DUPLICATE_HOURS": "0"}
FIELDS = {"recipient": "sales", "name": "Ada Lovelace", "subject": "Engines",
          "message": "Hello,\nplease find my notes attached."}
TOO_COMPLEX = b"inner structure is larger or more deeply nested than real documents are"
NO_ROOM = "The site cannot take more files at the moment, so nothing was sent."
PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Answer:
    """One POST as gunicorn answered it, with what it cost gunicorn's processes."""

    status: int
    body: bytes
    cpu: float  # seconds of CPU, all the processes together
    grown: int  # the peak of their resident memory over what it was before, in bytes


def process_group(master: int) -> list[int]:
    """gunicorn's master and its workers."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [master, *map(int, children)]


def resident(pids: list[int]) -> int:
    """The processes' resident memory together, in bytes."""
    return sum(int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE for pid in pids)


def cpu_seconds(pids: list[int]) -> float:
    """The CPU time (user and system) the processes have used, together."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15
    return total / TICK


class MemoryWatch:
    """Samples the processes' resident memory every few milliseconds until stopped."""

    def __init__(self, pids: list[int]) -> None:
        self.pids, self.peak = pids, resident(pids)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        """Keep the highest total seen."""
        while not self.stopped.wait(0.002):
            self.peak = max(self.peak, resident(self.pids))

    def stop(self) -> int:
        """The peak seen, in bytes."""
        self.stopped.set()
        self.thread.join(5)
        return max(self.peak, resident(self.pids))


def post(port: int, pids: list[int], email: str, file: tuple[str, bytes] | None = None,
         as_json: bool = False) -> Answer:
    """POST the contact form with a fresh token, the file if any; the answer and its cost."""
    cookie, tokens = form_page(port)
    fields = MultiDict({**FIELDS, "email": email, **tokens})
    if file is not None:
        fields.add("attachment", FileStorage(io.BytesIO(file[1]), filename=file[0]))
    boundary, body = encode_multipart(fields)
    headers = {"Cookie": cookie, "Accept": "application/json" if as_json else "text/html",
               "Content-Type": f"multipart/form-data; boundary={boundary}"}
    before, cpu_before = resident(pids), cpu_seconds(pids)
    watch = MemoryWatch(pids)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", "/", body=body, headers=headers)
        response = connection.getresponse()
        answer = response.read()
    finally:
        connection.close()
        peak = watch.stop()
    return Answer(response.status, answer, cpu_seconds(pids) - cpu_before, peak - before)


def settle(smtp_server: Any, mails: int) -> None:
    """Wait for this many mails in all, so delivery is idle before the next measurement."""
    smtp_server.wait_for(mails, timeout=30)
    time.sleep(0.5)  # the worker records each mail as sent after the server's reply


@pytest.mark.timeout(240)
def test_a_flood_of_content_types_costs_what_a_plain_upload_does(app, gunicorn, smtp_server):
    """2 million entries in 9 MB: 422 in plain words, at most three times the CPU a plain
    9 MB document costs to accept, and under 50 MiB of memory where the plain one takes
    what it takes (the best of two runs each; memory from the first, on a fresh worker)."""
    process, _log, port = gunicorn("--workers", "1", **HAM)
    pids = process_group(process.pid)
    flood = content_types_flood()
    plain = stored_docx(len(flood))
    assert post(port, pids, "warm@example.com", ("notes.docx", stored_docx(64 * 1024))
                ).status == 303
    settle(smtp_server, 2)  # the first request loaded what every request needs
    refused = [post(port, pids, "eve@example.com", ("flood.docx", flood)) for _ in range(2)]
    accepted = []
    for number in range(2):
        accepted.append(post(port, pids, f"ada{number}@example.com", ("photo.docx", plain)))
        settle(smtp_server, 4 + 2 * number)
    costs = [(a.cpu, round(a.grown / MIB, 1)) for a in refused + accepted]
    assert min(a.cpu for a in refused) <= 3 * min(a.cpu for a in accepted), costs
    assert refused[0].grown < 50 * MIB, costs
    assert [(a.status, TOO_COMPLEX in a.body) for a in refused] == [(422, True)] * 2
    assert [a.status for a in accepted] == [303, 303]


def stored_rows(app: Flask) -> list[tuple[str, str | None]]:
    """Each stored submission's address and (first) file path."""
    with app.app_context():
        return [(row.email, row.files[0].path if row.files else None) for row in
                db.session.scalars(db.select(Submission).order_by(Submission.created_at))]


@pytest.mark.timeout(180)
def test_past_the_quota_a_file_gets_507_and_nothing_is_kept(app, gunicorn, smtp_server):
    """CONTACT_UPLOAD_QUOTA_MB=1: a file that would pass it is refused in plain words, HTML
    and JSON, with no row, folder or mail; the same message without the file passes."""
    process, _log, port = gunicorn("--workers", "1", CONTACT_UPLOAD_QUOTA_MB="1", **HAM)
    pids = process_group(process.pid)
    uploads = Path(app.config["UPLOAD_FOLDER"])
    first = post(port, pids, "ada@example.com", ("notes.docx", stored_docx(600 * 1024)))
    assert first.status == 303  # 600 KiB of the 1 MiB
    settle(smtp_server, 2)
    second = ("more.docx", stored_docx(600 * 1024))
    page = post(port, pids, "grace@example.com", second)
    answer = post(port, pids, "grace@example.com", second, as_json=True)
    alone = post(port, pids, "grace@example.com", ("big.docx", stored_docx(3 * MIB // 2)))
    assert (page.status, answer.status, alone.status) == (507, 507, 507)
    assert NO_ROOM in page.body.decode() and 'name="message"' in page.body.decode()
    assert json.loads(answer.body)["errors"]["attachment"][0].startswith(NO_ROOM)
    assert [email for email, _path in stored_rows(app)] == ["ada@example.com"]
    assert len(list(uploads.iterdir())) == 1
    assert post(port, pids, "grace@example.com").status == 303
    assert post(port, pids, "grace@example.com", as_json=True).status == 202
    settle(smtp_server, 6)  # each message: the owner's mail and a thank-you
    assert [email for email, _path in stored_rows(app)] == ["ada@example.com"] + [
        "grace@example.com"] * 2
    with app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(OutboxMail)) == 6
    assert len(smtp_server.messages) == 6


def file_of(kib: int) -> tuple[io.BytesIO, str]:
    """A real .docx of about `kib` KiB, as post_form sends a file."""
    return io.BytesIO(stored_docx(kib * 1024)), "notes.docx"


@pytest.mark.each_database
def test_files_removed_by_retention_or_erasure_free_their_room(make_app, database_url,
                                                               smtp_server):
    """With room for one 600 KiB file: the second waits until retention removes the first
    file (its mail sent), the third until erasure removes the second. SQLite and PostgreSQL."""
    app = make_app(CONTACT_UPLOAD_QUOTA_MB=1, DATABASE_URL=database_url)
    client = app.test_client()
    assert post_form(client, email="ada@example.com", attachment=file_of(600)).status_code == 303
    assert post_form(client, email="grace@example.com",
                     attachment=file_of(600)).status_code == 507
    wait_until(lambda: statuses(app).get("sent") == 2, 30, "ada's two mails")
    with app.app_context():
        assert purge(utcnow() + timedelta(days=31)).uploads == 1
    assert post_form(client, email="grace@example.com",
                     attachment=file_of(600)).status_code == 303
    assert post_form(client, email="alan@example.com", attachment=file_of(600)).status_code == 507
    with app.app_context():
        assert erase_address("grace@example.com").files == 1
    assert post_form(client, email="alan@example.com", attachment=file_of(600)).status_code == 303
