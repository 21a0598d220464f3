"""Documents built in the tests: minimal real .docx and .odt files, and hostile variants."""

from __future__ import annotations

import functools
import io
import random
import struct
import zipfile
from collections.abc import Callable, Iterable, Iterator

MIB = 2**20
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
ODT_MIMETYPE = "application/vnd.oasis.opendocument.text"

CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels" '
    'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>{extra}'
    '<Override PartName="/word/document.xml" ContentType="{main}"/>'
    "</Types>"
)
PACKAGE_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/></Relationships>'
)
WORD_DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
    "<w:body><w:p><w:r><w:t>{text}</w:t></w:r></w:p></w:body></w:document>"
)
ODT_MANIFEST = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" '
    'manifest:version="1.2">'
    f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODT_MIMETYPE}"/>'
    '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
    "</manifest:manifest>"
)
ODT_CONTENT = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<office:document-content xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" office:version="1.2">'
    "<office:body><office:text><text:p>{text}</text:p></office:text></office:body>"
    "</office:document-content>"
)
VBA_TYPE = '<Default Extension="bin" ContentType="application/vnd.ms-office.vbaProject"/>'


def zipped(parts: list[tuple[str, bytes | str]], stored_first: bool = False) -> bytes:
    """A zip of these parts in order, deflated (the first stored when `stored_first`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, data) in enumerate(parts):
            method = zipfile.ZIP_STORED if stored_first and index == 0 else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return out.getvalue()


def docx_parts(text: str = "Hello from a real document", main: str = DOCX_MAIN,
               extra_types: str = "") -> list[tuple[str, bytes | str]]:
    """The three parts Word needs to open a document."""
    return [("[Content_Types].xml", CONTENT_TYPES.format(extra=extra_types, main=main)),
            ("_rels/.rels", PACKAGE_RELS),
            ("word/document.xml", WORD_DOCUMENT.format(text=text))]


def docx(*extra: tuple[str, bytes | str], **kwargs: str) -> bytes:
    """A minimal real .docx, plus any extra parts."""
    return zipped(docx_parts(**kwargs) + list(extra))


def odt_parts(text: str = "Hello from a real document",
              mimetype: str = ODT_MIMETYPE) -> list[tuple[str, bytes | str]]:
    """The parts of an OpenDocument text, `mimetype` first as ODF requires."""
    return [("mimetype", mimetype), ("META-INF/manifest.xml", ODT_MANIFEST),
            ("content.xml", ODT_CONTENT.format(text=text))]


def odt(*extra: tuple[str, bytes | str], **kwargs: str) -> bytes:
    """A minimal real .odt, plus any extra parts."""
    return zipped(odt_parts(**kwargs) + list(extra), stored_first=True)


def zeros_docx(mib: int) -> bytes:
    """A .docx carrying a part of `mib` MiB of zeros, deflated while written (about mib KiB)."""
    out = io.BytesIO()
    zeros = bytes(MIB)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in docx_parts():
            archive.writestr(name, data)
        with archive.open("word/media/image1.png", "w") as part:
            for _ in range(mib):
                part.write(zeros)
    return out.getvalue()


@functools.cache
def gigabyte_bomb() -> bytes:
    """About 1 MiB that inflates to 1 GiB: built once per test run (it takes seconds)."""
    return zeros_docx(1024)


def encrypted(data: bytes) -> bytes:
    """The same archive with every part flagged as encrypted (traditional PKWARE encryption)."""
    raw = bytearray(data)
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = raw.find(signature)
        while start != -1:
            (flags,) = struct.unpack_from("<H", raw, start + flag_at)
            struct.pack_into("<H", raw, start + flag_at, flags | 0x1)
            start = raw.find(signature, start + 4)
    return bytes(raw)


def understated(data: bytes, name: str, declared: int) -> bytes:
    """The archive with `name`'s uncompressed size understated in its central directory."""
    raw = bytearray(data)
    start = raw.find(b"PK\x01\x02")
    while start != -1:
        name_length = struct.unpack_from("<H", raw, start + 28)[0]
        if raw[start + 46:start + 46 + name_length] == name.encode():
            struct.pack_into("<I", raw, start + 24, declared)
        start = raw.find(b"PK\x01\x02", start + 4)
    return bytes(raw)


# Hostile structures inside small archives: each stays under the upload limit, the unpacked
# limit and the compression ratio limit, so only the limits on structure can refuse it.
CONTENT_TYPES_HEAD, _, CONTENT_TYPES_TAIL = CONTENT_TYPES.partition("{extra}")
WORD_HEAD, _, WORD_TAIL = WORD_DOCUMENT.partition("{text}")
ODT_HEAD, _, ODT_TAIL = ODT_CONTENT.partition("{text}")
# Random bytes to random letters (all 26, or just a and b): a byte's value picks one.
TO_LETTERS = bytes(b"abcdefghijklmnopqrstuvwxyz"[n % 26] for n in range(256))
TO_A_OR_B = bytes(b"ab"[n % 2] for n in range(256))
Pieces = Iterable[str | bytes]


