"""Property: PII streamed in random 1-8 character pieces is never released unredacted.

Texts mix filler words with entities the shipped PII and secrets detectors
find (emails, cards with and without separators, IBANs, SSNs, phones, IP
addresses, provider keys). The streamed result must contain none of the
entities and must equal what redacting the whole text at once gives.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.guards import redact
from sidecar.guards.finding import Finding
from sidecar.guards.pii import PiiDetector
from sidecar.guards.secrets import SecretsDetector
from sidecar.guards.stream import StreamScanner

PII = PiiDetector()
SECRETS = SecretsDetector()


def scan(text: str) -> list[Finding]:
    return PII.scan(text) + SECRETS.scan(text)


def redact_whole(text: str) -> str:
    return redact.apply(text, [(f, "placeholder") for f in scan(text)])


ENTITIES = [
    "jane.doe@example.com",
    "ops+alerts@mail.example.org",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "5500005555555559",
    "378282246310005",
    "DE89 3704 0044 0532 0130 00",
    "GB82WEST12345698765432",
    "123-45-6789",
    "(415) 555-2671",
    "+44 20 7946 0958",
    "192.168.10.24",
    "2001:db8:85a3::8a2e:370:7334",
    "AKIAIOSFODNN7EXAMPLF",
    "ghp_R8bX2mQ4tV7kL9pZ3sW6yN1cH5fJ0dG2aE4u",
]
FILLER = ["the", "order", "is", "ready,", "call", "me", "at", "or", "mail", "thanks.", "\n", "-"]


@st.composite
def texts_with_entities(draw: st.DrawFn) -> tuple[str, list[str]]:
    parts: list[str] = []
    used: list[str] = []
    for _ in range(draw(st.integers(1, 6))):
        parts += draw(st.lists(st.sampled_from(FILLER), max_size=6))
        entity = draw(st.sampled_from(ENTITIES))
        used.append(entity)
        parts.append(entity)
    parts += draw(st.lists(st.sampled_from(FILLER), max_size=4))
    return " ".join(parts), used


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample=texts_with_entities(), sizes=st.lists(st.integers(1, 8), min_size=1, max_size=40))
def test_streamed_pii_is_never_released_unredacted(
    sample: tuple[str, list[str]], sizes: list[int]
) -> None:
    text, entities = sample
    scanner = StreamScanner(scan)
    out: list[str] = []
    pos = 0
    i = 0
    while pos < len(text):
        size = sizes[i % len(sizes)]
        i += 1
        release = scanner.feed(text[pos : pos + size])
        pos += size
        out.append(redact.apply(release.text, [(f, "placeholder") for f in release.findings]))
    release = scanner.flush()
    out.append(redact.apply(release.text, [(f, "placeholder") for f in release.findings]))
    streamed = "".join(out)
    whole = redact_whole(text)
    for entity in entities:
        if entity not in whole:  # the detectors find it in the whole text...
            assert entity not in streamed, entity  # ...so the stream must never release it
    assert streamed == whole
