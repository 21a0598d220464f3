"""The app as gunicorn serves it, plus one test-only route that judges a post and names
the worker: the contact form does not call `judge` yet, so this route stands in for it.
Loaded by tests/test_altcha_replay_gunicorn.py with `--pythonpath tests`; never deployed."""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

import contact_site
from contact_site.database import utcnow
from contact_site.extensions import csrf, db
from contact_site.forms import form_of
from contact_site.spam import judge


def create_app() -> Flask:
    """contact_site.create_app() from the environment, with POST /test/judge."""
    app = contact_site.create_app()

    @csrf.exempt
    def judge_post() -> ResponseReturnValue:
        verdict = judge(request.form, request.remote_addr, utcnow(), form_of(None))
        db.session.add_all(verdict.remember)
        db.session.commit()  # as storing the submission would
        return jsonify(pid=os.getpid(), kind=str(verdict.kind), reasons=list(verdict.reasons))

    app.add_url_rule("/test/judge", "test_judge", judge_post, methods=["POST"])
    return app
