"""The app served over real HTTP on a free loopback port, for tests driving a browser."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from contact_site.delivery.backend import backend_of
from contact_site.extensions import db


class LiveServer:
    """One app on 127.0.0.1:<free port>, served by werkzeug from a background thread."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, _read_whole(app), threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="live-server", daemon=True)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def start(self) -> None:
        """Serve requests until stop()."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, stop the app's delivery worker, close its database connections."""
        self._server.shutdown()
        self._thread.join(10)
        self._server.server_close()
        backend_of(self.app).stop()
        with self.app.app_context():
            db.engine.dispose()


def _read_whole(app: Flask) -> Callable[..., Iterable[bytes]]:
    """Wrap the app so each response is read and closed before werkzeug writes it.

    A browser that leaves a page drops connections mid-response; werkzeug's development
    server then skips closing the response, and the open static file surfaces as a
    ResourceWarning in whichever test runs next.
    """
    def whole(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        response = app(environ, start_response)
        try:
            return [b"".join(response)]
        finally:
            close = getattr(response, "close", None)
            if close is not None:
                close()
    return whole
