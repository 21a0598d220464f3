"""Address and subject headers written from structured values, exactly as composed here.

`email.policy.SMTP` refolds any header line over 78 characters and, in Python 3.11,
its folder then drops the quotes around a display name and decodes an encoded one
(docs/stack-pitfalls.md): `"Jane <attacker@evil.example>, via support" <jane@example.com>` came
out as two addresses. So these headers are written here from an `Address`
(display name, addr-spec) and handed to the policy as finished headers, which it
writes as they are (a value with a `name` and a `fold()` is never refolded).
"""

from __future__ import annotations

import base64
import functools
import unicodedata
from collections.abc import Sequence
from email.header import Header
from email.headerregistry import Address
from email.policy import Policy, default

LINE = 78  # RFC 5322's recommended line length; 998 is the limit
LIMIT = 998
PRINTABLE_ASCII = frozenset(chr(c) for c in range(0x20, 0x7F))


class ComposedHeader(str):
    """A finished header: the policy writes its lines as they are, joined by its linesep."""

    name: str
    lines: tuple[str, ...]

    def __new__(cls, name: str, lines: Sequence[str]) -> ComposedHeader:
        if any(len(line) + len(name) + 2 > LIMIT for line in lines):
            raise ValueError(f"the {name} header would have a line over {LIMIT} characters")
        header = super().__new__(cls, " ".join(lines))
        header.name, header.lines = name, tuple(lines)
        return header

    def fold(self, *, policy: Policy) -> str:
        """The header as it goes on the wire, with the policy's line ending (CRLF for SMTP)."""
        return f"{self.name}: " + f"{policy.linesep} ".join(self.lines) + policy.linesep


def _plain(text: str) -> bool:
    """Text that can be written as it is: printable ASCII that no decoder takes for encoding."""
    return set(text) <= PRINTABLE_ASCII and "=?" not in text


def display_name(name: str) -> str:
    """A display name as one token no parser can split: quoted, or one encoded word.

    One encoded word even when longer than RFC 2047's 75 characters: readers
    disagree on the space between two adjacent encoded words in a name (RFC 2047
    drops it, Python's parser keeps it), and they all read one long word the same.
    """
    if _plain(name):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return "=?utf-8?b?" + base64.b64encode(name.encode()).decode("ascii") + "?="


def address_lines(name: str, address: Address) -> list[str]:
    """The lines of one address: the display name, then `<addr-spec>` (on its own if long).

    An address whose local part is not ASCII is written in UTF-8 (RFC 6532): such a
    mail goes only to a server that offers SMTPUTF8 (smtp.py checks).
    """
    spec = address.addr_spec
    if "@" not in spec or any(c in spec for c in "\r\n<>,"):
        raise ValueError("an address header needs an address with a domain")
    if not address.display_name:
        return [spec]
    phrase = display_name(address.display_name)
    if len(name) + 2 + len(phrase) + 2 + len(spec) + 1 <= LINE:
        return [f"{phrase} <{spec}>"]
    return [phrase, f"<{spec}>"]


def mailbox(display_name: str, spec: str) -> Address:
    """An Address for a stored address, its local part in any script (RFC 6531), which
    the email package's parser would refuse as a defect."""
    local, _at, domain = spec.rpartition("@")
    if local.isascii():
        return Address(display_name, addr_spec=spec)
    return Address(display_name, username=local, domain=domain)


def address_header(name: str, addresses: Sequence[Address]) -> ComposedHeader:
    """A From, To or Reply-To header holding exactly these addresses."""
    if not addresses:
        raise ValueError(f"the {name} header needs an address")
    lines: list[str] = []
    for position, address in enumerate(addresses):
        one = address_lines(name, address)
        if position < len(addresses) - 1:
            one[-1] += ","
        lines.extend(one)
    return ComposedHeader(name, lines)


