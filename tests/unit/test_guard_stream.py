"""The stream scanner's promise: nothing is released that a whole-text scan would redact.

These tests use small local detectors so the scanner's hold-back rules are
checked on their own; tests/unit/test_guard_stream_property.py runs the same
property with the shipped PII and secrets detectors.
"""

from __future__ import annotations

import re

from sidecar.guards import redact
from sidecar.guards.finding import Finding
from sidecar.guards.stream import WORD_LIMIT, StreamScanner, hold_from

EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
PHRASE = re.compile(r"project falcon", re.IGNORECASE)


def scan(text: str) -> list[Finding]:
    found = [Finding("pii", "EMAIL", m.start(), m.end()) for m in EMAIL.finditer(text)]
    found += [Finding("pii", "CREDIT_CARD", m.start(), m.end()) for m in CARD.finditer(text)]
    found += [Finding("deny", "PHRASE", m.start(), m.end()) for m in PHRASE.finditer(text)]
    return found


def redact_all(text: str) -> str:
    return redact.apply(text, [(f, "placeholder") for f in scan(text)])


def stream(text: str, sizes: list[int], *, extra_hold: int = 0) -> tuple[str, list[str]]:
    scanner = StreamScanner(scan, extra_hold=extra_hold)
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
    return "".join(out), out


def test_an_email_split_one_character_at_a_time_is_never_released() -> None:
    text = "Write to jane.doe@example.com today, or call."
    joined, pieces = stream(text, [1])
    assert joined == redact_all(text) == "Write to [EMAIL] today, or call."
    for i in range(1, len(pieces)):
        assert "jane" not in "".join(pieces[:i]) or "[EMAIL]" in "".join(pieces[:i])


def test_a_spaced_card_number_split_anywhere_is_redacted() -> None:
    text = "card: 4111 1111 1111 1111 thanks"
    for size in range(1, 9):
        joined, _ = stream(text, [size])
        assert joined == "card: [CREDIT_CARD] thanks", size


def test_plain_prose_is_released_promptly() -> None:
    scanner = StreamScanner(scan)
    release = scanner.feed("Hello there, how are you doing today? ")
    # Everything up to the last word boundary can go; at most the last word is held.
    assert release.text == "Hello there, how are you doing today? "
    assert scanner.held == 0
    release = scanner.feed("Fine")
    assert release.text == ""
    assert scanner.held == 4


def test_a_pem_block_is_held_until_its_end_line() -> None:
    scanner = StreamScanner(scan)
    head = "key:\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
    release = scanner.feed(head)
    assert "BEGIN" not in release.text
    release = scanner.feed("-----END PRIVATE KEY-----\n")
    assert "BEGIN PRIVATE KEY" in release.text


def test_extra_hold_covers_a_phrase_split_by_spaces() -> None:
    text = "the project falcon launch is secret"
    for size in range(1, 9):
        joined, _ = stream(text, [size], extra_hold=len("project falcon") - 1)
        assert joined == "the [PHRASE] launch is secret", size


def test_without_extra_hold_a_multi_word_phrase_can_leak() -> None:
    # Shows the reason extra_hold exists: the phrase is not word-shaped.
    joined, _ = stream("the project falcon launch", [3])
    assert "project" in joined


def test_hold_from_is_linear_on_a_long_run() -> None:
    text = "x" * 200_000
    assert hold_from(text, 0, 0, 16 * 1024) == len(text) - WORD_LIMIT


def test_findings_are_relative_to_the_released_text() -> None:
    scanner = StreamScanner(scan)
    scanner.feed("a" * 100 + " ")
    release = scanner.feed("mail bob@example.org now ")
    assert [release.text[f.start : f.end] for f in release.findings] == ["bob@example.org"]


def test_tokens_are_restored_across_pieces() -> None:
    vault = redact.Vault()
    token = vault.token_for("EMAIL", "ann@example.com")
    restorer = redact.StreamRestorer(vault)
    text = f"Reply to {token} soon [not a token"
    out = "".join(restorer.feed(text[i : i + 2]) for i in range(0, len(text), 2))
    out += restorer.flush()
    assert out == "Reply to ann@example.com soon [not a token"


def test_redaction_operators() -> None:
    text = "card 4111111111111111 mail a@b.io"
    findings = scan(text)
    assert redact.apply(text, [(f, "mask") for f in findings]) == (
        "card ************1111 mail ******"
    )
    hashed = redact.apply(text, [(f, "hash") for f in findings], salt=b"s")
    assert re.fullmatch(r"card \[CREDIT_CARD:[0-9a-f]{8}\] mail \[EMAIL:[0-9a-f]{8}\]", hashed)
    vault = redact.Vault()
    tokenized = redact.apply(text, [(f, "tokenize") for f in findings], vault=vault)
    assert tokenized == "card [CREDIT_CARD_1] mail [EMAIL_1]"
    assert vault.restore(tokenized) == text


def test_every_detector_s_extra_characters_are_held_back() -> None:
    """A detector whose entities can hold a character outside the stream's run alphabet
    declares it; the scanner must keep such a character back like a letter."""
    from sidecar.guards import egress, secrets

    for module in (egress, secrets):
        for ch in module.EXTRA_HOLD_CHARS:
            assert hold_from(f"value x{ch}", 0, 0, 1024) < len("value x"), (module, ch)
