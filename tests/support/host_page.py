"""Another site's page for the embedding tests: docs/embed-example.html, served by a small
static HTTP server on a loopback origin of its own (http://localhost:<port>, another site
than the contact site's http://127.0.0.1:<port> for the browser's cookie rules).

The example's placeholder addresses become the test's: https://contact.example.com the
contact site's, https://www.example.com this server's own. `variants` serves the example
again at other paths with more replacements (a data-lang, say). /thanks.html is the page
the plain form's `_next` names.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "embed-example.html"
EXAMPLE_SITE = "https://contact.example.com"
EXAMPLE_HOST = "https://www.example.com"
THANKS_PATH = "/thanks.html"
THANKS_PAGE = ('<!doctype html><html lang="en"><head><meta charset="utf-8">'
               "<title>Thanks – Example Ltd</title></head><body><main>"
               "<h1>Thanks from the host page</h1></main></body></html>")


class HostPage:
    """docs/embed-example.html on http://localhost:<free port>, pointing at `site_url`
    (settable after the server is bound: the site's forms file needs this origin first)."""

    def __init__(self, site_url: str = "",
                 variants: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.site_url = site_url
        self.variants = {"/": {}, **(variants or {})}
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.origin = f"http://localhost:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="host-page", daemon=True)

    def __enter__(self) -> HostPage:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()

    def page(self, path: str) -> str | None:
        """The page served at `path`, or None."""
        if path == THANKS_PATH:
            return THANKS_PAGE
        if path not in self.variants:
            return None
        text = EXAMPLE.read_text(encoding="utf-8")
        for old, new in self.variants[path].items():
            assert old in text, f"{old!r} is not in {EXAMPLE.name}"
            text = text.replace(old, new)
        return text.replace(EXAMPLE_SITE, self.site_url).replace(EXAMPLE_HOST, self.origin)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        host = self

        class Handler(BaseHTTPRequestHandler):
            """GET the example page (or a variant of it) or the thanks page; 404 otherwise."""

            def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
                """Answer one GET."""
                page = host.page(self.path.split("?")[0])
                body = (page or "Not found").encode()
                self.send_response(200 if page is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Quiet: the test reads the browser, not this log."""

        return Handler
