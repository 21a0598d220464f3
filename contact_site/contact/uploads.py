"""Checking one uploaded file: size, name, extension and the content its bytes prove.

A `.txt` is read to its end; a `.docx`/`.odt` is opened as a zip archive and
judged from its directory before any part is inflated. Nothing is extracted, and
every check works in bounded memory and time, linear in what it reads, whatever the
file's inner structure.
"""

from __future__ import annotations

import codecs
import os
import re
import struct
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any
from xml.parsers import expat

import filetype
from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from ..extensions import db
from ..submissions.files import CheckedUpload
from ..submissions.models import SubmissionFile
from ..submissions.thread import Reply

MIB = 2**20
MAX_NAME_LENGTH = 120
# filetype names some kinds differently from the extensions people use.
KIND_ALIASES = {"apng": "png", "jpeg": "jpg"}
SNIFF_BYTES = 64 * 1024
CHUNK = 64 * 1024
# Characters Windows refuses in names, and quotes: replaced so a saved attachment keeps its name.
UNSAFE_NAME_CHARACTERS = re.compile(r'[<>:"|?*]')

# Every refusal, in the words the visitor reads; kept here only, translated when raised.
REFUSALS = {
    "empty": _l("The file is empty."),
    "too_large": _l("The file is larger than the limit of {limit_mb} MB."),
    "bad_type": _l("Files of this type are not accepted. Allowed types: {allowed}."),
    "content": _l("The file's content is not a .{extension} file."),
    "not_utf8": _l("The text file is not plain UTF-8 text: it holds binary data or uses another "
                   "encoding. Save it as UTF-8 text and try again."),
    "control": _l("The text file contains binary data or control characters, which plain text "
                  "does not have. Send it as a PDF instead."),
    "markup": _l("The text file contains web page markup (such as <script> or <html>), which we "
                 "do not accept in a .txt file. Remove it, or send the text as a PDF."),
    "damaged": _l("The .{extension} file is damaged or incomplete. Save it again from your word "
                  "processor and try again."),
    "encrypted": _l("The document is password-protected, so we cannot check it. Remove the "
                    "password and try again."),
    "macros": _l("The document contains macros, which we do not accept. Save it as a "
                 ".{extension} without macros and try again."),
    "too_many_parts": _l("The document is made of more than {limit} parts, which we do not "
                         "accept. Send it as a PDF instead."),
    "unpacked_too_large": _l("The document would take more than {limit_mb} MB once unpacked, "
                             "which we do not accept. Make it smaller or send it as a PDF."),
    "too_compressed": _l("The document is compressed far more than real documents are, so we "
                         "do not accept it. Save it again or send it as a PDF."),
    "too_complex": _l("The document's inner structure is larger or more deeply nested than "
                      "real documents are, so we cannot check it. Save it again or send it "
                      "as a PDF."),
    "no_room": _l("The site cannot take more files at the moment, so nothing was sent. Send "
                  "your message without the file, or try again later."),
}

# .txt: anything an HTML or XML parser would act on, anywhere in the file (ASCII case-insensitive,
# as browsers match tag names). A tag is either one that runs or loads something, or any tag with
# an event handler (<img src=x onerror=…>); plain "<ada@example.com>" or "a < b" are text.
MARKUP = re.compile(
    rb"<(?:!doctype|!--|!\[cdata\[|\?xml|\?php|%|html|head|body|script|iframe|frame|object"
    rb"|embed|applet|meta|svg|style)"
    rb"|<(?:a|base|form|img|input|link|math)[\s/>]"
    rb"|<[a-z][^<>]{0,200}?[\s/\"']on[a-z]{1,30}\s{0,20}=",
    re.IGNORECASE,
)
MARKUP_REACH = 300  # longer than any MARKUP match: the bytes kept across a chunk boundary
# Cc characters other than tab, line feed, form feed and carriage return.
CONTROL = re.compile("[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")

