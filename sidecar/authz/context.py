"""The facts about a call that Cedar policies may read, computed only when read.

Extracting texts for a token estimate or the tool list costs time; a cached
decision whose policies never read those fields should not pay for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from sidecar.call import Call
from sidecar.identity.principal import Principal
from sidecar.names import fold

_FIELDS: dict[str, Callable[[Call, Principal], Any]] = {
    "tenant": lambda call, p: p.tenant,
    "stream": lambda call, p: call.stream,
    "token_estimate": lambda call, p: call.token_estimate,
    "max_output_tokens": lambda call, p: call.max_output_tokens or 0,
    "tools": lambda call, p: frozenset(fold(name) for name in call.tool_names),
    "hour_utc": lambda call, p: time.gmtime().tm_hour,
    "weekday_utc": lambda call, p: time.gmtime().tm_wday + 1,
}


class CallContext(Mapping[str, Any]):
    __slots__ = ("_call", "_principal", "_values")

    def __init__(self, call: Call, principal: Principal) -> None:
        self._call = call
        self._principal = principal
        self._values: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            attributes = self._call.attributes  # what the surface says overrides the body's
            if key in attributes:
                value = self._values[key] = attributes[key]
            else:
                value = self._values[key] = _FIELDS[key](self._call, self._principal)
            return value

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELDS)

    def __len__(self) -> int:
        return len(_FIELDS)


def listing_context(principal: Principal) -> dict[str, Any]:
    """The context of a model listing: no request body, so nothing asked for."""
    now = time.gmtime()
    return {
        "tenant": principal.tenant,
        "stream": False,
        "token_estimate": 0,
        "max_output_tokens": 0,
        "tools": frozenset(),
        "hour_utc": now.tm_hour,
        "weekday_utc": now.tm_wday + 1,
    }
