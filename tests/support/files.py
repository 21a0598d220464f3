"""Small files of each kind a visitor may send, and what a test finds on disk afterwards."""

from __future__ import annotations

from pathlib import Path

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 32
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" + b"\x00" * 120 + b"This program cannot be run"
ZIP = b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + b"\x00" * 40
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>'
HTML = b"<html><body><script>alert(document.cookie)</script></body></html>"


def files_beside_uploads(root: Path) -> set[str]:
    """Every path under the test folder except the upload folder and the database."""
    return {str(p.relative_to(root)) for p in root.rglob("*")
            if p.relative_to(root).parts[0] != "uploads" and ".sqlite" not in p.name}


def kept_uploads(root: Path) -> list[Path]:
    """Every file under the test folder's upload folder."""
    return [p for p in (root / "uploads").rglob("*") if p.is_file()]