# .docx/.odt as zip archives, judged from the central directory before anything is inflated.
# Real documents have tens of parts and compress text about 10:1; deflate's own ceiling is 1032:1.
MAX_PARTS = 1000
# zipfile turns the whole central directory into objects as it opens an archive, before
# anything can be counted: 180,000 tiny entries fit in 9 MB and cost a second and 50 MiB.
# Its size is read from the end record first; 512 bytes a part leave room for a name of
# MAX_PART_NAME and the extra fields writers add.
MAX_DIRECTORY_BYTES = MAX_PARTS * 512
MAX_UNPACKED_BYTES = 100 * MIB
MAX_RATIO = 100
RATIO_FLOOR = MIB  # smaller than this, a part or archive cannot amount to a bomb
MAX_PART_NAME = 255
DOCX_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
DOCX_MAIN_TYPE = f"{DOCX_TYPE}.main+xml"
ODT_TYPE = "application/vnd.oasis.opendocument.text"
ODF_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
# Parts and content types that carry VBA macros or ActiveX controls in a Word file.
DOCX_MACRO_PARTS = ("vbaproject.bin", "vbadata.xml")
DOCX_MACRO_TYPES = ("vbaproject", "vbadata", "macroenabled", "activex")
# Folders where LibreOffice keeps Basic macros, their dialogs and other scripts.
ODT_MACRO_FOLDERS = ("basic/", "scripts/", "dialogs/")
# The end of central directory records, as zipfile reads them (its _EndRecData).
END_RECORD = struct.Struct("<4s4H2LH")
ZIP64_LOCATOR = struct.Struct("<4sLQL")
ZIP64_END = struct.Struct("<4sQ2H2L4Q")
END_SIGNATURE = b"PK\x05\x06"
ZIP64_LOCATOR_SIGNATURE = b"PK\x06\x07"
ZIP64_END_SIGNATURE = b"PK\x06\x06"

# XML parts are streamed through expat and nothing is kept but counters. expat 2.5 parses
# an unfinished token (a tag with its attributes, a comment) again from its start with
# every chunk fed, so a 16 MiB tag costs seconds: no token may stay unfinished longer.
MAX_XML_TOKEN = 256 * 1024
MAX_XML_DEPTH = 256  # libxml2's own default; documents nest tens of levels, not hundreds
# expat keeps every distinct element, attribute and prefix name until the parse ends
# (a million distinct names took 60 to 85 MiB): real documents use a few hundred.
MAX_XML_NAMES = 10_000


@dataclass(frozen=True)
class XmlLimits:
    """How much of one XML part is read: its bytes, its elements and namespace declarations
    (each costs a call into Python, about 0.5 µs), its attributes."""

    size: int
    elements: int
    attributes: int


# A million elements is thousands of pages; it takes about half a second to count.
BODY_LIMITS = XmlLimits(size=MAX_UNPACKED_BYTES, elements=1_000_000, attributes=2_000_000)
# One Default per extension and one Override per part: a few thousand at most.
CONTENT_TYPES_LIMITS = XmlLimits(size=MIB, elements=4 * MAX_PARTS, attributes=12 * MAX_PARTS)


class UploadTooLarge(RequestEntityTooLarge):
    """The file alone is over its field's limit per file (answered with 413)."""

    def __init__(self, description: str, field: str = "attachment") -> None:
        super().__init__(description)
        self.field = field


