"""Webhooks: what a form tells other systems about each submission, signed and checked.

payload.py builds the body of each event in each format (chat.py the notices for
people), signing.py the Standard Webhooks headers from a secret in the environment,
guard.py checks a target against private addresses, and sender.py makes one POST to
the checked address, within a deadline (deadline.py), and classifies its outcome;
keepalive.py keeps a delivery pass's connections, one per route, for its next POSTs.
"""

from __future__ import annotations

import os

from flask import Flask

from ..forms import FormsFileError, declaration_of
from ..forms.secrets import check_secrets


def init_app(app: Flask) -> None:
    """Stop start-up with one line when a declared webhook's secret is not in the environment."""
    problems = check_secrets(declaration_of(app), os.environ)
    if problems:
        raise FormsFileError(app.config["CONTACT_FORMS_FILE"] or "CONTACT_FORMS_FILE", [],
                             problems[0])
