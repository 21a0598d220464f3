"""A composed mail as it goes over SMTP: CRLF lines, quoted-printable bodies, headers written
as composed, unguessable boundaries, and a file attachment streamed from disk.

Flask-Mail builds the MIME tree; `CRLFMessage` overrides two of its private methods
(`_mimetext`, `_message`) to change how the tree is written, and `StreamedMail` is
what smtp.py hands to the server piece by piece. Which mail says what is compose.py's.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator, Sequence
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.mime.base import MIMEBase
from email.mime.text import MIMEText
from email.policy import EmailPolicy
from io import BytesIO
from pathlib import Path
from typing import Any

from flask_mail import Message

from .headers import address_header, disposition_header, text_header

# 57 raw bytes make one 76-character base64 line; a block of whole lines keeps
# the streamed encoding identical to encoding the file at once.
BASE64_BLOCK = 57 * 1024


class SerialisingPolicy(EmailPolicy):
    """`email.policy.SMTP` for writing a composed mail, without reparsing its headers.

    The generator asks each part for its Content-Type and encoding many times, and
    stores its boundary; SMTP's policy runs every such read and write through the
    header registry's parser (a third of a mail's CPU time), though the parts here
    were built by email.mime as plain strings that Message's own parameter code
    reads as they are. Writing is unchanged: long lines are still refolded (RFC 2231
    file names), and the address and subject headers, written by .headers, never are.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """The stored value itself (compat32's reading, which the generator needs)."""
        return value

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        """The value as given (the generator stores each part's boundary)."""
        return name, value


# SMTP requires CRLF; Flask-Mail's as_bytes() leaves bare LF in the parts.
SMTP_POLICY = SerialisingPolicy(linesep="\r\n")
# A mail naming an address whose local part is not ASCII: its headers in UTF-8 (RFC 6532),
# sent only with SMTPUTF8.
UTF8_POLICY = SMTP_POLICY.clone(utf8=True)


class SMTPGenerator(BytesGenerator):
    """The standard generator, with boundaries nobody can guess instead of searched ones.

    The standard one draws a boundary and then searches the whole part for it with a
    regular expression compiled for that boundary (a tenth of a mail's CPU time). 112
    random bits, drawn after the content is fixed, cannot be in it by chance, and a
    visitor cannot write one in to break the mail's structure.
    """

    @classmethod
    def _make_boundary(cls, text: str | None = None) -> str:
        return "=" * 15 + secrets.token_urlsafe(14) + "=="  # as long as the standard one


def serialise(message: MIMEBase, utf8: bool = False) -> bytes:
    """The message as it goes over SMTP (Message.as_bytes with SMTPGenerator)."""
    written = BytesIO()
    SMTPGenerator(written, mangle_from_=False,
                  policy=UTF8_POLICY if utf8 else SMTP_POLICY).flatten(message)
    return written.getvalue()


def base64_lines(data: bytes) -> bytes:
    """`data` base64-encoded in CRLF-ended lines of 76 characters, as a MIME part holds it."""
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


def _quoted_printable_utf8() -> Charset:
    """UTF-8 with quoted-printable bodies, whose lines stay under SMTP's 998-octet limit.

    Flask-Mail registers utf-8 with no body encoding (raw 8bit), so a long message
    line would be refused by the server ("500 Line too long").
    """
    utf8 = Charset("utf-8")
    utf8.header_encoding = QP
    utf8.body_encoding = QP
    return utf8


