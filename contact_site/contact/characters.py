"""Characters that hide or reorder text: found here, refused by the form with plain words.

Single-line fields (name, email, subject, recipient) refuse every invisible format
character (Unicode category Cf: bidirectional controls and marks, zero-width
characters, U+FEFF, U+2060..., tag characters) and the Hangul fillers, letters
that show nothing. The one exception is the joiner a script needs inside a word:
ZWNJ/ZWJ after a virama (Indic scripts), ZWNJ between two joining letters
(Persian, Arabic-script languages), ZWJ between two pictographs (emoji sequences).
The message may hold marks and joiners, but not the controls that reorder
whole runs of text (embeddings, overrides, isolates) nor tag characters, which
carry hidden ASCII, except inside an emoji subdivision flag.
"""

from __future__ import annotations

import re
import unicodedata

import idna

ZWNJ, ZWJ = "\u200c", "\u200d"
# Embeddings, overrides and isolates: they reorder what follows ("Invoice \u202eFDP.exe").
REORDERING = "\u202a-\u202e\u2066-\u2069"
# Letters (category Lo) that render as nothing.
FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
# U+1F3F4 (black flag), tag letters, CANCEL TAG: England, Scotland, Wales and the like.
TAG_FLAG = "\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"
# A whole flag (group 1, allowed), else a reordering control or a tag character outside
# a flag. Matches are found left to right, each starting where the last ended, so one
# pass finds the first stray character however many flags the text holds.
FLAG_OR_HIDDEN = re.compile(f"({TAG_FLAG})|[{REORDERING}\U000e0000-\U000e007f]")
# Between a pictograph and a following ZWJ: the emoji presentation selector, skin tones.
EMOJI_MODIFIERS = frozenset("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")


def _pictograph_before(text: str, pos: int) -> bool:
    """Whether a pictographic symbol (category So) comes before `pos`, modifiers skipped."""
    while pos > 0 and text[pos - 1] in EMOJI_MODIFIERS:  # only this joiner scans the run
        pos -= 1
    return pos > 0 and unicodedata.category(text[pos - 1]) == "So"


def joiner_needed(text: str, pos: int) -> bool:
    """Whether the ZWNJ/ZWJ at `pos` does a script's work (RFC 5892 CONTEXTJ, or an emoji)."""
    # Linear over a line: idna looks at the neighbour, or scans the transparent marks
    # beside a ZWNJ, and every such scan stops at the next joiner (which is not one).
    try:
        if idna.valid_contextj(text, pos):  # after a virama; ZWNJ between joining letters
            return True
    except (ValueError, idna.IDNAError):  # an unassigned neighbour, or a very long text
        return False
    following = text[pos + 1:pos + 2]
    return (text[pos] == ZWJ and _pictograph_before(text, pos) and bool(following)
            and unicodedata.category(following) == "So")


def hidden_in_line(text: str) -> int | None:
    """The position of the first invisible or direction-changing character, if any."""
    for pos, char in enumerate(text):
        if char in FILLERS:
            return pos
        if unicodedata.category(char) == "Cf" and not (
                char in (ZWNJ, ZWJ) and joiner_needed(text, pos)):
            return pos
    return None


def hidden_in_message(text: str) -> int | None:
    """The position of the first reordering control or stray tag character, if any."""
    for match in FLAG_OR_HIDDEN.finditer(text):
        if match.group(1) is None:
            return match.start()
    return None


def describe_character(char: str) -> str:
    """A character as a person can look it up: `U+202E (RIGHT-TO-LEFT OVERRIDE)`."""
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")
