"""The thank-you PDFs: one per language, each in its own words, small, and rebuilt by the script.

The script runs as `make pdf` does, as a subprocess; its output goes to tmp_path,
never into the repository.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from fontTools import subset
from fontTools.ttLib import TTFont

from support.settings import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
SCRIPT_PATH = ROOT / "scripts" / "make_thank_you_pdf.py"
STATIC = ROOT / "static"
FONTS = ROOT / "scripts" / "fonts"
SYSTEM_FONTS = Path("/usr/share/fonts/opentype/noto")
SUBSETS = ("NotoSansSC-thank-you-subset-Regular.otf", "NotoSansSC-thank-you-subset-Bold.otf")
MAX_BYTES = 60 * 1024

# file, language tag in the PDF, title, a phrase of each paragraph
PDFS = [
    ("thank-you.pdf", "en", "Thank you for your message",
     ("passed it on to the person you wrote to", "nothing more you need to do",
      "you can ignore this email")),
    ("thank-you.zh.pdf", "zh-CN", "感谢您的留言",
     ("我们已收到您的留言", "您无需再做任何操作", "请忽略这封邮件")),
]
PDF_NAMES = [name for name, *_ in PDFS]


def load_script() -> ModuleType:
    """The script as a module (scripts/ is not a package), for its table of notes."""
    spec = importlib.util.spec_from_file_location("make_thank_you_pdf", SCRIPT_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while defining
    spec.loader.exec_module(module)
    return module


SCRIPT = load_script()


def pdf_text(path: Path) -> str:
    """The text poppler's pdftotext reads from the PDF, with all whitespace removed."""
    if shutil.which("pdftotext") is None:
        skip_or_fail("pdftotext missing (apt-get install poppler-utils)")
    result = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"],
                            capture_output=True, check=True, timeout=30)
    return re.sub(r"\s+", "", result.stdout.decode("utf-8"))


def squeeze(text: str) -> str:
    """`text` without whitespace, to compare with pdftotext's wrapped lines."""
    return re.sub(r"\s+", "", text)


