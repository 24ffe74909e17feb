"""Built-in PII detection: emails, phones, card numbers, IBANs, US SSNs and IP addresses.

Every type is found in two steps. One compiled alternation proposes
candidates by shape; then each candidate must pass the check its format
defines (Luhn and the card network's number ranges, ISO 13616 mod-97 and the
country's length, the SSA's excluded SSN ranges, `ipaddress` for IP
addresses, the phone metadata of `phonenumbers`). Shape alone would flag
order numbers, UUIDs, timestamps, ISBNs and version strings; the checks are
what keep those out.

Even one alternation costs some 250 µs per KB when it is tried at every
position, and most text an agent exchanges is prose. Every candidate holds a
digit, an "@" or a "::"-like pair of colons, which C-speed searches find, so
the alternation only walks the stretches around those; text with none of them
is done in a few µs per KB.

Phone numbers are the exception to "cheap": `phonenumbers` is pure Python and
costs 60 to 400 µs a call, so its matcher only runs where a run of seven or
more digits in phone-like groups could be a number (not a date, not a list of
single digits), on a small window, and at most a few times per run.

Technical text is the other trap: logs, configs, code and tool arguments
hold integers with a phone's digit count (sizes, ids, durations, INT_MAX) and
dotted quads that are versions. A number not written the way phones are (no
leading `+` or `(`) is not a phone when what stands around it says it counts or
identifies something (a unit after it, a code operator or a code-style key
before it, a JSON number under a key that does not name a phone); a dotted quad
after a version word or a package specifier, or with a pre-release suffix, is
not an address.

The patterns are written for linear time (possessive and atomic groups, no
nested quantifiers over overlapping classes) and for streaming: every
character a finding can span is one the stream scanner keeps back at the end
of a chunk (letters, digits, `_.%+-@:/=~`, and spaces and `()` inside
numbers), and whether a candidate is accepted depends on at most a few
characters or one unit word after it (the scanner keeps a number and a word
still being written back together) and a short keyword window before it. That is why email
local parts use the common `A-Za-z0-9._%+-` subset, why a spaced IBAN must be
upper case, and why a phone number's extension (` ext. 12`, `x12`) is left
outside its span.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Collection, Sequence

import phonenumbers

from sidecar.guards.finding import Finding

KIND = "pii"
# Characters a finding can span beyond those the stream scanner already keeps
# back at the end of a chunk: none, by construction (see above).
EXTRA_HOLD_CHARS = ""

# ISO 13616 IBAN registry (SWIFT): total IBAN length per country.
_IBAN_REGISTRY: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip
# Countries whose banks issue IBANs without being in the registry (mostly the
# West and Central African monetary unions, Algeria, Iran, Morocco...).
_IBAN_UNREGISTERED: dict[str, int] = {
    "AO": 25, "BF": 28, "BJ": 28, "CF": 27, "CG": 27, "CI": 28, "CM": 27, "CV": 25,
    "DZ": 26, "GA": 27, "GQ": 27, "GW": 25, "IR": 26, "KM": 27, "MA": 28, "MG": 27,
    "ML": 28, "MZ": 25, "NE": 28, "SN": 28, "TD": 27, "TG": 28,
}  # fmt: skip
IBAN_LENGTHS: dict[str, int] = {**_IBAN_UNREGISTERED, **_IBAN_REGISTRY}

_R16_19 = frozenset(range(16, 20))
_R14_19 = frozenset(range(14, 20))
_R12_19 = frozenset(range(12, 20))
# Issuer identification number ranges and the card lengths each network issues:
# (lowest prefix, highest prefix, lengths). Both prefixes have the same length.
CARD_NETWORKS: tuple[tuple[str, str, frozenset[int]], ...] = (
    ("4", "4", frozenset({13, 16, 19})),  # Visa
    ("51", "55", frozenset({16})),  # Mastercard
    ("2221", "2720", frozenset({16})),  # Mastercard 2-series
    ("34", "34", frozenset({15})),  # American Express
    ("37", "37", frozenset({15})),
    ("6011", "6011", _R16_19),  # Discover
    ("644", "649", _R16_19),
    ("65", "65", _R16_19),
    ("3528", "3589", _R16_19),  # JCB
    ("1800", "1800", frozenset({15})),  # JCB, older 15-digit numbers
    ("2131", "2131", frozenset({15})),
    ("300", "305", _R14_19),  # Diners Club
    ("3095", "3095", _R14_19),
    ("36", "36", _R14_19),
    ("38", "39", _R14_19),
    ("62", "62", _R16_19),  # UnionPay (and Discover's 622126-622925)
    ("2200", "2204", _R16_19),  # Mir
    ("5018", "5018", _R12_19),  # Maestro
    ("5020", "5020", _R12_19),
    ("5038", "5038", _R12_19),
    ("5893", "5893", _R12_19),
    ("6304", "6304", _R12_19),
    ("6759", "6759", _R12_19),
    ("6761", "6763", _R12_19),
    ("676770", "676770", _R12_19),  # Maestro UK
    ("676774", "676774", _R12_19),
    ("56", "58", _R12_19),  # Maestro, the ranges first assigned to it
    ("60", "60", frozenset({16})),  # RuPay
    ("81", "82", frozenset({16})),
    ("508", "508", frozenset({16})),
    ("353", "353", frozenset({16})),
    ("356", "356", frozenset({16})),
    ("636", "636", _R16_19),  # InterPayment
    ("637", "639", frozenset({16})),  # InstaPayment
    ("5019", "5019", frozenset({16})),  # Dankort
    ("9792", "9792", frozenset({16})),  # Troy
    ("506099", "506198", frozenset({16, 18, 19})),  # Verve
    ("507865", "507964", frozenset({16, 18, 19})),
    ("650002", "650027", frozenset({16, 18, 19})),
)


def _not_after(chars: str) -> str:
    """A left boundary: not preceded by one of `chars`, unless that one ends an escape.

    Text that went through JSON or a log line twice carries literal `\n`, `\t`
    and `\r`; the letter of the escape is not part of what follows it.
    """
    return rf"(?:(?<![{chars}\\])|(?<=\\[nrt]))"


# Candidate shapes, one named group each, in the order they are tried at one
# position. Left boundaries are look-behinds so a candidate never starts inside
# a longer token; right boundaries are look-aheads over a character or two.
_EMAIL = (
    _not_after(r"A-Za-z0-9_%+.\-") + r"[A-Za-z0-9_%+\-]++(?:\.[A-Za-z0-9_%+\-]++)*+"
    r"@(?:[A-Za-z0-9]++(?:-++[A-Za-z0-9]++)*+\.)+(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9]++)"
    r"(?![A-Za-z0-9_\-]|\.[A-Za-z0-9])"
)
_IPV6 = (
    _not_after(r"0-9A-Za-z_.\-") + r"(?<![0-9A-Fa-f]:)"
    r"(?>(?:[0-9A-Fa-f]{0,4}:){2,8}(?:[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{1,4})?)"
    r"(?![0-9A-Za-z_:\-]|\.[0-9A-Za-z])"
)
_IPV4 = (
    _not_after(r"0-9A-Za-z_.") + r"(?>[0-9]{1,3}(?:\.[0-9]{1,3}){3})"
    r"(?![0-9A-Za-z_]|\.[0-9])"
)
_SSN = (
    _not_after(r"0-9A-Za-z_.\-")
    + r"(?>[0-9]{3}(?P<ssn_sep>[- ])[0-9]{2}(?P=ssn_sep)[0-9]{4}|[0-9]{9})"
    r"(?![0-9A-Za-z_]|[-.][0-9])"
)
_CARD = (
    _not_after(r"0-9A-Za-z_.\-") + r"(?>[0-9]{12,19}|[0-9]{4}(?P<card_sep>[- ])[0-9]{3,6}(?![0-9])"
    r"(?:(?P=card_sep)[0-9]{1,6}(?![0-9])){0,4})"
    r"(?![0-9A-Za-z_]|[-.][0-9])"
)
_IBAN = (
    _not_after(r"0-9A-Za-z_.\-")
    + r"(?>[A-Z]{2}[0-9]{2}(?: [A-Z0-9]{4}(?![A-Za-z0-9])){2,7}(?: [A-Z0-9]{1,3}(?![A-Za-z0-9]))?"
    r"|[A-Za-z]{2}[0-9]{2}[A-Za-z0-9]{11,30}(?![A-Za-z0-9_]))"
)
# Up to nine groups of digits with the separators phone numbers are written
# with, seven digits or more, ending at the end of a group; not continuing a
# hyphenated or dotted token (INV-2024-000123, v1.4155552671) or a time of day,
# nor followed by a letter (810999180e6a), bar the "x" of an extension.
_PHONE = (
    _not_after("0-9A-Za-z_+") + r"(?<![0-9A-Za-z_][\-./])(?<![0-9]:)"
    r"(?=[+(]?(?:[0-9][ \-.()/]{0,3}){6}[0-9])"
    r"(?>[+(]?[0-9]++(?:[ \-.()/]{1,3}[0-9]++){0,8})(?![A-WYZa-wyz_])"
)

_BRANCHES: dict[str, tuple[str, str]] = {  # group -> (finding type, pattern)
    "email": ("EMAIL", _EMAIL),
    "ipv6": ("IP_ADDRESS", _IPV6),
    "ipv4": ("IP_ADDRESS", _IPV4),
    "ssn": ("US_SSN", _SSN),
    "card": ("CREDIT_CARD", _CARD),
    "iban": ("IBAN", _IBAN),
    "phone": ("PHONE", _PHONE),
}

# Every candidate holds an anchor: a digit, an "@", or two colons around at most
# four hex digits. Only the text around anchors is walked by the candidate
# pattern; each window reaches back to where a candidate can start (an email's
# local part is at most 64 characters) and forward past where it can end.
_DIGIT_RUN = re.compile(r"[0-9]+")
_AT = re.compile(r"@")
_COLONS = re.compile(r":[0-9A-Fa-f]{0,4}:")
_DIGITS = "0123456789"
_BACK, _AHEAD = 8, 64
_EMAIL_BACK, _EMAIL_AHEAD = 66, 256
_EDGE = 3  # a candidate this close to a window's end is matched again on the whole text
_SSN_KEYWORD = re.compile(r"(?i)\b(?:ssn|ss#|social[\s-]+security)")
_SSN_KEYWORD_WINDOW = 48  # characters before a bare 9-digit number; less than a stream's context
_SSN_INVALID = frozenset({"078051120", "219099999"})  # published in ads, voided by the SSA
_CARD_SEPARATOR = re.compile(r"[- ]")
_PHONE_BEFORE = 8  # context the phone matcher sees before a number
_PHONE_SPAN = 96  # chained runs longer than this start a new sequence
_PHONE_TRIES = 4  # matcher calls per sequence: the matcher is the slow part
# Each start gets the longest stretch of whole groups with at most 17 digits
# (E.164 allows fifteen, a trunk prefix adds one or two), then with at most 12
# (what most national and international forms come to).
_PHONE_LENGTHS = (17, 12)
_DATE = re.compile(  # 2024-01-15, 2024/1/5, 15.01.2024, 01/15/24
    r"(?:[12][0-9]{3}[-/.][01]?[0-9][-/.][0-3]?[0-9]"
    r"|[0-3]?[0-9][-/.][01]?[0-9][-/.](?:[12][0-9])?[0-9]{2})"
    r"(?![0-9]|[-/.][0-9])"
)
_BARE_PHONE_CONFIDENCE = 0.8  # ten digits and nothing else: as likely an account or order number
_BARE_PHONE_DIGITS = 12  # longer unformatted numbers are accounts, cards and orders, not phones


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number carries in its last digit."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def card_network_known(digits: str) -> bool:
    n = len(digits)
    for low, high, lengths in CARD_NETWORKS:
        if n in lengths and low <= digits[: len(low)] <= high:
            return True
    return False


def iban_valid(compact: str) -> bool:
    """ISO 13616: the country's length, then mod 97 of the rearranged number is 1."""
    code = compact[:2].upper()
    if IBAN_LENGTHS.get(code) != len(compact):
        return False
    return iban_mod97(compact)


