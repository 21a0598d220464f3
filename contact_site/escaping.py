"""Text from outside (SMTP replies, addresses) made safe to show an operator."""

from __future__ import annotations

import re
import unicodedata

import click

# Named like Python string escapes, so an operator reads "\r" rather than "\x0d".
NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}
# Unicode categories that move the cursor, rewrite the screen or reorder what follows:
# Cc (C0, DEL, C1 such as CSI U+009B), Cf (bidi overrides and isolates, marks,
# zero-width characters, tags), Zl/Zp (line and paragraph separators), Cs (lone
# surrogates), Co/Cn (private use and unassigned, whose rendering nobody controls).
ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def _escape(char: str) -> str:
    if char in NAMED:
        return NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def escape_controls(text: str | None) -> str:
    """`text` with every control, format and invisible character written as an escape."""
    if not text:
        return ""
    return "".join(_escape(c) if unicodedata.category(c) in ESCAPED_CATEGORIES else c
                   for c in text)


def echo_escaped(line: str, *, err: bool = False) -> None:
    """Print one line of a command's output with its control characters escaped: what a
    visitor, a server or an account typed can never move the cursor or rewrite the screen."""
    click.echo(escape_controls(line), err=err)


# Servers often quote the refused address ("550 <ada@example.com>: no such user").
# A match starts only where a run of local-part characters starts: tried from inside
# the run as well, a long run without an @ was read again from every position
# (quadratic; a hostile server's 128 KiB reply held a delivery thread for 83 s).
LOCAL = r"[^\s<>\"'(),;:@]"
ADDRESS = re.compile(rf"(?<!{LOCAL}){LOCAL}+@[^\s<>\"'(),;]+")


def without_addresses(text: str) -> str:
    """Text for a log line: any mail address in it replaced by `<address>`."""
    return ADDRESS.sub("<address>", text)
