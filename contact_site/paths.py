"""Where the product's files are: a checkout's folders, or an installed package's copies.

Resources (templates/, static/, translations/, migrations/, gunicorn.conf.py) sit at the
top of a checkout, beside contact_site/; a built package carries them in
contact_site/resources/ (hatch_build.py copies them there). Data (instance/: the
development key, the SQLite database, captured mail; uploads/) goes in the checkout, or,
for an installed package, in the folder the command runs in, unless settings say otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent
BUNDLED = PACKAGE / "resources"


def installed() -> bool:
    """Whether this is an installed package (its resources inside it), not a checkout."""
    return (BUNDLED / "templates").is_dir()


def resource_root() -> Path:
    """The folder holding templates/, static/, translations/, migrations/."""
    return BUNDLED if installed() else CHECKOUT


def data_root() -> Path:
    """The folder instance/ and uploads/ go in by default."""
    return Path.cwd() if installed() else CHECKOUT


def account_command(debug: bool) -> str:
    """The command that creates a console account in the way this site runs: `make user`
    beside `make run`, the package's own command, or the checkout venv's flask."""
    if installed():
        return "contact-site users create NAME"
    if debug:
        return "make user NAME=yourname"
    if Path(sys.prefix).resolve() == (CHECKOUT / ".venv").resolve():
        return ".venv/bin/flask --app contact_site users create NAME"
    return "flask --app contact_site users create NAME"