@functools.lru_cache(maxsize=16)  # configured text: parsed once (an Address is read-only)
def parse_address(text: str) -> Address:
    """The one address in configured text such as `Contact form <noreply@example.org>`."""
    found = default.header_factory("From", text).addresses
    if len(found) != 1 or not found[0].domain:
        raise ValueError("expected exactly one address with a domain")
    result: Address = found[0]
    return result


def _fold_words(name: str, text: str) -> list[str]:
    """Plain text cut at single spaces into lines of about 78; unfolding restores it."""
    words = text.split(" ")
    lines, room = [words[0]], LINE - len(name) - 2
    for word in words[1:]:
        if word and lines[-1].strip(" ") and len(lines[-1]) + 1 + len(word) > room:
            lines.append(word)  # the space before it becomes the fold
            room = LINE - 1
        else:
            lines[-1] += " " + word
    return lines


def text_header(name: str, text: str) -> ComposedHeader:
    """An unstructured header (Subject) that reads back exactly as `text`."""
    if _plain(text):
        return ComposedHeader(name, _fold_words(name, text))
    # Encoded words of at most 75 characters, cut between characters: in
    # unstructured text every reader joins adjacent encoded words as one.
    encoded = Header(text, "utf-8", header_name=name).encode(linesep="\n")
    return ComposedHeader(name, [line.lstrip(" ") for line in encoded.split("\n")])


# Characters a quoted file name keeps; any other becomes "_" in the ASCII name.
NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 ._-()+")
# RFC 2231 attribute characters: written as they are in an extended value, others %XX.
ATTRIBUTE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                            "!#$&+-.^_`|~")
# Extended-value pieces (filename*0*=, *1*, …) of this many characters at most per line.
PIECE = 60


def ascii_file_name(filename: str) -> str:
    """A plain ASCII name for readers that know no RFC 2231 (`简历.pdf` → `attachment.pdf`)."""
    stem, dot, extension = filename.rpartition(".")
    if not dot:
        stem, extension = filename, ""
    stem, extension = _flat(stem), _flat(extension).replace(" ", "")
    return f"{stem or 'attachment'}.{extension}" if extension else (stem or "attachment")


def _flat(text: str) -> str:
    """Text in the characters of NAME_SAFE: accents dropped, others "_", edges trimmed."""
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    flat = "".join(c if c in NAME_SAFE else "_" for c in flat).strip(" ._")
    return flat if flat.strip("_ ") else ""


def disposition_header(disposition: str, filename: str) -> ComposedHeader:
    """Content-Disposition with a plain `filename=` and, for any other name, `filename*=`
    first (readers that know RFC 2231 take it; Python's takes the first it finds).

    Written here because the email package writes either one or the other: a reader
    that knows only `filename=` (munpack, old clients) saved the file as "part1".
    """
    plain = ascii_file_name(filename)
    quoted = '"' + plain.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if plain == filename:
        return ComposedHeader("Content-Disposition", [f"{disposition};", f"filename={quoted}"])
    characters = [c if c in ATTRIBUTE_CHARS else "".join(f"%{b:02X}" for b in c.encode())
                  for c in filename]
    whole = "filename*=utf-8''" + "".join(characters)
    if len(whole) <= LINE:
        return ComposedHeader("Content-Disposition",
                              [f"{disposition};", f"{whole};", f"filename={quoted}"])
    lines = [f"{disposition};"]
    lines += [f"filename*{n}*={'utf-8' + chr(39) * 2 if n == 0 else ''}{piece};"
              for n, piece in enumerate(_pieces(characters))]
    return ComposedHeader("Content-Disposition", [*lines, f"filename={quoted}"])


def _pieces(characters: list[str]) -> list[str]:
    """The encoded characters joined into pieces of at most PIECE, cut between characters."""
    pieces = [""]
    for character in characters:
        if len(pieces[-1]) + len(character) > PIECE:
            pieces.append("")
        pieces[-1] += character
    return pieces