class UploadRefused(ValueError):
    """The file is of a kind, content or name the site does not accept; `reason` names why."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(str(REFUSALS[reason]).format(**values))
        self.reason = reason


class UploadQuotaExceeded(Exception):
    """The upload folder has no room for the file under CONTACT_UPLOAD_QUOTA_MB (507)."""

    def __init__(self) -> None:
        super().__init__(str(REFUSALS["no_room"]))


def stored_bytes() -> int:
    """The bytes of every file in the upload folder, as their rows record them.

    Summed in the database rather than by walking the folder, which would cost a stat
    per file on every upload: each row knows its file's size, and a file leaves the sum
    in the commit that forgets it (deletion and erasure, which delete its row, and
    retention, which clears its path). Left out: a folder orphaned by a crash between
    the write and the commit, until retention sweeps it (within a day).
    """
    total = db.session.scalar(select(func.coalesce(func.sum(SubmissionFile.size), 0))
                              .where(SubmissionFile.path.is_not(None)))
    replies = db.session.scalar(select(func.coalesce(func.sum(Reply.file_size), 0))
                                .where(Reply.file_path.is_not(None)))
    return int(total or 0) + int(replies or 0)


def ensure_room(upload_bytes: int) -> None:
    """UploadQuotaExceeded unless the stored files and these new bytes fit in the quota.

    Two uploads checked at the same moment may both fit and together pass the quota,
    by at most one upload limit per request in flight: a ceiling against filling the
    disk, not an exact count.
    """
    quota = int(current_app.config["CONTACT_UPLOAD_QUOTA_MB"]) * MIB
    if stored_bytes() + upload_bytes > quota:
        raise UploadQuotaExceeded()


@dataclass(frozen=True)
class FileRule:
    """What one file field takes: its extensions and its size per file."""

    extensions: tuple[str, ...]
    max_mb: float

    @property
    def max_bytes(self) -> int:
        """The size limit per file, in bytes."""
        return int(self.max_mb * MIB)


def site_rule() -> FileRule:
    """The settings' rule: CONTACT_ALLOWED_EXTENSIONS and CONTACT_MAX_UPLOAD_MB."""
    config = current_app.config
    return FileRule(tuple(config["CONTACT_ALLOWED_EXTENSIONS"]), config["CONTACT_MAX_UPLOAD_MB"])


def too_large_message(rule: FileRule | None = None) -> str:
    """The words used for an oversize file, by the server and the page's script."""
    limit = (rule or site_rule()).max_mb
    return str(REFUSALS["too_large"]).format(limit_mb=f"{limit:g}")


def bad_type_message(rule: FileRule | None = None) -> str:
    """The words used for a file type not on the allowlist."""
    return str(REFUSALS["bad_type"]).format(allowed=", ".join((rule or site_rule()).extensions))


def neutral_filename(raw: str) -> str:
    """The original name without path parts, control or direction characters, shortened."""
    name = re.split(r"[/\\]", raw or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] not in {"C", "Z"} or c == " ")
    name = UNSAFE_NAME_CHARACTERS.sub("_", name)
    name = unicodedata.normalize("NFC", name).strip(" .")
    if len(name) > MAX_NAME_LENGTH:
        stem, dot, ext = name.rpartition(".")
        keep = MAX_NAME_LENGTH - len(ext) - 1
        name = f"{stem[:keep]}.{ext}" if dot and len(ext) <= 10 else name[:MAX_NAME_LENGTH]
    return name


def check(file: FileStorage, rule: FileRule | None = None) -> CheckedUpload:
    """Check size, name, extension and the whole content; raise on the first problem."""
    rule = rule or site_rule()
    size = _size(file.stream)
    if size > rule.max_bytes:
        raise UploadTooLarge(too_large_message(rule))
    if size == 0:
        raise UploadRefused("empty")
    filename = neutral_filename(file.filename or "")
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension not in rule.extensions:
        raise UploadRefused("bad_type", allowed=", ".join(rule.extensions))
    try:
        content_type = _content_type(file.stream, extension)
    finally:
        file.stream.seek(0)
    return CheckedUpload(file.stream, filename, extension, content_type, size)


def _content_type(stream: IO[bytes], extension: str) -> str:
    """The MIME type the whole content proves for this extension; UploadRefused otherwise."""
    if extension in DOCUMENT_CHECKS:
        return _check_document(stream, extension)
    kind = filetype.guess(stream.read(SNIFF_BYTES))
    stream.seek(0)
    if kind is not None:
        if KIND_ALIASES.get(kind.extension, kind.extension) == KIND_ALIASES.get(extension,
                                                                                extension):
            return str(kind.mime)
    elif extension == "txt":
        _check_text(stream)
        # Checked to be UTF-8 throughout: said so, so the owner's mail program shows it right.
        return "text/plain; charset=utf-8"
    raise UploadRefused("content", extension=extension)


