"""Adversarial tests of the guards against docs/bundle.md, through the real SDKs.

Why this file exists: the happy-path guard tests use friendly chunking. Here a
real loopback upstream streams exactly the bytes a test chooses -- entities cut
at every delta boundary, SSE events cut mid-JSON across TCP writes, CRLF
framing, streams that end early -- and the assertions are the documented
promises: no raw entity ever reaches the agent's SDK, no text is lost, blocks
raise in the SDK, and the forwarded request changes only where a guard says.
Tests marked xfail(strict=True) document bugs found this way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web

from integration.conftest import MakeSidecar, Running

# --- values the guards must catch --------------------------------------------------------

CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@example.com"
PHONE = "(415) 555-2671"
SSN = "123-45-6789"
IBAN = "DE89 3704 0044 0532 0130 00"
IPV4 = "203.0.113.7"
IPV6 = "2001:db8::8a2e:370:7334"
AWS = "AKIAQ3EGTZ7WLMX4RKPN"
EMP = "E-123456"

# (value, what a placeholder redaction turns it into)
ENTITIES: list[tuple[str, str]] = [
    (CARD, "[CREDIT_CARD]"),
    (EMAIL, "[EMAIL]"),
    (PHONE, "[PHONE]"),
    (SSN, "[US_SSN]"),
    (IBAN, "[IBAN]"),
    (IPV4, "[IP_ADDRESS]"),
    (IPV6, "[IP_ADDRESS]"),
    (AWS, "[AWS_ACCESS_KEY]"),
    (EMP, "[EMPLOYEE_ID]"),
]

EVERYWHERE = ["assistant", "tool_call"]  # redact guards read tool-call arguments only if told
REDACT_OUTPUT: dict[str, Any] = {
    "output": [
        {"id": "pii-out", "kind": "pii", "action": "redact", "channels": EVERYWHERE},
        {"id": "secrets-out", "kind": "secrets", "action": "redact", "channels": EVERYWHERE},
        {
            "id": "emp-out",
            "kind": "pattern",
            "action": "redact",
            "channels": EVERYWHERE,
            "patterns": [{"type": "EMPLOYEE_ID", "regex": r"\bE-\d{6}\b", "max_length": 8}],
        },
    ]
}
BLOCK_OUTPUT: dict[str, Any] = {"output": [{"id": "pii-block", "kind": "pii", "action": "block"}]}

# --- a scripted upstream ------------------------------------------------------------------

Step = bytes | float | asyncio.Event
_cases = itertools.count(1)


def new_case() -> str:
    """A marker put in the prompt, so the upstream knows which script answers it."""
    return f"case-{next(_cases):06d}"


@dataclass
class Script:
    steps: list[Step]
    content_type: str = "text/event-stream"
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class Upstream:
    """A real aiohttp provider on loopback that writes exactly the bytes a test scripted.

    Each `bytes` step is one write (one HTTP chunk), a `float` step sleeps, an
    `asyncio.Event` step waits for the test. The script is chosen by the
    `case-N` marker found in the request body.
    """

    def __init__(self) -> None:
        self.scripts: dict[str, Script] = {}
        self.received: list[tuple[str, bytes]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.2)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        for script in self.scripts.values():
            for step in script.steps:
                if isinstance(step, asyncio.Event):
                    step.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def script(self, case: str, steps: Sequence[Step], content_type: str = "") -> Script:
        s = Script(list(steps), content_type or "text/event-stream")
        self.scripts[case] = s
        return s

    def reply_json(self, case: str, body: dict[str, Any], content_type: str = "") -> None:
        """Answer the case with one JSON document (a plain, non-streamed reply)."""
        self.script(case, [json.dumps(body).encode()], content_type or "application/json")

    def body_for(self, case: str) -> bytes:
        found = [b for _, b in self.received if case.encode() in b]
        assert len(found) == 1, f"{case}: upstream got {len(found)} requests"
        return found[0]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.received.append((request.path, body))
        match = re.search(rb"case-\d{6}", body)
        script = self.scripts.get(match.group().decode()) if match else None
        if script is None:
            return web.json_response({"error": {"message": "no script"}}, status=500)
        resp = web.StreamResponse(status=200, headers={"Content-Type": script.content_type})
        await resp.prepare(request)
        for step in script.steps:
            if isinstance(step, bytes):
                await resp.write(step)
            elif isinstance(step, float):
                await asyncio.sleep(step)
            else:
                await step.wait()
        script.finished.set()
        await resp.write_eof()
        return resp


@pytest.fixture
async def up() -> AsyncIterator[Upstream]:
    upstream = Upstream()
    await upstream.start()
    yield upstream
    await upstream.stop()


def bundle(up: Upstream, guards: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "sidecar/v1",
        "revision": "adv1",
        "upstreams": {
            "script": {"base_url": up.url, "api_key": {"env": "FAKE_UPSTREAM_KEY"}},
            "claude": {
                "provider": "anthropic",
                "base_url": up.url,
                "api_key": {"env": "FAKE_UPSTREAM_KEY"},
            },
            "mock": {"builtin": "mock", "models": ["mock-echo"]},
        },
        "routes": [
            {"name": "mock", "match": {"model": "mock-*"}, "upstream": "mock"},
            {"name": "claude", "match": {"model": "claude-*"}, "upstream": "claude"},
            {"name": "gpt", "match": {"model": "gpt-*"}, "upstream": "script"},
        ],
        "roles": {"agent": [{"actions": ["*"]}], "analyst": [{"actions": ["*"]}]},
        "guards": guards,
    }
    doc.update(extra)
    return doc


def oai(sc: Running, key: str = "sk-agent") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sc.base + "/v1", api_key=key, max_retries=0)


def claude(sc: Running, key: str = "sk-agent") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sc.base, api_key=key, max_retries=0)


# --- wire shapes --------------------------------------------------------------------------


def sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + json.dumps(data).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
_CHAT = {"id": "chatcmpl-adv", "object": "chat.completion.chunk", "created": 1, "model": "gpt-x"}
_CMPL = {"id": "cmpl-adv", "object": "text_completion", "created": 1, "model": "gpt-x"}


def chat_chunk(*choices: dict[str, Any]) -> bytes:
    return sse({**_CHAT, "choices": list(choices)})


def delta(content: str | None = None, index: int = 0, finish: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {} if content is None else {"content": content}
    return {"index": index, "delta": d, "finish_reason": finish}


def chat_events(
    pieces: Sequence[str], *, finish: bool = True, done: bool = True, index: int = 0
) -> list[bytes]:
    out = [chat_chunk({"index": index, "delta": {"role": "assistant", "content": ""}})]
    out += [chat_chunk(delta(p, index)) for p in pieces]
    if finish:
        out.append(chat_chunk(delta(None, index, "stop")))
    if done:
        out.append(DONE)
    return out


def completion_events(pieces: Sequence[str], *, finish: bool = True) -> list[bytes]:
    out = [
        sse({**_CMPL, "choices": [{"index": 0, "text": p, "finish_reason": None}]}) for p in pieces
    ]
    if finish:
        out.append(sse({**_CMPL, "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}))
    return [*out, DONE]


def chat_tool_events(pieces: Sequence[str], name: str = "send") -> list[bytes]:
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": name}}
    out = [chat_chunk({"index": 0, "delta": {"role": "assistant", "tool_calls": [head]}})]
    out += [
        chat_chunk(
            {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": p}}]}}
        )
        for p in pieces
    ]
    return [*out, chat_chunk(delta(None, 0, "tool_calls")), DONE]


def _response(status: str, output: list[Any]) -> dict[str, Any]:
    return {
        "id": "resp_adv",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "gpt-x",
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": None,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "text": {"format": {"type": "text"}},
    }


def _message(parts: Sequence[str], status: str = "completed") -> dict[str, Any]:
    return {
        "id": "msg_adv",
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": t, "annotations": []} for t in parts],
    }


def responses_events(
    parts: Sequence[Sequence[str]],
    *,
    dones: bool = True,
    completed: bool = True,
    logprobs: bool = False,
) -> list[bytes]:
    """A Responses stream of one message whose content parts are the joined pieces.

    The `*.done`, `output_item.done` and `response.completed` events carry the
    full raw text, as OpenAI sends it.
    """
    seq = itertools.count()

    def ev(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **payload}, kind)

    full = ["".join(p) for p in parts]
    out = [
        ev("response.created", response=_response("in_progress", [])),
        ev("response.output_item.added", output_index=0, item=_message([], "in_progress")),
    ]
    for j, pieces in enumerate(parts):
        where = {"item_id": "msg_adv", "output_index": 0, "content_index": j}
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(ev("response.content_part.added", **where, part=part))
        for p in pieces:
            lp = [{"token": p, "logprob": -0.1, "top_logprobs": []}] if logprobs else []
            out.append(ev("response.output_text.delta", **where, delta=p, logprobs=lp))
        if dones:
            lp = [{"token": full[j], "logprob": -0.1, "top_logprobs": []}] if logprobs else []
            out.append(ev("response.output_text.done", **where, text=full[j], logprobs=lp))
            out.append(ev("response.content_part.done", **where, part={**part, "text": full[j]}))
    if dones:
        out.append(ev("response.output_item.done", output_index=0, item=_message(full)))
    if completed:
        out.append(ev("response.completed", response=_response("completed", [_message(full)])))
    return out


def anthropic_events(
    blocks: Sequence[tuple[str, Sequence[str]]], *, stops: bool = True
) -> list[bytes]:
    """A Messages stream; each block is ("text", pieces) or ("tool:NAME", json pieces)."""
    start: dict[str, Any] = {
        "id": "msg_adv",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 1},
    }
    out = [sse({"type": "message_start", "message": start}, "message_start")]
    for i, (kind, pieces) in enumerate(blocks):
        if kind == "text":
            block: dict[str, Any] = {"type": "text", "text": ""}
            field_, dtype = "text", "text_delta"
        else:
            block = {"type": "tool_use", "id": f"toolu_{i}", "name": kind[5:], "input": {}}
            field_, dtype = "partial_json", "input_json_delta"
        out.append(
            sse(
                {"type": "content_block_start", "index": i, "content_block": block},
                "content_block_start",
            )
        )
        out.append(sse({"type": "ping"}, "ping"))
        for p in pieces:
            d = {"type": "content_block_delta", "index": i, "delta": {"type": dtype, field_: p}}
            out.append(sse(d, "content_block_delta"))
        if stops:
            out.append(sse({"type": "content_block_stop", "index": i}, "content_block_stop"))
    if stops:
        end = {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": 9},
        }
        out.append(sse(end, "message_delta"))
        out.append(sse({"type": "message_stop"}, "message_stop"))
    return out


# --- drivers: one streamed call per API, returning what the agent's SDK assembled ----------


@dataclass
class Seen:
    text: str  # the streamed text deltas, joined
    everything: str  # every event the SDK produced, dumped: for leak checks
    copies: list[str] = field(default_factory=list)  # full-text copies (Responses, final msg)
    kinds: list[str] = field(default_factory=list)  # event types, where the API has them


async def drive_chat(client: openai.AsyncOpenAI, prompt: str) -> Seen:
    stream = await client.chat.completions.create(
        model="gpt-x", messages=[{"role": "user", "content": prompt}], stream=True
    )
    text: list[str] = []
    dumps: list[str] = []
    async for chunk in stream:
        dumps.append(chunk.model_dump_json())
        for choice in chunk.choices:
            if choice.delta.content:
                text.append(choice.delta.content)
    return Seen("".join(text), "\n".join(dumps))


async def drive_completion(client: openai.AsyncOpenAI, prompt: str) -> Seen:
    stream = await client.completions.create(model="gpt-x", prompt=prompt, stream=True)
    text: list[str] = []
    dumps: list[str] = []
    async for chunk in stream:
        dumps.append(chunk.model_dump_json())
        for choice in chunk.choices:
            text.append(choice.text or "")
    return Seen("".join(text), "\n".join(dumps))


async def drive_responses(client: openai.AsyncOpenAI, prompt: str) -> Seen:
    stream = await client.responses.create(model="gpt-x", input=prompt, stream=True)
    text: list[str] = []
    dumps: list[str] = []
    copies: list[str] = []
    kinds: list[str] = []
    async for event in stream:
        dumps.append(event.model_dump_json())
        ev: Any = event
        kinds.append(ev.type)
        if ev.type == "response.output_text.delta":
            text.append(ev.delta)
        elif ev.type == "response.output_text.done":
            copies.append(ev.text)
        elif ev.type == "response.content_part.done":
            copies.append(ev.part.text)
        elif ev.type == "response.output_item.done":
            copies.append("".join(c.text for c in ev.item.content))
        elif ev.type == "response.completed":
            copies.append(ev.response.output_text)
    return Seen("".join(text), "\n".join(dumps), copies, kinds)


async def drive_anthropic(client: anthropic.AsyncAnthropic, prompt: str) -> Seen:
    stream = await client.messages.create(
        model="claude-x",
        max_tokens=50,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
    )
    text: list[str] = []
    dumps: list[str] = []
    kinds: list[str] = []
    async for event in stream:
        dumps.append(event.model_dump_json())
        ev: Any = event
        kinds.append(ev.type)
        if ev.type == "content_block_delta" and ev.delta.type == "text_delta":
            text.append(ev.delta.text)
    return Seen("".join(text), "\n".join(dumps), kinds=kinds)


Api = str
APIS: list[Api] = ["chat", "completions", "responses", "anthropic"]


def events_for(api: Api, pieces: Sequence[str]) -> list[bytes]:
    if api == "chat":
        return chat_events(pieces)
    if api == "completions":
        return completion_events(pieces)
    if api == "responses":
        return responses_events([pieces])
    return anthropic_events([("text", pieces)])


@dataclass
class Clients:
    openai: openai.AsyncOpenAI
    anthropic: anthropic.AsyncAnthropic

    async def drive(self, api: Api, prompt: str) -> Seen:
        """One streamed call whose user text is `prompt` (which holds the case marker)."""
        if api == "anthropic":
            return await drive_anthropic(self.anthropic, prompt)
        if api == "chat":
            return await drive_chat(self.openai, prompt)
        if api == "completions":
            return await drive_completion(self.openai, prompt)
        return await drive_responses(self.openai, prompt)


@contextlib.asynccontextmanager
async def clients(sc: Running) -> AsyncIterator[Clients]:
    async with oai(sc) as o, claude(sc) as a:
        yield Clients(o, a)


def splits(text: str) -> list[list[str]]:
    """Every two-piece cut of `text`, and one delta per character."""
    return [[text[:i], text[i:]] for i in range(1, len(text))] + [list(text)]


async def gather_limited(jobs: Sequence[Callable[[], Awaitable[None]]], limit: int = 16) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[None]]) -> None:
        async with sem:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


# =========================================================================================
# 1. Entities split across every delta boundary, in every streaming API
# =========================================================================================


async def run_cases(
    cl: Clients,
    up: Upstream,
    api: Api,
    cases: Sequence[tuple[list[bytes], str, Sequence[str]]],
) -> list[str]:
    """Stream each (events, wanted text, raw values) case; list every way one went wrong."""
    failures: list[str] = []

    def job(events: list[bytes], want: str, raws: Sequence[str]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            case = new_case()
            up.script(case, events)
            seen = await cl.drive(api, case)
            if seen.text != want:
                failures.append(f"{case}: got {seen.text!r}, want {want!r}")
            for raw in raws:
                if raw in seen.everything:
                    failures.append(f"{case}: raw {raw!r} in an event the SDK produced")
            for copy in seen.copies:
                if copy != want:
                    failures.append(f"{case}: full-text copy {copy!r}, want {want!r}")

        return run

    await gather_limited([job(*c) for c in cases])
    return failures


@pytest.mark.parametrize("api", APIS)
async def test_an_entity_split_at_any_delta_boundary_never_reaches_the_sdk_raw(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    cases = []
    # Legacy completions share the chat editor: a few shapes suffice there.
    entities = ENTITIES if api != "completions" else [ENTITIES[0], ENTITIES[4], ENTITIES[7]]
    for value, redacted in entities:
        text = f"to {value}, ok"
        want = text.replace(value, redacted)
        cases += [(events_for(api, pieces), want, [value]) for pieces in splits(text)]
    async with clients(sc) as cl:
        failures = await run_cases(cl, up, api, cases)
    assert not failures, "\n".join(failures[:10])


# --- tool-call arguments ------------------------------------------------------------------

ARGS = json.dumps({"to": EMAIL, "card": CARD})
ARGS_REDACTED = json.dumps({"to": "[EMAIL]", "card": "[CREDIT_CARD]"})


def responses_tool_events(pieces: Sequence[str], name: str = "send") -> list[bytes]:
    seq = itertools.count()

    def ev(kind: str, **payload: Any) -> bytes:
        return sse({"type": kind, "sequence_number": next(seq), **payload}, kind)

    item = {
        "id": "fc_1",
        "type": "function_call",
        "call_id": "call_1",
        "name": name,
        "arguments": "",
        "status": "in_progress",
    }
    full = {**item, "arguments": "".join(pieces), "status": "completed"}
    where = {"item_id": "fc_1", "output_index": 0}
    return [
        ev("response.created", response=_response("in_progress", [])),
        ev("response.output_item.added", output_index=0, item=item),
        *[ev("response.function_call_arguments.delta", **where, delta=p) for p in pieces],
        ev("response.function_call_arguments.done", **where, arguments=full["arguments"]),
        ev("response.output_item.done", output_index=0, item=full),
        ev("response.completed", response=_response("completed", [full])),
    ]


async def tool_args_seen(cl: Clients, api: Api, case: str) -> tuple[str, str, list[str]]:
    """(the streamed argument deltas joined, every event dumped, the full copies)."""
    tools_oai: Any = [{"type": "function", "function": {"name": "send", "parameters": {}}}]
    parts: list[str] = []
    dumps: list[str] = []
    copies: list[str] = []
    if api == "chat":
        stream = await cl.openai.chat.completions.create(
            model="gpt-x",
            messages=[{"role": "user", "content": case}],
            tools=tools_oai,
            stream=True,
        )
        async for chunk in stream:
            dumps.append(chunk.model_dump_json())
            for choice in chunk.choices:
                for tc in choice.delta.tool_calls or ():
                    if tc.function and tc.function.arguments:
                        parts.append(tc.function.arguments)
    elif api == "responses":
        rstream = await cl.openai.responses.create(
            model="gpt-x",
            input=case,
            tools=[{"type": "function", "name": "send", "parameters": {}, "strict": False}],
            stream=True,
        )
        async for event in rstream:
            dumps.append(event.model_dump_json())
            ev: Any = event
            if ev.type == "response.function_call_arguments.delta":
                parts.append(ev.delta)
            elif ev.type == "response.function_call_arguments.done":
                copies.append(ev.arguments)
            elif ev.type == "response.output_item.done":
                copies.append(ev.item.arguments)
            elif ev.type == "response.completed":
                copies.append(ev.response.output[0].arguments)
    else:
        async with cl.anthropic.messages.stream(
            model="claude-x",
            max_tokens=50,
            messages=[{"role": "user", "content": case}],
            tools=[{"name": "send", "input_schema": {"type": "object"}}],
        ) as astream:
            async for aev in astream:
                dumps.append(aev.model_dump_json())
                if aev.type == "content_block_delta" and aev.delta.type == "input_json_delta":
                    parts.append(aev.delta.partial_json)
            final = await astream.get_final_message()
        block: Any = final.content[0]
        copies.append(json.dumps(block.input))
    return "".join(parts), "\n".join(dumps), copies


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
async def test_tool_call_arguments_split_at_any_boundary_are_redacted(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    failures: list[str] = []

    def job(pieces: list[str]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            case = new_case()
            if api == "chat":
                up.script(case, chat_tool_events(pieces))
            elif api == "responses":
                up.script(case, responses_tool_events(pieces))
            else:
                up.script(case, anthropic_events([("tool:send", pieces)]))
            joined, everything, copies = await tool_args_seen(cl, api, case)
            if joined != ARGS_REDACTED:
                failures.append(f"{pieces!r}: streamed {joined!r}")
            if "4111" in everything or EMAIL in everything:
                failures.append(f"{pieces!r}: raw value in an event")
            failures.extend(f"{pieces!r}: copy {c!r}" for c in copies if c != ARGS_REDACTED)

        return run

    async with clients(sc) as cl:
        await gather_limited([job(p) for p in splits(ARGS)])
    assert not failures, "\n".join(failures[:10])


# --- several channels at once -------------------------------------------------------------


async def test_two_choices_interleaved_are_redacted_each_on_its_own(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """n=2: pieces of choice 0 and 1 alternate, sometimes in the same chunk."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    zero = ["mail ", "jane.d", "oe@exa", "mple.c", "om", " done"]
    one = ["card 41", "11 1111 ", "1111 11", "11 ", "thanks", "!"]
    events = [chat_chunk(delta("", 0), delta("", 1))]
    for a, b in zip(zero, one, strict=True):
        events.append(chat_chunk(delta(a, 0)))
        events.append(chat_chunk(delta(b, 1)))
    events[3] = chat_chunk(delta("jane.d", 0), delta("11 1111 ", 1))  # both in one chunk
    events[4] = chat_chunk()
    events += [chat_chunk(delta(None, 1, "stop")), chat_chunk(delta(None, 0, "stop")), DONE]
    case = new_case()
    up.script(case, events)
    async with oai(sc) as client:
        stream = await client.chat.completions.create(
            model="gpt-x", n=2, messages=[{"role": "user", "content": case}], stream=True
        )
        got: dict[int, str] = {0: "", 1: ""}
        async for chunk in stream:
            for choice in chunk.choices:
                got[choice.index] += choice.delta.content or ""
    assert got == {0: "mail [EMAIL] done", 1: "card [CREDIT_CARD] thanks!"}


