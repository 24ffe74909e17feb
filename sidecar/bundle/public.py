"""What `/bundle` may show of a bundle's problems and warnings.

The admin listener is often reachable from outside the pod (probes, metrics
scrapers), so its bundle status must not hand out what the bundle keeps
secret: credentials or key digests echoed in a validation message, the names
of the environment variables or files that hold provider keys, webhook
headers, passwords in URLs. The full text still goes to the sidecar's log and
to `sidecar check`, where an operator reads it.
"""

from __future__ import annotations

import re

from sidecar.bundle.validate import Problem

WITHHELD = "(value withheld; `sidecar check` shows it)"

_URL = re.compile(r"""(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<rest>[^\s'"<>]*)""")
_PARENTHESISED = re.compile(r" \([^)]*\)")
_CREDENTIAL_SOURCE = re.compile(
    r"(environment variable|(?:cannot read )?API key file|cannot read) [^\s:,;]+"
)


def public_problem(problem: Problem | str) -> str:
    if isinstance(problem, str):
        return public_text(problem)
    if problem.without_value is not None:
        return public_text(f"{problem.path or '(root)'}: {problem.without_value} {WITHHELD}")
    return public_text(str(problem))


def public_warning(warning: str) -> str:
    if warning.startswith("redis.url"):
        # A URL the parser refused is quoted in its error: keep the field, drop the detail.
        warning = _PARENTHESISED.sub("", warning)
    return public_text(warning)


def public_text(text: str) -> str:
    """Mask URL credentials and query strings and where credentials are read from."""
    text = _URL.sub(_mask_url, text)
    return _CREDENTIAL_SOURCE.sub(lambda m: f"{m.group(1)} ***", text)


def _mask_url(match: re.Match[str]) -> str:
    rest = match["rest"]
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rpartition("@")[2]
    path = path.split("?", 1)[0] + ("?***" if "?" in path else "")
    if not slash and "?" in authority:
        authority = authority.split("?", 1)[0] + "?***"
    return f"{match['scheme']}{authority}{slash}{path}"
