"""An infected file in the console: named with its signature; an owner downloads it only
after a warning page and its own POST (audited); a responder never."""

from __future__ import annotations

import io
from typing import Any

from flask import Flask

from contact_site.admin.audit import AuditEntry
from contact_site.extensions import db
from contact_site.submissions.models import Submission, SubmissionFile
from support.admin import PASSWORD, csrf_token, owner_client, sign_in
from support.forms import post_form
from support.outbox import deliver_now

INFECTED_TEXT = b"hello %s bye\n"


def infected_message(make_app: Any, clamd: Any) -> tuple[Flask, str, int, bytes]:
    """A delivered message whose one file clamd found infected: app, ids and the bytes."""
    app = make_app(deliver=False, CONTACT_CLAMD=clamd.tcp_address, CONTACT_SCAN_TIMEOUT=2)
    data = INFECTED_TEXT % clamd.marker
    response = post_form(app.test_client(), attachment=(io.BytesIO(data), "invoice.txt"))
    assert response.status_code == 303
    deliver_now(app)
    with app.app_context():
        submission_id = str(db.session.scalars(db.select(Submission.id)).one())
        stored = db.session.scalars(db.select(SubmissionFile)).one()
        assert stored.scan_state == "infected"
        return app, submission_id, stored.id, data


def test_an_owner_downloads_an_infected_file_only_after_the_warning(make_app, clamd,
                                                                    smtp_server) -> None:
    """The message's page names the signature and links to the warning; the plain download
    URL leads there too; the file comes only from the warning's POST, which is audited."""
    app, submission_id, file_id, data = infected_message(make_app, clamd)
    client = owner_client(app)
    page = client.get(f"/admin/submissions/{submission_id}").get_data(as_text=True)
    warning = f"/admin/submissions/{submission_id}/files/{file_id}/infected"
    assert f"infected: {clamd.signature}" in page and f'href="{warning}"' in page
    plain = client.get(f"/admin/submissions/{submission_id}/files/{file_id}")
    assert plain.status_code == 302 and plain.headers["Location"].endswith(warning)
    shown = client.get(warning)
    assert shown.status_code == 200 and clamd.signature in shown.get_data(as_text=True)
    assert client.post(warning).status_code == 400  # no token: nothing given
    download = client.post(warning, data={"csrf_token": csrf_token(client, warning)})
    assert download.status_code == 200 and download.data == data
    assert download.headers["Content-Disposition"].startswith("attachment")
    download.close()
    with app.app_context():
        [line] = db.session.scalars(db.select(AuditEntry).where(
            AuditEntry.action == "infected file downloaded")).all()
    assert (line.actor, line.submission_id) == ("owner", submission_id)
    assert clamd.signature in line.detail


def test_a_responder_never_gets_an_infected_file(make_app, clamd, smtp_server) -> None:
    """For a responder of its recipient: the name without a link, 404 at the download URL,
    403 at the warning page."""
    app, submission_id, file_id, _data = infected_message(make_app, clamd)
    result = app.test_cli_runner().invoke(args=[
        "users", "create", "rita", "--role", "responder", "--recipients", "sales",
        "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    client = app.test_client()
    assert sign_in(client, "rita").status_code == 303
    page = client.get(f"/admin/submissions/{submission_id}").get_data(as_text=True)
    assert "invoice.txt" in page and f"/files/{file_id}" not in page
    assert client.get(f"/admin/submissions/{submission_id}/files/{file_id}").status_code == 404
    warning = f"/admin/submissions/{submission_id}/files/{file_id}/infected"
    assert client.get(warning).status_code == 403
