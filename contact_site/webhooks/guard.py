"""The SSRF guard: a webhook's target must be https:// and resolve to public addresses only.

Every attempt checks again (DNS may have changed since the last one), and the sender
connects to the address checked here rather than resolving the name a second time: a
DNS answer that changes between the check and the connection cannot lead it inside.
WEBHOOK_ALLOW_PRIVATE=true lifts the checks, for a CRM on the same network and for tests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) → the addresses the name resolves to; socket.getaddrinfo by default.
Resolver = Callable[[str, int], Sequence[str]]

# Carrier-grade NAT, neither private nor global to Python's ipaddress; and the IETF's
# protocol block, of which Python's ipaddress marks only parts as not global.
SHARED = ipaddress.IPv4Network("100.64.0.0/10")
IETF_PROTOCOL = ipaddress.IPv4Network("192.0.0.0/24")
# NAT64's well-known prefix: the connection reaches the IPv4 address in its last 32 bits.
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# Why an address is not a target, in the order they are tried.
NOT_PUBLIC: tuple[tuple[str, Callable[[IPAddress], bool]], ...] = (
    ("an unspecified address", lambda a: a.is_unspecified),
    ("a loopback address", lambda a: a.is_loopback),
    ("a link-local address", lambda a: a.is_link_local),
    ("a multicast address", lambda a: a.is_multicast),
    ("a shared address (100.64.0.0/10)", lambda a: a in SHARED),
    ("an IETF protocol address (192.0.0.0/24)", lambda a: a in IETF_PROTOCOL),
    ("a reserved address", lambda a: a.is_reserved),
    ("a private address", lambda a: a.is_private),
    ("a site-local address", lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
    ("not a public address", lambda a: not a.is_global),
)


class Refused(Exception):
    """The target is not one a webhook may reach; the message says why, in one line."""


class Unresolved(Exception):
    """The target's name does not resolve now (DNS may answer later)."""


@dataclass(frozen=True)
class Target:
    """A checked target: the name to present (Host, TLS) and the address to connect to."""

    url: httpx.URL
    host: str  # ASCII (IDNA) form of the name: the Host header, SNI and certificate name
    address: str

    @property
    def connect_url(self) -> httpx.URL:
        """The URL with the checked address in place of the name."""
        return self.url.copy_with(host=self.address)

    @property
    def host_header(self) -> str:
        """The Host header the name's URL would have sent."""
        return self.host if self.url.port is None else f"{self.host}:{self.url.port}"


def resolve_host(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, in the resolver's order, each once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unresolved(f"{host} does not resolve: {error}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo's client, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    teredo = address.teredo
    return address.ipv4_mapped or address.sixtofour or (teredo[1] if teredo else None)


def why_not_public(address: IPAddress) -> str | None:
    """Why a webhook may not reach this address, or None for a public one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        reason = why_not_public(inner)
        if reason is not None:
            return f"{reason} ({inner} inside {address})"
        if isinstance(address, ipaddress.IPv6Address) and (
                address.ipv4_mapped is not None or address in NAT64):
            return None  # the packets go to the public IPv4 address it carries
    return next((reason for reason, test in NOT_PUBLIC if test(address)), None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_target(url: str, *, allow_private: bool,
                 resolve: Resolver = resolve_host) -> Target:
    """The target of `url`, every address of its host checked; Refused or Unresolved if not."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as error:
        raise Refused(f"{url!r} is not a valid URL: {error}") from None
    if parsed.scheme != "https" and not (allow_private and parsed.scheme == "http"):
        raise Refused(f"{url} must start with https:// "
                      "(http:// only with WEBHOOK_ALLOW_PRIVATE=true)")
    host = parsed.raw_host.decode("ascii")
    if not host:
        raise Refused(f"{url} names no host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    addresses = [host] if _is_address(host) else list(resolve(host, port))
    if not addresses:
        raise Unresolved(f"{host} resolves to no address")
    for address in addresses:
        reason = None if allow_private else why_not_public(ipaddress.ip_address(address))
        if reason is not None:
            raise Refused(f"{host} resolves to {address}, {reason}")
    return Target(parsed, host, addresses[0])