def _size(stream: IO[bytes]) -> int:
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


def _check_text(stream: IO[bytes]) -> None:
    """UTF-8 (a BOM allowed) to the last byte, no control characters, no markup anywhere."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")()
    carried = b""  # the end of the previous chunk, so markup split across chunks is still seen
    while True:
        chunk = stream.read(CHUNK)
        try:
            text = decoder.decode(chunk, final=not chunk)
        except UnicodeDecodeError:
            raise UploadRefused("not_utf8") from None
        if CONTROL.search(text):
            raise UploadRefused("control")
        if MARKUP.search(carried + chunk):
            raise UploadRefused("markup")
        if not chunk:
            return
        carried = (carried + chunk)[-MARKUP_REACH:]


def _check_document(stream: IO[bytes], extension: str) -> str:
    """A well-formed .docx or .odt without macros that is no zip bomb; its MIME type."""
    if stream.read(4) != b"PK\x03\x04":
        raise UploadRefused("content", extension=extension)
    try:
        entries, directory_bytes = _directory_extent(stream)
        if entries > MAX_PARTS or directory_bytes > MAX_DIRECTORY_BYTES:
            raise UploadRefused("too_many_parts", limit=MAX_PARTS)
        stream.seek(0)
        with zipfile.ZipFile(stream) as archive:
            _check_directory(archive, extension)
            content_type = DOCUMENT_CHECKS[extension](archive)
            for part in archive.infolist():
                _inflate_to_nothing(archive, part)
            return content_type
    except UploadRefused:
        raise
    # What zipfile, zlib and expat raise on archives and XML that are not what they claim.
    except (zipfile.BadZipFile, zlib.error, EOFError, expat.ExpatError, ValueError, OSError,
            NotImplementedError, RuntimeError, struct.error):
        raise UploadRefused("damaged", extension=extension) from None


def _directory_extent(stream: IO[bytes]) -> tuple[int, int]:
    """The central directory's entry count and size, from the end record zipfile will use."""
    size = _size(stream)
    start = max(size - (1 << 16) - END_RECORD.size, 0)  # a comment is at most 64 KiB
    stream.seek(start)
    tail = stream.read()
    # As zipfile: the last 22 bytes if they are a record without a comment, else the last
    # signature found (a comment may follow it).
    at = len(tail) - END_RECORD.size
    if at < 0 or tail[at:at + 4] != END_SIGNATURE or tail[-2:] != b"\0\0":
        at = tail.rfind(END_SIGNATURE)
    if at < 0 or at + END_RECORD.size > len(tail):
        raise zipfile.BadZipFile("no end of central directory record")
    entries, directory_bytes = END_RECORD.unpack_from(tail, at)[4:6]
    zip64_at = start + at - ZIP64_LOCATOR.size - ZIP64_END.size
    if zip64_at >= 0:  # larger counts, in the Zip64 record just before the locator
        stream.seek(zip64_at)
        records = stream.read(ZIP64_END.size + ZIP64_LOCATOR.size)
        if (records.startswith(ZIP64_END_SIGNATURE)
                and records[ZIP64_END.size:].startswith(ZIP64_LOCATOR_SIGNATURE)):
            entries, directory_bytes = ZIP64_END.unpack_from(records)[7:9]
    return int(entries), int(directory_bytes)