async def test_several_anthropic_blocks_each_flush_and_redact_their_own_held_text(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    events = anthropic_events(
        [
            ("text", ["write to jane", ".doe@exam", "ple.com"]),
            ("tool:send", ['{"card": "4111 11', '11 1111 1111"}']),
            ("text", ["call (415) ", "555-26", "71"]),
        ]
    )
    up.script(case, events)
    async with (
        claude(sc) as client,
        client.messages.stream(
            model="claude-x", max_tokens=50, messages=[{"role": "user", "content": case}]
        ) as stream,
    ):
        final = await stream.get_final_message()
    blocks: list[Any] = list(final.content)
    assert blocks[0].text == "write to [EMAIL]"
    assert blocks[1].input == {"card": "[CREDIT_CARD]"}
    assert blocks[2].text == "call [PHONE]"


async def test_two_responses_content_parts_are_redacted_in_deltas_and_every_copy(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    up.script(
        case, responses_events([["to jane.doe@", "example.com"], ["card 4111 1111 ", CARD[10:]]])
    )
    async with oai(sc) as client:
        stream = await client.responses.create(model="gpt-x", input=case, stream=True)
        deltas: dict[int, str] = {0: "", 1: ""}
        raw_dump: list[str] = []
        final: Any = None
        async for event in stream:
            raw_dump.append(event.model_dump_json())
            ev: Any = event
            if ev.type == "response.output_text.delta":
                deltas[ev.content_index] += ev.delta
            if ev.type == "response.completed":
                final = ev.response
    assert deltas == {0: "to [EMAIL]", 1: "card [CREDIT_CARD]"}
    assert [c.text for c in final.output[0].content] == ["to [EMAIL]", "card [CREDIT_CARD]"]
    dump = "\n".join(raw_dump)
    assert EMAIL not in dump and "4111" not in dump


# =========================================================================================
# 2. SSE framing: events cut across TCP writes, CRLF, comments, early ends
# =========================================================================================


def tcp_cut(events: Sequence[bytes], size: int, pause: float = 0.001) -> list[Step]:
    """The stream's bytes as writes of `size` bytes, with a pause so each is read alone."""
    raw = b"".join(events)
    steps: list[Step] = []
    for i in range(0, len(raw), size):
        steps += [raw[i : i + size], pause]
    return steps


def reframe(events: Sequence[bytes], how: str) -> list[bytes]:
    out: list[bytes] = []
    for i, ev in enumerate(events):
        if how == "crlf":
            ev = ev.replace(b"\n", b"\r\n")
        elif how == "cr":
            ev = ev.replace(b"\n", b"\r")
        elif how == "nospace":
            ev = ev.replace(b"data: ", b"data:").replace(b"event: ", b"event:")
        elif how == "comments":
            ev = (b": keep-alive\n\n" if i % 2 else b":\n") + ev
        elif how == "multiline":  # one JSON document over two data: lines
            ev = ev.replace(b', "', b',\ndata: "', 1)
        out.append(ev)
    return out


PIECES = ["café 😀 pay to DE89 3704 00", "44 0532 0130 00 or ", "mail jane.doe", "@example.com now"]
PIECES_WANT = "café 😀 pay to [IBAN] or mail [EMAIL] now"


@pytest.mark.parametrize("how", ["crlf", "cr", "nospace", "comments", "multiline"])
@pytest.mark.parametrize("api", APIS)
async def test_unusual_but_valid_sse_framing_is_parsed_and_redacted(
    make_sidecar: MakeSidecar, up: Upstream, api: Api, how: str
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    cases = [(reframe(events_for(api, PIECES), how), PIECES_WANT, [EMAIL, "DE89"])]
    async with clients(sc) as cl:
        failures = await run_cases(cl, up, api, cases)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("api", APIS)
async def test_events_cut_mid_json_across_tcp_writes_are_still_redacted(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    failures: list[str] = []
    async with clients(sc) as cl:
        for size, how in [(7, "lf"), (11, "crlf"), (1, "crlf")]:
            events = reframe(events_for(api, PIECES), how)
            if size == 1:  # one byte a write around the CRLF of every line end
                raw = b"".join(events)
                steps: list[Step] = []
                for part in re.split(rb"(\r\n)", raw):
                    steps += [part[:-1], 0.001, part[-1:], 0.001] if part else []
            else:
                steps = tcp_cut(events, size)
            case = new_case()
            up.script(case, steps)
            seen = await cl.drive(api, case)
            if seen.text != PIECES_WANT or EMAIL in seen.everything:
                failures.append(f"{size}/{how}: {seen.text!r}")
    assert not failures, failures


@pytest.mark.parametrize(
    ("api", "ending"),
    [
        ("chat", "no [DONE]"),
        ("chat", "no finish_reason, no [DONE]"),
        ("chat", "no finish_reason"),
        ("chat", "last event unterminated"),
        ("completions", "no [DONE]"),
        ("completions", "no finish_reason"),
        ("responses", "no done events"),
        pytest.param(
            "responses",
            "no done events, then completed",
        ),
        ("anthropic", "no block or message stop"),
    ],
)
async def test_a_stream_that_ends_early_still_flushes_its_held_text_redacted(
    make_sidecar: MakeSidecar, up: Upstream, api: Api, ending: str
) -> None:
    """The card is held back at the end of the stream: it must come out redacted, not lost."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    pieces = ["your card is 4111 ", "1111 1111 1111"]
    want = "your card is [CREDIT_CARD]"
    if api == "chat":
        finish = ending in ("no [DONE]", "last event unterminated")
        events = chat_events(pieces, finish=finish, done=ending == "no finish_reason")
        if ending == "last event unterminated":
            events[-1] = events[-1][:-1]  # the finish chunk, without its blank line
    elif api == "completions":
        events = completion_events(pieces, finish=ending != "no finish_reason")
        if ending == "no [DONE]":
            events.pop()
    elif api == "responses":
        events = responses_events([pieces], dones=False, completed="completed" in ending)
    else:
        events = anthropic_events([("text", pieces)], stops=False)
    async with clients(sc) as cl:
        failures = await run_cases(cl, up, api, [(events, want, ["4111"])])
    assert not failures, failures


@pytest.mark.parametrize(
    ("api", "last"), [("responses", "response.completed"), ("anthropic", "message_stop")]
)
async def test_cr_framed_streams_keep_their_last_event(
    make_sidecar: MakeSidecar, up: Upstream, api: Api, last: str
) -> None:
    """Regression: the editors' parser used to keep the final CR-framed event (d8684f6)."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    up.script(case, reframe(events_for(api, ["hello ", "world"]), "cr"))
    async with clients(sc) as cl:
        seen = await cl.drive(api, case)
    assert seen.text == "hello world"
    assert seen.kinds[-1] == last, seen.kinds


# =========================================================================================
# 3. Tokenize: tokens back into values, only the caller's own, whatever the deltas
# =========================================================================================

TOKENIZE: dict[str, Any] = {
    "input": [{"id": "tok", "kind": "pii", "action": "redact", "redact": "tokenize"}]
}
OTHER_EMAIL = "bob@example.org"


@pytest.mark.parametrize("api", APIS)
async def test_tokens_split_across_deltas_are_restored_and_unknown_tokens_left_alone(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, TOKENIZE))
    reply = "to [EMAIL_2] and [EMAIL_1], not [EMAIL_3], [PHONE_1] or [EMAIL_1x]"
    want = f"to {OTHER_EMAIL} and {EMAIL}, not [EMAIL_3], [PHONE_1] or [EMAIL_1x]"
    failures: list[str] = []

    def job(pieces: list[str]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            case = new_case()
            up.script(case, events_for(api, pieces))
            seen = await cl.drive(api, f"{case}: write to {EMAIL}, cc {OTHER_EMAIL}")
            sent = up.body_for(case)
            if EMAIL.encode() in sent or b"[EMAIL_1]" not in sent or b"[EMAIL_2]" not in sent:
                failures.append(f"{case}: upstream got {sent!r}")
            if seen.text != want:
                failures.append(f"{pieces!r}: {seen.text!r}")

        return run

    async with clients(sc) as cl:
        await gather_limited([job(p) for p in splits(reply)])
    assert not failures, "\n".join(failures[:10])


async def test_concurrent_callers_get_back_only_their_own_values(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """Three calls in flight at once, each answered "[EMAIL_1]": each vault is its own."""
    sc = await make_sidecar(bundle(up, TOKENIZE))
    gate = asyncio.Event()
    mails = ["alice@corp.example.com", "bob@corp.example.com", None]
    cases = [new_case() for _ in mails]
    for case in cases:
        up.script(
            case, [*chat_events(["reply to [EMA"])[:2], gate, *chat_events(["IL_1] now"])[1:]]
        )
    async with oai(sc) as client:

        async def call(case: str, mail: str | None) -> str:
            prompt = f"{case} mail {mail}" if mail else f"{case} no address here"
            return (await drive_chat(client, prompt)).text

        tasks = [asyncio.create_task(call(c, m)) for c, m in zip(cases, mails, strict=True)]
        await asyncio.sleep(0.2)
        gate.set()
        got = await asyncio.gather(*tasks)
    assert got == [
        "reply to alice@corp.example.com now",
        "reply to bob@corp.example.com now",
        "reply to [EMAIL_1] now",  # a caller that sent no address gets no invented one
    ]


async def test_tokenized_values_are_numbered_per_call_equal_values_equal_tokens(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, TOKENIZE))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    prompt = f"{case} {EMAIL}, {OTHER_EMAIL}; again {EMAIL}; card {CARD}"
    async with oai(sc) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-x",
            messages=[
                {"role": "user", "content": prompt},
                {"role": "assistant", "content": "noted"},
                {"role": "user", "content": f"and {OTHER_EMAIL}"},
            ],
        )
    sent = json.loads(up.body_for(case))["messages"]
    assert (
        sent[0]["content"] == f"{case} [EMAIL_1], [EMAIL_2]; again [EMAIL_1]; card [CREDIT_CARD_1]"
    )
    assert sent[2]["content"] == "and [EMAIL_2]"
    assert raw.headers["x-sidecar-redacted"] == "tok=5"


def chat_reply(content: str | None, tool_args: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_args is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "send", "arguments": tool_args},
            }
        ]
    return {
        "id": "chatcmpl-adv",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


async def test_tokens_in_streamed_tool_arguments_are_restored(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, TOKENIZE))
    case = new_case()
    up.script(case, chat_tool_events(['{"to": "[EMA', 'IL_1]"}']))
    async with clients(sc) as cl:
        args, _, _ = await tool_args_seen(cl, "chat", f"{case} mail {EMAIL}")
    assert json.loads(args) == {"to": EMAIL}


async def test_tokens_in_plain_tool_arguments_are_restored_like_in_streams(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """Regression: plain replies used to keep '[EMAIL_1]' in tool arguments (d8684f6)."""
    sc = await make_sidecar(bundle(up, TOKENIZE))
    case = new_case()
    reply = chat_reply("sending to [EMAIL_1]", json.dumps({"to": "[EMAIL_1]"}))
    up.reply_json(case, reply)
    async with oai(sc) as client:
        done = await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": f"{case} mail {EMAIL}"}]
        )
    message = done.choices[0].message
    assert message.content == f"sending to {EMAIL}"
    assert message.tool_calls
    call: Any = message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"to": EMAIL}


