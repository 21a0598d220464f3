"""Posting the contact form as a browser does: fresh hidden fields, multipart, chosen Accept."""

from __future__ import annotations

import http.client
import re
from typing import Any

from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

HIDDEN_FIELDS = re.compile(r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"')
PDF_BYTES_FOR_TESTS = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"

VALID = {
    "recipient": "sales",
    "name": "Ada Lovelace",
    "email": "ada@example.com",
    "subject": "Engines",
    "message": "Hello,\nI have a question about the analytical engine.",
}


def form_tokens(client: FlaskClient) -> dict[str, str]:
    """The csrf_token and submission_key of a freshly rendered form."""
    found = dict(HIDDEN_FIELDS.findall(client.get("/").get_data(as_text=True)))
    assert set(found) == {"csrf_token", "submission_key"}, "form lacks its hidden fields"
    return found


def post_form(client: FlaskClient, json: bool = False, tokens: dict[str, str] | None = None,
              **fields: Any) -> Any:
    """POST the contact form like a browser would, with fresh tokens unless given."""
    data = {**VALID, **(tokens or form_tokens(client)), **fields}
    data = {k: v for k, v in data.items() if v is not None}
    headers = {"Accept": "application/json"} if json else {"Accept": "text/html"}
    # Encoded in memory: the test client would spool bodies over 500 kB to a
    # temporary file it never closes, which shows up as a ResourceWarning.
    files = {k: FileStorage(v[0], filename=v[1]) for k, v in data.items() if isinstance(v, tuple)}
    boundary, body = encode_multipart(MultiDict({**data, **files}))
    return client.post("/", data=body, headers=headers,
                       content_type=f"multipart/form-data; boundary={boundary}")


def form_page(port: int) -> tuple[str, dict[str, str]]:
    """The session cookie and the hidden fields of a form served by a real server."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        page = response.read().decode()
    finally:
        connection.close()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    return cookie, dict(HIDDEN_FIELDS.findall(page))
