"""All the text of a request bounded together, before anything reads more of the body.

Werkzeug bounds a multipart text part only on its own (MAX_FORM_MEMORY_SIZE, 50 parts
allowed), and an urlencoded body not at all below MAX_CONTENT_LENGTH, which leaves room
for the attachment: megabytes of text would reach the form's checks. Here the text
parts of a multipart body are added up while it is parsed, and a body that is not
multipart (urlencoded, JSON, anything) is text alone: refused by its declared length
before a byte is read, or when a body of unknown length passes the limit. Over it:
413 in the visitor's language. Files keep their own limit (MAX_CONTENT_LENGTH).
"""

from __future__ import annotations

import io
from typing import IO, Any, cast

from flask import Flask, Request, current_app
from flask.typing import ResponseReturnValue
from flask_babel import format_number
from flask_babel import gettext as _
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.formparser import FormDataParser
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData
from werkzeug.utils import cached_property

from .errors import error_answer
from .forms import Declaration, declaration_of

# What FormDataParser.parse returns: the stream, the text fields, the files.
ParseResult = tuple[IO[bytes], MultiDict[str, str], MultiDict[str, FileStorage]]
SETTING = "MAX_FORM_TEXT_SIZE"
MULTIPART = "multipart/form-data"
# The most one typed character takes on the wire: four UTF-8 bytes, each percent-encoded.
WIRE_BYTES_PER_CHARACTER = 12
# Field names and separators, and the hidden fields: token, key, form time, proof of work.
HIDDEN_FIELDS_ROOM = 16 * 1024


# What a field without a length limit may take: a number, a date, an option, a tick.
SHORT_FIELD = 200


def typed_characters(declaration: Declaration) -> tuple[int, int]:
    """The most characters one form takes in all, and in its longest field."""
    sizes = [[f.max_length or SHORT_FIELD for f in form.fields if f.type != "file"]
             for form in declaration.forms]
    return max(sum(each) for each in sizes), max(max(each, default=0) for each in sizes)


def form_text_limit(declaration: Declaration) -> int:
    """Bytes enough for the longest valid form in any encoding (about 140 KB by default)."""
    return typed_characters(declaration)[0] * WIRE_BYTES_PER_CHARACTER + HIDDEN_FIELDS_ROOM


class FormTextTooLarge(RequestEntityTooLarge):
    """The request's text (every part but files) is over MAX_FORM_TEXT_SIZE."""


