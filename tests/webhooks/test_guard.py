"""The SSRF guard: https:// only, every resolved address public, unless WEBHOOK_ALLOW_PRIVATE."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from contact_site.webhooks.guard import Refused, Unresolved, check_target, why_not_public

PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2a00:1450:4001::200e",
          "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"]
NOT_PUBLIC = {
    # IPv4
    "0.0.0.0": "unspecified", "0.1.2.3": "private", "127.0.0.1": "loopback",
    "127.255.255.254": "loopback", "10.0.0.1": "private", "10.255.255.255": "private",
    "172.16.0.1": "private", "172.31.255.254": "private", "192.168.1.1": "private",
    "169.254.169.254": "link-local", "100.64.0.1": "shared", "100.127.255.254": "shared",
    "192.0.0.8": "IETF", "192.0.0.170": "IETF", "192.0.2.1": "private", "198.18.0.1": "private",
    "198.51.100.7": "private", "203.0.113.9": "private", "224.0.0.1": "multicast",
    "239.255.255.250": "multicast", "240.0.0.1": "reserved", "255.255.255.255": "reserved",
    # IPv6
    "::": "unspecified", "::1": "loopback", "fe80::1": "link-local", "fc00::1": "private",
    "fd12:3456:789a::1": "private", "fec0::1": "site-local", "ff02::1": "multicast",
    "ff05::2": "multicast", "2001:db8::1": "private", "100::1": "reserved",
    "::10.0.0.1": "reserved", "64:ff9b:1::1": "reserved",
    # IPv4 inside IPv6: mapped, 6to4, Teredo, NAT64
    "::ffff:127.0.0.1": "loopback", "::ffff:10.0.0.1": "private",
    "::ffff:169.254.169.254": "link-local", "::ffff:100.64.0.1": "shared",
    "2002:7f00:1::1": "loopback", "2002:c0a8:101::1": "private",
    "2001:0:4136:e378:8000:63bf:f5ff:fffe": "private",  # Teredo, client 10.0.0.1
    "64:ff9b::7f00:1": "loopback", "64:ff9b::a9fe:a9fe": "link-local",
}


def resolver(*addresses: str) -> object:
    """A resolver answering `addresses` for any name, recording the names asked."""
    def resolve(host: str, port: int) -> Sequence[str]:
        resolve.asked.append((host, port))  # type: ignore[attr-defined]
        return list(addresses)

    resolve.asked = []  # type: ignore[attr-defined]
    return resolve


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_are_targets(address):
    """Public IPv4 and IPv6 addresses, and IPv6 forms carrying a public IPv4, pass."""
    assert why_not_public(ipaddress.ip_address(address)) is None
    target = check_target("https://hooks.example.com/in", allow_private=False,
                          resolve=resolver(address))
    assert target.address == address


@pytest.mark.parametrize(("address", "kind"), sorted(NOT_PUBLIC.items()))
def test_every_private_range_is_refused(address, kind):
    """A name resolving to any non-public address is refused, naming the address and why."""
    with pytest.raises(Refused, match=kind) as refused:
        check_target("https://hooks.example.com/in", allow_private=False,
                     resolve=resolver(address))
    assert f"hooks.example.com resolves to {address}" in str(refused.value)


@pytest.mark.parametrize("address", sorted(NOT_PUBLIC))
def test_allow_private_lets_every_range_through(address):
    """WEBHOOK_ALLOW_PRIVATE=true: loopback and private ranges are targets."""
    target = check_target("https://crm.internal/in", allow_private=True,
                          resolve=resolver(address))
    assert target.address == address


def test_every_address_of_the_answer_is_checked():
    """One private address among public ones refuses the target: it might be the one used."""
    with pytest.raises(Refused, match="10.1.2.3"):
        check_target("https://hooks.example.com/in", allow_private=False,
                     resolve=resolver("8.8.8.8", "2606:4700:4700::1111", "10.1.2.3"))


def test_the_first_checked_address_is_the_one_to_connect_to():
    """The target keeps the name for Host and TLS and the address for the connection."""
    resolve = resolver("93.184.215.14", "8.8.8.8")
    target = check_target("https://Hooks.Example.com:8443/in?x=1", allow_private=False,
                          resolve=resolve)
    assert resolve.asked == [("hooks.example.com", 8443)]  # type: ignore[attr-defined]
    assert (target.host, target.address) == ("hooks.example.com", "93.184.215.14")
    assert str(target.connect_url) == "https://93.184.215.14:8443/in?x=1"
    assert target.host_header == "hooks.example.com:8443"


def test_an_ipv6_address_is_bracketed_and_a_default_port_left_out():
    """The connection URL of an IPv6 address is valid; Host omits the scheme's own port."""
    target = check_target("https://hooks.example.com/in", allow_private=False,
                          resolve=resolver("2606:4700:4700::1111"))
    assert str(target.connect_url) == "https://[2606:4700:4700::1111]/in"
    assert target.host_header == "hooks.example.com"


def test_an_international_name_is_resolved_and_presented_in_ascii():
    """A Unicode host name is looked up, sent in Host and checked in TLS as IDNA."""
    resolve = resolver("8.8.8.8")
    target = check_target("https://bücher.example/in", allow_private=False, resolve=resolve)
    assert resolve.asked == [("xn--bcher-kva.example", 443)]  # type: ignore[attr-defined]
    assert target.host == "xn--bcher-kva.example"


@pytest.mark.parametrize("url", ["https://127.0.0.1/in", "https://[::1]:8443/in",
                                 "https://169.254.169.254/latest/meta-data",
                                 "https://[::ffff:10.0.0.1]/in"])
def test_an_address_in_the_url_is_checked_as_well(url):
    """A literal address needs no resolver and is checked the same way."""
    with pytest.raises(Refused):
        check_target(url, allow_private=False, resolve=resolver())


def test_plain_http_is_refused_without_allow_private():
    """http:// sends the submission in clear text: refused unless WEBHOOK_ALLOW_PRIVATE."""
    with pytest.raises(Refused, match="https://"):
        check_target("http://hooks.example.com/in", allow_private=False,
                     resolve=resolver("8.8.8.8"))
    target = check_target("http://crm.internal:8080/in", allow_private=True,
                          resolve=resolver("10.0.0.5"))
    assert str(target.connect_url) == "http://10.0.0.5:8080/in"


@pytest.mark.parametrize("url", ["ftp://hooks.example.com/in", "file:///etc/passwd",
                                 "gopher://127.0.0.1:6379/_INFO", "https:///in", "not a url"])
def test_other_schemes_and_broken_urls_are_refused(url):
    """Only http(s) URLs with a host are targets, even with WEBHOOK_ALLOW_PRIVATE."""
    with pytest.raises(Refused):
        check_target(url, allow_private=True, resolve=resolver("10.0.0.5"))


def test_a_name_that_does_not_resolve_is_not_refused_for_good():
    """No DNS answer may be a passing outage: Unresolved, which the sender retries."""
    with pytest.raises(Unresolved):
        check_target("https://hooks.example.com/in", allow_private=False, resolve=resolver())
    with pytest.raises(Unresolved):
        check_target("https://does-not-exist.invalid/in", allow_private=False)


def test_the_system_resolver_answers_localhost_with_loopback():
    """The default resolver (getaddrinfo) is used when none is given: localhost is refused."""
    with pytest.raises(Refused, match="loopback"):
        check_target("https://localhost/in", allow_private=False)
