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
from sidecar.guards.pii_checks import (
    IBAN_LENGTHS,
    card_network_known,
    iban_mod97,
    iban_valid,
    luhn_valid,
    ssn_valid,
)
from sidecar.guards.pii_context import _technical_number, _version_string
from sidecar.guards.pii_shapes import _BRANCHES

__all__ = [
    "EXTRA_HOLD_CHARS",
    "IBAN_LENGTHS",
    "KIND",
    "PiiDetector",
    "card_network_known",
    "iban_valid",
    "luhn_valid",
    "ssn_valid",
]

KIND = "pii"
# Characters a finding can span beyond those the stream scanner already keeps
# back at the end of a chunk: none, by construction (see above).
EXTRA_HOLD_CHARS = ""


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
_UNLISTED_CARD_CONFIDENCE = 0.9
_UNLISTED_IBAN_CONFIDENCE = 0.8

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