class CappedText(io.RawIOBase):
    """A body of text read through a running count: past `limit` bytes, FormTextTooLarge."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__()
        self._stream, self._left = stream, limit

    def readable(self) -> bool:
        """A stream to read from."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read on, asking for one byte past the limit at most, so an over-long body shows."""
        data = self._stream.read(min(len(buffer), self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise FormTextTooLarge()
        buffer[:len(data)] = data
        return len(data)


class CountedMultipart(io.RawIOBase):
    """A multipart body as Werkzeug's parser reads it, its text parts added up on the way.

    A decoder of Werkzeug's own follows the same bytes a chunk ahead of the parser, so
    too much text (all parts together, or one part over MAX_FORM_MEMORY_SIZE) is
    refused before the parser keeps it; file parts are not counted.
    """

    def __init__(self, stream: IO[bytes], boundary: bytes, total: int, part: int | None) -> None:
        super().__init__()
        self._stream, self._decoder = stream, MultipartDecoder(boundary)
        self._left, self._part_limit = total, part
        self._part: int | None = None  # bytes of the text part being read; None in a file

    def readable(self) -> bool:
        """A stream to read from."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read a chunk and count the text in it before handing it on."""
        data = self._stream.read(len(buffer))
        self._decoder.receive_data(data or None)
        self._count()
        buffer[:len(data)] = data
        return len(data)

    def _count(self) -> None:
        """Add up the text data of every event the decoder has for now."""
        event = self._decoder.next_event()
        while not isinstance(event, NeedData | Epilogue):
            if isinstance(event, Field | File):
                self._part = 0 if isinstance(event, Field) else None
            elif isinstance(event, Data) and self._part is not None:
                self._part += len(event.data)
                self._left -= len(event.data)
                if self._left < 0 or (self._part_limit is not None
                                      and self._part > self._part_limit):
                    raise FormTextTooLarge()
            event = self._decoder.next_event()


class TextBoundedParser(FormDataParser):
    """Werkzeug's form parser, with the text parts of a multipart body counted together."""

    max_form_text_size: int | None = None

    def parse(self, stream: IO[bytes], mimetype: str, content_length: int | None,
              options: dict[str, str] | None = None) -> ParseResult:
        """Parse as Werkzeug does, through a count of the text when the body is multipart."""
        boundary = (options or {}).get("boundary", "")
        if mimetype != MULTIPART or self.max_form_text_size is None or not (
                boundary and boundary.isascii()):
            return super().parse(stream, mimetype, content_length, options)
        counted = CountedMultipart(stream, boundary.encode("ascii"), self.max_form_text_size,
                                   self.max_form_memory_size)
        _, form, files = super().parse(cast(IO[bytes], counted), mimetype, content_length,
                                       options)
        return stream, form, files


class BoundedRequest(Request):
    """Flask's request, whose text is bounded as a whole whoever reads the body first."""

    form_data_parser_class = TextBoundedParser

    def make_form_data_parser(self) -> FormDataParser:
        """The parser, told the text limit."""
        parser = super().make_form_data_parser()
        if isinstance(parser, TextBoundedParser):
            parser.max_form_text_size = text_limit()
        return parser

    @cached_property
    def stream(self) -> IO[bytes]:
        """The body; one that is not multipart holds text alone and is bounded as text."""
        limit = text_limit()
        if self.mimetype == MULTIPART or limit is None:
            return super().stream  # its text parts are counted by the parser
        if self.content_length is not None and self.content_length > limit:
            raise FormTextTooLarge()  # by its declared length: not a byte read
        return cast(IO[bytes], CappedText(super().stream, limit))

    def _load_form_data(self) -> None:
        """Parse the form once; a body refused as too large leaves an empty form behind."""
        try:
            super()._load_form_data()
        except RequestEntityTooLarge:
            # Part of the body is read: parsing the rest later (an error page reading
            # the form) would start anew, and count anew, mid-body.
            empty = self.parameter_storage_class()
            self.__dict__.update(form=empty, files=empty)
            raise


def text_limit() -> int | None:
    """The bound on a request's text, in bytes (None: no app, no bound)."""
    return current_app.config.get(SETTING) if current_app else None


def too_much_text(error: FormTextTooLarge) -> ResponseReturnValue:
    """413 naming the limit a person can act on: the message's length."""
    message = _("The text you sent is longer than this form accepts, so nothing was sent. "
                "A message may have at most %(max)s characters: shorten it and send it again.",
                max=format_number(typed_characters(declaration_of())[1]))
    return error_answer(413, _("The message is too long"), message, field="message")


def init_app(app: Flask) -> None:
    """Bound the text of every request (MAX_FORM_TEXT_SIZE, derived from the form's fields)."""
    declaration = declaration_of(app)
    app.config.setdefault(SETTING, form_text_limit(declaration))
    _fit_the_forms(app, declaration)
    app.request_class = BoundedRequest
    app.register_error_handler(FormTextTooLarge, too_much_text)


def _fit_the_forms(app: Flask, declaration: Declaration) -> None:
    """Werkzeug's limits raised where a declared form needs more: its longest field as one
    part, all its files and its text as one body (unless the operator set them)."""
    config, explicit = app.config, app.config["CONTACT_EXPLICIT_SETTINGS"]
    longest = typed_characters(declaration)[1] * WIRE_BYTES_PER_CHARACTER
    if "MAX_FORM_MEMORY_SIZE" not in explicit:
        config["MAX_FORM_MEMORY_SIZE"] = max(config["MAX_FORM_MEMORY_SIZE"], longest)
    if "MAX_CONTENT_LENGTH" not in explicit:
        files = max(form.file_bytes(config["CONTACT_MAX_UPLOAD_MB"]) for form in declaration.forms)
        room = config["MAX_CONTENT_LENGTH"] - config["CONTACT_MAX_UPLOAD_BYTES"]
        config["MAX_CONTENT_LENGTH"] = max(config["MAX_CONTENT_LENGTH"], files + room)