def iban_mod97(compact: str) -> bool:
    if not compact[2:4].isdigit() or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


_UNLISTED_CARD_CONFIDENCE = 0.9
_UNLISTED_IBAN_CONFIDENCE = 0.8


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_INVALID


Span = tuple[int, int, float]
Window = tuple[int, int]


class PiiDetector:
    """Finds personal data in a text; pure, so one instance serves every request."""

    TYPES = ("EMAIL", "PHONE", "CREDIT_CARD", "IBAN", "US_SSN", "IP_ADDRESS")

    __slots__ = (
        "_branches",
        "_by_anchor",
        "_candidates",
        "_match_window",
        "_regions",
        "_types",
        "_validators",
    )

    def __init__(
        self, *, types: Collection[str] | None = None, phone_regions: Sequence[str] = ("US",)
    ) -> None:
        wanted = set(self.TYPES if types is None else types)
        unknown = sorted(wanted - set(self.TYPES))
        if unknown:
            raise ValueError(
                f"unknown PII type(s): {', '.join(unknown)}; known: {', '.join(self.TYPES)}"
            )
        regions = tuple(r.upper() for r in phone_regions)
        bad = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"unknown phone region(s): {', '.join(bad)}")
        self._types = frozenset(wanted)
        # Keep phonenumbers' compiled metadata patterns: checking one number
        # touches more of them than the re module's own cache holds (bounded by
        # the metadata, so a few MB at most).
        phonenumbers.enable_pattern_cache()
        # With no region, the matcher still finds numbers written in international + form.
        self._regions = regions or ("ZZ",)
        self._match_window = functools.lru_cache(maxsize=1024)(self._match_window_uncached)
        names = [name for name, (type_, _) in _BRANCHES.items() if type_ in wanted]
        self._branches = [(name, re.compile(f"(?P<{name}>{_BRANCHES[name][1]})")) for name in names]
        self._candidates = (
            re.compile("|".join(f"(?P<{n}>{_BRANCHES[n][1]})" for n in names)) if names else None
        )
        # Which anchors to look for: digits for all but emails, "@" for emails,
        # colons for IPv6 (whose digits may all be hex letters).
        self._by_anchor = (
            any(n not in ("email", "ipv6") for n in names),
            "email" in names,
            "ipv6" in names,
        )
        self._validators: dict[str, Callable[[str, re.Match[str]], Span | None]] = {
            "email": self._email,
            "ipv6": self._ipv6,
            "ipv4": self._ipv4,
            "ssn": self._ssn,
            "card": self._card,
            "iban": self._iban,
        }

    @property
    def types(self) -> frozenset[str]:
        return self._types

    def scan(self, text: str) -> list[Finding]:
        candidates = self._candidates
        if candidates is None:
            return []
        windows = self._windows(text)
        if not windows:
            return []
        n = len(text)
        found: list[Finding] = []
        phone_runs: list[Window] = []
        pos = 0
        for lo, hi in windows:
            pos = max(pos, lo)
            while pos < hi:
                m = candidates.search(text, pos, hi)
                if m is None:
                    break
                start = m.start()
                if hi < n and m.end() + _EDGE > hi:
                    m = candidates.match(text, start)
                    if m is None:
                        pos = start + 1
                        continue
                name, span = self._resolve(text, m, phone_runs)
                if span is None:
                    pos = start + 1
                    continue
                found.append(Finding(KIND, _BRANCHES[name][0], span[0], span[1], span[2]))
                pos = span[1]
        if phone_runs:
            found = self._with_phones(text, found, phone_runs)
        return found

    def _windows(self, text: str) -> list[Window]:
        """The stretches of `text` a candidate can lie in, merged and in order."""
        digits, emails, colons = self._by_anchor
        spans: list[Window] = []
        if digits and any(d in text for d in _DIGITS):
            spans += [(m.start() - _BACK, m.end() + _AHEAD) for m in _DIGIT_RUN.finditer(text)]
        if emails and "@" in text:
            spans += [(m.start() - _EMAIL_BACK, m.end() + _EMAIL_AHEAD) for m in _AT.finditer(text)]
        if colons and ":" in text:
            spans += [(m.start() - _BACK, m.end() + _AHEAD) for m in _COLONS.finditer(text)]
        if not spans:
            return []
        spans.sort()
        merged: list[Window] = []
        n = len(text)
        for lo, hi in spans:
            lo, hi = max(lo, 0), min(hi, n)
            if merged and lo <= merged[-1][1]:
                if hi > merged[-1][1]:
                    merged[-1] = (merged[-1][0], hi)
            else:
                merged.append((lo, hi))
        return merged

    def _resolve(
        self, text: str, m: re.Match[str], phone_runs: list[Window]
    ) -> tuple[str, Span | None]:
        """The first branch, from the one that matched on, whose candidate here passes its check."""
        name = m.lastgroup
        assert name is not None
        span = self._accept(text, name, m, phone_runs)
        if span is not None:
            return name, span
        start = m.start()
        for later, pattern in self._branches_after(name):
            alt = pattern.match(text, start)
            if alt is not None:
                span = self._accept(text, later, alt, phone_runs)
                if span is not None:
                    return later, span
        return name, None

    def _branches_after(self, name: str) -> list[tuple[str, re.Pattern[str]]]:
        for i, (n, _) in enumerate(self._branches):
            if n == name:
                return self._branches[i + 1 :]
        return []

    def _accept(
        self, text: str, name: str, m: re.Match[str], phone_runs: list[Window]
    ) -> Span | None:
        if name == "phone":
            # Phones are resolved after the walk, by the matcher. Phone numbers
            # are written in groups of two or more digits, bar a country code or
            # trunk prefix or two: "1 2 3 4 5 6 7" is a list. Nor does one start
            # with a date, which log lines are full of.
            if not (_DATE.match(m.group()) or _listed(m.group())):
                phone_runs.append(m.span())
            return None
        return self._validators[name](text, m)

    # -- validators: a candidate's span and confidence, or None ----------------

    @staticmethod
    def _email(text: str, m: re.Match[str]) -> Span | None:
        value = m.group()
        local, _, domain = value.rpartition("@")
        if len(local) > 64 or len(value) > 254:
            return None
        if any(len(label) > 63 for label in domain.split(".")):
            return None
        return m.start(), m.end(), 1.0

    @staticmethod
    def _ipv6(text: str, m: re.Match[str]) -> Span | None:
        value = m.group()
        if not any(ch.isdigit() for ch in value):
            return None  # "::", "Abc::Def": punctuation and C++ names, not addresses
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return None
        return m.start(), m.end(), 1.0

    @staticmethod
    def _ipv4(text: str, m: re.Match[str]) -> Span | None:
        octets = m.group().split(".")
        if any(int(o) > 255 for o in octets):
            return None
        if _version_string(text, m.start(), m.end()):
            return None
        return m.start(), m.end(), 1.0

    @staticmethod
    def _ssn(text: str, m: re.Match[str]) -> Span | None:
        value = m.group()
        start, end = m.span()
        if len(value) == 9:
            window = text[max(0, start - _SSN_KEYWORD_WINDOW) : start]
            if _SSN_KEYWORD.search(window) is None:
                return None
            area, group, serial = value[:3], value[3:5], value[5:]
        else:
            area, group, serial = value[:3], value[4:6], value[7:]
        if not ssn_valid(area, group, serial):
            return None
        return start, end, 1.0

    @staticmethod
    def _card(text: str, m: re.Match[str]) -> Span | None:
        start = m.start()
        value = m.group()
        # Try the whole candidate, then without its trailing groups: a grouped
        # number is often followed by a CVV or another number on the same line.
        ends = [len(value)] + [s.start() for s in reversed(list(_CARD_SEPARATOR.finditer(value)))]
        for end in ends:
            digits = value[:end].replace(" ", "").replace("-", "")
            if len(digits) < 12:
                break
            if len(digits) <= 19 and luhn_valid(digits):
                if card_network_known(digits):
                    return start, start + end, 1.0
                # Outside every published IIN range, yet Luhn-valid, 13+ digits and
                # starting like a payment card (ISO/IEC 7812 industries 2-6): issuers and
                # test data outrun the tables, and a checksum match is rarely chance.
                if len(digits) >= 13 and digits[0] in "23456":
                    return start, start + end, _UNLISTED_CARD_CONFIDENCE
        return None
        return None

    @staticmethod
    def _iban(text: str, m: re.Match[str]) -> Span | None:
        start = m.start()
        value = m.group()
        length = IBAN_LENGTHS.get(value[:2].upper())
        if length is None:
            return None
        if " " not in value:
            if not (value.isupper() or value.islower()):
                return None
            if len(value) == length:
                return (start, m.end(), 1.0) if iban_valid(value) else None
            # A length the registry does not list but a valid mod-97 check: reported
            # at lower confidence (the checksum rarely holds by chance).
            if 15 <= len(value) <= 34 and iban_mod97(value):
                return start, m.end(), _UNLISTED_IBAN_CONFIDENCE
            return None
        # Spaced: groups of four; the country's length says where it ends.
        end = length + (length - 1) // 4
        if end > len(value) or (end < len(value) and value[end] != " "):
            return None
        return (start, start + end, 1.0) if iban_valid(value[:end].replace(" ", "")) else None

    # -- phones ----------------------------------------------------------------

    def _with_phones(self, text: str, found: list[Finding], runs: list[Window]) -> list[Finding]:
        taken = [(f.start, f.end) for f in found]
        phones: list[Span] = []
        i = 0
        while i < len(runs):
            # A sequence: the runs that overlap this one, as far as _PHONE_SPAN.
            a, end = runs[i]
            j = i + 1
            while j < len(runs) and runs[j][0] < end and runs[j][1] - a <= _PHONE_SPAN:
                end = max(end, runs[j][1])
                j += 1
            got = [] if _covered(a, end, taken) else self._phones_in(text, runs[i:j], end)
            phones += got
            reach = max((e for _, e, _ in got), default=end)
            i += 1
            while i < len(runs) and runs[i][0] < reach:
                i += 1
        if not phones:
            return found
        out = list(found)
        for s, e, confidence in phones:
            if not any(s < te and ts < e for ts, te in taken):
                out.append(Finding(KIND, "PHONE", s, e, confidence))
        out.sort(key=lambda f: f.start)
        return out

    def _phones_in(self, text: str, runs: list[Window], end: int) -> list[Span]:
        """Phones in one sequence of runs, by a few matcher calls at most.

        The matcher reads a digit group after a number as part of it, and
        then rejects the whole: `(415) 555-2671 10` has no phone for it. So
        it tries the sequence cut after whole space-separated groups, from
        each run's start in turn.
        """
        tries = _PHONE_TRIES
        for a, _ in runs:
            # Where the number could end: after the last digit before a space.
            cuts: list[tuple[int, int]] = []  # (end, digits before it)
            digits = 0
            for i in range(a, end):
                if text[i].isdigit():
                    digits += 1
                    if i + 1 == end or text[i + 1] == " ":
                        cuts.append((i + 1, digits))
            tried: set[int] = set()
            for most in _PHONE_LENGTHS:
                fits = [c for c, n in cuts if 7 <= n <= most]
                if not fits or fits[-1] in tried or not tries:
                    continue
                tries -= 1
                tried.add(fits[-1])
                got = self._match(text, a, fits[-1])
                if got:
                    return got
        return []

    def _match(self, text: str, a: int, b: int) -> list[Span]:
        """The phone numbers the matcher finds in text[a:b], from a's region on."""
        # A little context for the matcher's "not inside a word" check, but no
        # digit of a neighbouring number: it would be read as part of this one;
        # and the letter of a literal "\n" before the number is not a word.
        # Nothing after the number: a letter there makes the matcher reject it,
        # yet a stream may release the number's first part before the letter
        # arrives; digits there are the next number's.
        lo = max(0, a - _PHONE_BEFORE)
        for i in range(a - 1, lo - 1, -1):
            if text[i].isdigit():
                lo = i + 1
                break
            if text[i] == "\\":
                lo = i + 2 if text[i + 1 : i + 2] in ("n", "r", "t") else i + 1
                break
        window = text[lo:b]
        spans: set[Span] = set()
        for found in self._match_window(window):
            for start, length in found:
                s = lo + start
                e = s + length
                bare = text[s:e].isdigit()
                if a <= s and not (bare and e - s > _BARE_PHONE_DIGITS):
                    if text[s] not in "+(" and _technical_number(text, s, e):
                        continue
                    spans.add((s, e, _BARE_PHONE_CONFIDENCE if bare else 1.0))
            if any(s == a for s, _, _ in spans):
                break  # the first region that reads the number from its start wins
        return _disjoint(sorted(spans, key=lambda p: (p[0], -p[1])))

    def _match_window_uncached(self, window: str) -> tuple[tuple[tuple[int, int], ...], ...]:
        """Per region, (start, length) of each number the matcher reads in `window`.

        Cached per detector: a stream scans the same few characters of context
        again with each delta, and the matcher costs up to a few hundred µs a call.
        """
        out: list[tuple[tuple[int, int], ...]] = []
        for region in self._regions:
            matcher = phonenumbers.PhoneNumberMatcher(
                window, region, leniency=phonenumbers.Leniency.VALID
            )
            out.append(
                tuple(
                    (m.start, _number_end(m.raw_string, bool(m.number.extension))) for m in matcher
                )
            )
        return tuple(out)


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


def _number_end(raw: str, has_extension: bool) -> int:
    """Where a matched phone number ends, without its extension.

    By the time an extension (` ext. 12`, ` #12`) arrives in a stream, the
    number before it may already be released; so it is never part of the span.
    """
    if not has_extension:
        return len(raw)
    j = len(raw)
    while j > 0 and raw[j - 1].isdigit():
        j -= 1
    while j > 0 and not raw[j - 1].isdigit():
        j -= 1
    return j


def _listed(run: str) -> bool:
    """Whether the first ten digits of a run come in three or more one-digit groups."""
    singles = digits = 0
    for group in _DIGIT_RUN.findall(run):
        singles += len(group) == 1
        digits += len(group)
        if digits >= 10:
            break
    return singles > 2


def _disjoint(spans: list[Span]) -> list[Span]:
    out: list[Span] = []
    for span in spans:
        if not out or span[0] >= out[-1][1]:
            out.append(span)
    return out


def _covered(a: int, b: int, spans: list[tuple[int, int]]) -> bool:
    """Whether one accepted finding spans the whole run [a, b)."""
    return any(s <= a and b <= e for s, e in spans)
