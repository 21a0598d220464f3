"""The SMTP transport: verified TLS, guarded logins, streamed DATA, and what an error means."""

from __future__ import annotations

import ipaddress
import re
import smtplib
import ssl
from collections.abc import Mapping
from typing import Any

from flask import current_app
from flask_mail import (
    BadHeaderError,
    Connection,
    Message,
    email_dispatched,
    sanitize_address,
)

from . import dkim
from .mime import CRLFMessage, StreamedMail

LEADING_DOT = re.compile(rb"(?m)^\.")
SEND_BLOCK = 64 * 1024
# smtplib bounds each line of a reply (8 KiB) but not how many lines one reply has: a
# hostile server could send "250-" lines for ever and hold the thread and its memory.
# Real replies (EHLO's list of extensions included) stay well under 4 KiB.
MAX_REPLY_BYTES = 64 * 1024


class _BoundedReader:
    """The connection's reader, refusing a reply longer than MAX_REPLY_BYTES in all."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.budget = MAX_REPLY_BYTES

    def readline(self, size: int = -1) -> bytes:
        """One line, counted against the reply's budget."""
        line: bytes = self.raw.readline(size)
        self.budget -= len(line)
        if self.budget < 0:
            raise smtplib.SMTPServerDisconnected(
                f"the server's reply ran past {MAX_REPLY_BYTES} bytes")
        return line

    def close(self) -> None:
        """Close the underlying reader."""
        self.raw.close()


class StreamingSMTP(smtplib.SMTP):
    """smtplib's client whose DATA can be sent in pieces from a StreamedMail, and whose
    replies are bounded in length."""

    def getreply(self) -> tuple[int, bytes]:
        """smtplib's reply reader over a reader that stops an endless reply."""
        if self.file is None and self.sock is not None:
            self.file = _BoundedReader(self.sock.makefile("rb"))
        if isinstance(self.file, _BoundedReader):
            self.file.budget = MAX_REPLY_BYTES
        try:
            return super().getreply()
        except smtplib.SMTPServerDisconnected:
            self.close()
            raise

    def data(self, msg: Any) -> tuple[int, bytes]:
        """Send the mail after DATA, dot-stuffed piece by piece, and return the reply."""
        if not isinstance(msg, StreamedMail):
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        try:
            self._send_pieces(msg)
        except BaseException:
            # Cut off mid-DATA (its file deleted by an erasure, unreadable): the
            # server would read the next mail's commands as this one's text.
            self.close()
            raise
        return self.getreply()

    def _send_pieces(self, msg: StreamedMail) -> None:
        """The mail's pieces, dot-stuffed, and the final dot."""
        # Pieces are gathered into blocks: small separate writes would meet Nagle's
        # algorithm and the server's delayed ACK, costing 40 ms per mail.
        block, last = bytearray(), b""
        for chunk in msg.chunks():
            if chunk:
                block += LEADING_DOT.sub(b"..", chunk)
                last = chunk
            if len(block) >= SEND_BLOCK:
                # Each block is sent under its own timeout: a slow uplink may take
                # longer than MAIL_TIMEOUT for a whole 10 MB mail.
                self.send(block)
                block.clear()
        block += b".\r\n" if last.endswith(b"\r\n") else b"\r\n.\r\n"
        self.send(block)


class StreamingSMTPSSL(smtplib.SMTP_SSL, StreamingSMTP):
    """The same over implicit TLS."""


class ConfigurationError(smtplib.SMTPException):
    """The SMTP settings cannot work as they are: an operator must act, waiting will not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_loopback_host(host: str) -> bool:
    """Whether `host` names this machine: `localhost`, 127.0.0.0/8 or ::1 (no DNS look-up)."""
    name = host.strip().rstrip(".").lower()
    if name == "localhost":
        return True
    try:
        address = ipaddress.ip_address(name.removeprefix("[").removesuffix("]"))
    except ValueError:
        return False
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def tls_context(config: Mapping[str, Any]) -> ssl.SSLContext:
    """A verifying client context: the system trust store plus MAIL_TLS_CA_FILE when set."""
    # create_default_context checks the chain and the host name, and loads OpenSSL's
    # default paths, which honour SSL_CERT_FILE and SSL_CERT_DIR.
    context = ssl.create_default_context()
    if config.get("MAIL_TLS_CA_FILE"):
        context.load_verify_locations(cafile=config["MAIL_TLS_CA_FILE"])
    return context


def has_credentials(config: Mapping[str, Any]) -> bool:
    """Whether the settings ask for a login."""
    return bool(config["MAIL_USERNAME"] and config["MAIL_PASSWORD"])


def _untrusted(config: Mapping[str, Any],
               error: ssl.SSLCertVerificationError) -> ConfigurationError:
    where = f"{config['MAIL_SERVER']}:{config['MAIL_PORT']}"
    why = error.verify_message or error.reason or str(error)
    hint = ("set MAIL_SERVER to a name the certificate is for" if "mismatch" in why
            else "trust its CA with MAIL_TLS_CA_FILE")
    return ConfigurationError(f"TLS certificate of {where} not verified ({why}); {hint}")


def _check_cleartext(config: Mapping[str, Any], peer: str | None = None) -> None:
    """Refuse a login without TLS unless the server, and the socket's peer, are loopback."""
    if not has_credentials(config) or config["MAIL_USE_TLS"] or config["MAIL_USE_SSL"]:
        return
    if not is_loopback_host(config["MAIL_SERVER"]) or (
            peer is not None and not is_loopback_host(peer)):
        raise ConfigurationError(
            "MAIL_USERNAME is set but neither MAIL_USE_TLS nor MAIL_USE_SSL is, and "
            f"{config['MAIL_SERVER']} is not loopback: the password would travel in clear text")


