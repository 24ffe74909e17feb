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
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sidecar.guards.egress_hosts import (
    _clean,
    _Host,
    _map_domain,
    _parse_host,
    _split_host_port,
    _to_ascii,
)
from sidecar.guards.egress_targets import (
    _LOCAL_NAMES,
    _METADATA_NAMES,
    BAD_SCHEME,
    EGRESS_NOT_ALLOWED,
    MALFORMED_URL,
    SSRF_METADATA,
    SSRF_PRIVATE_ADDRESS,
    _classify_ip,
    _classify_name,
    _worst,
)
from sidecar.guards.finding import Finding

__all__ = [
    "BAD_SCHEME",
    "EGRESS_NOT_ALLOWED",
    "EXTRA_HOLD_CHARS",
    "MALFORMED_URL",
    "SSRF_METADATA",
    "SSRF_PRIVATE_ADDRESS",
    "EgressChecker",
    "strings_in",
]


# A URL may hold characters outside the stream scanner's run alphabet before its
# host is complete: IPv6 brackets and the backslashes special schemes treat as `/`.
EXTRA_HOLD_CHARS = "[]\\"

_SPECIAL_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp", "file"})

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_NOT_A_SCHEME = re.compile(r"[^/\\?#@]*://")  # "0://x", "://x": a scheme that is not one
_NUMERIC_HOST = re.compile(r"0[xX][0-9A-Fa-f]*|[0-9]+")  # 2130706433, 0x7f000001: IPv4 too
_PORT_ONLY = re.compile(r"[0-9]+(?:[/\\?#]|$)")
_AUTHORITY_END = re.compile(r"[/\\?#]")
_RFC_AUTHORITY_END = re.compile(r"[/?#]")


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
