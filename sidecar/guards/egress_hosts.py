"""Reading a URL's host the way WHATWG parsers read it, as pure functions over text.

Attackers hide internal targets in host spellings that parsers disagree on;
what decides a verdict is the host a browser-style client will actually
connect to. This reading is a parser with no policy in it, so it lives apart
from the checker, and each spelling is a fast unit test of its own.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_ASCII_WS = str.maketrans("", "", "\t\n\r")
_C0_AND_SPACE = "".join(chr(c) for c in range(0x21))
_FORBIDDEN_DOMAIN = re.compile(r"[\x00-\x20#/:<>?@\[\\\]^|%\x7f]")
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_PLAIN_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # the common case, read directly
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