def _starttls(host: smtplib.SMTP, config: Mapping[str, Any], context: ssl.SSLContext) -> None:
    if not host.has_extn("starttls"):
        raise ConfigurationError("MAIL_USE_TLS is set but the server does not offer STARTTLS")
    try:
        host.starttls(context=context)
    except ssl.SSLCertVerificationError as error:
        raise _untrusted(config, error) from error
    host.ehlo()  # the features offered before TLS are void (RFC 3207)


# The mechanisms a login may use, in order of preference: the first the server offers
# is the only one tried (smtplib's login() tries each in turn, so one wrong password
# counted twice against providers that lock an account after failed logins).
LOGIN_MECHANISMS = ("PLAIN", "LOGIN")


def _login(host: smtplib.SMTP, config: Mapping[str, Any]) -> None:
    if not host.has_extn("auth"):
        raise ConfigurationError("MAIL_USERNAME is set but the server does not offer AUTH")
    offered = host.esmtp_features["auth"].upper().split()
    mechanism = next((name for name in LOGIN_MECHANISMS if name in offered), None)
    if mechanism is None:
        raise ConfigurationError(f"login impossible: the server offers AUTH {' '.join(offered)} "
                                 f"but not {' or '.join(LOGIN_MECHANISMS)}")
    host.user, host.password = config["MAIL_USERNAME"], config["MAIL_PASSWORD"]
    try:
        host.auth(mechanism, getattr(host, f"auth_{mechanism.lower()}"))
    except smtplib.SMTPAuthenticationError as error:
        if 500 <= error.smtp_code < 600:  # 454 and other 4xx: a passing state, retried
            raise ConfigurationError(f"login refused: {describe_smtp_error(error)}") from error
        raise


class TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout, verified TLS and streamed sending.

    Written here because Flask-Mail 0.10 has no setting for a timeout (a server that
    accepts TCP and never greets would block a worker forever) and passes no SSL
    context to smtplib (whose default then verifies neither certificate nor name).
    """

    def configure_host(self) -> smtplib.SMTP:
        """Connect, greet, STARTTLS if set and log in if set, all under MAIL_TIMEOUT."""
        # Read at connect time, not from Flask-Mail's copy made at init_app: the
        # development mailbox points MAIL_SERVER at itself when it starts.
        config = current_app.config
        _check_cleartext(config)  # before connecting: not a byte goes to such a server
        use_tls = config["MAIL_USE_TLS"] or config["MAIL_USE_SSL"]
        context = tls_context(config) if use_tls else None
        host = self._open(config, context)
        try:
            # Greet now: a refused EHLO is the server's state, to be retried, not
            # a reply to whichever mail happens to be first in the batch.
            host.ehlo_or_helo_if_needed()
            if config["MAIL_USE_TLS"] and context is not None:
                _starttls(host, config, context)
            if has_credentials(config):
                _check_cleartext(config, peer=host.sock.getpeername()[0] if host.sock else None)
                _login(host, config)
        except BaseException:
            host.close()
            raise
        return host

    @staticmethod
    def _open(config: Mapping[str, Any], context: ssl.SSLContext | None) -> smtplib.SMTP:
        """The TCP (or implicit TLS) connection; its host name is checked against MAIL_SERVER."""
        server, port, timeout = config["MAIL_SERVER"], config["MAIL_PORT"], config["MAIL_TIMEOUT"]
        # Greeted with a name, never the host's address literal, which filters score against.
        name = config["MAIL_HELO_NAME"]
        if not config["MAIL_USE_SSL"]:
            return StreamingSMTP(server, port, local_hostname=name, timeout=timeout)
        try:
            return StreamingSMTPSSL(server, port, local_hostname=name, timeout=timeout,
                                    context=context)
        except ssl.SSLCertVerificationError as error:
            raise _untrusted(config, error) from error

    def send(self, message: Message, envelope_from: str | tuple[str, str] | None = None) -> None:
        """Flask-Mail's send, streaming the mail and marking it dispatched on the 250."""
        if message.has_bad_headers():
            raise BadHeaderError
        assert self.host is not None and isinstance(message, CRLFMessage)
        config = current_app.config
        options = [*message.mail_options, *_international_options(self.host, message)]
        streamed = message.as_streamed()
        _check_size(self.host, streamed)
        if dkim.is_on(config):
            streamed = dkim.signed(config, streamed)
        self.host.sendmail(
            _envelope(envelope_from or message.sender),
            [_envelope(address) for address in message.send_to],
            streamed,  # type: ignore[arg-type]
            options, message.rcpt_options,
        )
        message.dispatched = True  # before anything else can raise
        email_dispatched.send(current_app._get_current_object(),  # type: ignore[attr-defined]
                              message=message)


