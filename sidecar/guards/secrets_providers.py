"""The providers' published key formats, and the checks a format needs beyond a regex.

Provider keys are recognised by what each vendor documents (a prefix, an
alphabet, a length, a marker), so this list grows whenever a vendor adds or
changes a format. Keeping it apart from the scanning loop and the keyword
heuristics means such an update touches data and format checks only.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Final

from sidecar.guards.secrets_values import shannon_entropy

# Each branch starts at one literal character, so the engine only tries a
# match where that character occurs; the named group says which format it is.
_PROVIDERS = re.compile(
    r"-(?:"
    r"(?P<pem>----BEGIN (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----)"
    r"|(?<=sk-)(?P<anthropic>ant-(?:[a-z]{2,8}[0-9]{2}-)?[A-Za-z0-9_-]{32,})"
    r"|(?<=sk-)(?P<openai>[A-Za-z0-9_-]{20,})"
    r"|(?<=xox[abposre]-)(?P<slack>[A-Za-z0-9-]{20,})"
    r"|(?<=xapp-)(?P<slack_app>[A-Za-z0-9-]{20,})"
    r")"
    r"|_(?<=[kcpousrbfim]_)(?:"  # the last letter of a prefix first: `MY_CONST` fails fast
    r"(?<=sk_)(?P<stripe_sk>(?:live|test)_[A-Za-z0-9]{20,})"
    r"|(?<=rk_)(?P<stripe_rk>(?:live|test)_[A-Za-z0-9]{20,})"
    r"|(?<=whsec_)(?P<stripe_whsec>[A-Za-z0-9+/=]{32,})"
    r"|(?<=gh[pousr]_)(?P<github>[A-Za-z0-9]{36,})"
    r"|(?<=github_)(?P<github_pat>pat_[A-Za-z0-9_]{40,})"
    r"|(?<=hf_)(?P<hf>[A-Za-z0-9]{34,})"
    r"|(?<=api_)(?P<hf_org>org_[A-Za-z0-9]{34,})"
    r"|(?<=npm_)(?P<npm>[A-Za-z0-9]{36})(?![A-Za-z0-9])"
    r")"
    r"|A(?:"
    r"(?=[KSBC])(?P<aws>(?:KIA|SIA|BIA|CCA)[A-Z0-9]{16})(?![A-Za-z0-9])"
    r"|(?P<google>Iza[A-Za-z0-9_-]{35})(?![A-Za-z0-9_-])"
    r"|(?<=eyA)(?P<jwt_spaced>[A-Za-z0-9_-]*+(?:\.[A-Za-z0-9_-]*+)*+)"
    r")"
    r"|J(?<=eyJ)(?P<jwt>[A-Za-z0-9_-]*+(?:\.[A-Za-z0-9_-]*+)*+)"
    r"|\.(?<=hooks\.)(?P<slack_hook>slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/+-]{20,})"
)

# group -> (finding type, characters of the prefix before the group, confidence)
_GROUPS: Final[dict[str, tuple[str, int, float]]] = {
    "pem": ("PRIVATE_KEY", 1, 1.0),
    "anthropic": ("ANTHROPIC_KEY", 3, 1.0),
    "openai": ("OPENAI_KEY", 3, 1.0),
    "slack": ("SLACK_TOKEN", 5, 1.0),
    "slack_app": ("SLACK_TOKEN", 5, 1.0),
    "stripe_sk": ("STRIPE_KEY", 3, 1.0),
    "stripe_rk": ("STRIPE_KEY", 3, 1.0),
    "stripe_whsec": ("STRIPE_KEY", 6, 1.0),
    "github": ("GITHUB_TOKEN", 4, 1.0),
    "github_pat": ("GITHUB_TOKEN", 7, 1.0),
    "hf": ("HUGGINGFACE_TOKEN", 3, 1.0),
    "hf_org": ("HUGGINGFACE_TOKEN", 4, 1.0),
    "npm": ("NPM_TOKEN", 4, 1.0),
    "aws": ("AWS_ACCESS_KEY", 1, 1.0),
    "google": ("GOOGLE_API_KEY", 1, 1.0),
    "jwt_spaced": ("JWT", 3, 1.0),
    "jwt": ("JWT", 3, 1.0),
    "slack_hook": ("SLACK_TOKEN", 6, 1.0),
}
_STRIPE_TEST_CONFIDENCE = 0.6

_OPENAI_MARKER = "T3BlbkFJ"  # base64 of "OpenAI", inside every legacy and project key
# Project, service-account and admin keys; or the classic 48 letters and digits (no
# marker in the oldest keys), a form OpenAI-compatible providers copied.
_OPENAI_SHAPE = re.compile(r"(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}|[A-Za-z0-9]{32,}")

_PEM_END = re.compile(r"-----END (?:[A-Z0-9]{1,16} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PEM_MAX_BODY = 64 * 1024  # an 8192-bit RSA key is under 7 KB
# Without an END line: the base64 lines (and `Name: value` headers) that follow.
_PEM_LINES = re.compile(
    r"(?:[ \t]*(?:\r?\n|\\r\\n|\\n)[ \t]*(?:[A-Za-z-]+: [^\r\n\\]*|[A-Za-z0-9+/=]+))*"
)
_PEM_KEY_LINE = re.compile(r"[A-Za-z0-9+/=]{40,}")  # prose between the lines has spaces
_PEM_NOT_BASE64 = re.compile(r"\\[rn]|[^A-Za-z0-9+/=]")  # escaped newlines, spaces, headers

_PROVIDER_PREFIXES = (
    "sk-ant-", "sk-proj-", "sk-svcacct-", "sk-admin-", "sk_live_", "sk_test_", "rk_live_",
    "rk_test_", "whsec_", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "xoxa-",
    "xoxb-", "xoxe", "xoxo-", "xoxp-", "xoxr-", "xoxs-", "xapp-", "AIza", "AKIA", "ASIA",
    "hf_", "api_org_", "npm_", "eyJ",
)  # fmt: skip

_PROVIDER_MIN_ENTROPY = 2.5  # the random part of a real key; below it, `xxxx` or `0000`
_PROSE_BODY = re.compile(r"[a-z_-]+")  # `xoxb-tokens-are-for-bots`: words, not a key
_PEM_MIN_ENTROPY = 4.0  # base64 of DER is close to 6 bits a character


def _jwt_header(segment: str) -> dict[str, object] | None:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    return header if isinstance(header, dict) and "alg" in header else None


def _pem_end(text: str, header_end: int, end_at: int) -> int | None:
    """Where the private-key block whose header ends at `header_end` ends; None if empty.

    `end_at` is the offset of the END line before any other BEGIN line (-1: none).
    Without one, or too far away, the block is the key lines that follow the header.
    """
    if end_at != -1 and end_at - header_end <= _PEM_MAX_BODY:
        end_line = _PEM_END.match(text, end_at)
        if end_line is not None:
            body = text[header_end:end_at]
            return end_line.end() if _pem_body_ok(body) else None
    lines = _PEM_LINES.match(text, header_end)
    end = lines.end() if lines else header_end
    return end if _pem_body_ok(text[header_end:end]) else None


def _pem_body_ok(body: str) -> bool:
    """Key material, not a template: a long base64 line, and random-looking overall."""
    return bool(_PEM_KEY_LINE.search(body)) and (
        shannon_entropy(_PEM_NOT_BASE64.sub("", body)) >= _PEM_MIN_ENTROPY
    )


def _jwt_end(text: str, start: int, end: int) -> int | None:
    """The end of a JWS (3 segments) or JWE (5) whose header names an `alg`, else None."""
    segments = text[start:end].split(".")
    while len(segments) > 3 and not segments[-1]:  # full stops after the token
        segments.pop()
    if len(segments) not in (3, 5) or not segments[1]:
        return None
    header = _jwt_header(segments[0])
    if header is None:
        return None
    if len(segments) == 3 and not segments[2] and header.get("alg") != "none":
        return None
    return start + sum(map(len, segments)) + len(segments) - 1
