"""The SMTP transport: connections under a timeout, streamed DATA, and what an error means."""

from __future__ import annotations

import re
import smtplib
from typing import Any

from flask import current_app
from flask_mail import (
    BadHeaderError,
    Connection,
    Message,
    email_dispatched,
    sanitize_address,
    sanitize_addresses,
)

from .compose import CRLFMessage, StreamedMail

LEADING_DOT = re.compile(rb"(?m)^\.")
SEND_BLOCK = 64 * 1024


class StreamingSMTP(smtplib.SMTP):
    """smtplib's client whose DATA can be sent in pieces from a StreamedMail."""

    def data(self, msg: Any) -> tuple[int, bytes]:
        """Send the mail after DATA, dot-stuffed piece by piece, and return the reply."""
        if not isinstance(msg, StreamedMail):
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
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
        return self.getreply()


class StreamingSMTPSSL(smtplib.SMTP_SSL, StreamingSMTP):
    """The same over implicit TLS."""


class TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout and streamed sending.

    Written here because Flask-Mail 0.10 has no setting for a timeout: without
    one, a server that accepts TCP and never greets blocks a worker forever.
    """

    def configure_host(self) -> smtplib.SMTP:
        """Connect, greet, optionally STARTTLS and log in, all under MAIL_TIMEOUT."""
        # Read at connect time, not from Flask-Mail's copy made at init_app: the
        # development mailbox points MAIL_SERVER at itself when it starts.
        config = current_app.config
        smtp_class = StreamingSMTPSSL if config["MAIL_USE_SSL"] else StreamingSMTP
        host = smtp_class(config["MAIL_SERVER"], config["MAIL_PORT"],
                          timeout=config["MAIL_TIMEOUT"])
        try:
            # Greet now: a refused EHLO is the server's state, to be retried, not
            # a reply to whichever mail happens to be first in the batch.
            host.ehlo_or_helo_if_needed()
            if config["MAIL_USE_TLS"]:
                host.starttls()
            if config["MAIL_USERNAME"] and config["MAIL_PASSWORD"]:
                host.login(config["MAIL_USERNAME"], config["MAIL_PASSWORD"])
        except BaseException:
            host.close()
            raise
        return host

    def send(self, message: Message, envelope_from: str | None = None) -> None:
        """Flask-Mail's send, streaming the mail and marking it dispatched on the 250."""
        if message.has_bad_headers():
            raise BadHeaderError
        assert self.host is not None and isinstance(message, CRLFMessage)
        self.host.sendmail(
            sanitize_address(envelope_from or message.sender),
            list(sanitize_addresses(message.send_to)),
            message.as_streamed(),  # type: ignore[arg-type]
            message.mail_options, message.rcpt_options,
        )
        message.dispatched = True  # before anything else can raise
        email_dispatched.send(current_app._get_current_object(), message=message)


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


def describe(error: BaseException) -> str:
    """The error as one line: the server's reply when there is one."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return f"{code} {_text(reply)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def is_permanent(error: BaseException) -> bool:
    """5xx replies are permanent (RFC 5321); everything else may pass."""
    if isinstance(error, BadHeaderError):
        return True
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return False  # the operator's credentials, not the mail: retry once fixed
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600
    return False