def _envelope(address: str | tuple[str, str]) -> str:
    """An envelope address: Flask-Mail's sanitised form, or as it is when its local part is
    not ASCII (Flask-Mail would write an encoded word, which is no address)."""
    if isinstance(address, str) and not address.isascii():
        return address
    return str(sanitize_address(address))


class Undeliverable(smtplib.SMTPException):
    """The mail cannot go through this server as it is; retrying would not help."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


NO_SMTPUTF8 = "the mail server does not accept international addresses"


def _international_options(host: smtplib.SMTP, message: CRLFMessage) -> list[str]:
    """SMTPUTF8 for a mail naming an address whose local part is not ASCII, when offered;
    without it a header naming one is left out (the body names it), an envelope refused."""
    if not message.international():
        return []
    if host.has_extn("smtputf8"):
        return ["SMTPUTF8", "BODY=8BITMIME"] if host.has_extn("8bitmime") else ["SMTPUTF8"]
    if not message.envelope_is_ascii():
        raise Undeliverable(NO_SMTPUTF8)
    message.drop_international_headers()
    return []


class TooLarge(smtplib.SMTPSenderRefused):
    """Larger than the server said it accepts: refused here, before a byte of it is sent."""


def _check_size(host: smtplib.SMTP, mail: StreamedMail) -> None:
    """Refuse a mail larger than the SIZE the server announced (RFC 1870), as it would."""
    announced = host.esmtp_features.get("size", "").strip()
    if announced.isdigit() and int(announced) > 0 and len(mail) > int(announced):
        raise TooLarge(552, f"5.3.4 the mail ({len(mail)} bytes) is larger than the "
                            f"{announced} bytes the server accepts; not sent".encode(), "")


def refused_for_size(error: BaseException) -> bool:
    """Whether the server refused the mail for its size: 552, or 5.3.4 in any 5xx reply."""
    if not isinstance(error, smtplib.SMTPResponseException) or not 500 <= error.smtp_code < 600:
        return False
    reply = error.smtp_error.decode(errors="replace") if isinstance(
        error.smtp_error, bytes) else str(error.smtp_error)
    return error.smtp_code == 552 or reply.lstrip().startswith("5.3.4")


def connect() -> TimeoutConnection:
    """A connection to the configured SMTP server, for one batch of mails."""
    return TimeoutConnection(current_app.extensions["mail"])


def open_connection() -> tuple[Any, BaseException | None]:
    """An open connection, or None and the error that prevented it."""
    connection = connect()
    try:
        connection.host = connection.configure_host()
    except (OSError, smtplib.SMTPException) as error:
        return None, error
    return connection, None


def usable(connection: Any) -> bool:
    """Whether the connection survived the last command (smtplib closes it on 421 or EOF)."""
    return connection.host is not None and connection.host.sock is not None


def close(connection: Any) -> None:
    """QUIT, ignoring a server that has already gone: its accepted mails are recorded."""
    try:
        connection.host.quit()
    except (OSError, smtplib.SMTPException):
        discard(connection)


def discard(connection: Any) -> None:
    """Drop a broken connection without a QUIT that could only wait for a timeout."""
    if connection.host is not None:
        connection.host.close()


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def describe_smtp_error(error: BaseException) -> str:
    """The error as one line: the server's reply when there is one."""
    if isinstance(error, ConfigurationError | Undeliverable):
        return error.reason
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return f"{code} {_text(reply)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def is_permanent(error: BaseException) -> bool:
    """5xx replies are permanent (RFC 5321); everything else may pass."""
    if isinstance(error, BadHeaderError | Undeliverable):
        return True
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return False  # the operator's credentials, not the mail: retry once fixed
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600
    return False
