"""Write static/thank-you.pdf, attached to every visitor's confirmation mail.

Run it again after changing the words:
``.venv/bin/python scripts/make_thank_you_pdf.py``.
The output is reproducible (fixed creation date), so the committed file only
changes when the text does.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "static" / "thank-you.pdf"
TITLE = "Thank you for your message"
PARAGRAPHS = (
    "We have received your message and passed it on to the person you wrote to.",
    "They will answer by replying to the email address you gave. "
    "There is nothing more you need to do.",
    "If you did not send a message through our contact form, "
    "you can ignore this email.",
)
# A fixed date keeps the file byte-for-byte stable between runs.
CREATION_DATE = datetime(2025, 1, 1, tzinfo=UTC)


def build_pdf() -> FPDF:
    """Lay out the one-page thank-you note."""
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(TITLE)
    pdf.set_creator("contact_site")
    pdf.set_lang("en")
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_margins(left=25, top=30, right=25)
    pdf.add_page()
    pdf.set_font("Helvetica", style="B", size=22)
    pdf.cell(w=0, h=12, text=TITLE, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(8)
    pdf.set_font("Helvetica", size=12)
    for paragraph in PARAGRAPHS:
        pdf.multi_cell(w=0, h=7, text=paragraph, align="L")
        pdf.ln(4)
    return pdf


def main(argv: list[str]) -> int:
    """Write the PDF to the path given, or to static/thank-you.pdf."""
    output = Path(argv[1]) if len(argv) > 1 else DEFAULT_OUTPUT
    output.parent.mkdir(parents=True, exist_ok=True)
    build_pdf().output(str(output))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
