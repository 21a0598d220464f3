"""Tests of the SMTPTestServer helper itself, driven by plain smtplib."""

from __future__ import annotations

import smtplib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

try:  # works whether or not tests/ is a package
    from tests.smtp_server import SMTPTestServer
except ModuleNotFoundError:
    from support.smtp_server import SMTPTestServer

SENDER = "sender@example.com"
RECIPIENTS = ["one@example.com", "two@example.org"]
# Non-ASCII body, a dot-stuffed line and a trailing space: data must come back byte for byte.
RAW = (
    b"From: Sender <sender@example.com>\r\n"
    b"To: one@example.com, two@example.org\r\n"
    b"Subject: Hello\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9 \r\n"
    b".leading dot\r\n"
    b"last line\r\n"
)


@pytest.fixture
def server() -> Iterator[SMTPTestServer]:
    srv = SMTPTestServer()
    srv.start()
    try:
        yield srv
    finally:
        started = time.monotonic()
        srv.close()
        assert time.monotonic() - started < 2.5, "stop() must be bounded"


def client(srv: SMTPTestServer, timeout: float = 5) -> smtplib.SMTP:
    return smtplib.SMTP(srv.host, srv.port, timeout=timeout)


def send(srv: SMTPTestServer, raw: bytes = RAW) -> None:
    with client(srv) as smtp:
        smtp.sendmail(SENDER, RECIPIENTS, raw)


@pytest.mark.timeout(30)
def test_accept_records_exact_bytes_and_envelope(server: SMTPTestServer) -> None:
    send(server)
    (mail,) = server.wait_for(1, timeout=5)
    assert mail.mail_from == SENDER
    assert mail.rcpt_tos == RECIPIENTS
    assert mail.data == RAW
    assert mail.message["Subject"] == "Hello"
    # BytesParser keeps the wire's CRLF inside bodies (headers are unfolded/stripped).
    assert mail.message.get_content() == "café \r\n.leading dot\r\nlast line\r\n"
    assert server.data_commands == 1
    assert server.connections == 1  # Controller's start-up probe is not counted


@pytest.mark.timeout(30)
def test_accepts_large_message(server: SMTPTestServer) -> None:
    line = b"x" * 76 + b"\r\n"
    raw = b"Subject: big\r\n\r\n" + line * (21 * 1024 * 1024 // len(line))
    send(server, raw)
    assert server.wait_for(1)[0].data == raw


@pytest.mark.timeout(30)
def test_delay_mode_delays_without_blocking_other_connections(server: SMTPTestServer) -> None:
    server.mode = "delay"
    server.delay = 1.0
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            send(server)
        except BaseException as exc:  # reported from the main thread
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    elapsed = time.monotonic() - started
    assert not errors
    assert 1.0 <= elapsed < 2.5, elapsed  # parallel, not 3 x 1 s
    assert len(server.wait_for(3)) == 3


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("mode", "code", "text"),
    [
        ("451", 451, b"4.3.0 Try again later"),
        ("550", 550, b"5.7.1 Rejected by policy"),
        ("552", 552, b"5.3.4 Message too big"),
    ],
)
def test_refusing_modes(server: SMTPTestServer, mode: str, code: int, text: bytes) -> None:
    server.mode = mode
    with client(server) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as info:
            smtp.sendmail(SENDER, RECIPIENTS, RAW)
        assert info.value.smtp_code == code
        assert info.value.smtp_error == text
        assert smtp.noop()[0] == 250  # the connection stays usable after a refusal
    assert server.messages == []
    assert server.data_commands == 1


@pytest.mark.timeout(30)
def test_421_replies_then_closes(server: SMTPTestServer) -> None:
    # The 421 reply is fully sent before the close, so smtplib.sendmail() reliably raises
    # SMTPDataError(421) (it closes its side itself on 421), not SMTPServerDisconnected.
    server.mode = "421"
    smtp = client(server)
    with pytest.raises(smtplib.SMTPDataError) as info:
        smtp.sendmail(SENDER, RECIPIENTS, RAW)
    assert info.value.smtp_code == 421
    assert info.value.smtp_error == b"4.3.0 Service shutting down"
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.noop()
    assert server.messages == []


@pytest.mark.timeout(30)
def test_421_server_really_closes_the_connection(server: SMTPTestServer) -> None:
    server.mode = "421"
    smtp = client(server)
    smtp.ehlo()
    smtp.mail(SENDER)
    smtp.rcpt(RECIPIENTS[0])
    # Low-level DATA so smtplib does not close the socket itself.
    assert smtp.docmd("DATA")[0] == 354
    smtp.send(RAW + b".\r\n")
    assert smtp.getreply() == (421, b"4.3.0 Service shutting down")
    assert smtp.sock is not None
    assert smtp.sock.recv(1) == b""  # EOF from the server
    smtp.close()


@pytest.mark.timeout(30)
def test_drop_data_closes_without_reply(server: SMTPTestServer) -> None:
    server.mode = "drop_data"
    smtp = client(server)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.sendmail(SENDER, RECIPIENTS, RAW)
    smtp.close()
    assert server.messages == []
    assert server.data_commands == 1


