"""Whether a number or a dotted quad in technical text is a phone or an address at all.

The detector's shapes and checksums look at a candidate; these rules look
only at what stands around it, and they grow with every kind of log, config
or code that turns up a false positive. Keeping them apart lets that list of
words and operators change without touching how candidates are found.
"""

from __future__ import annotations

import re

# -- technical text ------------------------------------------------------------------
#
# Logs, configs, code and tool arguments are full of integers with a phone's
# digit count (sizes, ids, durations, INT_MAX) and of dotted quads that are
# versions, not addresses. What tells them apart is around the number, never
# the number itself: a unit or count after it, a key or an operator of code
# before it, a JSON number where a phone would be a string, a version word.
# A number written the way phones are (`+1 ...`, `(415) ...`) is a phone
# wherever it stands, and so is one whose key says it is.

_PHONE_WORDS = re.compile(
    r"(?i)phone|tel\b|telephone|mobile|cell|fax|contact|msisdn|whatsapp|sms|call|dial|reach"
)
# A unit or a count after the number: `2147483648 bytes`, `took 9708493278 ms`.
_UNIT_AFTER = re.compile(
    r"[ \t]?(?:bytes?|[KMGTPE]i?B|[kmgtp]b|B|bits?|ms|us|µs|ns|s|secs?|seconds?|minutes?|mins?"
    r"|hours?|hrs?|days?|rows?|records?|items?|entries|entry|tokens?|requests?|reqs?|calls"
    r"|times|ops|events?|lines|chars?|characters?|words|files?|objects?|keys|users|blocks?"
    r"|pages|packets?|cycles?|iterations?|instructions?|nodes|px|Hz|[kMG]Hz)(?![A-Za-z0-9_])"
    r"|[ \t]?%"
)
# Code or a closing JSON bracket right after it: `= 2147483647;`, `{"id": 1234567890}`.
_CODE_AFTER = re.compile(r"[ \t]*(?:[;\]}]|==|!=|<<|>>|&&|\|\|)")
# Words that name what a number counts or identifies, right before it.
_TECH_WORDS = frozenset((
    "id", "ids", "pid", "uid", "gid", "port", "ports", "expose", "issue", "ticket", "job", "row",
    "order", "item", "request", "req", "version", "ver", "build", "commit", "trace", "span",
    "epoch", "ts", "timestamp", "size", "length", "len", "count", "total", "offset", "limit",
    "max", "min", "elapsed", "took", "uptime", "expires", "expiry", "ttl", "allocated", "read",
    "wrote", "written", "sent", "received", "transferred", "return", "returns", "index", "seq",
    "sequence", "block", "height", "nonce", "step", "iteration", "page", "bytes", "memory",
    "heap", "disk", "usage", "duration", "latency", "timeout", "interval", "delay", "sleep",
    "wait", "retries", "errno", "exit", "checksum", "crc", "hash", "serial",
))  # fmt: skip
# The stretch before a number: a key or word, then an operator of assignment or comparison.
_BEFORE = re.compile(
    r"(?P<key>[A-Za-z_$][A-Za-z0-9_.$\-]*)?(?P<quote>[\"'`\]]?)[ \t]*"
    r"(?P<op>==|!=|<=|>=|:=|=>|[=:<>#(\[,+*/-])?[ \t]*[\"']?$"
)
_BEFORE_WINDOW = 48
_CODE_OPERATORS = frozenset(
    ("=", "==", "!=", "<", ">", "<=", ">=", ":=", "=>", "#", "[", "+", "*", "/")
)


def _technical_number(text: str, start: int, end: int) -> bool:
    """Whether the number at text[start:end] counts, sizes or identifies, rather than calls."""
    line_start = max(text.rfind("\n", 0, start) + 1, start - _BEFORE_WINDOW)
    before = text[line_start:start]
    if _PHONE_WORDS.search(before):
        return False
    if _UNIT_AFTER.match(text, end) or _CODE_AFTER.match(text, end):
        return True
    m = _BEFORE.search(before)
    if m is None:
        return False
    key, quote, op = m.group("key") or "", m.group("quote"), m.group("op") or ""
    if op in _CODE_OPERATORS:
        return True  # `size=...`, `count > ...`, `#1234567890`, `buf[...`
    if op == "(" and key and m.end("key") == m.start("quote"):
        return True  # a call: `sleep(...`
    if op == ":" and (quote or _code_name(key)):
        return True  # `"bytes": ...`, `heap_size_bytes: ...`, `Content-Length: ...`
    word = key.rsplit(".", 1)[-1].lower()
    return word in _TECH_WORDS


def _code_name(key: str) -> bool:
    """`heap_size_bytes`, `maxBytes`, `Content-Length`, `MAX_SIZE`: a name in code or a protocol."""
    if "_" in key or "." in key:
        return True
    if "-" in key:
        return any(part[:1].isupper() for part in key.split("-")[1:])
    return any(c.isupper() for c in key[1:]) and not key.isupper()


# Words that say a dotted quad is a version: `Version 1.2.3.4`, `pip install x==1.2.3.4`.
_VERSION_BEFORE = re.compile(
    r"(?i)(?:version|\bver\b|\bv|\bbuild|release[sd]?|firmware|\bfw\b|kernel|\brev(?:ision)?\b"
    r"|patch|upgrade[sd]?|update[sd]?|downgrade[sd]?|bump(?:ed)?|\bsdk\b)"
    r"[^\n]{0,24}$"
    r"|(?:==|>=|<=|~=|!=|\^|~)[ \t]*$"
    r"|\b[a-z][a-z0-9-]*[a-z]:$"  # an image tag: `nginx:1.2.3.4`
)
_VERSION_AFTER = re.compile(r"-[A-Za-z0-9]|\+[A-Za-z0-9]")  # `1.2.3.4-beta`, `1.2.3.4+build5`
_IP_WORDS = re.compile(
    r"(?i)\b(?:ip|ips|ipv4|addr|address|host|hostname|server|remote|client|src|dst|source"
    r"|destination|gateway|gw|proxy|dns|peer|connect(?:ed|ing)?|ping)\b[^\n]{0,12}$"
)


def _version_string(text: str, start: int, end: int) -> bool:
    """Whether the dotted quad at text[start:end] reads as a version, not an IPv4 address."""
    if _VERSION_AFTER.match(text, end):
        return True
    before = text[max(0, start - 32) : start]
    m = _VERSION_BEFORE.search(before)
    if m is None:
        return False
    # "upgraded the proxy to 10.0.0.1" is still an address: an address word after the
    # version word, close to the number, wins.
    ip = _IP_WORDS.search(before)
    return ip is None or ip.start() < m.start()
