"""Connections kept open between the webhook POSTs of one delivery pass, one per route.

A route is everything that makes a connection the one a POST would have opened itself:
scheme, the address the guard checked, port, the name (Host, SNI, certificate) and the
trust. The guard still runs before every POST, and a POST reuses a connection only when
its freshly checked address gives the same route. After any error, or once the deadline
fired, the route's client is closed rather than reused: the request is not tried again
on a fresh connection, since the receiver may have had it (the outbox retries it later,
counted as an attempt). httpcore itself opens a new connection when the receiver closed
an idle one. A KeptClients belongs to one thread; closing it closes every connection
and ends the pass's watchdog (deadline.py).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from typing import Any

import httpx

from .deadline import Watchdog
from .guard import Target

# One connection per route: the POSTs of a pass go one after another.
LIMITS = httpx.Limits(max_connections=1, max_keepalive_connections=1)


@dataclass(frozen=True)
class Route:
    """What a connection may be shared by: the same address, port, name and trust."""

    scheme: str
    address: str
    port: int
    host: str
    verify: ssl.SSLContext | bool

    @classmethod
    def of(cls, target: Target, verify: ssl.SSLContext | bool) -> Route:
        """The route a POST to this checked target takes."""
        url = target.url
        port = url.port or (443 if url.scheme == "https" else 80)
        return cls(url.scheme, target.address, port, target.host, verify)


class KeptClient:
    """One route's httpx client and the network stream of its last answer."""

    def __init__(self, route: Route) -> None:
        self.client = httpx.Client(follow_redirects=False, trust_env=False,
                                   verify=route.verify, limits=LIMITS)
        self._stream: Any = None  # httpcore's NetworkStream, from the answer's extensions

    def remember(self, response: httpx.Response) -> None:
        """Note the connection this answer came over (the next POST may go over it)."""
        # httpx's per-answer extensions (httpcore's), nothing to do with a Flask app's.
        answered: dict[str, Any] = response.extensions
        self._stream = answered.get("network_stream")

    def open_socket(self) -> socket.socket | None:
        """The socket of the connection kept, if one is and it is still open."""
        if self._stream is None:
            return None
        found: socket.socket | None = self._stream.get_extra_info("socket")
        return found if found is not None and found.fileno() >= 0 else None


class KeptClients:
    """The clients of one delivery pass, by route, and the watchdog of its exchanges; all
    closed when it ends."""

    def __init__(self) -> None:
        self._kept: dict[Route, KeptClient] = {}
        self.watchdog = Watchdog()

    def client_for(self, route: Route) -> KeptClient:
        """The route's client, made on first use."""
        if route not in self._kept:
            self._kept[route] = KeptClient(route)
        return self._kept[route]

    def drop(self, route: Route) -> None:
        """Close the route's client: its connection is in doubt."""
        kept = self._kept.pop(route, None)
        if kept is not None:
            kept.client.close()

    def close(self) -> None:
        """Close every client, and with them their connections; end the watchdog."""
        while self._kept:
            self.drop(next(iter(self._kept)))
        self.watchdog.close()

    def __enter__(self) -> KeptClients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