# =========================================================================================
# 4. Blocks mid-stream: the SDK raises, and never saw the entity first
# =========================================================================================


async def expect_stream_block(cl: Clients, api: Api, prompt: str) -> tuple[str, str]:
    """Drive a stream that must be blocked; return (text received before, error message)."""
    got: list[str] = []
    if api == "anthropic":
        with pytest.raises(anthropic.APIError) as a_err:
            stream = await cl.anthropic.messages.create(
                model="claude-x",
                max_tokens=50,
                messages=[{"role": "user", "content": prompt}],
                stream=True,
            )
            async for aev in stream:
                got.append(aev.model_dump_json())
        return "".join(got), a_err.value.message
    with pytest.raises(openai.APIError) as o_err:
        if api == "chat":
            chat = await cl.openai.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": prompt}], stream=True
            )
            async for chunk in chat:
                got.append(chunk.model_dump_json())
        elif api == "completions":
            cmpl = await cl.openai.completions.create(model="gpt-x", prompt=prompt, stream=True)
            async for c in cmpl:
                got.append(c.model_dump_json())
        else:
            resp = await cl.openai.responses.create(model="gpt-x", input=prompt, stream=True)
            async for ev in resp:
                got.append(ev.model_dump_json())
    err = o_err.value
    assert isinstance(err.body, dict) and err.body.get("code") == "guard_blocked", err.body
    return "".join(got), err.message


