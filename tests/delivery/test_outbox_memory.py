"""Large attachments: streamed from disk while sent, byte for byte, in little memory."""

from __future__ import annotations

import base64
import os
import tracemalloc
from pathlib import Path

import pytest

from benchmarks.run import peak_memory, smtp_server_process
from contact_site.delivery.mime import BASE64_BLOCK, StreamedMail
from support.factories import queue_submissions
from support.outbox import deliver_now, row

# An app whose delivery is driven by hand.
pytestmark = pytest.mark.manual_delivery

MIB = 2**20


@pytest.mark.timeout(60)
def test_10_mb_attachment_is_sent_holding_far_less_than_one_copy():
    """Composing and sending a 10 MiB upload allocates under half its size at peak."""
    size = 10 * MIB
    with smtp_server_process() as port:  # the server's memory is not ours to count
        peak, _elapsed = peak_memory(port, size)
    assert peak < size / 2, f"peak {peak / MIB:.1f} MiB for a {size / MIB:.0f} MiB file"


@pytest.mark.timeout(60)
def test_10_mb_attachment_arrives_byte_for_byte(app, smtp_server):
    data = os.urandom(10 * MIB)
    (mail_id,) = queue_submissions(app, attachment=data)
    deliver_now(app)
    assert row(app, mail_id).status == "sent"
    (received,) = smtp_server.messages
    (part,) = list(received.message.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == data


def test_lines_starting_with_a_dot_survive_the_dot_stuffing(app, smtp_server):
    text = ".hidden first line\n..two dots\n.\nend"
    queue_submissions(app, attachment=b"%PDF-1.4\n", message=text)
    deliver_now(app)
    (received,) = smtp_server.messages
    body = received.message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    assert text in body


@pytest.mark.parametrize("size", [1, 2, 3, 56, 57, 58, 114, BASE64_BLOCK - 1, BASE64_BLOCK,
                                  BASE64_BLOCK + 1, 3 * BASE64_BLOCK + 40])
def test_streamed_mail_announces_its_exact_size(tmp_path: Path, size: int):
    """The SIZE given to the server is the length of what is sent, for every remainder."""
    path = tmp_path / "file.bin"
    data = os.urandom(size)
    path.write_bytes(data)
    mail = StreamedMail(b"head\r\n\r\n", path, b"\r\n--end--\r\n")
    sent = b"".join(mail.chunks())
    assert len(mail) == len(sent)
    encoded = sent.removeprefix(b"head\r\n\r\n").removesuffix(b"\r\n--end--\r\n")
    assert all(len(line) <= 76 for line in encoded.split(b"\r\n"))
    assert base64.b64decode(encoded) == data


def test_tracemalloc_is_left_off():
    """The memory measurement stops tracing, so later tests run at full speed."""
    assert not tracemalloc.is_tracing()
