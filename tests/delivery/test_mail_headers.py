"""Address headers as the SMTP server receives them: exactly one address each, names as typed.

Each name is posted through the form of an app delivering to the real SMTP test
server; the received bytes are parsed with Python's modern parser and, undecoded,
with the legacy `getaddresses` that older tools use: both must find one address,
the visitor's, and the modern one the display name exactly as typed.
"""

from __future__ import annotations

import email.policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

import pytest

from support.forms import post_form

VISITOR = "jane.customer@example.com"
# Two names that `email.policy.SMTP` once turned into a second address (docs/stack-pitfalls.md)
# and one in Chinese holding an address too.
HOSTILE = [
    "Jane Customer <attacker@evil.example>, via the customer support portal",
    "Lovelace, Ada (Analytical Engine Society, London)",
    "李雷 <attacker@evil.example>, 经由客服门户",
]
NAMES = [
    *HOSTILE,
    "Ada Lovelace",
    "O'Brien; Seán",
    '"Quoted" Name',
    'Back\\slash and "quotes", too',
    "(a comment) <x@y.example>",
    "<attacker@evil.example>",
    "attacker@evil.example",
    "=?utf-8?q?attacker=40evil.example?= <attacker@evil.example>",
    "Bcc: victim@example.com",
    "محمد بن موسى <a@evil.example>, عبر البوابة",
    "עדה לאבלייס",
    "José Müller, Ph.D. <jm@evil.example>",
    "a" * 100,
    ("Lovelace, Ada " * 8)[:100].strip(),
    "长" * 100,
    "\U0001f469\u200d\U0001f4bb Ada",
]


def received(data: bytes) -> EmailMessage:
    """The received bytes as Python's modern parser reads them."""
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def addresses(data: bytes, header: str) -> list[tuple[str, str]]:
    """(display name, address) of every address in the header, by the modern parser."""
    values = received(data).get_all(header) or []
    return [(a.display_name, a.addr_spec) for value in values for a in value.addresses]


def legacy_addresses(data: bytes, header: str) -> list[str]:
    """The addresses in the undecoded header, by the legacy parser."""
    raw = BytesParser(policy=email.policy.compat32).parsebytes(data).get_all(header) or []
    return [address for _name, address in getaddresses(raw)]


def mails(smtp_server, client, name: str) -> tuple[bytes, bytes]:
    """Post the form with this name; the owner's and the visitor's mails as received."""
    response = post_form(client, name=name, email=VISITOR)
    assert response.status_code == 303, response.get_data(as_text=True)
    by_recipient = {m.rcpt_tos[0]: m for m in smtp_server.wait_for(2)}
    assert set(by_recipient) == {"sales@example.com", VISITOR}
    return by_recipient["sales@example.com"].data, by_recipient[VISITOR].data


@pytest.mark.parametrize("name", NAMES)
def test_reply_to_is_the_visitor_alone_with_the_name_as_typed(client, smtp_server, name):
    owner, _thanks = mails(smtp_server, client, name)
    assert addresses(owner, "Reply-To") == [(name, VISITOR)]
    assert legacy_addresses(owner, "Reply-To") == [VISITOR]


@pytest.mark.parametrize("name", HOSTILE)
def test_owner_mail_from_and_to_are_the_configured_addresses_alone(client, smtp_server, name):
    owner, _thanks = mails(smtp_server, client, name)
    assert addresses(owner, "From") == [("Contact form", "noreply@example.org")]
    assert addresses(owner, "To") == [("Sales", "sales@example.com")]
    assert legacy_addresses(owner, "From") + legacy_addresses(owner, "To") == [
        "noreply@example.org", "sales@example.com"]
    assert received(owner)["Cc"] is None and received(owner)["Bcc"] is None


@pytest.mark.parametrize("name", HOSTILE)
def test_thank_you_goes_to_the_bare_address_whatever_the_name(client, smtp_server, name):
    _owner, thanks = mails(smtp_server, client, name)
    assert addresses(thanks, "To") == [("", VISITOR)]
    assert addresses(thanks, "From") == [("Contact form", "noreply@example.org")]
    assert received(thanks)["Reply-To"] is None


def test_no_name_gives_a_reply_to_of_the_bare_address(client, smtp_server):
    owner, _thanks = mails(smtp_server, client, "")
    assert addresses(owner, "Reply-To") == [("", VISITOR)]


def test_runs_of_spaces_in_a_name_arrive_as_one(client, smtp_server):
    """Readers differ on spaces inside an encoded name, so the form keeps single ones."""
    owner, _thanks = mails(smtp_server, client, "李  雷   Ada")
    assert addresses(owner, "Reply-To") == [("李 雷 Ada", VISITOR)]
