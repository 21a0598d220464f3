"""The app's own log lines appear on stderr wherever it runs, one line per event, ids only."""

from __future__ import annotations

import logging
import re

import pytest

from contact_site import create_app
from contact_site.config import ConfigError
from contact_site.logs import LOGGER, StderrHandler
from support.factories import queue_submissions
from support.outbox import statuses
from support.processes import flask_command, start_gunicorn, worker_env
from support.waiting import wait_until

# The test's own view of the database, with no delivery of its own.
pytestmark = pytest.mark.manual_delivery

ATTEMPT_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO contact_site\.delivery \[\d+\] "
    r"mail (\d+) attempt 1 sent reply='250' in [\d.]+s$", re.M)


@pytest.mark.timeout(60)
def test_per_attempt_lines_appear_in_gunicorns_stderr(app, smtp_server, tmp_path):
    mail_ids = queue_submissions(app, count=2)
    process, log, _port = start_gunicorn(app, tmp_path)
    try:
        wait_until(lambda: statuses(app)["sent"] == 2, 30, "both mails sent")
        wait_until(lambda: len(ATTEMPT_LINE.findall(log.read_text())) == 2, 5, "two lines")
    finally:
        process.terminate()
        process.wait(30)
    assert sorted(int(i) for i in ATTEMPT_LINE.findall(log.read_text())) == mail_ids
    assert "ada@example.com" not in log.read_text()


@pytest.mark.timeout(60)
def test_outbox_work_prints_each_attempt_once(app, smtp_server, tmp_path):
    (mail_id,) = queue_submissions(app)
    log = tmp_path / "work.log"
    process = flask_command("outbox", "work", "--once", env=worker_env(app), log=log)
    assert process.wait(30) == 0
    assert [int(i) for i in ATTEMPT_LINE.findall(log.read_text())] == [mail_id]


def test_log_level_sets_the_level_of_the_apps_loggers(make_app):
    make_app(deliver=False, LOG_LEVEL="warning")
    assert logging.getLogger("contact_site.delivery").getEffectiveLevel() == logging.WARNING
    make_app(deliver=False)
    assert logging.getLogger("contact_site.delivery").getEffectiveLevel() == logging.INFO


def test_a_bad_log_level_fails_at_start_naming_the_variable():
    with pytest.raises(ConfigError, match="LOG_LEVEL must be one of|LOG_LEVEL must be"):
        create_app({"TESTING": True, "SECRET_KEY": "x" * 32, "LOG_LEVEL": "loud"})


def test_configuring_twice_adds_one_handler_and_leaves_the_root_logger_alone(make_app):
    root_handlers = list(logging.getLogger().handlers)
    for _ in range(3):
        app = make_app(deliver=False)
    ours = [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, StderrHandler)]
    assert len(ours) == 1
    assert app.logger.handlers == ours, "Flask's own handler would print each line twice"
    assert logging.getLogger().handlers == root_handlers


def test_a_refused_address_is_not_logged(make_app, smtp_server, caplog):
    """A server quoting the recipient in its 5xx: the log line has no address, the history has."""

    from contact_site.delivery import outbox, worker

    app = make_app(deliver=False)
    smtp_server.mode = "reply"
    smtp_server.reply = "550 5.1.1 <sales@example.com>: no such user"
    (mail_id,) = queue_submissions(app)
    with app.app_context():
        worker.claim_and_deliver()
        [attempt] = outbox.attempts_of(mail_id)
    assert "sales@example.com" in (attempt.reply or "")
    lines = [r.getMessage() for r in caplog.records if r.name == "contact_site.delivery"]
    assert any(f"mail {mail_id} attempt 1 failed" in line for line in lines), lines
    assert not any("@" in line for line in lines), lines
