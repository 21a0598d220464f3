"""The thank-you cap counts mailboxes, not spellings, and racing requests cannot pass it."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from contact_site import create_app
from contact_site.database import utcnow
from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.schema import MIGRATIONS
from contact_site.submissions.models import Submission, mailbox_key
from support.forms import form_tokens, post_form
from support.outbox import statuses
from support.settings import base_config
from support.waiting import wait_until

CAP = 3  # CONTACT_THANK_YOU_PER_DAY's default
VARIANTS = ["ada@example.com", "Ada@Example.com", "ada+news@example.com", "ADA+1@EXAMPLE.COM",
            "ada+2@example.com", "Ada+Shop@example.com"]
RACERS = 8


@pytest.mark.parametrize(("address", "key"), [
    ("ada@example.com", "ada@example.com"),
    ("Ada@EXAMPLE.com", "ada@example.com"),
    ("ada+news@example.com", "ada@example.com"),
    ("ada+a+b@example.com", "ada@example.com"),
    ("+tag@example.com", "+tag@example.com"),  # nothing before the tag: kept whole
    ("a.d.a@example.com", "a.d.a@example.com"),  # dots count, except at Gmail
    ("A.D.A+x@gmail.com", "ada@gmail.com"),
    ("ada@googlemail.com", "ada@gmail.com"),
    ("ada@xn--bcher-kva.example", "ada@xn--bcher-kva.example"),
])
def test_mailbox_key_drops_what_does_not_change_the_mailbox(address, key):
    assert mailbox_key(address) == key


def thank_you_rows(app) -> list[str]:
    """The addresses of the thank-you mails in the outbox."""
    with app.app_context():
        return list(db.session.scalars(select(OutboxMail.to_address)
                                       .where(OutboxMail.kind == MailKind.THANK_YOU)))


def test_tag_and_case_variants_get_at_most_three_thank_you_mails(app, client, smtp_server):
    for address in VARIANTS:
        assert post_form(client, email=address).status_code == 303
    # Once every queued mail is sent, no other can arrive.
    wait_until(lambda: statuses(app)["sent"] == len(VARIANTS) + CAP, 15, "every mail sent")
    assert sum(statuses(app).values()) == len(VARIANTS) + CAP
    visitors = [m.rcpt_tos[0] for m in smtp_server.messages if m.rcpt_tos[0] != "sales@example.com"]
    assert sorted(map(str.lower, visitors)) == sorted(a.lower() for a in VARIANTS[:CAP])
    owners = [m for m in smtp_server.messages if m.rcpt_tos == ["sales@example.com"]]
    assert len(owners) == len(VARIANTS)


def test_another_mailbox_keeps_its_own_cap(app, client, smtp_server):
    for address in VARIANTS[:CAP]:
        post_form(client, email=address)
    post_form(client, email="grace@example.com")
    assert sorted(map(str.lower, thank_you_rows(app))) == sorted(
        [*(a.lower() for a in VARIANTS[:CAP]), "grace@example.com"])


def test_gmail_dots_do_not_make_new_mailboxes(app, client):
    for address in ["ada.lovelace@gmail.com", "adalovelace@gmail.com", "a.da.love.lace@gmail.com",
                    "Ada.Lovelace+x@googlemail.com"]:
        post_form(client, email=address)
    assert len(thank_you_rows(app)) == CAP


def race(app, addresses: list[str]) -> list[int]:
    """Post every address at the same moment, each from its own client and thread."""
    clients = [app.test_client() for _ in addresses]
    tokens = [form_tokens(client) for client in clients]
    start, answers = threading.Barrier(len(addresses)), [0] * len(addresses)

    def post(number: int) -> None:
        start.wait(timeout=10)
        answers[number] = post_form(clients[number], email=addresses[number],
                                    tokens=tokens[number]).status_code

    threads = [threading.Thread(target=post, args=(n,)) for n in range(len(addresses))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return answers


@pytest.mark.each_database
def test_racing_requests_cannot_pass_the_cap(database_url, make_app):
    """Eight variants of one mailbox posted at once, on each database: three thank-you mails."""
    app = make_app(deliver=False, DATABASE_URL=database_url)
    addresses = [f"ada+{n}@example.com" if n % 2 else f"ADA+{n}@example.com"
                 for n in range(RACERS)]
    assert race(app, addresses) == [303] * RACERS
    with app.app_context():
        promised = db.session.scalar(select(func.count()).select_from(Submission)
                                     .where(Submission.thank_you_promised))
        total = db.session.scalar(select(func.count()).select_from(Submission))
    assert (promised, total) == (CAP, RACERS)
    assert len(thank_you_rows(app)) == CAP


@pytest.mark.each_database
def test_racing_requests_after_two_mails_add_only_the_third(database_url, make_app):
    app = make_app(deliver=False, DATABASE_URL=database_url)
    client = app.test_client()
    for address in VARIANTS[:CAP - 1]:
        post_form(client, email=address)
    assert race(app, ["ada+x@example.com", "ADA+y@example.com"]) == [303, 303]
    assert len(thank_you_rows(app)) == CAP


@pytest.mark.each_database
def test_upgrade_fills_the_key_of_rows_stored_before_it(database_url, smtp_server, tmp_path: Path):
    """Rows of revision 0002 get their mailbox key, and their thank-you mails still count."""
    settings = {**base_config(tmp_path, smtp_server), "DATABASE_URL": database_url,
                "CONTACT_THANK_YOU_PER_DAY": 1}
    app = create_app(settings)
    old = {uuid.uuid4().hex: address for address in ["Ada+old@Example.com", "x.y@googlemail.com"]}
    try:
        with app.app_context():
            flask_migrate.upgrade(directory=str(MIGRATIONS), revision="0002")
            insert_release_0_2_rows(old)
            flask_migrate.upgrade(directory=str(MIGRATIONS), revision="heads")
            keys = dict(db.session.execute(select(Submission.id, Submission.mailbox_key)).all())
        assert post_form(app.test_client(), email="ada@example.com").status_code == 303
        assert thank_you_rows(app) == []
    finally:
        with app.app_context():
            db.engine.dispose()
    assert keys == {row_id: mailbox_key(address) for row_id, address in old.items()}
    assert set(keys.values()) == {"ada@example.com", "xy@gmail.com"}


def insert_release_0_2_rows(emails: dict[str, str]) -> None:
    """Store submissions with a thank-you mail each, as revision 0002's schema holds them."""
    columns = [sa.column(name) for name in (
        "id", "submission_key", "recipient_slug", "recipient_name", "recipient_address",
        "name", "email", "subject", "message")]
    table = sa.table("submission", *columns, sa.column("created_at", sa.DateTime),
                     sa.column("is_spam", sa.Boolean), sa.column("thank_you_sent", sa.Boolean))
    db.session.execute(sa.insert(table), [{
        "id": row_id, "submission_key": row_id, "created_at": utcnow(),
        "recipient_slug": "sales", "recipient_name": "Sales",
        "recipient_address": "sales@example.com", "name": "", "email": address,
        "subject": "s", "message": "m", "is_spam": False, "thank_you_sent": True,
    } for row_id, address in emails.items()])
    db.session.commit()
