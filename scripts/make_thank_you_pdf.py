"""Write the thank-you PDFs attached to visitors' confirmation mails, one per language.

``static/thank-you.pdf`` is the English (default) note, the file
``CONTACT_THANK_YOU_PDF`` names; each other language sits beside it as
``static/thank-you.<lang>.pdf`` (``thank-you.zh.pdf``).

The Chinese note needs a CJK font. When Debian's ``fonts-noto-cjk`` is
installed, its Simplified Chinese face is cut down with fontTools to exactly
the characters of the text (plus printable ASCII) and saved into
``scripts/fonts/``, where it is committed; without the system font the
committed subset is used, and the script stops with a clear message if the
text needs a character the subset lacks.

Run it again after changing the words: ``make pdf``
(``.venv/bin/python scripts/make_thank_you_pdf.py``). The output is
reproducible (fixed creation date, fixed font timestamps), so the committed
files only change when the text does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from fontTools import subset
from fontTools.ttLib import TTCollection, TTFont
from fpdf import FPDF
from fpdf.enums import WrapMode, XPos, YPos

ROOT = Path(__file__).resolve().parent.parent
STATIC_DIR = ROOT / "static"
FONT_DIR = ROOT / "scripts" / "fonts"
STEM = "thank-you"
DEFAULT_LANG = "en"  # its note is static/thank-you.pdf, with no language suffix
# Debian's fonts-noto-cjk: OpenType collections (CFF outlines); the SC face
# draws the Simplified Chinese forms.
SYSTEM_CJK_DIR = Path("/usr/share/fonts/opentype/noto")
CJK_FAMILY = "Noto Sans CJK SC"
CJK_STYLES = ("Regular", "Bold")
# Printable ASCII, so a Latin word, a digit or an address can join the text
# without rebuilding the font.
BASIC_LATIN = "".join(chr(code) for code in range(0x20, 0x7F))
# A fixed date keeps the files byte-for-byte stable between runs.
CREATION_DATE = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Note:
    """The words of the thank-you note in one language."""

    lang: str  # as in CONTACT_LANGUAGES; names the file
    pdf_lang: str  # BCP 47 tag written into the PDF (/Lang)
    title: str
    paragraphs: tuple[str, ...]
    cjk: bool = False  # needs the CJK font (else the built-in Helvetica)

    @property
    def text(self) -> str:
        """Every character the note prints."""
        return self.title + "".join(self.paragraphs)


NOTES = (
    Note(
        lang="en",
        pdf_lang="en",
        title="Thank you for your message",
        paragraphs=(
            "We have received your message and passed it on to the person you wrote to.",
            "They will answer by replying to the email address you gave. "
            "There is nothing more you need to do.",
            "If you did not send a message through our contact form, "
            "you can ignore this email.",
        ),
    ),
    Note(
        lang="zh",
        pdf_lang="zh-CN",
        title="感谢您的留言",
        paragraphs=(
            "我们已收到您的留言，并已转交给您想联系的人。",
            "对方会通过您留下的电子邮箱地址直接回复您，您无需再做任何操作。",
            "如果您并未通过我们网站的联系表单发送过留言，请忽略这封邮件。",
        ),
        cjk=True,
    ),
)


class BuildError(Exception):
    """The PDFs cannot be built as asked; the message says what to do."""


def pdf_name(lang: str) -> str:
    """The file name of the note in `lang`: thank-you.pdf, thank-you.zh.pdf, ..."""
    return f"{STEM}.pdf" if lang == DEFAULT_LANG else f"{STEM}.{lang}.pdf"


def subset_name(style: str) -> str:
    """The committed subset font file of one style (Regular or Bold)."""
    return f"NotoSansSC-thank-you-subset-{style}.otf"


def cjk_characters() -> str:
    """The characters the CJK subset holds: those of every CJK note, plus printable ASCII."""
    chars = set(BASIC_LATIN)
    for note in NOTES:
        if note.cjk:
            chars.update(note.text)
    return "".join(sorted(chars))


def _face_number(collection: Path, full_name: str) -> int:
    """The index of the face named `full_name` inside an OpenType collection."""
    for number, face in enumerate(TTCollection(collection, lazy=True).fonts):
        if face["name"].getDebugName(4) == full_name:
            return number
    raise BuildError(f"{collection} has no face named {full_name!r}")


def write_subset(collection: Path, style: str, characters: str, output: Path) -> None:
    """Cut the SC face of `collection` down to `characters` and save it at `output`."""
    full_name = CJK_FAMILY if style == "Regular" else f"{CJK_FAMILY} {style}"
    # recalcTimestamp=False keeps head.modified from the source: same bytes each run.
    font = TTFont(collection, fontNumber=_face_number(collection, full_name),
                  recalcTimestamp=False)
    options = subset.Options()
    options.layout_features = []  # fpdf2 lays out glyph by glyph, without shaping
    options.drop_tables += ["BASE", "VORG", "vhea", "vmtx"]  # vertical text only
    options.name_IDs = [0, 1, 2, 3, 4, 5, 6, 7, 13, 14]  # keep copyright and licence
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=characters)
    subsetter.subset(font)
    output.parent.mkdir(parents=True, exist_ok=True)
    font.save(output)


def missing_characters(font_path: Path, text: str) -> list[str]:
    """The characters of `text` the font at `font_path` has no glyph for."""
    cmap = TTFont(font_path, lazy=True).getBestCmap()
    return sorted({char for char in text if ord(char) not in cmap})


def prepare_cjk_fonts(source_dir: Path, font_dir: Path) -> dict[str, Path]:
    """Rebuild the subset from the system font when present; check it covers the text."""
    characters = cjk_characters()
    fonts = {}
    for style in CJK_STYLES:
        collection = source_dir / f"NotoSansCJK-{style}.ttc"
        path = font_dir / subset_name(style)
        if collection.is_file():
            write_subset(collection, style, characters, path)
        elif not path.is_file():
            raise BuildError(f"neither {collection} nor {path} exists: "
                             "install Debian's fonts-noto-cjk and run make pdf")
        missing = missing_characters(path, characters)
        if missing:
            listed = ", ".join(f"{char} (U+{ord(char):04X})" for char in missing)
            remedy = ("change the text: the font has no such glyph" if collection.is_file()
                      else f"install Debian's fonts-noto-cjk ({collection}) and run "
                      "make pdf to rebuild it")
            raise BuildError(f"{path} has no glyph for {listed}: {remedy}")
        fonts[style] = path
    return fonts


def build_pdf(note: Note, cjk_fonts: dict[str, Path]) -> FPDF:
    """Lay out the one-page thank-you note in the note's language."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(note.title)
    pdf.set_creator("contact_site")
    pdf.set_lang(note.pdf_lang)
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_margins(left=25, top=30, right=25)
    family = "Helvetica"
    # Chinese has no spaces between words: a long line may break after any character.
    wrapmode = WrapMode.CHAR if note.cjk else WrapMode.WORD
    if note.cjk:
        family = "NotoSansSC"
        pdf.add_font(family, style="", fname=cjk_fonts["Regular"])
        pdf.add_font(family, style="B", fname=cjk_fonts["Bold"])
    pdf.add_page()
    pdf.set_font(family, style="B", size=22)
    pdf.cell(w=0, h=12, text=note.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)
    pdf.set_font(family, size=12)
    for paragraph in note.paragraphs:
        pdf.multi_cell(w=0, h=7, text=paragraph, align="L", wrapmode=wrapmode)
        pdf.ln(4)
    return pdf


