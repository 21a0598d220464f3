"""A hostile mail server's replies: an endless multi-line reply is cut off, not read for ever."""

from __future__ import annotations

import smtplib
import socket
import threading
import time

import pytest

from contact_site.delivery.smtp import MAX_REPLY_BYTES, StreamingSMTP


class EndlessGreeting:
    """A loopback server that greets with "220-" lines until the client hangs up."""

    def __init__(self, ehlo_lines: int | None = None) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = 0
        self.ehlo_lines = ehlo_lines
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        line = b"220-" + b"x" * 1000 + b"\r\n"
        deadline = time.monotonic() + 20  # bounded, whatever the client does
        with conn:
            try:
                if self.ehlo_lines is None:
                    while time.monotonic() < deadline:
                        conn.sendall(line)
                        self.sent += len(line)
                else:
                    conn.sendall(b"220 ready\r\n")
                    conn.recv(1024)
                    body = b"".join(b"250-EXT%d\r\n" % n for n in range(self.ehlo_lines))
                    conn.sendall(body + b"250 OK\r\n")
                    conn.recv(1024)
            except OSError:
                pass  # the client hung up: what we wanted

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


def test_an_endless_reply_is_cut_off_after_a_bounded_length():
    """The server never ends its greeting: the client gives up after MAX_REPLY_BYTES."""
    server = EndlessGreeting()
    try:
        started = time.monotonic()
        # Without the bound smtplib reads until the server gives up (20 s) and then reports
        # an unexpected close, not the length.
        cut_off = f"reply ran past {MAX_REPLY_BYTES}"
        with pytest.raises(smtplib.SMTPServerDisconnected, match=cut_off):
            StreamingSMTP("127.0.0.1", server.port, timeout=5)
        assert time.monotonic() - started < 15, "cut off long before the server's own limit"
    finally:
        server.close()


def test_an_ordinary_long_ehlo_reply_is_read_whole():
    """A server with many extensions (a few KiB) is understood as before."""
    server = EndlessGreeting(ehlo_lines=200)
    try:
        client = StreamingSMTP("127.0.0.1", server.port, timeout=5)
        code, _ = client.ehlo("client.example.org")
        assert code == 250
        assert client.has_extn("ext199")
        client.close()
    finally:
        server.close()
