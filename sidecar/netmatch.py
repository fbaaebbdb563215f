"""Client addresses and CIDR matching, shared by the rollout rules and the admin API.

Addresses come from the TCP peer or a forwarding-header hop (``X-Forwarded-For`` or the
``for=`` of RFC 7239 ``Forwarded``): a port (``203.0.113.7:4711``, ``[2001:db8::1]:443``),
surrounding quotes, brackets and a zone id are stripped, and an IPv4-mapped IPv6 address
(``::ffff:10.1.2.3``, what a dual-stack socket reports for an IPv4 client) is matched as the
IPv4 address it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(value: str | None) -> Address | None:
    """The address in ``value``, or None when it is missing or not an IP address."""
    if not value:
        return None
    value = value.strip().strip('"')
    if value.startswith("[") and "]" in value:
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:
        # IPv4 with a port; a bare IPv6 address has at least two colons.
        value, _, port = value.partition(":")
        if not port.isdigit():
            return None
    try:
        addr = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """CIDR networks (a bare address is a /32 or /128); parse once, match many times."""
    return tuple(ipaddress.ip_network(i, strict=False) for i in items)


def in_networks(addr: Address | None, nets: Sequence[Network]) -> bool:
    """Whether ``addr`` lies in one of ``nets`` (an unknown address lies in none)."""
    return addr is not None and any(addr.version == n.version and addr in n for n in nets)