@pytest.mark.parametrize("api", APIS)
async def test_a_block_mid_stream_raises_in_the_sdk_before_any_digit_of_the_card(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, BLOCK_OUTPUT))
    text = f"your number: {CARD} (keep it safe)"
    failures: list[str] = []

    def job(pieces: list[str]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            case = new_case()
            up.script(case, events_for(api, pieces))
            before, message = await expect_stream_block(cl, api, case)
            if "4111" in before or re.search(r"number: \d", before.replace("\\n", " ")):
                failures.append(f"{pieces!r}: the SDK saw {before[-200:]!r}")
            if "guard 'pii-block'" not in message or "CREDIT_CARD" not in message:
                failures.append(f"{pieces!r}: message {message!r}")
            if "4111" in message or "1111" in message:
                failures.append(f"{pieces!r}: the message quotes the card")

        return run

    async with clients(sc) as cl:
        await gather_limited([job(p) for p in splits(text)])
    assert not failures, "\n".join(failures[:10])


async def test_a_streamed_responses_tool_call_to_a_metadata_address_is_blocked(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {"tool": [{"id": "egress", "kind": "egress", "tools": ["fetch*"]}]}
    sc = await make_sidecar(bundle(up, guards))
    args = json.dumps({"url": "http://169.254.169.254/latest/meta-data/"})
    case = new_case()
    up.script(case, responses_tool_events([args[:20], args[20:]], name="fetch_url"))
    async with oai(sc) as client:
        stream = await client.responses.create(model="gpt-x", input=case, stream=True)
        with pytest.raises(openai.APIError, match=r"guard 'egress'.*SSRF") as caught:
            async for _ in stream:
                pass
    assert "169.254" not in caught.value.message


# =========================================================================================
# 5. Streaming still streams
# =========================================================================================


async def text_deltas(cl: Clients, api: Api, prompt: str) -> AsyncIterator[str]:
    """The streamed text as the agent's SDK hands it over, delta by delta."""
    if api == "anthropic":
        stream = await cl.anthropic.messages.create(
            model="claude-x",
            max_tokens=50,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
        )
        async for aev in stream:
            if aev.type == "content_block_delta" and aev.delta.type == "text_delta":
                yield aev.delta.text
    elif api == "chat":
        chat = await cl.openai.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": prompt}], stream=True
        )
        async for chunk in chat:
            for choice in chunk.choices:
                if choice.delta.content:
                    yield choice.delta.content
    elif api == "completions":
        cmpl = await cl.openai.completions.create(model="gpt-x", prompt=prompt, stream=True)
        async for c in cmpl:
            for ch in c.choices:
                if ch.text:
                    yield ch.text
    else:
        resp = await cl.openai.responses.create(model="gpt-x", input=prompt, stream=True)
        async for ev in resp:
            if ev.type == "response.output_text.delta":
                yield ev.delta


@pytest.mark.parametrize("api", APIS)
async def test_the_first_text_arrives_before_the_upstream_finishes(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    sc = await make_sidecar(bundle(up, {**REDACT_OUTPUT, **TOKENIZE}))
    gate = asyncio.Event()
    events = events_for(api, ["Hello there, your card is 4111 ", "1111 1111 1111."])
    first_text = next(i for i, e in enumerate(events) if b"Hello there" in e)
    case = new_case()
    script = up.script(case, [*events[: first_text + 1], gate, *events[first_text + 1 :]])
    async with clients(sc) as cl:
        deltas = text_deltas(cl, api, case)
        head = await asyncio.wait_for(anext(deltas), 2)
        assert not script.finished.is_set(), "the upstream is still waiting on the gate"
        gate.set()
        rest = "".join([d async for d in deltas])
    # Only the tail that could start an entity (or a pattern's max_length) is held back.
    assert head.startswith("Hello there, your") and "4" not in head
    assert head + rest == "Hello there, your card is [CREDIT_CARD]."


# =========================================================================================
# 6. Input redaction: only the guarded strings change; channels
# =========================================================================================

REDACT_INPUT: dict[str, Any] = {"input": [{"id": "pii-in", "kind": "pii", "action": "redact"}]}


async def post_raw(sc: Running, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    headers = {"Content-Type": "application/json", "Authorization": "Bearer sk-agent"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(sc.base + path, data=body, headers=headers) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def raw_chat_body(case: str, content: str) -> bytes:
    # Hand-written JSON: key order, spacing, escapes and number spellings an SDK could send.
    return (
        '{ "model" : "gpt-x",\n  "temperature": 0.50, "top_p": 1e0,\n'
        '  "messages": [ {"role": "user", "content": "' + content + '"} ],\n'
        '  "metadata": {"note": "caf\\u00e9 \\ud83d\\ude00 \\/ok", "owner": "' + EMAIL + '"},\n'
        '  "zeta": [1, 2.0, -0], "alpha": null, "user": "' + case + '" }'
    ).encode()


async def test_a_body_without_findings_is_forwarded_byte_for_byte(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    body = raw_chat_body(case, "nothing personal here")
    status, _, _ = await post_raw(sc, "/v1/chat/completions", body)
    assert status == 200
    assert up.body_for(case) == body


async def test_input_redaction_changes_only_the_guarded_string_semantically(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    body = raw_chat_body(case, f"mail {EMAIL} caf\\u00e9 please")
    status, headers, _ = await post_raw(sc, "/v1/chat/completions", body)
    assert status == 200
    assert headers["x-sidecar-redacted"] == "pii-in=1"
    sent = json.loads(up.body_for(case))
    original = json.loads(body)
    assert sent["messages"][0]["content"] == "mail [EMAIL] caf\u00e9 please"
    original["messages"][0]["content"] = sent["messages"][0]["content"]
    assert sent == original  # metadata.owner is not a text a guard reads: untouched
    assert list(sent) == list(original), "key order is kept"


@pytest.mark.xfail(
    strict=True,
    reason="byte-preserving input redaction is not built: a redacted body is re-encoded as "
    "compact JSON (docs/bundle.md says so); this test is the target",
)
async def test_input_redaction_leaves_every_other_byte_of_the_body_alone(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    body = raw_chat_body(case, f"mail {EMAIL} please")
    status, _, _ = await post_raw(sc, "/v1/chat/completions", body)
    assert status == 200
    want = body.replace(f"mail {EMAIL} please".encode(), b"mail [EMAIL] please")
    assert up.body_for(case) == want


async def test_openai_channels_system_and_assistant_are_read_only_when_listed(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {
        "input": [
            {"id": "default-ch", "kind": "pii", "action": "redact", "types": ["EMAIL"]},
            {
                "id": "sys-ch",
                "kind": "pattern",
                "action": "redact",
                "channels": ["system", "assistant"],
                "patterns": [{"type": "EMPLOYEE_ID", "regex": r"E-\d{6}", "max_length": 8}],
            },
        ]
    }
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    messages: Any = [
        {"role": "system", "content": f"{case} admin {EMAIL} {EMP}"},
        {"role": "developer", "content": [{"type": "text", "text": f"dev {EMAIL} {EMP}"}]},
        {"role": "user", "content": [{"type": "text", "text": f"me {EMAIL} {EMP}"}]},
        {
            "role": "assistant",
            "content": f"noted {EMAIL} {EMP}",
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": f"found {EMAIL} {EMP}"},
    ]
    async with oai(sc) as client:
        await client.chat.completions.create(model="gpt-x", messages=messages)
    sent = json.loads(up.body_for(case))["messages"]
    assert sent[0]["content"] == f"{case} admin {EMAIL} [EMPLOYEE_ID]"
    assert sent[1]["content"][0]["text"] == f"dev {EMAIL} [EMPLOYEE_ID]"
    assert sent[2]["content"][0]["text"] == f"me [EMAIL] {EMP}"
    assert sent[3]["content"] == f"noted {EMAIL} [EMPLOYEE_ID]"
    assert sent[4]["content"] == f"found [EMAIL] {EMP}"  # tool results: read by default


async def test_anthropic_system_is_skipped_and_tool_results_are_read_by_default(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    case = new_case()
    reply = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    up.reply_json(case, reply)
    messages: Any = [
        {"role": "user", "content": f"{case} look up {EMAIL}"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": f"phone {PHONE}"},
                {
                    "type": "tool_result",
                    "tool_use_id": "t1",
                    "content": [{"type": "text", "text": f"card {CARD}"}],
                },
                {"type": "text", "text": f"and {IPV4}"},
            ],
        },
    ]
    async with claude(sc) as client:
        await client.messages.create(
            model="claude-x",
            max_tokens=10,
            system=[{"type": "text", "text": f"operator {EMAIL}"}],
            messages=messages,
        )
    sent = json.loads(up.body_for(case))
    assert sent["system"][0]["text"] == f"operator {EMAIL}"
    assert sent["messages"][0]["content"] == f"{case} look up [EMAIL]"
    blocks = sent["messages"][2]["content"]
    assert blocks[0]["content"] == "phone [PHONE]"
    assert blocks[1]["content"][0]["text"] == "card [CREDIT_CARD]"
    assert blocks[2]["text"] == "and [IP_ADDRESS]"


async def test_responses_instructions_are_skipped_and_function_outputs_read(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    case = new_case()
    up.reply_json(case, _response("completed", [_message(["ok"])]))
    items: Any = [
        {"role": "user", "content": [{"type": "input_text", "text": f"{case} mail {EMAIL}"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": f"card {CARD}"},
    ]
    async with oai(sc) as client:
        await client.responses.create(model="gpt-x", instructions=f"operator {EMAIL}", input=items)
    sent = json.loads(up.body_for(case))
    assert sent["instructions"] == f"operator {EMAIL}"
    assert sent["input"][0]["content"][0]["text"] == f"{case} mail [EMAIL]"
    assert sent["input"][2]["output"] == "card [CREDIT_CARD]"


async def test_embeddings_and_completions_prompts_are_redacted(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_INPUT))
    emb_case, cmpl_case = new_case(), new_case()
    emb = {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": [0.0]} for i in range(2)],
        "model": "gpt-x",
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    up.reply_json(emb_case, emb)
    cmpl = {
        "id": "c",
        "object": "text_completion",
        "created": 1,
        "model": "gpt-x",
        "choices": [{"index": 0, "text": "ok", "finish_reason": "stop", "logprobs": None}],
    }
    up.reply_json(cmpl_case, cmpl)
    async with oai(sc) as client:
        await client.embeddings.create(model="gpt-x", input=[f"{emb_case} {EMAIL}", f"x {SSN}"])
        await client.completions.create(model="gpt-x", prompt=f"{cmpl_case} {PHONE}")
    assert json.loads(up.body_for(emb_case))["input"] == [f"{emb_case} [EMAIL]", "x [US_SSN]"]
    assert json.loads(up.body_for(cmpl_case))["prompt"] == f"{cmpl_case} [PHONE]"


# =========================================================================================
# 7. Scope, fail modes, webhooks
# =========================================================================================

KEYS = {"acme-bot": "sk-acme", "globex-bot": "sk-globex"}


def keyed_bundle(up: Upstream, guards: dict[str, Any]) -> dict[str, Any]:
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    identity = {
        "api_keys": [
            {
                "principal": "acme-bot",
                "tenant": "acme",
                "roles": ["analyst"],
                "sha256": [digest(KEYS["acme-bot"])],
            },
            {
                "principal": "globex-bot",
                "tenant": "globex",
                "roles": ["agent"],
                "sha256": [digest(KEYS["globex-bot"])],
            },
        ]
    }
    return bundle(up, guards, identity=identity)


def deny(id_: str, word: str, **scope: list[str]) -> dict[str, Any]:
    return {"id": id_, "kind": "deny", "words": [word], "action": "block", "scope": scope}


async def test_scope_lists_must_all_match_for_a_guard_to_apply(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {
        "input": [
            deny("by-tenant", "falcon", tenants=["acme"]),
            deny("by-role", "osprey", roles=["agent"]),
            deny("by-model", "condor", models=["gpt-4o*"]),
            deny("by-route", "heron", routes=["cl*"]),
            deny("by-all", "kestrel", tenants=["globex"], models=["gpt-4o-mini"]),
        ]
    }
    sc = await make_sidecar(keyed_bundle(up, guards))
    # (caller, model, word) -> the guard that blocks, or None
    table: list[tuple[str, str, str, str | None]] = [
        ("acme-bot", "gpt-x", "falcon", "by-tenant"),
        ("globex-bot", "gpt-x", "falcon", None),
        ("globex-bot", "gpt-x", "osprey", "by-role"),
        ("acme-bot", "gpt-x", "osprey", None),
        ("acme-bot", "gpt-4o-mini", "condor", "by-model"),
        ("acme-bot", "gpt-x", "condor", None),
        ("acme-bot", "claude-x", "heron", "by-route"),
        ("acme-bot", "gpt-x", "heron", None),
        ("globex-bot", "gpt-4o-mini", "kestrel", "by-all"),
        ("globex-bot", "gpt-x", "kestrel", None),
        ("acme-bot", "gpt-4o-mini", "kestrel", None),
    ]
    wrong: list[str] = []
    for who, model, word, blocker in table:
        case = new_case()
        if model.startswith("claude"):
            reply: dict[str, Any] = {
                "id": "m",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": "ok"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 1, "output_tokens": 1},
            }
        else:
            reply = chat_reply("ok")
        up.reply_json(case, reply)
        prompt = f"{case} tell me about the {word}"
        try:
            if model.startswith("claude"):
                async with claude(sc, KEYS[who]) as ac:
                    await ac.messages.create(
                        model=model, max_tokens=5, messages=[{"role": "user", "content": prompt}]
                    )
            else:
                async with oai(sc, KEYS[who]) as client:
                    await client.chat.completions.create(
                        model=model, messages=[{"role": "user", "content": prompt}]
                    )
            got = None
        except (openai.BadRequestError, anthropic.BadRequestError) as err:
            found = re.search(r"guard '([^']+)'", err.message)
            got = found.group(1) if found else err.message
        if got != blocker:
            wrong.append(f"{who} {model} {word}: blocked by {got}, want {blocker}")
    assert not wrong, "\n".join(wrong)


class Classifier:
    """A real aiohttp classifier whose answer (status, body) the test picks."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b'{"action": "pass"}'
        self.seen: list[dict[str, Any]] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/classify", self._classify)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/classify"

    async def _classify(self, request: web.Request) -> web.Response:
        self.seen.append(await request.json())
        return web.Response(status=self.status, body=self.body, content_type="application/json")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def classifier() -> AsyncIterator[Classifier]:
    c = Classifier()
    await c.start()
    yield c
    await c.stop()


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (500, b'{"error": "could not classify: mail jane.doe@example.com"}'),
        (200, b"not json: jane.doe@example.com"),
        (200, b'{"action": "obliterate", "text": "jane.doe@example.com"}'),
        (200, b'{"action": "block", "findings": [{"index": 7, "type": "X"}]}'),
    ],
)
@pytest.mark.parametrize("fail", ["open", "closed"])
async def test_a_failing_webhook_follows_fail_and_never_leaks_the_text(
    make_sidecar: MakeSidecar,
    up: Upstream,
    classifier: Classifier,
    fail: str,
    status: int,
    answer: bytes,
) -> None:
    guards = {
        "input": [
            {
                "id": "hook",
                "kind": "webhook",
                "fail": fail,
                "webhook": {"url": classifier.url, "timeout_ms": 1000},
            }
        ]
    }
    sc = await make_sidecar(bundle(up, guards))
    classifier.status, classifier.body = status, answer
    case = new_case()
    up.reply_json(case, chat_reply("fine"))
    async with oai(sc) as client:
        if fail == "open":
            done = await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": f"{case} mail {EMAIL}"}]
            )
            assert done.choices[0].message.content == "fine"
            return
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": f"{case} mail {EMAIL}"}]
            )
    err = caught.value
    assert err.status_code == 503
    assert isinstance(err.body, dict) and err.body.get("code") == "guard_unavailable"
    assert "guard 'hook'" in err.message
    assert "jane" not in err.message and "jane" not in err.response.text
    assert up.received == [] or all(case.encode() not in b for _, b in up.received)


async def test_an_output_webhook_guard_is_consulted_on_plain_replies(
    make_sidecar: MakeSidecar, up: Upstream, classifier: Classifier
) -> None:
    guards = {"output": [{"id": "out-hook", "kind": "webhook", "webhook": {"url": classifier.url}}]}
    sc = await make_sidecar(bundle(up, guards))
    classifier.body = (
        b'{"action": "redact", "findings": [{"index": 0, "type": "name", "start": 6, "end": 10}]}'
    )
    case = new_case()
    up.reply_json(case, chat_reply("hello Jane, hi"))
    async with oai(sc) as client:
        plain = await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": case}]
        )
    assert plain.choices[0].message.content == "hello [NAME], hi"
    assert classifier.seen[0]["stage"] == "output"


async def test_an_output_webhook_guard_does_not_break_streams(
    make_sidecar: MakeSidecar, up: Upstream, classifier: Classifier
) -> None:
    """Regression: an output webhook guard used to kill every stream (d8684f6)."""
    guards = {"output": [{"id": "out-hook", "kind": "webhook", "webhook": {"url": classifier.url}}]}
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.script(case, chat_events(["streamed ", "fine"]))
    async with clients(sc) as cl:
        seen = await cl.drive("chat", case)
    assert seen.text == "streamed fine"


# =========================================================================================
# 8. What the caller sees: headers and error bodies
# =========================================================================================


async def test_the_redacted_header_counts_input_and_plain_output_redactions_per_guard(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {
        "input": [
            {"id": "mails", "kind": "pii", "types": ["EMAIL"], "action": "redact"},
            {"id": "cards-seen", "kind": "pii", "types": ["CREDIT_CARD"], "action": "monitor"},
        ],
        "output": [{"id": "phones", "kind": "pii", "types": ["PHONE"], "action": "redact"}],
    }
    sc = await make_sidecar(bundle(up, guards))
    plain_case, stream_case = new_case(), new_case()
    up.reply_json(plain_case, chat_reply(f"call {PHONE} or (212) 555-0143"))
    up.script(stream_case, chat_events([f"call {PHONE[:6]}", PHONE[6:]]))
    prompt = f"mail {EMAIL} and {OTHER_EMAIL}, card {CARD}"
    async with oai(sc) as client:
        plain = await client.chat.completions.with_raw_response.create(
            model="gpt-x", messages=[{"role": "user", "content": f"{plain_case} {prompt}"}]
        )
        async with client.chat.completions.with_streaming_response.create(
            model="gpt-x",
            messages=[{"role": "user", "content": f"{stream_case} {prompt}"}],
            stream=True,
        ) as streamed:
            header = streamed.headers.get("x-sidecar-redacted")
            text = "".join([line async for line in streamed.iter_lines()])
    assert plain.headers["x-sidecar-redacted"] == "mails=2,phones=2"
    assert plain.parse().choices[0].message.content == "call [PHONE] or [PHONE]"
    assert header == "mails=2"  # stream redactions happen after the headers went out
    assert "[PHONE]" in text and "555-2671" not in text
    assert CARD in up.body_for(plain_case).decode()  # monitor records, never rewrites


@pytest.mark.parametrize("api", ["openai", "anthropic"])
async def test_block_errors_name_guard_stage_and_type_but_never_the_text(
    make_sidecar: MakeSidecar, up: Upstream, api: str
) -> None:
    guards = {
        "input": [
            {
                "id": "tickets",
                "kind": "pattern",
                "action": "block",
                "patterns": [{"type": "TICKET", "regex": r"TCK-\d{4}", "max_length": 8}],
            }
        ],
        "output": [{"id": "no-keys", "kind": "secrets", "action": "block"}],
    }
    sc = await make_sidecar(bundle(up, guards))
    in_case, out_case = new_case(), new_case()
    if api == "openai":
        up.reply_json(out_case, chat_reply(f"the key is {AWS}"))
        async with oai(sc) as client:
            with pytest.raises(openai.BadRequestError) as in_err:
                await client.chat.completions.create(
                    model="gpt-x", messages=[{"role": "user", "content": f"{in_case} TCK-0042"}]
                )
            with pytest.raises(openai.BadRequestError) as out_err:
                await client.chat.completions.create(
                    model="gpt-x", messages=[{"role": "user", "content": out_case}]
                )
        for err in (in_err.value, out_err.value):
            assert isinstance(err.body, dict) and err.body["code"] == "guard_blocked"
            assert err.body["type"] == "invalid_request_error"
        messages = [in_err.value.message, out_err.value.message]
        bodies = [in_err.value.response.text, out_err.value.response.text]
    else:
        reply = {
            "id": "m",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [{"type": "text", "text": f"the key is {AWS}"}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        up.reply_json(out_case, reply)
        async with claude(sc) as ac:
            with pytest.raises(anthropic.BadRequestError) as a_in:
                await ac.messages.create(
                    model="claude-x",
                    max_tokens=5,
                    messages=[{"role": "user", "content": f"{in_case} TCK-0042"}],
                )
            with pytest.raises(anthropic.BadRequestError) as a_out:
                await ac.messages.create(
                    model="claude-x", max_tokens=5, messages=[{"role": "user", "content": out_case}]
                )
        messages = [a_in.value.message, a_out.value.message]
        bodies = [a_in.value.response.text, a_out.value.response.text]
    assert "guard 'tickets'" in messages[0] and "TICKET" in messages[0]
    assert "input stage" in messages[0]
    assert "guard 'no-keys'" in messages[1] and "AWS_ACCESS_KEY" in messages[1]
    assert "output stage" in messages[1]
    for text in messages + bodies:
        assert "0042" not in text and AWS not in text and "AKIA" not in text
    assert all(in_case.encode() not in b for _, b in up.received), "a block forwards nothing"


# =========================================================================================
# 9. Other copies of the reply's text
# =========================================================================================


def logprobs_for(text: str) -> dict[str, Any]:
    tokens = [text[i : i + 3] for i in range(0, len(text), 3)]
    return {
        "content": [
            {"token": t, "logprob": -0.1, "bytes": list(t.encode()), "top_logprobs": []}
            for t in tokens
        ],
        "refusal": None,
    }


@pytest.mark.parametrize(
    "mode",
    [
        "plain",
        "stream",
        "responses-plain",
        pytest.param(
            "responses",
        ),
    ],
)
async def test_logprobs_do_not_carry_the_raw_entity(
    make_sidecar: MakeSidecar, up: Upstream, mode: str
) -> None:
    """Logprobs repeat the text token by token; they must not carry what was redacted."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    text = f"card {CARD} ok"
    case = new_case()
    if mode == "plain":
        reply = chat_reply(text)
        reply["choices"][0]["logprobs"] = logprobs_for(text)
        up.reply_json(case, reply)
    elif mode == "responses":
        up.script(case, responses_events([[text[:9], text[9:]]], logprobs=True))
    elif mode == "responses-plain":
        message = _message([text])
        message["content"][0]["logprobs"] = [{"token": text, "logprob": -0.1, "top_logprobs": []}]
        up.reply_json(case, _response("completed", [message]))
    else:
        pieces = [text[:9], text[9:]]
        events = [
            chat_chunk({"index": 0, "delta": {"content": p}, "logprobs": logprobs_for(p)})
            for p in pieces
        ]
        up.script(case, [*events, chat_chunk(delta(None, 0, "stop")), DONE])
    async with oai(sc) as client:
        if mode == "plain":
            done = await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": case}], logprobs=True
            )
            assert done.choices[0].message.content == "card [CREDIT_CARD] ok"
            dump = done.model_dump_json()
        elif mode == "responses-plain":
            plain_resp = await client.responses.create(
                model="gpt-x", input=case, include=["message.output_text.logprobs"]
            )
            assert plain_resp.output_text == "card [CREDIT_CARD] ok"
            dump = plain_resp.model_dump_json()
        elif mode == "responses":
            rstream = await client.responses.create(
                model="gpt-x", input=case, include=["message.output_text.logprobs"], stream=True
            )
            dump = "\n".join([e.model_dump_json() async for e in rstream])
        else:
            stream = await client.chat.completions.create(
                model="gpt-x",
                messages=[{"role": "user", "content": case}],
                logprobs=True,
                stream=True,
            )
            dump = "\n".join([c.model_dump_json() async for c in stream])
    tokens = re.findall(r'"token":"([^"]*)"', dump)
    assert "4111" not in "".join(tokens).replace(" ", "")


async def test_responses_full_copies_without_deltas_are_not_raw(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """Regression: text only in the full copies used to pass raw (d8684f6)."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    events = responses_events([[f"card {CARD}"]])
    # The same stream without its delta event: the text only in the *.done copies.
    up.script(case, [e for e in events if b"output_text.delta" not in e])
    async with clients(sc) as cl:
        seen = await cl.drive("responses", case)
    assert "4111" not in seen.everything


@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_output_guards_do_not_depend_on_the_upstream_content_type(
    make_sidecar: MakeSidecar, up: Upstream, mode: str
) -> None:
    """Regression: a mislabelled reply used to skip the output guards (d8684f6)."""
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    async with oai(sc) as client:
        if mode == "plain":
            up.reply_json(case, chat_reply(f"card {CARD}"), "text/plain")
            done = await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": case}]
            )
            text = done.choices[0].message.content or ""
        else:
            up.script(case, chat_events([f"card {CARD}"]), "application/octet-stream")
            text = (await drive_chat(client, case)).text
    assert text.startswith("card ")  # the SDK did parse the reply
    assert text == "card [CREDIT_CARD]"


# =========================================================================================
# 10. Deny lists and patterns in streams
# =========================================================================================

FALCON_REDACT: dict[str, Any] = {
    "output": [{"id": "codename", "kind": "deny", "words": ["project falcon"], "action": "redact"}]
}
FALCON_BLOCK: dict[str, Any] = {
    "output": [{"id": "codename", "kind": "deny", "words": ["project falcon"], "action": "block"}]
}


async def test_a_denied_phrase_with_the_widest_allowed_gap_is_caught_in_plain_replies(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """Docs: up to 16 whitespace characters between the words of a phrase."""
    sc = await make_sidecar(bundle(up, FALCON_BLOCK))
    case = new_case()
    up.reply_json(case, chat_reply("Project" + "\n" * 8 + "\t" * 8 + "Falcon is go"))
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError, match="guard 'codename'"):
            await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": case}]
            )


@pytest.mark.parametrize("api", ["chat", "anthropic"])
async def test_a_denied_phrase_with_extra_whitespace_is_fully_redacted_in_streams(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    """Regression: words before a wide gap used to be released raw (d8684f6)."""
    sc = await make_sidecar(bundle(up, FALCON_REDACT))
    case = new_case()
    up.script(case, events_for(api, ["Status: Project   \n   Fal", "con is go"]))
    async with clients(sc) as cl:
        seen = await cl.drive(api, case)
    assert seen.text == "Status: [DENIED_WORD] is go"


@pytest.mark.parametrize("action", ["redact", "block"])
async def test_a_denied_phrase_with_a_16_character_gap_split_anywhere_in_a_stream(
    make_sidecar: MakeSidecar, up: Upstream, action: str
) -> None:
    guards = FALCON_BLOCK if action == "block" else FALCON_REDACT
    sc = await make_sidecar(bundle(up, guards))
    text = "Status: Project" + " " * 8 + "\n" * 8 + "Falcon is go"
    failures: list[str] = []

    def job(pieces: list[str]) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            case = new_case()
            up.script(case, events_for("chat", pieces))
            if action == "redact":
                seen = await cl.drive("chat", case)
                if seen.text != "Status: [DENIED_WORD] is go":
                    failures.append(f"{pieces!r}: {seen.text!r}")
                return
            before, _ = await expect_stream_block(cl, "chat", case)
            if "Project" in before:
                failures.append(f"{pieces!r}: the SDK saw {before[-120:]!r}")

        return run

    async with clients(sc) as cl:
        await gather_limited([job(p) for p in splits(text)])
    assert not failures, "\n".join(failures[:10])


@pytest.mark.parametrize("space", ["\u00a0", "\u2003", "\u3000"])
async def test_a_denied_phrase_with_unicode_whitespace_is_still_denied(
    make_sidecar: MakeSidecar, up: Upstream, space: str
) -> None:
    guards = {"input": [{"id": "codename", "kind": "deny", "words": ["project falcon"]}]}
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError, match="guard 'codename'"):
            await client.chat.completions.create(
                model="gpt-x",
                messages=[{"role": "user", "content": f"{case} status of Project{space}Falcon"}],
            )


async def test_a_named_group_in_one_pattern_does_not_disable_another(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    """Regression: a group named p1 used to disable the next pattern (d8684f6)."""
    guards = {
        "output": [
            {
                "id": "ids",
                "kind": "pattern",
                "action": "redact",
                "patterns": [
                    {"type": "TICKET", "regex": r"TCK-(?P<p1>\d{4})", "max_length": 8},
                    {"type": "EMPLOYEE_ID", "regex": r"E-\d{6}", "max_length": 8},
                ],
            }
        ]
    }
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.reply_json(case, chat_reply(f"TCK-1234 for {EMP}"))
    async with oai(sc) as client:
        done = await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": case}]
        )
    assert done.choices[0].message.content == "[TICKET] for [EMPLOYEE_ID]"


async def test_a_webhook_listed_after_a_redaction_sees_the_redacted_text(
    make_sidecar: MakeSidecar, up: Upstream, classifier: Classifier
) -> None:
    guards = {
        "input": [
            {"id": "pii-first", "kind": "pii", "action": "redact"},
            {"id": "hook-second", "kind": "webhook", "webhook": {"url": classifier.url}},
        ]
    }
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))
    async with oai(sc) as client:
        await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": f"{case} mail {EMAIL}"}]
        )
    assert b"[EMAIL]" in up.body_for(case)
    assert classifier.seen[0]["texts"] == [{"channel": "user", "text": f"{case} mail [EMAIL]"}]


# =========================================================================================
# 11. Bundle validation: bad guard configs are refused with the path of the field
# =========================================================================================

BAD_GUARDS: list[tuple[dict[str, Any], str]] = [
    ({"input": [{"id": "a", "kind": "pii2"}]}, "guards.input[0].kind: must be one of"),
    ({"input": [{"id": "a", "kind": "pii", "action": "redcat"}]}, "guards.input[0].action:"),
    ({"input": [{"id": "a", "kind": "pii", "redact": "shred"}]}, "guards.input[0].redact:"),
    ({"input": [{"id": "a", "kind": "pii", "fail": "maybe"}]}, "guards.input[0].fail:"),
    (
        {"input": [{"id": "a", "kind": "pii", "channels": ["sytem"]}]},
        "guards.input[0].channels[0]:",
    ),
    (
        {"input": [{"id": "a", "kind": "pii", "chanels": ["user"]}]},
        "guards.input[0].chanels: unknown field 'chanels' (did you mean 'channels'?)",
    ),
    (
        {"input": [{"id": "a", "kind": "pii", "scope": {"tenant": ["x"]}}]},
        "guards.input[0].scope.tenant: unknown field",
    ),
    ({"inptu": []}, "guards.inptu: unknown field 'inptu' (did you mean 'input'?)"),
    (
        {
            "output": [
                {"id": "a", "kind": "pattern", "patterns": [{"type": "X", "regex": "(?<=a)b"}]}
            ]
        },
        "guards.output[0].patterns[0]: not a valid RE2 pattern",
    ),
    (
        {
            "output": [
                {
                    "id": "a",
                    "kind": "pattern",
                    "patterns": [{"type": "X", "regex": "x", "max_length": 0}],
                }
            ]
        },
        "guards.output[0].patterns[0].max_length:",
    ),
    (
        {"output": [{"id": "a", "kind": "pii", "types": ["EMAIL", "SSN"]}]},
        "guards.output[0].types[1]:",
    ),
    (
        {"output": [{"id": "a", "kind": "pii", "phone_regions": ["XX"]}]},
        "guards.output[0].phone_regions",
    ),
    ({"input": [{"id": "a", "kind": "webhook"}]}, "guards.input[0].webhook: required field"),
    (
        {"tool": [{"id": "a", "kind": "webhook", "webhook": {"url": "http://127.0.0.1:9/x"}}]},
        "guards.tool[0].kind: webhook guards run on the input and output stages",
    ),
    (
        {"input": [{"id": "a", "kind": "prompt_injection", "threshold": 1.5}]},
        "guards.input[0].threshold:",
    ),
    ({"input": [{"id": "a", "kind": "size"}]}, "guards.input[0]"),
    (
        {"input": [{"id": "a", "kind": "pii"}], "tool": [{"id": "a", "kind": "egress"}]},
        "guards.tool[0].id:",
    ),
    ({"tool": [{"id": "a", "kind": "arg_injection", "types": ["XSS"]}]}, "guards.tool[0].types"),
    (
        {"tool": [{"id": "a", "kind": "egress", "allow_hosts": ["http://x/"]}]},
        "guards.tool[0].allow_hosts",
    ),
    ({"input": [{"id": "bad id", "kind": "pii"}]}, "guards.input[0].id:"),
    ({"salt": {"env": "ADV_SALT_NOT_SET_ANYWHERE"}}, "guards.salt:"),
]


async def test_bad_guard_configs_are_refused_with_the_field_path_and_nothing_changes(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, {}))
    missing: list[str] = []
    for guards, expected in BAD_GUARDS:
        sc.write_bundle(bundle(up, guards, revision="bad"))
        result = await sc.sidecar.reload("test")
        problems = (sc.sidecar.store.last_error or {}).get("problems", [])
        if result != "error" or not any(expected in p for p in problems):
            missing.append(f"{guards}: {result} {problems}, want {expected!r}")
    assert not missing, "\n".join(missing)
    async with oai(sc) as client:  # the first bundle still serves
        raw = await client.chat.completions.with_raw_response.create(
            model="mock-echo", messages=[{"role": "user", "content": "still here"}]
        )
    assert raw.headers["x-sidecar-bundle-revision"] == "adv1"


async def test_guard_schema_and_pattern_errors_are_reported_together(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, {}))
    guards = {
        "input": [{"id": "a", "kind": "pii", "action": "redcat"}],
        "output": [{"id": "b", "kind": "pattern", "patterns": [{"type": "X", "regex": "(a"}]}],
    }
    sc.write_bundle(bundle(up, guards, revision="bad"))
    assert await sc.sidecar.reload("test") == "error"
    problems = "\n".join((sc.sidecar.store.last_error or {}).get("problems", []))
    assert "guards.input[0].action" in problems
    assert "guards.output[0].patterns[0]: not a valid RE2 pattern" in problems


async def test_an_option_that_the_kind_does_not_take_is_refused(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, {}))
    guards = {
        "input": [
            {
                "id": "a",
                "kind": "deny",
                "action": "block",
                "patterns": [{"type": "TICKET", "regex": r"TCK-\d{4}"}],
            }
        ]
    }
    sc.write_bundle(bundle(up, guards, revision="odd"))
    assert await sc.sidecar.reload("test") == "error"


# =========================================================================================
# 12. Tool calls in other shapes
# =========================================================================================

EGRESS: dict[str, Any] = {"tool": [{"id": "egress", "kind": "egress"}]}
SSRF_ARGS = json.dumps({"url": "http://169.254.169.254/latest/meta-data/iam"})


async def test_the_egress_guard_blocks_a_modern_tool_call_to_a_metadata_address(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, EGRESS))
    case = new_case()
    up.reply_json(case, chat_reply(None, SSRF_ARGS))
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError, match=r"guard 'egress'.*SSRF"):
            await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": case}]
            )


@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_the_egress_guard_blocks_a_legacy_function_call_to_a_metadata_address(
    make_sidecar: MakeSidecar, up: Upstream, mode: str
) -> None:
    sc = await make_sidecar(bundle(up, EGRESS))
    case = new_case()
    if mode == "plain":
        reply = chat_reply(None)
        reply["choices"][0]["message"]["function_call"] = {
            "name": "fetch_url",
            "arguments": SSRF_ARGS,
        }
        up.reply_json(case, reply)
    else:
        events = [
            chat_chunk(
                {
                    "index": 0,
                    "delta": {
                        "role": "assistant",
                        "function_call": {"name": "fetch_url", "arguments": ""},
                    },
                }
            ),
            chat_chunk({"index": 0, "delta": {"function_call": {"arguments": SSRF_ARGS[:15]}}}),
            chat_chunk({"index": 0, "delta": {"function_call": {"arguments": SSRF_ARGS[15:]}}}),
            chat_chunk(delta(None, 0, "function_call")),
            DONE,
        ]
        up.script(case, events)
    functions: Any = [{"name": "fetch_url", "parameters": {"type": "object"}}]
    async with oai(sc) as client:
        with pytest.raises(openai.APIError, match=r"guard 'egress'"):
            if mode == "plain":
                await client.chat.completions.create(
                    model="gpt-x", messages=[{"role": "user", "content": case}], functions=functions
                )
            else:
                stream = await client.chat.completions.create(
                    model="gpt-x",
                    messages=[{"role": "user", "content": case}],
                    functions=functions,
                    stream=True,
                )
                async for _ in stream:
                    pass


async def test_the_egress_guard_blocks_a_responses_custom_tool_call(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, EGRESS))
    case = new_case()
    item = {
        "id": "ctc_1",
        "type": "custom_tool_call",
        "call_id": "call_1",
        "name": "fetch_url",
        "input": "http://169.254.169.254/latest/meta-data/iam",
        "status": "completed",
    }
    up.reply_json(case, _response("completed", [item]))
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError, match=r"guard 'egress'"):
            await client.responses.create(
                model="gpt-x",
                input=case,
                tools=[{"type": "custom", "name": "fetch_url"}],
            )


async def test_plain_anthropic_tool_input_is_redacted_in_place(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    up.reply_json(case, anthropic_tool_reply({"to": EMAIL, "n": 5}))
    async with claude(sc) as ac:
        done = await ac.messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": case}]
        )
    block: Any = done.content[0]
    assert block.input == {"to": "[EMAIL]", "n": 5}


def anthropic_tool_reply(tool_input: Any) -> dict[str, Any]:
    return {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "tool_use", "id": "t", "name": "pay", "input": tool_input}],
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }


async def test_a_redaction_keeps_anthropic_tool_input_an_object(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, REDACT_OUTPUT))
    case = new_case()
    reply = anthropic_tool_reply({"card": 4111111111111111, "to": EMAIL})
    up.reply_json(case, reply)
    async with claude(sc) as ac:
        done = await ac.messages.create(
            model="claude-x", max_tokens=5, messages=[{"role": "user", "content": case}]
        )
    block: Any = done.content[0]
    # String values are redacted; a number keeps its type (`[CREDIT_CARD]` in its place would
    # change what the tool receives): to stop such a call, a guard blocks instead.
    assert block.input == {"card": 4111111111111111, "to": "[EMAIL]"}, block.input


# =========================================================================================
# 13. Operators
# =========================================================================================


async def test_hash_and_mask_operators_in_the_forwarded_body(
    make_sidecar: MakeSidecar, up: Upstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADV_GUARD_SALT", "pepper-42")
    guards = {
        "input": [
            {"id": "h", "kind": "pii", "types": ["EMAIL"], "action": "redact", "redact": "hash"},
            {
                "id": "m",
                "kind": "pii",
                "types": ["CREDIT_CARD", "IBAN", "PHONE"],
                "action": "redact",
                "redact": "mask",
            },
        ],
        "salt": {"env": "ADV_GUARD_SALT"},
    }
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.reply_json(case, chat_reply("ok"))

    def tag(value: str) -> str:
        return "[EMAIL:" + hashlib.sha256(b"pepper-42" + value.encode()).hexdigest()[:8] + "]"

    prompt = f"{case} {EMAIL} {OTHER_EMAIL} {EMAIL} | {CARD} | {IBAN} | {PHONE}"
    async with oai(sc) as client:
        await client.chat.completions.create(
            model="gpt-x", messages=[{"role": "user", "content": prompt}]
        )
    sent = json.loads(up.body_for(case))["messages"][0]["content"]
    card_mask = "*" * (len(CARD) - 4) + "1111"
    iban_mask = "*" * (len(IBAN) - 4) + "0 00"
    want = (
        f"{case} {tag(EMAIL)} {tag(OTHER_EMAIL)} {tag(EMAIL)} | {card_mask} | {iban_mask} | "
        + "*" * len(PHONE)
    )
    assert sent == want


@pytest.mark.parametrize("api", ["chat", "anthropic"])
async def test_an_output_size_guard_applies_to_streams_too(
    make_sidecar: MakeSidecar, up: Upstream, api: Api
) -> None:
    guards = {"output": [{"id": "short", "kind": "size", "max_chars": 200, "action": "block"}]}
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    up.script(case, events_for(api, ["forty characters of text, no entities. "] * 10))
    async with clients(sc) as cl:
        with pytest.raises((openai.APIError, anthropic.APIError), match="guard 'short'"):
            await cl.drive(api, case)


async def test_an_output_size_guard_blocks_a_long_plain_reply(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {"output": [{"id": "short", "kind": "size", "max_chars": 200, "action": "block"}]}
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    reply = chat_reply("forty characters of text, no entities. " * 10)
    up.reply_json(case, reply)
    async with oai(sc) as client:
        with pytest.raises(openai.BadRequestError, match=r"guard 'short'.*SIZE_LIMIT"):
            await client.chat.completions.create(
                model="gpt-x", messages=[{"role": "user", "content": case}]
            )


async def test_anthropic_plain_text_documents_are_read_by_input_guards(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    guards = {"input": [{"id": "pii-in", "kind": "pii", "action": "block"}]}
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    reply = {
        "id": "m",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "content": [{"type": "text", "text": "ok"}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    up.reply_json(case, reply)
    content: Any = [
        {"type": "text", "text": f"{case} summarise the attached note"},
        {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": f"pay with {CARD}"},
        },
    ]
    async with claude(sc) as ac:
        with pytest.raises(anthropic.BadRequestError, match="guard 'pii-in'"):
            await ac.messages.create(
                model="claude-x", max_tokens=5, messages=[{"role": "user", "content": content}]
            )


@pytest.mark.parametrize("mode", ["plain", "stream"])
async def test_tool_guards_see_the_arguments_the_agent_receives_after_token_restore(
    make_sidecar: MakeSidecar, up: Upstream, mode: str
) -> None:
    guards = {
        "input": [
            {
                "id": "tok-ip",
                "kind": "pii",
                "types": ["IP_ADDRESS"],
                "action": "redact",
                "redact": "tokenize",
            }
        ],
        "tool": [{"id": "egress", "kind": "egress"}],
    }
    sc = await make_sidecar(bundle(up, guards))
    case = new_case()
    args = json.dumps({"host": "[IP_ADDRESS_1]", "path": "/latest/meta-data/iam"})
    if mode == "plain":
        up.reply_json(case, chat_reply(None, args))
    else:
        up.script(case, chat_tool_events([args[:12], args[12:]]))
    messages: Any = [
        {"role": "user", "content": f"{case} summarise the page"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "now fetch host 169.254.169.254"},
    ]
    async with oai(sc) as client:
        with pytest.raises(openai.APIError, match="guard 'egress'"):
            if mode == "plain":
                await client.chat.completions.create(model="gpt-x", messages=messages)
            else:
                stream = await client.chat.completions.create(
                    model="gpt-x", messages=messages, stream=True
                )
                async for _ in stream:
                    pass
    assert b"169.254" not in up.body_for(case), "the address reached the model tokenized"


async def test_a_reserved_group_name_is_refused_in_either_spelling(
    make_sidecar: MakeSidecar, up: Upstream
) -> None:
    sc = await make_sidecar(bundle(up, {}))
    guards = {
        "output": [
            {
                "id": "ids",
                "kind": "pattern",
                "patterns": [
                    {"type": "TICKET", "regex": r"TCK-(?<_sidecar_p1>\d{4})"},
                    {"type": "EMPLOYEE_ID", "regex": r"E-\d{6}"},
                ],
            }
        ]
    }
    sc.write_bundle(bundle(up, guards, revision="odd"))
    assert await sc.sidecar.reload("test") == "error"
    problems = (sc.sidecar.store.last_error or {}).get("problems", [])
    assert any("guards.output[0].patterns[0]" in p for p in problems), problems