def run_script(tmp_path: Path, font_dir: Path,
               system_font_dir: Path = SYSTEM_FONTS) -> subprocess.CompletedProcess[str]:
    """Run the script as `make pdf` does, writing PDFs into tmp_path/static."""
    return subprocess.run(
        [sys.executable, str(SCRIPT_PATH), "--static-dir", str(tmp_path / "static"),
         "--font-dir", str(font_dir), "--system-font-dir", str(system_font_dir)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


def copy_committed_fonts(tmp_path: Path) -> Path:
    """A copy of scripts/fonts/, so a run can read (and rewrite) it without touching the repo."""
    return Path(shutil.copytree(FONTS, tmp_path / "fonts"))


@pytest.mark.parametrize(("name", "lang", "title", "phrases"), PDFS)
def test_each_pdf_holds_its_languages_words(
    name: str, lang: str, title: str, phrases: tuple[str, ...]
) -> None:
    """pdftotext reads the title and every paragraph of the note in its language."""
    text = pdf_text(STATIC / name)
    assert text.startswith(squeeze(title))
    for phrase in phrases:
        assert squeeze(phrase) in text


@pytest.mark.parametrize("note", SCRIPT.NOTES, ids=lambda note: note.lang)
def test_each_pdf_holds_the_whole_note_of_the_script(note: Any) -> None:
    """Every paragraph the script holds for a language is in that language's committed PDF."""
    text = pdf_text(STATIC / SCRIPT.pdf_name(note.lang))
    assert text == squeeze(note.text)


@pytest.mark.parametrize(("name", "lang"), [(name, lang) for name, lang, *_ in PDFS])
def test_each_pdf_names_its_language(name: str, lang: str) -> None:
    """The document catalogue carries the language tag (/Lang), so readers pick the voice."""
    assert f"/Lang ({lang})".encode() in (STATIC / name).read_bytes()


def test_chinese_pdf_embeds_the_cjk_font() -> None:
    """The Chinese glyphs come from the embedded Noto Sans SC subset, not the reader's fonts."""
    if shutil.which("pdffonts") is None:
        skip_or_fail("pdffonts missing (apt-get install poppler-utils)")
    listing = subprocess.run(["pdffonts", str(STATIC / "thank-you.zh.pdf")],
                             capture_output=True, text=True, check=True, timeout=30).stdout
    fonts = [line.split() for line in listing.splitlines()[2:]]
    assert fonts and all(font[0].split("+")[1].startswith("NotoSansCJKSC") for font in fonts)
    assert all(font[-5:-2] == ["yes", "yes", "yes"] for font in fonts)  # embedded, subset, unicode


@pytest.mark.parametrize("path", [STATIC / name for name in PDF_NAMES]
                         + [FONTS / name for name in SUBSETS], ids=lambda path: path.name)
def test_committed_files_are_small(path: Path) -> None:
    """Each PDF and each subset font stays under 60 KB."""
    assert 0 < path.stat().st_size < MAX_BYTES


@pytest.mark.parametrize("name", SUBSETS)
def test_subset_holds_exactly_the_chinese_text_and_ascii(name: str) -> None:
    """The committed font maps the characters of the Chinese note and printable ASCII, no more."""
    wanted = {ord(char) for char in SCRIPT.cjk_characters()}
    assert set(TTFont(FONTS / name).getBestCmap()) == wanted
    assert {ord(char) for char in "感谢您的留言" + "，。" + "Az09@."} <= wanted


def test_licence_sits_beside_the_subset_fonts() -> None:
    """The OFL text and the copyright notice are committed with the fonts."""
    licence = (FONTS / "OFL.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence
    assert "Copyright 2014-2021 Adobe" in licence
    assert all(name in licence for name in SUBSETS)


def test_script_rebuilds_the_committed_fonts_and_pdfs_byte_for_byte(tmp_path: Path) -> None:
    """From Debian's fonts-noto-cjk the script makes exactly the committed subsets and PDFs."""
    if not (SYSTEM_FONTS / "NotoSansCJK-Regular.ttc").is_file():
        skip_or_fail("fonts-noto-cjk missing (apt-get install fonts-noto-cjk)")
    result = run_script(tmp_path, tmp_path / "fonts")
    assert result.returncode == 0, result.stderr
    for name in SUBSETS:
        assert (tmp_path / "fonts" / name).read_bytes() == (FONTS / name).read_bytes(), name
    for name in PDF_NAMES:
        assert (tmp_path / "static" / name).read_bytes() == (STATIC / name).read_bytes(), name


def test_without_the_system_font_the_committed_subset_makes_the_same_pdfs(
    tmp_path: Path,
) -> None:
    """With no fonts-noto-cjk the committed subset is used, and the PDFs are the committed ones."""
    fonts = copy_committed_fonts(tmp_path)
    result = run_script(tmp_path, fonts, system_font_dir=tmp_path / "no-such-dir")
    assert result.returncode == 0, result.stderr
    for name in PDF_NAMES:
        assert (tmp_path / "static" / name).read_bytes() == (STATIC / name).read_bytes(), name
    for name in SUBSETS:  # used, not rewritten
        assert (fonts / name).read_bytes() == (FONTS / name).read_bytes(), name


def test_a_subset_lacking_a_glyph_stops_the_script_with_a_clear_message(tmp_path: Path) -> None:
    """A subset without the note's characters (and no system font): exit 1, the characters named."""
    fonts = copy_committed_fonts(tmp_path)
    for name in SUBSETS:  # cut the committed fonts down to ASCII only
        font = TTFont(fonts / name)
        subsetter = subset.Subsetter(subset.Options())
        subsetter.populate(text="".join(chr(code) for code in range(0x20, 0x7F)))
        subsetter.subset(font)
        font.save(fonts / name)
    result = run_script(tmp_path, fonts, system_font_dir=tmp_path / "no-such-dir")
    assert result.returncode == 1
    assert "感 (U+611F)" in result.stderr and "fonts-noto-cjk" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "static").exists() or not any((tmp_path / "static").iterdir())