def write_all(static_dir: Path, font_dir: Path, source_dir: Path) -> Iterable[Path]:
    """Write every language's note into `static_dir`, yielding each path written."""
    cjk_fonts = prepare_cjk_fonts(source_dir, font_dir)
    static_dir.mkdir(parents=True, exist_ok=True)
    for note in NOTES:
        output = static_dir / pdf_name(note.lang)
        build_pdf(note, cjk_fonts).output(str(output))
        yield output


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The command line: where the PDFs, the subset fonts and the system fonts are."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--static-dir", type=Path, default=STATIC_DIR,
                        help="where the PDFs are written (default: static/)")
    parser.add_argument("--font-dir", type=Path, default=FONT_DIR,
                        help="where the subset fonts are kept (default: scripts/fonts/)")
    parser.add_argument("--system-font-dir", type=Path, default=SYSTEM_CJK_DIR,
                        help=f"where fonts-noto-cjk is installed (default: {SYSTEM_CJK_DIR})")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Write the thank-you PDFs; exit 1 with one line on stderr if that is impossible."""
    args = parse_args(argv)
    try:
        for path in write_all(args.static_dir, args.font_dir, args.system_font_dir):
            print(f"wrote {path}")
    except BuildError as error:
        print(f"make_thank_you_pdf: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