def _check_directory(archive: zipfile.ZipFile, extension: str) -> None:
    """Part count, names, encryption, methods and declared sizes, before anything is inflated."""
    parts = archive.infolist()
    if len(parts) > MAX_PARTS:
        raise UploadRefused("too_many_parts", limit=MAX_PARTS)
    names = [part.filename.lower() for part in parts]
    if len(set(names)) != len(names) or not all(map(_plausible_part_name, names)):
        raise UploadRefused("damaged", extension=extension)
    if any(part.flag_bits & 0x41 for part in parts):  # bit 0: encrypted; bit 6: strong encryption
        raise UploadRefused("encrypted")
    if not all(map(_plain_method, parts)):
        raise UploadRefused("damaged", extension=extension)
    unpacked = sum(part.file_size for part in parts)
    if unpacked > MAX_UNPACKED_BYTES:
        raise UploadRefused("unpacked_too_large", limit_mb=MAX_UNPACKED_BYTES // MIB)
    packed = sum(part.compress_size for part in parts)
    sizes = [(part.file_size, part.compress_size) for part in parts] + [(unpacked, packed)]
    if any(size > RATIO_FLOOR and size > MAX_RATIO * stored for size, stored in sizes):
        raise UploadRefused("too_compressed")


def _plain_method(part: zipfile.ZipInfo) -> bool:
    """Deflated, or stored with equal sizes: what word processors write."""
    if part.compress_type == zipfile.ZIP_STORED:
        return part.file_size == part.compress_size
    return part.compress_type == zipfile.ZIP_DEFLATED


def _inflate_to_nothing(archive: zipfile.ZipFile, part: zipfile.ZipInfo) -> None:
    """Read a part to its end, keeping nothing, so its checksum proves its declared size.

    zipfile stops at the declared size, so a directory that understates a part ends in a
    checksum error here (BadZipFile) after at most the declared, already bounded, bytes.
    """
    with archive.open(part) as stream:
        while stream.read(CHUNK):
            pass


def _plausible_part_name(name: str) -> bool:
    """A relative name a word processor would write (never extracted, so this is about sanity)."""
    return (0 < len(name) <= MAX_PART_NAME and not name.startswith("/") and "\\" not in name
            and ".." not in name.split("/") and not CONTROL.search(name) and ":" not in name)


def _check_docx(archive: zipfile.ZipFile) -> str:
    """[Content_Types].xml naming word/document.xml as a Word document, and no macros."""
    # Part names are case-insensitive in OOXML (duplicates were refused before).
    names = {name.lower(): name for name in archive.namelist()}
    if "[content_types].xml" not in names or "word/document.xml" not in names:
        raise UploadRefused("content", extension="docx")
    if any(name.rpartition("/")[2] in DOCX_MACRO_PARTS or name.startswith("word/activex/")
           for name in names):
        raise UploadRefused("macros", extension="docx")
    main_type = ""  # what the (last) entry for /word/document.xml says

    def content_type(tag: str, attributes: dict[str, str]) -> None:
        """Judge each entry as it is read: nothing is kept of the others."""
        nonlocal main_type
        if tag.endswith(("}Default", "}Override")):
            value = attributes.get("ContentType", "").lower()
            if any(marker in value for marker in DOCX_MACRO_TYPES):
                raise UploadRefused("macros", extension="docx")
            if attributes.get("PartName", "").lower() == "/word/document.xml":
                main_type = value

    _parse_part(archive, names["[content_types].xml"], CONTENT_TYPES_LIMITS, content_type)
    if main_type != DOCX_MAIN_TYPE:
        raise UploadRefused("content", extension="docx")
    root = _parse_part(archive, names["word/document.xml"], BODY_LIMITS)
    if not root.endswith("wordprocessingml/2006/main}document") and not root.endswith(
            "wordprocessingml/main}document"):  # transitional and strict OOXML
        raise UploadRefused("content", extension="docx")
    return DOCX_TYPE


def _check_odt(archive: zipfile.ZipFile) -> str:
    """A first part `mimetype` saying ODF text, content.xml, and no macros."""
    first = archive.infolist()[0]
    if first.filename != "mimetype" or first.file_size != len(ODT_TYPE):
        raise UploadRefused("content", extension="odt")
    if archive.read(first) != ODT_TYPE.encode():
        raise UploadRefused("content", extension="odt")
    names = {name.lower() for name in archive.namelist()}
    if any(name.startswith(ODT_MACRO_FOLDERS) for name in names):
        raise UploadRefused("macros", extension="odt")
    if "content.xml" not in archive.namelist():
        raise UploadRefused("content", extension="odt")
    if _parse_part(archive, "content.xml", BODY_LIMITS) != f"{{{ODF_OFFICE}}}document-content":
        raise UploadRefused("content", extension="odt")
    return ODT_TYPE


ElementCallback = Callable[[str, dict[str, str]], None]


def _parse_part(archive: zipfile.ZipFile, name: str, limits: XmlLimits,
                on_element: ElementCallback | None = None) -> str:
    """Parse one part to its end, streamed, within `limits`; its root as '{namespace}name'."""
    part_info = archive.getinfo(name)
    if part_info.file_size > limits.size:  # zipfile never reads past the declared size
        raise UploadRefused("too_complex")
    parser = _BoundedParser(limits, on_element)
    with archive.open(part_info) as part:
        parser.feed(part)
    if not parser.root:
        raise expat.ExpatError("no root element")
    return parser.root


class _BoundedParser:
    """expat with counters: a part past its limits is refused as soon as they are passed.

    expat directly, with any DTD refused (so no entity can expand), is what defusedxml
    does, without building a tree we do not need.
    """

    def __init__(self, limits: XmlLimits, on_element: ElementCallback | None) -> None:
        self.limits, self.on_element = limits, on_element
        self.root = ""
        self.elements = self.attributes = self.depth = 0
        self.parser = expat.ParserCreate(namespace_separator="}")
        # Names come as "uri}local}prefix", so the parser's table of interned names grows
        # with every raw name expat itself keeps; with a namespace handler set, pyexpat
        # interns each prefix and namespace too.
        self.parser.namespace_prefixes = True
        self.names = self.parser.intern
        self.parser.StartElementHandler = self.start
        self.parser.EndElementHandler = self.end
        self.parser.StartNamespaceDeclHandler = self.namespace
        self.parser.StartDoctypeDeclHandler = _refuse_dtd
        self.parser.EntityDeclHandler = _refuse_dtd

    def feed(self, part: IO[bytes]) -> None:
        """Parse the part to its end, chunk by chunk, refusing a token left open too long."""
        fed = 0
        while chunk := part.read(CHUNK):
            self.parser.Parse(chunk, False)
            fed += len(chunk)
            # After a chunk, expat's position is that of its last event: what lies beyond
            # is the unfinished token it holds, and will parse again with the next chunk.
            if fed - self.parser.CurrentByteIndex > MAX_XML_TOKEN:
                raise UploadRefused("too_complex")
        self.parser.Parse(b"", True)

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        """Count the element and its attributes, then pass it on by its '{namespace}name'."""
        self.elements += 1
        self.depth += 1
        self.attributes += len(attributes)
        if (self.elements > self.limits.elements or self.depth > MAX_XML_DEPTH
                or self.attributes > self.limits.attributes or len(self.names) > MAX_XML_NAMES):
            raise UploadRefused("too_complex")
        if self.on_element is not None or not self.root:
            uri, _, local = tag.partition("}")
            name = "{" + uri + "}" + local.partition("}")[0] if local else uri
            self.root = self.root or name
            if self.on_element is not None:
                self.on_element(name, attributes)

    def end(self, _tag: str) -> None:
        """One level of nesting less."""
        self.depth -= 1

    def namespace(self, _prefix: str | None, _uri: str | None) -> None:
        """A namespace declaration: counted with the elements (its names are interned)."""
        self.elements += 1
        if self.elements > self.limits.elements or len(self.names) > MAX_XML_NAMES:
            raise UploadRefused("too_complex")


def _refuse_dtd(*_args: object) -> None:
    raise expat.ExpatError("a DTD in a document part")


DOCUMENT_CHECKS: dict[str, Callable[[zipfile.ZipFile], str]] = {
    "docx": _check_docx, "odt": _check_odt,
}