@pytest.mark.timeout(30)
def test_drop_quit_accepts_then_drops_quit(server: SMTPTestServer) -> None:
    server.mode = "drop_quit"
    smtp = client(server)
    assert smtp.sendmail(SENDER, RECIPIENTS, RAW) == {}
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp.quit()
    smtp.close()
    assert [m.data for m in server.wait_for(1)] == [RAW]


@pytest.mark.timeout(30)
def test_silent_never_greets_and_is_released_by_mode_change(server: SMTPTestServer) -> None:
    server.mode = "silent"
    started = time.monotonic()
    # smtplib wraps the read timeout in SMTPServerDisconnected("... timed out").
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        client(server, timeout=1)
    assert time.monotonic() - started < 3

    held = socket.create_connection((server.host, server.port), timeout=5)
    held.settimeout(0.3)
    with pytest.raises(TimeoutError):
        held.recv(1)  # connected, but nothing is ever sent
    assert server.connections == 2

    server.mode = "accept"  # closes the held connections and restarts SMTP on the same port
    held.settimeout(5)
    assert held.recv(1) == b""
    held.close()
    send(server)
    assert len(server.wait_for(1)) == 1


@pytest.mark.timeout(30)
def test_stop_is_bounded_with_silent_connections_held() -> None:
    srv = SMTPTestServer()
    srv.start()
    held: list[socket.socket] = []
    try:
        srv.mode = "silent"
        held += [socket.create_connection((srv.host, srv.port), timeout=5) for _ in range(3)]
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2
        for sock in held:
            sock.settimeout(5)
            # Closed either way: EOF if the listener had accepted the connection,
            # a reset if it was still in the backlog when the listener went away.
            try:
                assert sock.recv(1) == b""
            except ConnectionResetError:
                pass
    finally:
        for sock in held:
            sock.close()
        srv.close()


@pytest.mark.timeout(30)
def test_stop_closes_connections_waiting_in_delay() -> None:
    srv = SMTPTestServer()
    srv.start()
    try:
        srv.mode = "delay"
        srv.delay = 20
        outcome: list[BaseException] = []

        def worker() -> None:
            try:
                send(srv)
            except BaseException as exc:
                outcome.append(exc)

        thread = threading.Thread(target=worker)
        thread.start()
        deadline = time.monotonic() + 5
        while srv.data_commands < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # let the data arrive and the delay start
        started = time.monotonic()
        srv.stop()
        assert time.monotonic() - started < 2
        thread.join(5)
        assert not thread.is_alive()
        assert len(outcome) == 1
        assert isinstance(outcome[0], smtplib.SMTPServerDisconnected)
        assert srv.messages == []
    finally:
        srv.close()


@pytest.mark.timeout(30)
def test_down_refuses_then_accept_restarts_on_same_port(server: SMTPTestServer) -> None:
    port = server.port
    server.mode = "down"
    with pytest.raises(ConnectionRefusedError):
        client(server)
    server.mode = "accept"
    assert server.port == port
    send(server)
    assert len(server.wait_for(1)) == 1


@pytest.mark.timeout(30)
def test_stop_then_start_reuses_port(server: SMTPTestServer) -> None:
    port = server.port
    send(server)
    server.stop()
    with pytest.raises(ConnectionRefusedError):
        client(server)
    # The port stays reserved while stopped: nobody else can bind it.
    with socket.socket() as other, pytest.raises(OSError):
        other.bind((server.host, port))
    server.start()
    assert server.port == port
    send(server)
    assert len(server.wait_for(2)) == 2


@pytest.mark.timeout(30)
def test_fail_times_then_accept(server: SMTPTestServer) -> None:
    server.mode = "451"
    server.fail_times = 2
    for _ in range(2):
        with pytest.raises(smtplib.SMTPDataError) as info:
            send(server)
        assert info.value.smtp_code == 451
    send(server)
    assert server.mode == "accept"
    assert server.fail_times is None
    assert len(server.wait_for(1)) == 1
    assert server.data_commands == 3


@pytest.mark.timeout(30)
def test_fail_times_with_drop_data(server: SMTPTestServer) -> None:
    server.mode = "drop_data"
    server.fail_times = 1
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(server)
    send(server)
    assert len(server.wait_for(1)) == 1


@pytest.mark.timeout(30)
def test_wait_for_times_out_with_clear_message(server: SMTPTestServer) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"expected at least 1 mail\(s\) within 0.2s, got 0"):
        server.wait_for(1, timeout=0.2)
    assert time.monotonic() - started < 1


@pytest.mark.timeout(30)
def test_clear_and_counters(server: SMTPTestServer) -> None:
    send(server)
    send(server)
    assert server.connections == 2
    assert server.data_commands == 2
    server.clear()
    assert server.messages == []
    assert server.connections == 0
    assert server.data_commands == 0


@pytest.mark.timeout(30)
def test_unknown_mode_rejected(server: SMTPTestServer) -> None:
    with pytest.raises(ValueError):
        server.mode = "bogus"
    assert server.mode == "accept"
