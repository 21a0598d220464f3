"""Tests of the mail rig itself: the private Postfix provider (support.postfix), driven by
plain smtplib, and the receiver-side tools (support.mail_tools)."""

from __future__ import annotations

import base64
import smtplib
import ssl
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest
from cryptography import x509

from support.mail_tools import munpack_files, spam_report
from support.postfix import HOSTNAME, PostfixServer

SENDER = "contact-form@example.test"
RECIPIENT = "owner@example.com"
CLIENT_NAME = "client.example.test"
SIZE_LIMIT = 200_000
# Non-ASCII body, a dot-stuffed line and a trailing space: the body must arrive byte for byte.
RAW = (
    b"From: Contact form <contact-form@example.test>\r\n"
    b"To: owner@example.com\r\n"
    b"Subject: Hello through Postfix\r\n"
    b"Date: Mon, 07 Dec 2025 10:00:00 +0000\r\n"
    b"Message-ID: <rig-test-1@example.test>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"caf\xc3\xa9 \r\n"
    b".leading dot\r\n"
    b"last line\r\n"
)
UTF8_RECIPIENT = "用户@例子.中国"


@pytest.fixture(scope="module")
def provider() -> Iterator[PostfixServer]:
    """One provider for the module: starting one costs about half a second."""
    with PostfixServer(message_size_limit=SIZE_LIMIT) as server:
        yield server


@pytest.fixture
def sink_cleared(provider: PostfixServer) -> PostfixServer:
    """The provider, its sink's mails of earlier tests forgotten."""
    provider.sink.clear()
    return provider


def tls_client(server: PostfixServer, name: str = CLIENT_NAME) -> smtplib.SMTP:
    """A client after EHLO `name` and STARTTLS verified against the provider's CA."""
    client = smtplib.SMTP(server.host, server.port, local_hostname=name, timeout=10)
    client.ehlo()
    client.starttls(context=ssl.create_default_context(cafile=str(server.ca_file)))
    client.ehlo()
    return client


def body(raw: bytes) -> bytes:
    """What follows the header block."""
    return raw.split(b"\r\n\r\n", 1)[1]


def pgrep_group(pgid: int) -> str:
    """pgrep's list of the processes in a process group (zombies too)."""
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True)
    return found.stdout.strip()


def running_in_group(pgid: int) -> list[str]:
    """The states of the processes of a process group that have not ended (zombies left out)."""
    listed = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True,
                            text=True)
    return [state for state in listed.stdout.split() if not state.startswith("Z")]