class StreamedMail:
    """A serialised mail whose file attachments are read and base64-encoded while it is sent.

    Holding only one block of a file at a time keeps a 10 MB upload from being
    copied half a dozen times (raw, surrogate str, base64 bytes and str, lines,
    the serialised bytes, smtplib's dot-stuffed copy). The mail is `head`, then
    each file's content followed by the bytes written after it (`tail` for one file).
    """

    def __init__(self, head: bytes, path: Path | None = None, tail: bytes = b"",
                 *, files: Sequence[tuple[Path, bytes]] = ()) -> None:
        self.head = head
        self.files = [(path, tail), *files] if path is not None else list(files)
        self.tail = tail if path is None else b""
        self.file_sizes = [os.stat(file).st_size for file, _after in self.files]

    def __len__(self) -> int:
        """The size announced to the server (SIZE), before dot-stuffing."""
        encoded = 0
        for size in self.file_sizes:
            lines, rest = divmod(size, 57)
            encoded += lines * 78 + (4 * -(-rest // 3) + 2 if rest else 0)
        after = sum(len(following) for _file, following in self.files)
        return len(self.head) + encoded + after + len(self.tail)

    def chunks(self) -> Iterator[bytes]:
        """The mail in pieces that each end at a line end."""
        yield self.head
        for path, following in self.files:
            with open(path, "rb") as file:
                while block := file.read(BASE64_BLOCK):
                    yield base64_lines(block)
            yield following
        yield self.tail


# What Flask-Mail writes in place of an address it cannot (see _flask_mail_message).
STAND_IN = "stand-in@invalid"


class CRLFMessage(Message):
    """A Flask-Mail message with CRLF line endings, quoted-printable bodies, streamed files."""

    # An attachment already base64-encoded with CRLF lines (the thank-you PDF, encoded
    # once per process): spliced in as it is.
    encoded_attachment: tuple[str, str, bytes] | None = None
    dispatched = False  # set once the server has answered 250 to the data

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # From, To and Reply-To as structured values: Flask-Mail's own fields keep
        # bare addresses only, for the envelope and its header checks.
        self.address_headers: dict[str, tuple[Address, ...]] = {}
        # Files attached from disk, in order, read only while the mail is sent.
        self.file_attachments: list[tuple[str, str, Path]] = []

    def _mimetext(self, text: str | None, subtype: str = "plain") -> MIMEText:
        """A body part SMTP can carry whatever the visitor typed."""
        # The stubs want a name; a Charset object is what carries the QP body encoding.
        return MIMEText(text or "", _subtype=subtype,
                        _charset=_quoted_printable_utf8())  # type: ignore[arg-type]

    def _message(self) -> MIMEBase:
        """Flask-Mail's message, with the address and subject headers written from values."""
        message = self._flask_mail_message()
        composed = {name: address_header(name, addresses)
                    for name, addresses in self.address_headers.items()}
        if self.subject:
            composed["Subject"] = text_header("Subject", self.subject)
        for name, header in composed.items():
            if name in message:
                message.replace_header(name, header)  # in place, keeping the order
            else:
                message[name] = header
        for part in message.walk():
            filename = part.get_filename()
            if filename is not None:
                part.replace_header("Content-Disposition", disposition_header(
                    part.get_content_disposition() or "attachment", filename))
        return message

    def _flask_mail_message(self) -> MIMEBase:
        """Flask-Mail's MIME tree; for a mail naming a UTF-8 address, written around ASCII
        stand-ins (Flask-Mail cannot write such an address) that the composed headers replace."""
        if not self.international():
            return super()._message()
        kept = self.recipients, self.sender, self.reply_to
        self.recipients = [STAND_IN] * len(self.recipients)
        self.sender = STAND_IN
        self.reply_to = STAND_IN if self.reply_to else None
        try:
            return super()._message()
        finally:
            self.recipients, self.sender, self.reply_to = kept

    def international(self) -> bool:
        """Whether an address of the envelope or the headers has a local part not in ASCII."""
        named = [address.addr_spec for addresses in self.address_headers.values()
                 for address in addresses]
        return not self.envelope_is_ascii() or not all(text.isascii() for text in named)

    def envelope_is_ascii(self) -> bool:
        """Whether the sender and recipients are ASCII (only a header names a UTF-8 one)."""
        return all(str(text).isascii() for text in [*self.send_to, self.sender or ""])

    def drop_international_headers(self) -> None:
        """Leave out the header addresses not in ASCII (a Reply-To: the body names them)."""
        for name, addresses in list(self.address_headers.items()):
            kept = tuple(address for address in addresses if address.addr_spec.isascii())
            if kept:
                self.address_headers[name] = kept
            else:
                del self.address_headers[name]
                if name == "Reply-To":
                    self.reply_to = None

    def attach_file(self, filename: str, content_type: str, path: Path) -> None:
        """Attach a file from disk, read only while the mail is sent (it must exist now)."""
        path.stat()  # a missing file fails here, at compose time, not mid-DATA
        self.file_attachments.append((filename, content_type, path))

    def attach_encoded(self, filename: str, content_type: str, encoded: bytes) -> None:
        """Attach content already base64-encoded in CRLF lines of 76 characters."""
        self.encoded_attachment = (filename, content_type, encoded)

    def as_streamed(self) -> StreamedMail:
        """The mail for SMTP, with the file attachments to be streamed from disk."""
        if self.file_attachments:
            head, *afters = self._around_stand_ins(
                [(name, kind) for name, kind, _path in self.file_attachments])
            paths = [path for _name, _kind, path in self.file_attachments]
            return StreamedMail(head, files=list(zip(paths, afters, strict=True)))
        if self.encoded_attachment is not None:
            filename, content_type, encoded = self.encoded_attachment
            head, tail = self._around_stand_ins([(filename, content_type)])
            return StreamedMail(b"".join((head, encoded, tail)))
        return StreamedMail(serialise(self._message(), self.international()))

    def _around_stand_ins(self, files: Sequence[tuple[str, str]]) -> list[bytes]:
        """The mail serialised around its attachments' contents: what comes before, between
        and after them."""
        # Serialise with a unique stand-in for each content, then cut the mail around them:
        # Flask-Mail still writes the parts' headers (RFC 2231 names and all).
        stand_ins = [os.urandom(45) for _file in files]
        for (filename, content_type), stand_in in zip(files, stand_ins, strict=True):
            self.attach(filename, content_type, stand_in)
        try:
            rest = serialise(self._message(), self.international())
        finally:
            del self.attachments[-len(files):]
        pieces = []
        for stand_in in stand_ins:
            before, found, rest = rest.partition(base64_lines(stand_in))
            if not found:
                raise RuntimeError("an attachment's stand-in is missing from the serialised mail")
            pieces.append(before)
        return [*pieces, rest]

    def as_bytes(self) -> bytes:
        """The message serialised for SMTP, all in memory."""
        return b"".join(self.as_streamed().chunks())
