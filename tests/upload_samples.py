"""Documents built in the tests: minimal real .docx and .odt files, and hostile variants."""

from __future__ import annotations

import functools
import io
import struct
import zipfile

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