def wait_pgrep_empty(pgid: int, timeout: float = 5.0) -> str:
    """pgrep's list for the group once it is empty, or as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (found := pgrep_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


@pytest.mark.timeout(30)
def test_authenticated_mail_over_verified_tls_reaches_the_sink(
        sink_cleared: PostfixServer) -> None:
    """STARTTLS verified against the CA, AUTH, and the body reaches the sink unchanged."""
    server = sink_cleared
    with tls_client(server) as client:
        client.login(server.username, server.password)
        assert client.sendmail(SENDER, [RECIPIENT], RAW) == {}
    (mail,) = server.sink.wait_for(1, timeout=10)
    assert (mail.mail_from, mail.rcpt_tos) == (SENDER, [RECIPIENT])
    assert body(mail.data) == body(RAW)
    assert mail.message["Subject"] == "Hello through Postfix"
    # Postfix's Received: line records the authenticated TLS submission.
    assert "with ESMTPSA" in mail.message["Received"]
    assert f"sasl_username={server.username}" in server.wait_for_log("sasl_method=")


@pytest.mark.timeout(30)
def test_no_auth_before_starttls(provider: PostfixServer) -> None:
    """AUTH is neither offered nor accepted before STARTTLS."""
    with smtplib.SMTP(provider.host, provider.port, local_hostname=CLIENT_NAME,
                      timeout=10) as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        token = base64.b64encode(f"\0{provider.username}\0{provider.password}".encode())
        code, text = client.docmd("AUTH", f"PLAIN {token.decode()}")
    assert code == 503, text


@pytest.mark.timeout(30)
def test_wrong_password_and_no_auth_are_refused(provider: PostfixServer) -> None:
    """A wrong password gets 535, and mail without AUTH is not relayed."""
    with tls_client(provider) as client:
        assert client.has_extn("auth")
        assert set(client.esmtp_features["auth"].split()) == {"PLAIN", "LOGIN"}
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            client.login(provider.username, "wrong password")
        assert refused.value.smtp_code == 535
        # Authentication failed: relaying to another domain is not allowed.
        with pytest.raises(smtplib.SMTPRecipientsRefused) as denied:
            client.sendmail(SENDER, [RECIPIENT], RAW)
    ((code, text),) = denied.value.recipients.values()
    assert code == 554 and b"Access denied" in text, text


@pytest.mark.timeout(30)
def test_message_over_the_size_limit_is_refused_with_552(provider: PostfixServer) -> None:
    """Over message_size_limit: 552 5.3.4, at MAIL FROM with SIZE=, after DATA without."""
    big = RAW + b"x" * 76 * (SIZE_LIMIT // 76) + b"\r\n"
    with tls_client(provider) as client:
        assert client.esmtp_features["size"] == str(SIZE_LIMIT)
        client.login(provider.username, provider.password)
        # smtplib declares SIZE=: Postfix refuses at MAIL FROM.
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            client.sendmail(SENDER, [RECIPIENT], big)
        assert refused.value.smtp_code == 552
        assert refused.value.smtp_error.startswith(b"5.3.4")
        client.rset()
        # Without SIZE= the whole message is read first, then refused.
        assert client.mail(SENDER)[0] == 250
        assert client.rcpt(RECIPIENT)[0] == 250
        code, text = client.data(big)
    assert (code, text[:5]) == (552, b"5.3.4"), text


@pytest.mark.timeout(30)
def test_smtputf8_addresses_are_relayed(sink_cleared: PostfixServer) -> None:
    """With SMTPUTF8 an internationalised address is accepted and relayed as it is."""
    server = sink_cleared
    raw = (f"From: {SENDER}\r\nTo: {UTF8_RECIPIENT}\r\nSubject: =?utf-8?q?h=C3=A9?=\r\n\r\n"
           "bonjour\r\n").encode()
    with tls_client(server) as client:
        assert client.has_extn("smtputf8")
        client.login(server.username, server.password)
        client.sendmail(SENDER, [UTF8_RECIPIENT], raw, mail_options=["SMTPUTF8"])
    (mail,) = server.sink.wait_for(1, timeout=10)
    assert mail.rcpt_tos == [UTF8_RECIPIENT]
    assert body(mail.data) == b"bonjour\r\n"


@pytest.mark.timeout(30)
def test_smtputf8_off_is_not_announced_and_stop_leaves_no_process() -> None:
    """smtputf8_enable=False: no SMTPUTF8 in EHLO; stop() leaves no process, start() comes back."""
    server = PostfixServer(smtputf8_enable=False)
    try:
        server.start()
        master, dovecot = server.master_pid, server.dovecot_pid
        assert master is not None and dovecot is not None
        assert pgrep_group(master) and pgrep_group(dovecot)
        code, features = server.ehlo()
        assert code == 250 and "SMTPUTF8" not in features.split("\n")
        port = server.port
        server.stop()
        assert (running_in_group(master), running_in_group(dovecot)) == ([], [])
        # Postfix's master is a daemon and Dovecot's log process outlives its master: their
        # exit statuses are collected by PID 1, which may take it a moment.
        assert (wait_pgrep_empty(master), wait_pgrep_empty(dovecot)) == ("", "")
        # Stopped, the port stays reserved: the next start is on the same one.
        server.start()
        assert server.port == port and server.ehlo()[0] == 250
    finally:
        server.close()
    assert not server.folder.exists()


@pytest.mark.timeout(30)
def test_relay_from_loopback_and_extra_settings() -> None:
    """relay_from_loopback=True relays without AUTH or TLS; main_cf settings take effect."""
    with PostfixServer(relay_from_loopback=True,
                       main_cf={"smtpd_banner": "$myhostname ESMTP rig"}) as server:
        with smtplib.SMTP(local_hostname=CLIENT_NAME, timeout=10) as client:
            assert client.connect(server.host, server.port) == (
                220, f"{HOSTNAME} ESMTP rig".encode())
            assert client.sendmail(SENDER, [RECIPIENT], RAW) == {}
        (mail,) = server.sink.wait_for(1, timeout=10)
    assert body(mail.data) == body(RAW)


@pytest.mark.timeout(30)
def test_mail_deferred_while_the_sink_is_down_goes_out_on_flush() -> None:
    """A sink that refuses connections defers the mail; flush() sends it once it is back."""
    later = {"queue_run_delay": "300s", "minimal_backoff_time": "300s",
             "maximal_backoff_time": "300s"}
    with PostfixServer(main_cf=later) as server:
        server.sink.stop()
        with tls_client(server) as client:
            client.login(server.username, server.password)
            client.sendmail(SENDER, [RECIPIENT], RAW)
        assert "Connection refused" in server.wait_for_log("status=deferred")
        server.sink.start()
        server.flush()
        (mail,) = server.sink.wait_for(1, timeout=10)
    assert body(mail.data) == body(RAW)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("helo", "code", "reason"), [
    ("localhost", 504, b"need fully-qualified hostname"),
    ("[127.0.0.1]", 554, b"address literals refused"),
    ("bad_name!", 501, b"Invalid name"),
])
def test_strict_helo_names_are_refused(provider: PostfixServer, helo: str, code: int,
                                       reason: bytes) -> None:
    """A non-FQDN, address-literal or invalid EHLO name gets the mail refused."""
    with tls_client(provider, name=helo) as client:
        client.login(provider.username, provider.password)
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            client.sendmail(SENDER, [RECIPIENT], RAW)
    ((got, text),) = refused.value.recipients.values()
    assert got == code and reason in text, text


@pytest.mark.timeout(30)
def test_bare_newline_in_data_is_refused(sink_cleared: PostfixServer) -> None:
    """A bare LF in the message data is refused (SMTP smuggling)."""
    server = sink_cleared
    with tls_client(server) as client:
        client.login(server.username, server.password)
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        assert client.docmd("DATA")[0] == 354
        # smtplib's data() would turn the bare LF into CRLF: the bytes go out as they are.
        client.send(b"Subject: smuggled\r\n\r\nline one\nline two\r\n.\r\n")
        code, text = client.getreply()
    assert (code, text[:5]) == (550, b"5.5.2"), text
    assert server.sink.messages == []


@pytest.mark.timeout(30)
def test_greeting_and_certificate_name(provider: PostfixServer) -> None:
    """The certificate names the provider and 127.0.0.1; mail_settings() points at the CA."""
    with tls_client(provider) as client:
        sock = client.sock
        assert isinstance(sock, ssl.SSLSocket)
        der = sock.getpeercert(binary_form=True)
    assert der is not None
    names = x509.load_der_x509_certificate(der).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [HOSTNAME]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == [provider.host]
    assert provider.mail_settings()["MAIL_TLS_CA_FILE"] == str(provider.ca_file)


@pytest.mark.timeout(60)
def test_spam_report_scores_a_plain_mail() -> None:
    """A plain, well-formed mail gets a score under the threshold and named rules."""
    began = time.monotonic()
    score, rules = spam_report(RAW)
    assert isinstance(score, float) and score < 5.0
    assert rules and all(rule.isupper() or "_" in rule for rule in rules)
    assert time.monotonic() - began < 30


def test_munpack_saves_the_attachment() -> None:
    """munpack saves the attachment under its file name, byte for byte."""
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = SENDER, RECIPIENT, "With a file"
    mail.set_content("See the file.\n")
    attached = b"%PDF-1.4 not really\x00\xff\r\n"
    mail.add_attachment(attached, maintype="application", subtype="pdf",
                        filename="report.pdf")
    files = munpack_files(mail.as_bytes())
    assert files["report.pdf"] == attached
    # munpack keeps the text before an attachment as <name>.desc.
    assert set(files) <= {"report.pdf", "report.desc"}
