"""A submission costs one commit, and writes nothing before its reads and its lock."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from contact_site.extensions import db
from support.forms import post_form

WRITE = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.I)


@pytest.mark.settings(CONTACT_DUPLICATE_HOURS=24)
@pytest.mark.manual_delivery
def test_a_submission_is_one_commit_with_every_write_after_the_lock(app):
    """Duplicate rule and thank-you cap on (SQLite): reads, then BEGIN IMMEDIATE, then the
    rows, then one commit; the duplicate rule's pruning is not paid per post."""
    client = app.test_client()
    assert post_form(client).status_code in (200, 303)  # the first post of a process prunes
    statements: list[str] = []
    commits: list[int] = []

    def statement(_conn, _cursor, sql, *_args) -> None:
        statements.append(sql)

    def commit(_conn) -> None:
        commits.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    try:
        response = post_form(client, message="Another question about the engines.")
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "commit", commit)
    assert response.status_code in (200, 303)
    assert len(commits) == 1, statements
    writes = [i for i, sql in enumerate(statements) if WRITE.match(sql)]
    lock = statements.index("BEGIN IMMEDIATE")
    assert writes and min(writes) > lock, statements
    inserted = " ".join(statements[i] for i in writes)
    for table in ("submission", "outbox", "message_fingerprint"):
        assert f"INSERT INTO {table}" in inserted
