"""The gettext catalogues (docs/languages.md): complete, consistent with the sources,
and compilable."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TRANSLATIONS = PROJECT_ROOT / "translations"
TRANSLATED = ["zh"]  # every shipped language but the source (en)
# %(name)s as gettext fills them, {name} as str.format and the page's script fill them.
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]|\{(\w+)\}")


def catalogue(language: str) -> Catalog:
    """The .po file of one language."""
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as file:
        return read_po(file, locale=language)


def template() -> Catalog:
    """translations/messages.pot, the message ids extracted from the sources."""
    with open(TRANSLATIONS / "messages.pot", "rb") as file:
        return read_po(file)


def ids(messages: Catalog) -> set[object]:
    """Every message id of a catalogue (a plural entry as its (singular, plural) pair)."""
    return {message.id if isinstance(message.id, str) else tuple(message.id)
            for message in messages if message.id}


def placeholders(text: str) -> set[str]:
    """The names of the placeholders in a message."""
    return {name or brace for name, brace in PLACEHOLDER.findall(text)}


def forms(message: Message) -> list[str]:
    """The translated forms of a message (one for a plain entry, nplurals for a plural one)."""
    return [message.string] if isinstance(message.string, str) else list(message.string)


def test_the_template_holds_every_string_marked_in_the_sources(tmp_path: Path) -> None:
    """`make translations` was run: extracting again finds no id the template lacks."""
    fresh = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).parent / "pybabel"), "extract",
                    "-F", "babel.cfg", "-k", "_l", "-k", "lazy_gettext", "-o", str(fresh), "."],
                   cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=120)
    with open(fresh, "rb") as file:
        extracted = ids(read_po(file))
    assert extracted - ids(template()) == set(), "run `make translations`"


@pytest.mark.parametrize("language", ["en", *TRANSLATED])
def test_each_catalogue_holds_every_message_of_the_template(language: str) -> None:
    assert ids(template()) - ids(catalogue(language)) == set()


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_has_a_translation_that_is_not_fuzzy(language: str) -> None:
    """A missing or fuzzy entry would show English on a page of this language."""
    wanted = ids(template())
    untranslated = [message.id for message in catalogue(language)
                    if message.id and (message.id if isinstance(message.id, str)
                                       else tuple(message.id)) in wanted
                    and (message.fuzzy or not all(form.strip() for form in forms(message)))]
    assert untranslated == []


@pytest.mark.parametrize("language", ["en", *TRANSLATED])
def test_placeholders_are_the_same_in_every_translation(language: str) -> None:
    """%(name)s and {name} survive translation, none added, none lost."""
    wrong = []
    for message in catalogue(language):
        if not message.id:
            continue
        source = message.id if isinstance(message.id, str) else message.id[-1]
        for form in forms(message):
            if form and placeholders(form) != placeholders(source):
                wrong.append((source, form))
    assert wrong == []


@pytest.mark.parametrize("language", ["en", *TRANSLATED])
def test_the_catalogue_compiles_without_errors(language: str) -> None:
    """Babel's own checks (python-format, plural forms) pass and a .mo file is written."""
    messages = catalogue(language)
    errors = [(message.id, [str(error) for error in found])
              for message, found in messages.check() if found]
    assert errors == []
    compiled = io.BytesIO()
    write_mo(compiled, messages)
    assert compiled.getvalue().startswith((b"\xde\x12\x04\x95", b"\x95\x04\x12\xde"))


@pytest.mark.parametrize("language", TRANSLATED)
def test_the_compiled_catalogue_is_there_for_the_app(language: str) -> None:
    """The install step compiled it: without a .mo file the language would fall back to English."""
    assert (TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo").is_file()


def test_chinese_sentences_use_full_width_punctuation() -> None:
    """A Chinese sentence ends with 。！？ or a full-width bracket, never an ASCII full stop."""
    ascii_ends = [message.string for message in catalogue("zh")
                  if isinstance(message.string, str) and message.string
                  and re.search(r"[\u4e00-\u9fff][.,;:!?]($|\s)", message.string)]
    assert ascii_ends == []
