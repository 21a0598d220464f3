"""Spam defence: a verdict for every submission and the `GET /altcha` challenge.

The verdicts, their reasons and the challenge are described in docs/spam-verdicts.md.

Layers, each in its own module: the honeypot and the rules in verdict.py, the
time trap (timetrap.py), proof of work (altcha.py, with replay.py), and rules
on the content (content.py). The contact view calls `judge` and stores the
verdict; the page carries `issue_form_time()` in its `form_time` field.
"""

from __future__ import annotations

from flask import Flask

from .timetrap import issue_form_time
from .verdict import Verdict, VerdictKind, judge
from .views import bp

__all__ = ["Verdict", "VerdictKind", "init_app", "issue_form_time", "judge"]


def init_app(app: Flask) -> None:
    """Register `GET /altcha`."""
    app.register_blueprint(bp)
