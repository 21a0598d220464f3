"""Configuration: read from the environment, refused at start-up with one clear line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from contact_site import create_app
from contact_site.config import ConfigError, parse_recipients
from support.processes import PROJECT_ROOT
from support.settings import base_config

BAD_SETTINGS = [
    ("MAIL_PORT", "smtp", "MAIL_PORT must be a whole number"),
    ("MAIL_PORT", "70000", "MAIL_PORT must be between 1 and 65535"),
    ("CONTACT_RECIPIENTS", "Sales", "CONTACT_RECIPIENTS has an entry without a valid address"),
    ("CONTACT_RECIPIENTS", "A <a@x.org>, A <b@x.org>", "CONTACT_RECIPIENTS has two names"),
    ("CONTACT_MAX_UPLOAD_MB", "ten", "CONTACT_MAX_UPLOAD_MB must be a whole number"),
    ("MAIL_USE_TLS", "maybe", "MAIL_USE_TLS must be true or false"),
    ("DELIVERY_BACKEND", "cron", "DELIVERY_BACKEND must be 'thread' or 'celery'"),
    ("CONTACT_RATE_LIMIT", "lots", "CONTACT_RATE_LIMIT must look like"),
    ("CONTACT_ALLOWED_EXTENSIONS", "pdf,../x", "CONTACT_ALLOWED_EXTENSIONS must be"),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD_SETTINGS)
def test_malformed_setting_stops_start_up_naming_it(tmp_path, smtp_server, name, value, words):
    with pytest.raises(ConfigError) as raised:
        create_app({**base_config(tmp_path, smtp_server), name: value})
    assert words in str(raised.value.code)
    assert "\n" not in str(raised.value.code)


@pytest.mark.parametrize("key", [None, "", "changeme", "short"])
def test_missing_or_weak_secret_key_stops_start_up_outside_debug(tmp_path, smtp_server, key):
    config = {**base_config(tmp_path, smtp_server), "TESTING": False, "SECRET_KEY": key}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config)


def run_start_up(tmp_path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Start the app in a fresh interpreter with only these settings in the environment."""
    code = "from contact_site import create_app; create_app()"
    base = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'x.sqlite'}"}
    return subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                          text=True, timeout=60, cwd=str(tmp_path.parent),
                          )


def test_environment_error_is_one_line_without_traceback(tmp_path):
    root = str(PROJECT_ROOT)
    result = run_start_up(tmp_path, {"PYTHONPATH": root, "SECRET_KEY": "k" * 32,
                                     "MAIL_PORT": "twenty-five"})
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "contact_site: configuration error: MAIL_PORT must be a whole number, got 'twenty-five'")
    result = run_start_up(tmp_path, {"PYTHONPATH": root})
    assert result.returncode == 1
    assert "SECRET_KEY is missing" in result.stderr and "Traceback" not in result.stderr


def test_settings_come_from_the_environment(tmp_path, smtp_server, monkeypatch):
    monkeypatch.setenv("CONTACT_SUBJECT_PREFIX", "[Site]")
    monkeypatch.setenv("CONTACT_MAX_UPLOAD_MB", "3")
    monkeypatch.setenv("MAIL_TIMEOUT", "7")
    config = base_config(tmp_path, smtp_server)
    for name in ("CONTACT_SUBJECT_PREFIX", "MAIL_TIMEOUT"):
        config.pop(name, None)
    app = create_app(config)
    assert app.config["CONTACT_SUBJECT_PREFIX"] == "[Site]"
    assert app.config["CONTACT_MAX_UPLOAD_BYTES"] == 3 * 2**20
    assert app.config["MAX_CONTENT_LENGTH"] > 3 * 2**20
    assert app.config["MAIL_TIMEOUT"] == 7


def test_debug_mode_generates_and_keeps_a_development_key(tmp_path, smtp_server):
    config = {**base_config(tmp_path, smtp_server), "TESTING": False, "DEBUG": True,
              "SECRET_KEY": None, "DEV_MAILBOX": False}
    first = create_app(config).config["SECRET_KEY"]
    second = create_app(config).config["SECRET_KEY"]
    assert first == second and len(first) >= 32


def test_recipients_get_slugs_from_their_names():
    parsed = parse_recipients("X", "Sales Team <sales@example.com>, \"Dr. Who\" <who@x.org>")
    assert [(r.slug, r.name, r.address) for r in parsed] == [
        ("sales-team", "Sales Team", "sales@example.com"), ("dr-who", "Dr. Who", "who@x.org")]
