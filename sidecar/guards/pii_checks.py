"""The checks a PII candidate's format defines, and the registries they read.

A shape alone flags order numbers and ids; these checksums and issuer tables
are what each format's owner publishes (ISO 13616, ISO/IEC 7812, the SSA), so
they change with those registries and not with how candidates are found.
They are kept apart from the detector so that updating a table never means
reading the scanning logic, and tests can check them on their own.
"""

from __future__ import annotations

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

_SSN_INVALID = frozenset({"078051120", "219099999"})  # published in ads, voided by the SSA


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


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """The SSA never issues area 000, 666 or 900-999, group 00 or serial 0000."""
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return area + group + serial not in _SSN_INVALID
