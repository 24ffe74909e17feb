"""What refusing repeated and case-colliding keys costs per request body.

orjson has no duplicate-key hook, so the request-body parse checks clean
bodies without a second parse: the body must equal orjson's serialization of
the parsed object (true of what the OpenAI and Anthropic SDKs send), plus a
walk over the parsed objects' keys for case collisions. Other layouts
(pretty-printed, ASCII-escaped) take the exact path, the standard library's
decoder with a pair hook. This prints, for realistic chat requests of about
1 KB, 16 KB and 1 MB, the plain `orjson.loads`, the full check on an SDK-shaped
body, and the full check on the same body pretty-printed.

Run: .venv/bin/python bench/strict_json_bench.py [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.adapters.strict_json import load_object

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "that",
    "for",
    "it",
    "as",
    "with",
    "was",
    "on",
    "be",
    "by",
    "this",
    "are",
    "or",
    "from",
    "at",
    "which",
    "but",
    "not",
    "have",
    "an",
    "they",
    "you",
    "were",
    "their",
    "one",
    "all",
    "we",
    "can",
    "her",
    "has",
    "there",
    "been",
    "if",
    "more",
    "when",
    "will",
    "would",
    "who",
    "so",
    "no",
    "Review",
    "module",
    "function",
    "returns",
    "value",
    "error",
    "config:",
    "see",
    "https://example.com/a",
]


def prose(rng: random.Random, size: int) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        words.append(word)
        length += len(word) + 1
    return " ".join(words) + "."


def chat_request(size: int) -> dict[str, Any]:
    """An agent's chat request: system prompt, turns with tool calls and tool results."""
    rng = random.Random(size)
    tools = [
        {
            "type": "function",
            "function": {
                "name": name,
                "description": prose(rng, 120),
                "parameters": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "maxLines": {"type": "integer"}},
                    "required": ["path"],
                },
            },
        }
        for name in ("read_file", "search_code", "run_tests")
    ]
    messages: list[dict[str, Any]] = [{"role": "system", "content": prose(rng, 600)}]
    body: dict[str, Any] = {"model": "gpt-4o", "messages": messages, "temperature": 0.2}
    if size >= 4000:
        body["tools"] = tools
    turn = 0
    while len(orjson.dumps(body)) < size:
        if size < 4000:
            messages.append({"role": "user", "content": prose(rng, 200)})
            continue
        call_id = f"call_{turn:04d}"
        result = "\n".join(
            f'    line_{i} = {{"key": "{i}"}}  # {prose(rng, 60)}' for i in range(40)
        )
        messages += [
            {"role": "user", "content": prose(rng, 300)},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {
                            "name": "read_file",
                            "arguments": json.dumps({"path": f"src/mod_{turn}.py"}),
                        },
                    }
                ],
            },
            {"role": "tool", "tool_call_id": call_id, "content": result},
            {"role": "assistant", "content": prose(rng, 400)},
        ]
        turn += 1
    return body


def per_call_us(fn: Callable[[bytes], object], raw: bytes, seconds: float) -> float:
    """The fastest of 7 batches' mean time per call: on a shared machine the other
    batches measure the neighbours."""
    fn(raw)
    once = time.perf_counter()
    fn(raw)
    batch = max(1, int(seconds / 7 / max(time.perf_counter() - once, 1e-7)))
    results = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(batch):
            fn(raw)
        results.append((time.perf_counter() - start) / batch * 1e6)
    return min(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="per measurement")
    args = parser.parse_args()
    print(
        "| body | bytes | keys | orjson.loads µs | checked, SDK layout µs | added | "
        "checked, pretty-printed µs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, size in (("1 KB", 1_000), ("16 KB", 16_000), ("1 MB", 1_000_000)):
        obj = chat_request(size)
        sdk = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        pretty = json.dumps(obj, indent=2).encode()
        assert orjson.dumps(orjson.loads(sdk)) == sdk, "the SDK layout must take the fast path"
        keys = sdk.count(b'":')
        base = per_call_us(orjson.loads, sdk, args.seconds)
        fast = per_call_us(load_object, sdk, args.seconds)
        slow = per_call_us(load_object, pretty, args.seconds)
        print(
            f"| {label} | {len(sdk):,} | {keys:,} | {base:.1f} | {fast:.1f} | "
            f"+{(fast - base) / base * 100:.0f} % ({fast - base:.1f} µs) | {slow:.1f} |"
        )


if __name__ == "__main__":
    main()
