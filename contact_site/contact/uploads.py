"""Checking one uploaded file: size, name, extension and the content its bytes prove.

A `.txt` is read to its end; a `.docx`/`.odt` is opened as a zip archive and
judged from its directory before any part is inflated. Nothing is extracted.
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, Any
from xml.parsers import expat

import filetype
from flask import current_app
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from ..submissions.files import CheckedUpload

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


class UploadTooLarge(RequestEntityTooLarge):
    """The file alone is over CONTACT_MAX_UPLOAD_MB (answered with 413)."""


class UploadRefused(ValueError):
    """The file is of a kind, content or name the site does not accept; `reason` names why."""

    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(str(REFUSALS[reason]).format(**values))
        self.reason = reason


def too_large_message() -> str:
    """The words used for an oversize file, by the server and the page's script."""
    return str(REFUSALS["too_large"]).format(limit_mb=current_app.config["CONTACT_MAX_UPLOAD_MB"])


def bad_type_message() -> str:
    """The words used for a file type not on the allowlist."""
    return str(REFUSALS["bad_type"]).format(allowed=_allowed())


def _allowed() -> str:
    return ", ".join(current_app.config["CONTACT_ALLOWED_EXTENSIONS"])


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


def check(file: FileStorage) -> CheckedUpload:
    """Check size, name, extension and the whole content; raise on the first problem."""
    config = current_app.config
    size = _size(file.stream)
    if size > config["CONTACT_MAX_UPLOAD_BYTES"]:
        raise UploadTooLarge(too_large_message())
    if size == 0:
        raise UploadRefused("empty")
    filename = neutral_filename(file.filename or "")
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    if extension not in config["CONTACT_ALLOWED_EXTENSIONS"]:
        raise UploadRefused("bad_type", allowed=_allowed())
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
    stream.seek(0)
    try:
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
            NotImplementedError, RuntimeError):
        raise UploadRefused("damaged", extension=extension) from None


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
    types: dict[str, str] = {}

    def content_type(tag: str, attributes: dict[str, str]) -> None:
        if tag.endswith(("}Default", "}Override")):
            key = attributes.get("PartName") or f"*.{attributes.get('Extension')}"
            types[key.lower()] = attributes.get("ContentType", "").lower()

    _parse_part(archive, names["[content_types].xml"], content_type)
    if any(marker in value for value in types.values() for marker in DOCX_MACRO_TYPES):
        raise UploadRefused("macros", extension="docx")
    if types.get("/word/document.xml") != DOCX_MAIN_TYPE:
        raise UploadRefused("content", extension="docx")
    root = _parse_part(archive, names["word/document.xml"])
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
    if _parse_part(archive, "content.xml") != f"{{{ODF_OFFICE}}}document-content":
        raise UploadRefused("content", extension="odt")
    return ODT_TYPE


def _parse_part(archive: zipfile.ZipFile, name: str,
                on_element: Callable[[str, dict[str, str]], None] | None = None) -> str:
    """Parse one part to its end, streamed; its root element as '{namespace}name'.

    expat directly, with any DTD refused (so no entity can expand), is what defusedxml
    does, without building a tree we do not need.
    """
    parser = expat.ParserCreate(namespace_separator="}")
    roots: list[str] = []

    def start(tag: str, attributes: dict[str, str]) -> None:
        if not roots:
            roots.append(tag if "}" not in tag else "{" + tag)
        if on_element is not None:
            on_element(tag, attributes)

    def refuse_dtd(*_args: object) -> None:
        raise expat.ExpatError("a DTD in a document part")

    parser.StartElementHandler = start
    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    with archive.open(name) as part:
        while chunk := part.read(CHUNK):
            parser.Parse(chunk, False)
    parser.Parse(b"", True)
    if not roots:
        raise expat.ExpatError("no root element")
    return roots[0]


DOCUMENT_CHECKS: dict[str, Callable[[zipfile.ZipFile], str]] = {
    "docx": _check_docx, "odt": _check_odt,
}
