"""Which addresses and host names only the pod can reach, and how bad reaching each is.

The lists follow registries and cloud vendors (IANA special-purpose blocks,
metadata endpoints, local-only suffixes, echo DNS services), not URL syntax;
they change when those do, so they are kept apart from the URL parser and the
checker that combines both.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence

from sidecar.guards.egress_hosts import IPAddress

SSRF_PRIVATE_ADDRESS = "SSRF_PRIVATE_ADDRESS"
SSRF_METADATA = "SSRF_METADATA"
EGRESS_NOT_ALLOWED = "EGRESS_NOT_ALLOWED"
BAD_SCHEME = "BAD_SCHEME"
MALFORMED_URL = "MALFORMED_URL"

# The worst finding wins when several readings of one URL disagree.
_RANK = {EGRESS_NOT_ALLOWED: 1, MALFORMED_URL: 2, SSRF_PRIVATE_ADDRESS: 3, SSRF_METADATA: 4}

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
# Not globally reachable (IANA special-purpose registry) or multicast.
_PRIVATE_V4 = tuple(
    _V4(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_PRIVATE_V6 = tuple(
    _V6(n)
    for n in (
        "::/128",
        "::1/128",
        "100::/64",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
    )
)
# IPv6 prefixes whose last 32 bits are an IPv4 address the packet ends up at.
_EMBEDS_V4 = tuple(
    _V6(n)
    for n in (
        "::ffff:0:0/96",  # IPv4-mapped
        "::ffff:0:0:0/96",  # SIIT translated
        "::/96",  # IPv4-compatible (deprecated)
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local use
    )
)
_SIX_TO_FOUR = _V6("2002::/16")
_TEREDO = _V6("2001::/32")

_METADATA_IPS: frozenset[IPAddress] = frozenset(
    {
        ipaddress.IPv4Address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, most clouds
        ipaddress.IPv4Address("169.254.170.2"),  # AWS ECS task credentials
        ipaddress.IPv4Address("100.100.100.200"),  # Alibaba Cloud
        ipaddress.IPv4Address("192.0.0.192"),  # Oracle Cloud (classic)
        ipaddress.IPv6Address("fd00:ec2::254"),  # AWS IMDS over IPv6
    }
)
_METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
_LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback", "broadcasthost"}
)
# Special-use and never-delegated suffixes (RFC 6761, RFC 6762 appendix G, RFC 8375)
# plus the Kubernetes service domain: names that only a local resolver answers.
_LOCAL_SUFFIXES = (
    ".localhost",
    ".local",
    ".internal",
    ".intranet",
    ".private",
    ".corp",
    ".home",
    ".lan",
    ".localdomain",
    ".home.arpa",
    ".svc",
)
# Public wildcard DNS that answers with the address spelled in the name.
_ECHO_DOMAINS = ("nip.io", "sslip.io", "xip.io")
_LOOPBACK_DOMAINS = ("localtest.me", "lvh.me", "vcap.me")

_QUAD_PREFIX = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.")
_ECHOED_QUAD = re.compile(
    r"(?:^|[.-])([0-9]{1,3})[.-]([0-9]{1,3})[.-]([0-9]{1,3})[.-]([0-9]{1,3})(?=[.-])"
)
_ECHOED_HEX = re.compile(r"(?:^|[.-])([0-9a-f]{8})\.")


def _ranges(networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> _Ranges:
    return tuple((int(n.network_address), int(n.broadcast_address)) for n in networks)


_Ranges = tuple[tuple[int, int], ...]
_PRIVATE_V4_RANGES = _ranges(_PRIVATE_V4)
_PRIVATE_V6_RANGES = _ranges(_PRIVATE_V6)
_EMBEDS_V4_RANGES = _ranges(_EMBEDS_V4)
_LOOPBACK_OR_UNSPECIFIED_V6 = frozenset({0, 1})  # :: and ::1 sit inside ::/96


def _within(value: int, ranges: _Ranges) -> bool:
    return any(low <= value <= high for low, high in ranges)


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    if ip in _TEREDO:
        teredo = ip.teredo
        return teredo[1] if teredo else None
    if _within(int(ip), _EMBEDS_V4_RANGES):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _classify_ip(ip: IPAddress) -> str | None:
    if ip in _METADATA_IPS:
        return SSRF_METADATA
    value = int(ip)
    if isinstance(ip, ipaddress.IPv4Address):
        return SSRF_PRIVATE_ADDRESS if _within(value, _PRIVATE_V4_RANGES) else None
    if value in _LOOPBACK_OR_UNSPECIFIED_V6:
        return SSRF_PRIVATE_ADDRESS
    embedded = _embedded_v4(ip)
    if embedded is not None:
        return _classify_ip(embedded)
    return SSRF_PRIVATE_ADDRESS if _within(value, _PRIVATE_V6_RANGES) else None


def _in_domain(name: str, domains: Sequence[str]) -> bool:
    return any(name == d or name.endswith("." + d) for d in domains)


def _octets(groups: Sequence[str]) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(".".join(groups)) if all(int(g) <= 255 for g in groups) else None


def _echoed_addresses(name: str) -> list[ipaddress.IPv4Address | None]:
    """The addresses a name spells for DNS that answers with them."""
    if _in_domain(name, _ECHO_DOMAINS):
        found = [_octets(m.groups()) for m in _ECHOED_QUAD.finditer(name)]
        return found + [ipaddress.IPv4Address(int(m[1], 16)) for m in _ECHOED_HEX.finditer(name)]
    m = _QUAD_PREFIX.match(name)  # "127.0.0.1.example.com" names a loopback on purpose
    return [_octets(m.groups())] if m else []


def _classify_name(name: str, *, dotless_is_local: bool) -> str | None:
    if name in _METADATA_NAMES:
        return SSRF_METADATA
    if name in _LOCAL_NAMES or name.endswith(_LOCAL_SUFFIXES):
        return SSRF_PRIVATE_ADDRESS
    if "." not in name:
        # A dotless name is completed by the resolver's search list: a cluster service.
        return SSRF_PRIVATE_ADDRESS if dotless_is_local else None
    if _in_domain(name, _LOOPBACK_DOMAINS):
        return SSRF_PRIVATE_ADDRESS
    found = [ip for ip in _echoed_addresses(name) if ip is not None]
    return _worst([_classify_ip(ip) for ip in found])


def _worst(verdicts: Sequence[str | None]) -> str | None:
    return max((v for v in verdicts if v is not None), key=_RANK.__getitem__, default=None)
