"""Fixtures of the contact page's browser tests: the site, served over HTTP to Chromium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.browser import Site, serve
from support.smtp_server import SMTPTestServer


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, mail_server: SMTPTestServer,
         browser: Any) -> Iterator[Site]:
    """The app with the default limits, shared by the module's tests."""
    built, live = serve(tmp_path_factory.mktemp("site"), mail_server)
    yield built
    live.stop()


@pytest.fixture
def small_limit_site(tmp_path: Path, mail_server: SMTPTestServer, browser: Any) -> Iterator[Site]:
    """The app with CONTACT_MAX_UPLOAD_MB=1."""
    built, live = serve(tmp_path, mail_server, CONTACT_MAX_UPLOAD_MB=1)
    yield built
    live.stop()
