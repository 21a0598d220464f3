"""The rate limit counts a client by its network: an IPv6 /64, an IPv4 address however written."""

from __future__ import annotations

import pytest

from contact_site.ratelimit import network_of
from support.forms import post_form


def post_from(client, address: str):
    """POST the form as a client at `address`."""
    client.environ_base["REMOTE_ADDR"] = address
    return post_form(client)


@pytest.mark.parametrize(("address", "counted_as"), [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("2001:db8:1:2::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:fffe", "2001:db8:1:2::/64"),
    ("2001:DB8:1:3::1", "2001:db8:1:3::/64"),
    ("::1", "::/64"),
    ("unknown", "unknown"),
])
def test_a_client_is_counted_by_its_network(address, counted_as):
    assert network_of(address) == counted_as


@pytest.mark.parametrize(("first", "second"), [
    ("2001:db8:1:2::1", "2001:db8:1:2:abcd:ef01:2345:6789"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("192.0.2.8", "::ffff:c000:208"),
], ids=["one IPv6 /64", "IPv4-mapped then IPv4", "IPv4 then IPv4-mapped in hex"])
def test_two_addresses_of_one_client_share_one_count(make_app, first, second):
    client = make_app(CONTACT_RATE_LIMIT="1 per minute").test_client()
    assert post_from(client, first).status_code == 303
    assert post_from(client, second).status_code == 429


@pytest.mark.parametrize(("first", "second"), [
    ("2001:db8:1:2::1", "2001:db8:1:3::1"),
    ("192.0.2.7", "192.0.2.8"),
], ids=["neighbouring IPv6 /64s", "neighbouring IPv4 addresses"])
def test_neighbouring_networks_are_counted_apart(make_app, first, second):
    client = make_app(CONTACT_RATE_LIMIT="1 per minute").test_client()
    assert post_from(client, first).status_code == 303
    assert post_from(client, second).status_code == 303
    assert post_from(client, first).status_code == 429
