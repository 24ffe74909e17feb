"""The shapes that propose PII candidates, one regular expression per type.

Each shape is tuned on its own against linear time and the stream scanner's
hold-back rules, while the detector only combines them into one alternation
and runs each candidate's check; keeping them apart lets a shape be read and
reviewed without the scanning machinery around it.
"""

from __future__ import annotations


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
