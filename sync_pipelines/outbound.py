"""Where the service may call out to: destinations a user configures (alert channel URLs,
provider `base_url` / `endpoint_url`) must not reach the service's own network.

A destination is refused when its host — an IP literal at configuration time, then every address
its name resolves to, at each call — is loopback, private, link-local (where cloud metadata
services answer: 169.254.169.254, fd00:ec2::254), carrier-grade NAT, unspecified, reserved or
multicast: anything not globally routable. Resolving at call time, not only when the URL was
configured, catches a name that points inward later (its next call after the 30 s cache is
refused). The httpx client does not pin the address: it resolves the name again to connect, so a
name answering differently within that moment (DNS rebinding with a near-zero TTL) is not
covered there. The lean client (observability/lean_http.py, per-device state reads) checks
each new connection's addresses and connects to exactly those (`DestinationGuard.resolve`), so
rebinding cannot move it. Redirects are never followed (our clients have `follow_redirects` off), so a public host cannot bounce a call
inward either.

`SYNC_OUTBOUND_ALLOW` lists the networks allowed anyway, comma-separated CIDRs or addresses
(`127.0.0.0/8,::1` for local peers; the tests, the demo and `make ui` set it). It is an operator's
decision, so it lives in the environment, never in a stored setting. MQTT brokers are not checked:
a broker on the private network is the normal case.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

ALLOW_ENV = "SYNC_OUTBOUND_ALLOW"
#: what the local peers need (the demo, `make ui`, the tests): loopback only
LOOPBACK_ALLOWANCE = "127.0.0.0/8,::1"
#: how long a name's checked addresses are trusted before they are resolved again
RESOLVED_TTL_S = 30.0

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class OutboundRefused(ValueError):
    """A destination the service may not call; the message names the host and why."""


def allowed_networks(environ: Mapping[str, str] | None = None) -> tuple[IpNetwork, ...]:
    """The networks `SYNC_OUTBOUND_ALLOW` allows (ValueError names a bad entry)."""
    raw = (os.environ if environ is None else environ).get(ALLOW_ENV, "")
    networks = []
    for entry in (e.strip() for e in raw.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(
                f"{ALLOW_ENV}: {entry[:60]!r} is not an address or a CIDR network"
            ) from None
    return tuple(networks)


def address_problem(address: IpAddress, allowed: tuple[IpNetwork, ...]) -> str | None:
    """Why the service may not call `address` (None: it may)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address in network for network in allowed):
        return None
    if address.is_global and not address.is_multicast:
        return None
    kind = (
        "a loopback"
        if address.is_loopback
        else "a link-local (cloud metadata)"
        if address.is_link_local
        else "a multicast"
        if address.is_multicast
        else "an unspecified"
        if address.is_unspecified
        else "a private"
        if address.is_private
        else "a non-public"
    )
    return f"{address} is {kind} address"


def _resolved(host: str, problem: str) -> str:
    """ "localhost resolves to 127.0.0.1, a loopback address" (the address said once)."""
    address, _, kind = problem.partition(" is ")
    return f"{host} resolves to {address}, {kind}"


def check_literal_host(url: str, environ: Mapping[str, str] | None = None) -> None:
    """At configuration time: refuse a URL whose host is a forbidden IP literal (a name is
    checked when it is called, against what it resolves to then)."""
    host = urlsplit(url).hostname
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return  # a name, or no host (the URL's own validation says so)
    problem = address_problem(address, allowed_networks(environ))
    if problem:
        raise OutboundRefused(_refusal(problem))


class DestinationGuard:
    """Checks hosts at call time, each name's addresses cached for `RESOLVED_TTL_S`."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._allowed = allowed_networks(environ)
        self._checked: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def check(self, host: str, port: int) -> None:
        key = (host.lower(), port)
        now = time.monotonic()
        with self._lock:
            if self._checked.get(key, 0.0) > now:
                return
        try:
            self.resolve(host, port)
        except (socket.gaierror, UnicodeError):
            return  # the call itself fails to connect, and says so as the error it is
        with self._lock:
            self._checked[key] = now + RESOLVED_TTL_S

    def resolve(self, host: str, port: int) -> list[tuple[int, tuple[Any, ...]]]:
        """Every (family, socket address) `host` resolves to now, each one checked: what a
        connection that must reach only a checked address connects to (the lean HTTP client's
        connections do, so a name answering differently between check and connect — DNS
        rebinding — cannot move them). OutboundRefused when any address is forbidden;
        socket.gaierror when the name does not resolve."""
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        for *_, sockaddr in found:
            problem = address_problem(
                ipaddress.ip_address(sockaddr[0].split("%")[0]), self._allowed
            )
            if problem:
                detail = problem if problem.startswith(host) else _resolved(host, problem)
                raise OutboundRefused(_refusal(detail))
        return [(family, sockaddr) for family, *_, sockaddr in found]

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.hostname:
            self.check(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))


def _refusal(problem: str) -> str:
    return (
        f"{problem}; calls to loopback, private, link-local (cloud metadata) and other "
        f"non-public addresses are refused unless {ALLOW_ENV} lists the network"
    )
