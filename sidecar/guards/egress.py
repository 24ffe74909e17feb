"""Where a tool call may send a request: SSRF and egress checks on URLs.

An agent that can put a URL into a tool call can make the pod reach what only
the pod can reach: loopback services, the cloud metadata endpoint, the cluster
network. Attackers hide those targets in host spellings that one parser reads
differently from another (decimal, octal and hex IPv4, IPv4-mapped IPv6,
full-width digits, `@` and backslash tricks). Hosts are therefore read the way
WHATWG URL parsers read them, since that is what browsers and the HTTP clients
that follow them will connect to; a URL that two common parsers would send to
different hosts, or that carries credentials, is reported as malformed instead
of allowed.

The check is pure and never resolves names. A public name can still resolve to
a private address (DNS rebinding): that defence belongs where the request is
actually made, by checking the address the connection goes to.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from sidecar.guards.finding import Finding

SSRF_PRIVATE_ADDRESS = "SSRF_PRIVATE_ADDRESS"
SSRF_METADATA = "SSRF_METADATA"
EGRESS_NOT_ALLOWED = "EGRESS_NOT_ALLOWED"
BAD_SCHEME = "BAD_SCHEME"
MALFORMED_URL = "MALFORMED_URL"

# A URL may hold characters outside the stream scanner's run alphabet before its
# host is complete: IPv6 brackets and the backslashes special schemes treat as `/`.
EXTRA_HOLD_CHARS = "[]\\"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The worst finding wins when several readings of one URL disagree.
_RANK = {EGRESS_NOT_ALLOWED: 1, MALFORMED_URL: 2, SSRF_PRIVATE_ADDRESS: 3, SSRF_METADATA: 4}

_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})

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

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_NOT_A_SCHEME = re.compile(r"[^/\\?#@]*://")  # "0://x", "://x": a scheme that is not one
_NUMERIC_HOST = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")  # 2130706433, 0x7f000001: IPv4 too
_PORT_ONLY = re.compile(r"[0-9]+(?:[/\\?#]|$)")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_RFC_AUTHORITY_END = re.compile(r"[/?#]")
_ASCII_WS = str.maketrans("", "", "\t\n\r")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#/:<>?@\[\\\]^|%\x7f]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # the common case, read directly
_QUAD_PREFIX = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.")
_ECHOED_QUAD = re.compile(
    r"(?:^|[.-])([0-9]{1,3})[.-]([0-9]{1,3})[.-]([0-9]{1,3})[.-]([0-9]{1,3})(?=[.-])"
)
_ECHOED_HEX = re.compile(r"(?:^|[.-])([0-9a-f]{8})\.")
# Full-width and ideographic full stops separate labels too (UTS 46 maps them to ".").
# Default-ignorable marks (soft hyphen, zero-width space, variation selectors) vanish.
_IGNORED = (0xAD, 0x34F, 0x200B, 0x2060, 0xFEFF, *range(0x180B, 0x1810), *range(0xFE00, 0xFE10))
_HOST_MAP: dict[int, int | None] = {
    0x3002: 0x2E,
    0xFF0E: 0x2E,
    0xFF61: 0x2E,
    **dict.fromkeys((*_IGNORED, *range(0xE0100, 0xE01F0))),
}
_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp"})


@dataclass(frozen=True, slots=True)
class _Host:
    ip: IPAddress | None = None
    name: str = ""  # the ASCII (punycode) form, lower case, without the root dot
    zoned: bool = False  # an IPv6 zone id: WHATWG rejects it, other clients accept it

    @property
    def canonical(self) -> str:
        return str(self.ip) if self.ip is not None else self.name


def _clean(text: str) -> str:
    """What a WHATWG parser starts from: no outer C0/space, no tab or newline anywhere."""
    return text.strip(_C0_AND_SPACE).translate(_ASCII_WS)


def _ipv4_number(part: str) -> int | None:
    if not part:
        return None
    radix = 10
    if part[:2] in ("0x", "0X"):
        radix, part = 16, part[2:]
    elif len(part) > 1 and part[0] == "0":
        radix, part = 8, part[1:]
    part = part.lstrip("0")
    if not part:
        return 0
    if len(part) > 12:  # far beyond 2**32 in any radix
        return None
    digits = "0123456789abcdefABCDEF"[: radix if radix <= 10 else radix + 6]
    if any(c not in digits for c in part):
        return None
    return int(part, radix)


def _ends_in_number(host: str) -> bool:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    last = parts[-1]
    return bool(last) and ((last.isascii() and last.isdigit()) or _ipv4_number(last) is not None)


def _parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if parts[-1] == "" and len(parts) > 1:
        parts.pop()
    if len(parts) > 4:
        return None
    numbers = [_ipv4_number(p) for p in parts]
    if any(n is None for n in numbers):
        return None
    values = [n for n in numbers if n is not None]
    if any(n > 255 for n in values[:-1]) or values[-1] >= 256 ** (5 - len(values)):
        return None
    address = values[-1] + sum(n * 256 ** (3 - i) for i, n in enumerate(values[:-1]))
    return ipaddress.IPv4Address(address)


def _to_ascii(mapped: str) -> str | None:
    labels: list[str] = []
    for label in mapped.split("."):
        if label.isascii():
            if label.startswith("xn--"):
                try:
                    decoded = label[4:].encode("ascii").decode("punycode")
                except (UnicodeError, ValueError):
                    return None
                if not decoded or decoded.isascii():
                    return None
            labels.append(label)
        else:
            labels.append("xn--" + label.encode("punycode").decode("ascii"))
    return ".".join(labels)


def _map_domain(text: str) -> str | None:
    """An approximation of UTS 46 mapping: NFKC, lower case, dots, no invisible marks."""
    mapped = unicodedata.normalize("NFKC", text).translate(_HOST_MAP).lower()
    mapped = unicodedata.normalize("NFKC", mapped)
    if any(unicodedata.category(c) in _BAD_CATEGORIES for c in mapped if not c.isascii()):
        return None
    return mapped


def _parse_host(raw: str) -> _Host | None:
    """The WHATWG host parser for special schemes; None where it fails."""
    if _PLAIN_QUAD.fullmatch(raw):
        return _Host(ip=ipaddress.IPv4Address(raw))
    if raw.startswith("["):
        if not raw.endswith("]"):
            return None
        inner, zoned = raw[1:-1], False
        if "%" in inner:
            inner, zone = inner.split("%", 1)
            zoned = bool(zone)
            if not zoned:
                return None
        try:
            return _Host(ip=ipaddress.IPv6Address(inner), zoned=zoned)
        except ValueError:
            return None
    try:
        decoded = unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None
    mapped = _map_domain(decoded)
    ascii_host = _to_ascii(mapped) if mapped is not None else None
    if not ascii_host or _FORBIDDEN_DOMAIN.search(ascii_host):
        return None
    if _ends_in_number(ascii_host):
        ip = _parse_ipv4(ascii_host)
        return _Host(ip=ip) if ip is not None else None
    name = ascii_host[:-1] if ascii_host.endswith(".") else ascii_host
    if "" in name.split("."):
        return None  # an empty label cannot name a server
    return _Host(name=name)


def _split_host_port(hostport: str) -> tuple[str, str] | None:
    if hostport.startswith("["):
        close = hostport.find("]")
        if close == -1:
            return None
        host, after = hostport[: close + 1], hostport[close + 1 :]
        if after and not after.startswith(":"):
            return None
        port = after[1:]
    else:
        host, _, port = hostport.partition(":")
    if port and (not port.isascii() or not port.isdigit() or int(port) > 65535):
        return None
    return host, port


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


# Candidates in free text, tried left to right. Every repetition is bounded or runs
# over a class that cannot overlap what follows it, so matching stays linear.
_URL_CHARS = r"[^\s\"'<>`]"
_NUM = r"(?:0[xX][0-9A-Fa-f]{1,8}|\d{1,10})"
_LABEL = r"[A-Za-z0-9_\-]{1,63}"
_URL_ALTERNATIVES = rf"""
    (?P<url>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{{0,31}}:[/\\]{{2}}{_URL_CHARS}*)
  | (?P<noslash>(?<![A-Za-z0-9+.\-])(?i:https?|wss?):(?=[\w\[%]){_URL_CHARS}*)
  | (?P<relative>(?<![\w:/\\.])//(?=[\w\[%]){_URL_CHARS}*)
"""
_BARE_ALTERNATIVES = rf"""
    (?P<v6b>(?<![\w\]\)\[])\[[0-9A-Fa-f:.]{{2,45}}(?:%[\w.\-]{{1,20}})?\]
        (?::\d{{1,5}})?(?![\w\[])(?:[/?\#]{_URL_CHARS}*)?)
  | (?P<v6>(?<![\w:.\[%\-])(?=[0-9A-Fa-f]{{0,4}}:[0-9A-Fa-f]{{0,4}}:)
        [0-9A-Fa-f:.]{{2,45}}(?![\w:%]))
  | (?P<v4>(?<![\w.:/@\-%]){_NUM}(?:\.{_NUM}){{1,3}}(?::\d{{1,5}})?(?![\w@\-]|[.:]\w)
        (?:/{_URL_CHARS}*)?)
  | (?P<name>(?<![\w.@/%\-])
        (?:(?:{_LABEL}\.){{1,10}}{_LABEL}|(?i:localhost|ip6-localhost|ip6-loopback))\.?
        (?::\d{{1,5}})?(?![\w@\-]|\.\w)(?:/{_URL_CHARS}*)?)
"""
# Every alternative starts where no word character precedes: one test skips the rest.
_CANDIDATES = re.compile(
    rf"(?<!\w)(?=[\w/\[:])(?:{_URL_ALTERNATIVES}|{_BARE_ALTERNATIVES})", re.VERBOSE
)
_NESTED = re.compile(_URL_ALTERNATIVES, re.VERBOSE)
# Whitespace-delimited tokens that can hold a candidate at all; prose words are
# skipped by this one cheap pattern before the candidates are tried.
_TOKENS = re.compile(r"(?<![^\s\"'<>`])[^\s\"'<>`]*?(?:[.:/\[\\]|(?i:localhost|ip6-))[^\s\"'<>`]*")
_MAX_NESTED = 8  # URLs looked at inside one URL; bounds the work on adversarial text
_URL_GROUPS = frozenset({"url", "noslash", "relative"})
_TRAILING = ".,;:!?\\*"
_PAIRS = {")": "(", "]": "[", "}": "{"}


def _trim(candidate: str) -> str:
    """Drop the sentence punctuation and unbalanced closers prose puts after a URL."""
    balance = {close: candidate.count(close) - candidate.count(op) for close, op in _PAIRS.items()}
    end = len(candidate)
    while end:
        last = candidate[end - 1]
        if last in _PAIRS and balance[last] > 0:
            balance[last] -= 1
        elif last not in _TRAILING:
            break
        end -= 1
    return candidate[:end]


class EgressChecker:
    """Decides whether a tool may be sent to a URL, and finds such URLs in text.

    `allow_hosts` holds host globs (`api.example.com`, `*.github.com`; `*` also
    spans dots, and `*.github.com` does not match `github.com` itself); when it is
    non-empty every other host is EGRESS_NOT_ALLOWED. `block_private` reports
    loopback, private, link-local, CGNAT, multicast and reserved addresses and
    local-only names; cloud metadata endpoints are reported even without it, as
    no tool has a reason to reach them. Hosts are read per WHATWG for every
    allowed scheme. Nothing is resolved: DNS-rebinding defence belongs to the
    code that opens the connection.
    """

    TYPES = (SSRF_PRIVATE_ADDRESS, SSRF_METADATA, EGRESS_NOT_ALLOWED, BAD_SCHEME, MALFORMED_URL)

    __slots__ = ("_allow", "_block_private", "_schemes")

    def __init__(
        self,
        *,
        allow_hosts: Sequence[str] = (),
        block_private: bool = True,
        allow_schemes: Sequence[str] = ("http", "https"),
    ) -> None:
        globs = [_normalize_glob(h) for h in allow_hosts]
        self._allow = re.compile("|".join(fnmatch.translate(g) for g in globs)) if globs else None
        self._block_private = block_private
        self._schemes = frozenset(s.strip().lower().rstrip(":") for s in allow_schemes)

    def check(self, url: str) -> str | None:
        """None when a request to `url` may go out, else the finding type that stops it.

        Text without a scheme is read as a network target when it starts with
        `//`, is an IP address in any WHATWG spelling, or its host part is
        dotted, has a port or is a loopback name; anything else (a relative
        path, a word) names no host.
        """
        text = _clean(url)
        m = _SCHEME.match(text)
        if m is not None:
            scheme, rest = m[1].lower(), text[m.end() :]
            if scheme in self._schemes or scheme in _SPECIAL_SCHEMES:
                return self._url(scheme, rest) if scheme in self._schemes else BAD_SCHEME
            if rest[:1] in ("/", "\\") or not _PORT_ONLY.match(rest):
                return BAD_SCHEME
            # "localhost:8080" is a host and a port, not a scheme.
            return self._authority(text, explicit=True)
        if _NOT_A_SCHEME.match(text):
            return MALFORMED_URL
        if text[:2] in ("//", "\\\\", "/\\", "\\/"):
            return self._authority(text, explicit=True)
        if _is_ipv6(text):
            return self._authority(f"[{text}]", explicit=True)
        head = _AUTHORITY_END.split(text, maxsplit=1)[0]
        if not (
            "." in head
            or ":" in head
            or head.startswith("[")
            or _is_known_name(head)
            or _NUMERIC_HOST.fullmatch(head)
        ):
            return None
        return self._authority(text, explicit=False)

    def scan(self, text: str) -> list[Finding]:
        """Every URL or bare network target in `text` that `check` would stop.

        Bare forms count when they look like network targets: dotted-quad and
        hex IPv4, IPv6, `host:port`, `//host`, loopback, local-only and metadata
        names. Inside a URL only further URLs count (`?next=http://...`), each
        checked on its own. Spans point into `text`; the URL never leaves here.
        """
        out: list[Finding] = []
        for token in _TOKENS.finditer(text):
            pos, stop = token.start(), token.end()
            while (m := _CANDIDATES.search(text, pos, stop)) is not None:
                group = m.lastgroup or ""
                start, candidate = _unescaped(text, m.start(), _trim(m[0]))
                end = start + len(candidate)
                pos = max(m.end(), start + 1)
                if group not in _URL_GROUPS:
                    verdict, confidence = self._bare(group, candidate)
                    if verdict is not None:
                        out.append(Finding("egress", verdict, start, end, confidence))
                    continue
                self._scan_url(candidate, start, out)
                # Further URLs in the path and query (`?next=http://...`) count on their own.
                inner = start + _authority_end(candidate)
                for _ in range(_MAX_NESTED):
                    n = _NESTED.search(text, inner, end)
                    if n is None:
                        break
                    nested_start, nested = _unescaped(text, n.start(), _trim(n[0]))
                    self._scan_url(nested, nested_start, out)
                    inner = max(nested_start + _authority_end(nested), n.start() + 1)
        return out

    def _scan_url(self, candidate: str, start: int, out: list[Finding]) -> None:
        if not _has_host(candidate):
            return
        verdict = self._scanned_url(candidate)
        if verdict is not None:
            out.append(Finding("egress", verdict, start, start + len(candidate)))

    # -- internals -------------------------------------------------------------

    def _scanned_url(self, candidate: str) -> str | None:
        m = _SCHEME.match(candidate)
        if m is None:  # //host
            return self._authority(candidate, explicit=True)
        scheme = m[1].lower()
        if scheme not in self._schemes:
            return BAD_SCHEME
        return self._url(scheme, candidate[m.end() :])

    def _bare(self, group: str, candidate: str) -> tuple[str | None, float]:
        if group == "v6":
            candidate = candidate.rstrip(".")
            if not _is_ipv6(candidate) or not any(c.isalnum() for c in candidate):
                return None, 0.0
            return self._authority(f"[{candidate}]", explicit=False), 0.9
        head = _AUTHORITY_END.split(candidate, maxsplit=1)[0]
        host = head.rpartition(":")[0] if ":" in head and group != "v6b" else head
        has_port = host != head or (group == "v6b" and "]:" in head)
        if group == "v4" and not (has_port or host.count(".") == 3 or "0x" in host.lower()):
            return None, 0.0  # "0.5" and "10.2" are numbers before they are addresses
        verdict = self._authority(candidate, explicit=False)
        if group != "name":
            return verdict, 0.9
        lowered = host.lower().rstrip(".")
        # A dotted word is a host name only with a port or the "www." that says so;
        # without them it is as likely a file name ("setup.py") and counts only
        # when the name itself is local-only.
        if verdict == EGRESS_NOT_ALLOWED and not (has_port or lowered.startswith("www.")):
            return None, 0.0
        if lowered.endswith((".local", ".lan", ".home", ".corp", ".private")) and not (
            has_port or len(head) < len(candidate)
        ):
            return None, 0.0  # "config.local" is a file
        return verdict, 0.8

    def _url(self, scheme: str, rest: str) -> str | None:
        if scheme == "file" and not (rest[:2] == "//" and _AUTHORITY_END.match(rest, 2) is None):
            return None  # file:///path and file:path stay on this machine
        return self._authority(rest, explicit=True)

    def _authority(self, rest: str, *, explicit: bool) -> str | None:
        """The verdict for what follows `scheme:` (or for a bare `host[:port][/path]`).

        `explicit` is false for bare text, where an unparsable candidate is simply
        not a URL, credentials-like `@` is an e-mail address, and a dotless word
        is not a host.
        """
        body = rest.lstrip("/\\")
        end = _AUTHORITY_END.search(body)
        authority = body[: end.start()] if end else body
        rfc_end = _RFC_AUTHORITY_END.search(body)
        rfc_authority = body[: rfc_end.start()] if rfc_end else body
        # Backslashes end the authority for WHATWG but not for RFC 3986 clients,
        # so `good.com\@10.0.0.1` goes to a different host depending on who reads it.
        ambiguous = "@" in authority or "\\" in rfc_authority
        hosts = [authority.rpartition("@")[2]]
        if rfc_authority != authority:
            hosts.append(rfc_authority.rpartition("@")[2])
        verdicts: list[str | None] = []
        for i, hostport in enumerate(hosts):
            parsed = self._host(hostport, explicit=explicit)
            if parsed is None:
                if i == 0 and explicit:
                    verdicts.append(MALFORMED_URL)
                continue
            host, verdict = parsed
            verdicts.append(verdict)
            ambiguous = ambiguous or host.zoned
            if i == 0 and self._allow is not None and not self._allow.match(host.canonical):
                verdicts.append(EGRESS_NOT_ALLOWED)
        if ambiguous and explicit:
            verdicts.append(MALFORMED_URL)
        return _worst(verdicts)

    def _host(self, hostport: str, *, explicit: bool) -> tuple[_Host, str | None] | None:
        split = _split_host_port(hostport)
        if split is None:
            return None
        raw, port = split
        host = _parse_host(raw)
        if host is None:
            return None
        if host.ip is not None:
            verdict = _classify_ip(host.ip)
        else:
            verdict = _classify_name(host.name, dotless_is_local=explicit or bool(port))
        if verdict == SSRF_PRIVATE_ADDRESS and not self._block_private:
            verdict = None
        return host, verdict


def _unescaped(text: str, start: int, candidate: str) -> tuple[int, str]:
    """Skip the letter of a JSON escape glued to a URL: `\\nhttps://` is `https://`."""
    if (
        start
        and text[start - 1] == "\\"
        and candidate[:1] in ("n", "r", "t", "b", "f")
        and _SCHEME.match(candidate, 1)
    ):
        return start + 1, candidate[1:]
    return start, candidate


def _has_host(url: str) -> bool:
    """Prose writes "http://" or "https://" without a host: no target there."""
    scheme = _SCHEME.match(url)
    body = url[scheme.end() if scheme else 0 :].lstrip("/\\")
    return bool(body) and _AUTHORITY_END.match(body) is None


def _authority_end(url: str) -> int:
    """Where the path of `url` starts (after `scheme://authority` or `//authority`)."""
    scheme = _SCHEME.match(url)
    body_start = scheme.end() if scheme else 0
    while body_start < len(url) and url[body_start] in "/\\":
        body_start += 1
    end = _AUTHORITY_END.search(url, body_start)
    return end.start() if end else len(url)


def _is_ipv6(text: str) -> bool:
    if ":" not in text or len(text) > 64:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _is_known_name(name: str) -> bool:
    lowered = name.lower().rstrip(".")
    return (
        lowered in _LOCAL_NAMES
        or lowered.endswith(".localhost")
        or (lowered in _METADATA_NAMES and "." in lowered)
    )


def _normalize_glob(entry: str) -> str:
    glob = entry.strip().lower().rstrip(".")
    if glob.startswith("[") and glob.endswith("]"):
        glob = glob[1:-1]
    if not glob:
        raise ValueError("an empty entry in allow_hosts")
    try:
        return str(ipaddress.ip_address(glob))
    except ValueError:
        pass
    mapped = _map_domain(glob)
    ascii_glob = _to_ascii(mapped) if mapped is not None else None
    if ascii_glob is None:
        raise ValueError(f"not a host name or glob in allow_hosts: {entry!r}")
    return ascii_glob


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside a JSON value, in document order; object keys are skipped."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, Mapping):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