def streamed(parts: list[tuple[str, bytes | str | Pieces]], stored_first: bool = False) -> bytes:
    """A zip of these parts in order, each given whole or as pieces written one by one."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, data) in enumerate(parts):
            method = zipfile.ZIP_STORED if stored_first and index == 0 else zipfile.ZIP_DEFLATED
            if isinstance(data, bytes | str):
                archive.writestr(name, data, compress_type=method)
                continue
            with archive.open(name, "w") as part:
                for piece in data:
                    part.write(piece.encode() if isinstance(piece, str) else piece)
    return out.getvalue()


def docx_with(name: str, pieces: Pieces) -> bytes:
    """A minimal .docx whose part `name` is written from `pieces`."""
    return streamed([(part, pieces if part == name else data) for part, data in docx_parts()])


def word_body(pieces: Pieces) -> Iterator[str | bytes]:
    """word/document.xml around these pieces of its body."""
    yield WORD_HEAD
    yield from pieces
    yield WORD_TAIL


def in_batches(count: int, piece: Callable[[int], str], batch: int = 10_000) -> Iterator[str]:
    """`piece(n)` for n below `count`, joined a batch at a time."""
    for start in range(0, count, batch):
        yield "".join(piece(n) for n in range(start, min(start + batch, count)))


@functools.cache
def content_types_flood(entries: int = 2_000_000) -> bytes:
    """[Content_Types].xml with `entries` Overrides of scattered names: about 9 MB for 2 million,
    96 MB unpacked (under the 100 MiB limit, compressed about 10:1)."""
    def entry(n: int) -> str:
        return f'<Override PartName="/{(n * 2654435761) % 2**24:06x}" ContentType="a/b"/>'
    overrides = in_batches(entries, entry)
    return docx_with("[Content_Types].xml", [CONTENT_TYPES_HEAD, *overrides,
                                             CONTENT_TYPES_TAIL.format(main=DOCX_MAIN)])


def random_elements(count: int, seed: int = 1, batch: int = 100_000) -> Iterator[bytes]:
    """`count` empty elements (`<x/>`) named by random letters (compressed about 6:1)."""
    rng = random.Random(seed)
    for start in range(0, count, batch):
        size = min(batch, count - start)
        elements = bytearray(b"<a/>" * size)
        elements[1::4] = rng.randbytes(size).translate(TO_LETTERS)
        yield bytes(elements)


def nested(depth: int, seed: int = 1) -> Iterator[bytes]:
    """Elements nested `depth` deep, named by random letters, closed in order."""
    names = random.Random(seed).randbytes(depth).translate(TO_LETTERS)
    opening, closing = bytearray(b"<a>" * depth), bytearray(b"</a>" * depth)
    opening[1::3], closing[2::4] = names, names[::-1]
    yield bytes(opening)
    yield bytes(closing)


def long_attribute(mib: int, seed: int = 1) -> Iterator[str | bytes]:
    """One element whose attribute runs `mib` MiB (two letters at random: about 8:1)."""
    rng = random.Random(seed)
    yield '<w:p w:x="'
    for _ in range(mib):
        yield rng.randbytes(MIB).translate(TO_A_OR_B)
    yield '"/>'


def odt_with_content(pieces: Pieces) -> bytes:
    """A minimal .odt whose content.xml's text holds these pieces."""
    parts = odt_parts()
    content = [ODT_HEAD, *pieces, ODT_TAIL]
    return streamed(parts[:2] + [("content.xml", content)], stored_first=True)


def many_entries(count: int, declared: int | None = None) -> bytes:
    """A zip of `count` empty stored parts with one-to-five-letter names, written directly (zipfile
    takes seconds); its end record declares `declared` parts, or the true count."""
    local, central, offset = [], [], 0
    for n in range(count):
        name = b"%x" % n
        local.append(LOCAL_HEADER.pack(b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0)
                     + name)
        central.append(CENTRAL_HEADER.pack(b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name),
                                           0, 0, 0, 0, 0, offset) + name)
        offset += len(local[-1])
    directory = b"".join(central)
    told = min(count if declared is None else declared, 0xFFFF)  # 0xFFFF: "see Zip64"
    end = END_RECORD.pack(b"PK\x05\x06", 0, 0, told, told, len(directory), offset, 0)
    return b"".join(local) + directory + end


LOCAL_HEADER = struct.Struct("<4s5H3L2H")
CENTRAL_HEADER = struct.Struct("<4s6H3L5H2L")
END_RECORD = struct.Struct("<4s4H2LH")


def stored_docx(size: int, seed: int = 1) -> bytes:
    """A real .docx of about `size` bytes: a photo-like part of random bytes, stored as is."""
    noise = random.Random(seed).randbytes(size)
    return streamed(docx_parts() + [("word/media/image1.jpeg", noise)])
