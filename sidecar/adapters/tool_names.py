"""How a tool offered to a provider is named for policy, whatever field offers it.

Policy names a tool by what the model calls: a function or custom tool by its
name, a provider-hosted tool by its kind without the version its type carries
(OpenAI `web_search_preview_2025_03_11` and Anthropic `web_search_20250305` are
both `web_search`), a remote MCP server's tools by the names the server offers.
A server offered without a list of its tools may offer any tool, so it counts
as the tool `*`, which only a rule allowing every tool name permits.
"""

from __future__ import annotations

import re
from typing import Any

ANY_TOOL = "*"

_VERSION = re.compile(r"_(?:\d{8}|\d{4}_\d{2}_\d{2})$")
_ALIASES = {"computer_use": "computer"}


def hosted_name(kind: str) -> str:
    """The policy name of a hosted tool from its wire type."""
    name = _VERSION.sub("", kind).removesuffix("_preview")
    return _ALIASES.get(name, name)


def str_list(value: object) -> list[str] | None:
    """A list of names, or None when `value` is not a list."""
    if not isinstance(value, list):
        return None
    return [v for v in value if isinstance(v, str)]


def dicts(value: object) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
