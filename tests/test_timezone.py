"""CONTACT_TIMEZONE and CONTACT_BASE_URL: checked at start-up; every time the console and the
owner's mail show is in the zone, with its name; the owner's mail ends with the message's link."""

from __future__ import annotations

from datetime import datetime
from email.message import EmailMessage

import pytest
from flask import Flask

from contact_site import create_app, i18n
from contact_site.config import ConfigError
from support.admin import owner_client
from support.factories import create_submission
from support.settings import base_config
from support.smtp_server import SMTPTestServer

# 13:05 UTC on a winter day: 14:05 in Paris (CET); midday UTC in summer: 14:00 (CEST).
WINTER = datetime(2026, 12, 7, 13, 5, 42)
SUMMER = datetime(2026, 7, 1, 12, 0)
BASE_URL = "https://contact.example.com"


@pytest.mark.parametrize("zone", ["Europe/Pari", "europe/paris", "Mars/Olympus_Mons",
                                  "../../etc/passwd", "/etc/localtime", "localtime",
                                  "right/UTC", "zone.tab", "CET CEST"])
def test_a_zone_that_is_not_an_iana_name_stops_start_up_in_one_line(tmp_path, smtp_server,
                                                                     zone):
    with pytest.raises(ConfigError) as raised:
        create_app({**base_config(tmp_path, smtp_server), "CONTACT_TIMEZONE": zone})
    line = str(raised.value.code)
    assert line.startswith("contact_site: configuration error: CONTACT_TIMEZONE must be an "
                           "IANA time zone name such as 'Europe/Paris'")
    assert "\n" not in line


@pytest.mark.parametrize(("given", "kept"), [
    (None, "UTC"), ("", "UTC"), ("utc", "UTC"), (" Europe/Paris ", "Europe/Paris"),
    ("Asia/Kathmandu", "Asia/Kathmandu"),
])
def test_the_zone_defaults_to_utc_and_keeps_a_valid_name(make_app, given, kept):
    settings = {} if given is None else {"CONTACT_TIMEZONE": given}
    assert make_app(deliver=False, **settings).config["CONTACT_TIMEZONE"] == kept


@pytest.mark.parametrize(("url", "words"), [
    ("contact.example.com", "must be an http(s) address"),
    ("ftp://contact.example.com", "must be an http(s) address"),
    ("https://", "must be an http(s) address"),
    ("https://contact.example.com:port", "must be an http(s) address"),
    ("https://contact example.com", "must be an http(s) address"),
    ("https://contact.example.com/?utm=mail", "without a query or fragment"),
    ("https://contact.example.com/#top", "without a query or fragment"),
    ("https://owner:hunter2@contact.example.com", "must not hold a user name or password"),
])
def test_a_base_url_that_is_not_a_sites_address_stops_start_up(tmp_path, smtp_server, url,
                                                              words):
    with pytest.raises(ConfigError) as raised:
        create_app({**base_config(tmp_path, smtp_server), "CONTACT_BASE_URL": url})
    line = str(raised.value.code)
    assert line.startswith("contact_site: configuration error: CONTACT_BASE_URL")
    assert words in line and "\n" not in line
    assert "hunter2" not in line  # a password given by mistake is not printed


@pytest.mark.parametrize(("given", "kept"), [
    ("https://contact.example.com/", BASE_URL), ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ("https://example.com/contact//", "https://example.com/contact"), ("", None),
])
def test_the_base_url_is_kept_without_its_trailing_slash(make_app, given, kept):
    assert make_app(deliver=False, CONTACT_BASE_URL=given).config["CONTACT_BASE_URL"] == kept


@pytest.mark.parametrize(("zone", "stored", "shown"), [
    ("UTC", WINTER, "2026-12-07 13:05 UTC"),
    ("Europe/Paris", WINTER, "2026-12-07 14:05 CET"),
    ("Europe/Paris", SUMMER, "2026-07-01 14:00 CEST"),
    ("America/New_York", WINTER, "2026-12-07 08:05 EST"),
    ("Pacific/Auckland", datetime(2026, 12, 31, 12, 30), "2027-01-01 01:30 NZDT"),
    ("America/Sao_Paulo", WINTER, "2026-12-07 10:05 UTC-03:00"),
    ("Asia/Kathmandu", WINTER, "2026-12-07 18:50 UTC+05:45"),
], ids=["utc", "winter", "summer", "behind", "next-day", "offset-only", "odd-offset"])
def test_a_stored_time_is_shown_in_the_zone_with_its_name(make_app, zone, stored, shown):
    """Abbreviations where the zone has letters, the offset from UTC where it has only numbers."""
    app = make_app(deliver=False, CONTACT_TIMEZONE=zone)
    with app.app_context():
        assert i18n.local_time(stored) == shown


@pytest.mark.manual_delivery
@pytest.mark.settings(CONTACT_TIMEZONE="Europe/Paris")
def test_the_console_shows_times_in_the_zone(app: Flask) -> None:
    """The list and the message's page show Paris time; the machine-readable time stays UTC."""
    winter = create_submission(app, created_at=WINTER, subject="In winter")
    summer = create_submission(app, created_at=SUMMER, subject="In summer")
    client = owner_client(app)
    listed = client.get("/admin/").get_data(as_text=True)
    assert '<time datetime="2026-12-07T13:05:42Z">2026-12-07 14:05 CET</time>' in listed
    assert '<time datetime="2026-07-01T12:00:00Z">2026-07-01 14:00 CEST</time>' in listed
    for submission_id, shown in ((winter, "2026-12-07 14:05 CET"),
                                 (summer, "2026-07-01 14:00 CEST")):
        page = client.get(f"/admin/submissions/{submission_id}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert shown in html
        assert " UTC</time>" not in html  # the mails' queued times are in the zone too


def owner_mail_bodies(app: Flask, smtp_server: SMTPTestServer) -> tuple[str, str, str]:
    """Store a submission, let the delivery thread send its owner's mail to the SMTP server;
    the submission's id and the mail's plain and HTML bodies."""
    submission_id = create_submission(app, created_at=WINTER)
    [received] = smtp_server.wait_for(1)
    message: EmailMessage = received.message
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return (submission_id, plain.get_content().replace("\r\n", "\n").rstrip("\n"),
            html.get_content())


@pytest.mark.settings(CONTACT_TIMEZONE="Europe/Paris", CONTACT_BASE_URL=BASE_URL + "/")
def test_the_owners_mail_tells_the_time_in_the_zone_and_ends_with_the_link(app, smtp_server):
    submission_id, plain, html = owner_mail_bodies(app, smtp_server)
    link = f"{BASE_URL}/admin/submissions/{submission_id}"
    assert plain.split("\n")[-2:] == [
        f"Submission {submission_id}, received 2026-12-07 14:05 CET.",
        f"Open in the console: {link}"]
    assert "received 2026-12-07 14:05 CET.</p>" in html
    assert f'<a href="{link}">{link}</a>' in html


@pytest.mark.settings(CONTACT_TIMEZONE="Asia/Kathmandu")
def test_without_a_base_url_the_owners_mail_has_no_link(app, smtp_server):
    submission_id, plain, html = owner_mail_bodies(app, smtp_server)
    assert plain.endswith(f"Submission {submission_id}, received 2026-12-07 18:50 UTC+05:45.")
    assert "/admin/" not in plain and "/admin/" not in html and "<a " not in html
