"""A real HTTP fake of the OpenAI and Anthropic APIs, for tests.

Why a real server and not a mock: the sidecar is a proxy, so what matters is the
bytes on the wire -- which headers reach the provider, whether SSE chunks are
forwarded as they arrive, how errors and dropped connections travel back.  This
fake is an aiohttp server on ``127.0.0.1`` (port 0, so tests never collide) that
answers like the providers closely enough for the official ``openai`` and
``anthropic`` SDKs to parse every reply, and records every request it receives.

Typical use::

    fake = FakeUpstream()              # replies "fake says: <last user text>"
    await fake.start()
    client = openai.AsyncOpenAI(base_url=f"{fake.url}/v1", api_key="k")
    ...
    assert fake.requests[-1].headers["Authorization"] == "Bearer k"
    await fake.stop()

Controls (plain attributes, change them at any time):

* ``reply``          -- fixed text, or a function of the last user text.
* ``stream_chunks``  -- how many text deltas a streamed reply is cut into.
* ``chunk_delay``    -- seconds to sleep between streamed deltas.
* ``gate``           -- an ``asyncio.Event``; a streaming handler waits on it right
  after it has written the first text delta, so a test can prove that the
  first chunk reaches the client while the upstream is still producing.
  ``first_chunk_sent`` is set at that moment.
* ``fail_next()``    -- force a status and body for the next N requests.
* ``abort_after_chunks`` -- drop the TCP connection after N text deltas.
* ``compress``       -- gzip non-streamed JSON replies when the client accepts it,
  as the real providers do (a proxy must not mangle Content-Encoding).
* ``head_delay``     -- seconds to wait before answering at all (a slow provider);
  a caller that hangs up meanwhile is counted in ``abandoned``.
* ``reset_next()``   -- drop the connection, with no response, on the next N requests.
* ``raw_stream``     -- a function returning an async iterator of bytes: a streamed
  reply sends exactly these instead of its events (oversized or endless events).

Constructor-only: ``name`` (used in replies and ids), ``models`` (GET /v1/models),
``path_prefix`` (serve under e.g. ``/openai/v1/...`` like a gateway would),
``ssl_context`` (serve https; ``url`` then says so).

Recorded traffic: ``requests`` (list of :class:`RecordedRequest`: method, path,
query_string, headers (case-insensitive copy), raw body; ``.json()``,
``.header_values(name)``), ``last_request``, ``requests_to(path)``,
``everything_seen()`` (all headers and bodies as text, for leak checks),
``wait_for_requests(n)``, and the counters ``streams_started`` /
``streams_completed``, ``in_flight`` / ``max_in_flight`` (requests being answered at
once: on HTTP/1.1, open connections in use) and ``peers`` (client addresses seen, one
per connection).  ``reset()`` clears them.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

JSON = dict[str, Any]
ReplyFn = Callable[[str], str]

__all__ = ["FakeUpstream", "ForcedResponse", "RecordedRequest"]


@dataclass(frozen=True)
class RecordedRequest:
    """One request exactly as the fake received it (headers copied, body raw)."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float

    def json(self) -> Any:
        """The body parsed as JSON (raises ``ValueError`` when it is not JSON)."""
        return json.loads(self.body)

    def header_values(self, name: str) -> list[str]:
        """All values of a header (a proxy must not duplicate e.g. Authorization)."""
        return self.headers.getall(name, [])

    def as_text(self) -> str:
        """Headers and body as one string, to assert that a secret never leaked."""
        head = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{self.query_string}\n{head}\n\n" + self.body.decode(
            "utf-8", errors="replace"
        )


@dataclass
class ForcedResponse:
    """A canned reply that replaces normal handling (to test error passthrough)."""

    status: int
    body: bytes | None = None  # None: a provider-shaped error body for the path
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    times: int = 1  # how many requests it answers before normal service resumes


class FakeUpstream:
    """An aiohttp server that plays the OpenAI and Anthropic HTTP APIs."""

    def __init__(
        self,
        *,
        name: str = "fake",
        reply: str | ReplyFn | None = None,
        stream_chunks: int = 4,
        chunk_delay: float = 0.0,
        models: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path_prefix: str = "",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self._ssl = ssl_context
        self.in_flight = 0
        self.max_in_flight = 0
        self.peers: set[tuple[str, int]] = set()
        # Serve under e.g. "/openai" (a gateway in front of the provider), so tests can
        # check that a base_url's own path is kept when the request path is appended.
        self.path_prefix = path_prefix.rstrip("/")
        self.reply: str | ReplyFn | None = reply
        self.stream_chunks = stream_chunks
        self.chunk_delay = chunk_delay
        self.models = models if models is not None else ["fake-model-1", "fake-model-2"]
        self.gate: asyncio.Event | None = None
        self.abort_after_chunks: int | None = None
        self.compress = False
        self.head_delay = 0.0
        self.raw_stream: Callable[[], AsyncIterator[bytes]] | None = None
        self.abandoned = 0  # requests whose caller went away during head_delay
        self._resets = 0
        self.first_chunk_sent = asyncio.Event()
        self.requests: list[RecordedRequest] = []
        self.streams_started = 0
        self.streams_completed = 0
        self._forced: list[ForcedResponse] = []
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self._bound_port: int | None = None
        self._ids = itertools.count(1)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeUpstream:
        """Bind and serve; returns self so ``fake = await FakeUpstream().start()`` works."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        p = self.path_prefix
        app.router.add_post(f"{p}/v1/chat/completions", self._chat_completions)
        app.router.add_post(f"{p}/v1/completions", self._completions)
        app.router.add_post(f"{p}/v1/embeddings", self._embeddings)
        app.router.add_post(f"{p}/v1/responses", self._responses)
        app.router.add_get(f"{p}/v1/models", self._models)
        app.router.add_post(f"{p}/v1/messages", self._messages)
        app.router.add_post(f"{p}/v1/messages/count_tokens", self._count_tokens)
        # Anything else is recorded too, so a test can see e.g. a doubled /v1/v1 prefix.
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        app.middlewares.append(self._record_and_force)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port, ssl_context=self._ssl)
        await site.start()
        addresses = self._runner.addresses
        self._bound_port = int(addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop serving.  Opens the gate first so no handler is left waiting forever."""
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeUpstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._bound_port is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """Base URL without a trailing slash and without ``/v1``."""
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://{self._host}:{self.port}"

    # ------------------------------------------------------------------ controls

    def fail_next(
        self,
        status: int,
        body: bytes | JSON | None = None,
        *,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Answer the next ``times`` requests with ``status`` and ``body``.

        ``body=None`` produces the provider's own error shape for the request path
        (Anthropic's for ``/v1/messages*``, OpenAI's otherwise).
        """
        raw = json.dumps(body).encode() if isinstance(body, dict) else body
        self._forced.append(
            ForcedResponse(
                status=status,
                body=raw,
                headers=dict(headers or {}),
                content_type=content_type,
                times=times,
            )
        )

    def reset_next(self, times: int = 1) -> None:
        """Drop the TCP connection without a response on the next ``times`` requests."""
        self._resets += times

    def clear_failures(self) -> None:
        self._forced.clear()
        self._resets = 0

    def reset(self) -> None:
        """Forget recorded requests and signals (controls are kept)."""
        self.requests.clear()
        self.first_chunk_sent.clear()
        self.streams_started = 0
        self.streams_completed = 0
        self.max_in_flight = self.in_flight
        self.peers.clear()

    # ------------------------------------------------------------------ queries

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"upstream {self.name!r} received no request")
        return self.requests[-1]

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def everything_seen(self) -> str:
        """All recorded requests as text, for 'this secret never reached the provider'."""
        return "\n\n".join(r.as_text() for r in self.requests)

    async def wait_for_requests(self, count: int, within: float = 5.0) -> None:
        """Poll until at least ``count`` requests were recorded."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"upstream {self.name!r} got {len(self.requests)} requests, wanted {count}"
                )
            await asyncio.sleep(0.01)

    def reply_for(self, user_text: str) -> str:
        """The text this fake answers to ``user_text`` (tests compare against it)."""
        if self.reply is None:
            return f"{self.name} says: {user_text}"
        if isinstance(self.reply, str):
            return self.reply
        return self.reply(user_text)

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _record_and_force(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            self.peers.add((str(peer[0]), int(peer[1])))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, handler)
        finally:
            self.in_flight -= 1

    async def _answer(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Any],
    ) -> web.StreamResponse:
        body = await request.read()
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                query_string=request.query_string,
                headers=CIMultiDictProxy(CIMultiDict(request.headers)),
                body=body,
                received_at=time.monotonic(),
            )
        )
        if self._resets > 0:
            self._resets -= 1
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)  # never written: the connection is gone
        if self.head_delay > 0:
            deadline = time.monotonic() + self.head_delay
            while time.monotonic() < deadline:
                await asyncio.sleep(0.005)
                if request.transport is None or request.transport.is_closing():
                    self.abandoned += 1
                    return web.Response(status=499)
        if self._forced:
            forced = self._forced[0]
            forced.times -= 1
            if forced.times <= 0:
                self._forced.pop(0)
            raw = forced.body
            if raw is None:
                raw = json.dumps(
                    _error_body(request.path, forced.status, f"forced {forced.status} by fake")
                ).encode()
            return web.Response(
                status=forced.status,
                body=raw,
                headers={"Content-Type": forced.content_type, **forced.headers},
            )
        response: web.StreamResponse = await handler(request)
        return response

    def _json(self, payload: JSON, *, headers: Mapping[str, str]) -> web.Response:
        """A JSON reply, gzip-compressed when ``compress`` is on (real providers do that)."""
        resp = web.json_response(payload, headers=dict(headers))
        if self.compress:
            resp.enable_compression(web.ContentCoding.gzip)
        return resp

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{self.name}{next(self._ids):06d}"

    def _common_headers(self) -> dict[str, str]:
        return {"x-fake-upstream": self.name, "x-request-id": self._new_id("req_")}

    async def _json_body(self, request: web.Request) -> JSON:
        try:
            data = json.loads(await request.read())
        except ValueError as exc:
            raise _json_error(request.path, 400, f"fake: body is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise _json_error(request.path, 400, "fake: body must be a JSON object")
        return data

    def pieces(self, text: str) -> list[str]:
        """Cut ``text`` into ``stream_chunks`` non-empty pieces that join back to it."""
        n = max(1, min(self.stream_chunks, len(text))) if text else 1
        size, extra = divmod(len(text), n)
        pieces: list[str] = []
        start = 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            pieces.append(text[start:end])
            start = end
        return pieces

    async def _open_sse(self, request: web.Request) -> web.StreamResponse:
        self.streams_started += 1
        resp = web.StreamResponse(
            status=200,
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-cache",
                **self._common_headers(),
            },
        )
        await resp.prepare(request)
        return resp

    async def _after_text_chunk(self, request: web.Request, sent: int) -> None:
        """Hook run after each streamed text delta: signal, gate, delay, abort."""
        if sent == 1:
            self.first_chunk_sent.set()
            if self.gate is not None:
                await self.gate.wait()
        if self.abort_after_chunks is not None and sent >= self.abort_after_chunks:
            if request.transport is not None:
                request.transport.abort()
            raise _Aborted
        if self.chunk_delay > 0:
            await asyncio.sleep(self.chunk_delay)

    async def _stream(
        self,
        request: web.Request,
        events: AsyncIterator[bytes],
    ) -> web.StreamResponse:
        resp = await self._open_sse(request)
        if self.raw_stream is not None:
            events = self.raw_stream()
        try:
            async for raw in events:
                await resp.write(raw)
        except _Aborted:
            return resp
        await resp.write_eof()
        self.streams_completed += 1
        return resp

    # ------------------------------------------------------------------ OpenAI

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        user_text = _last_user_text(messages)
        text = self.reply_for(user_text)
        prompt_tokens = _count_tokens(messages)
        completion_tokens = _words(text)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        cid = self._new_id("chatcmpl-")
        created = int(time.time())
        if not body.get("stream"):
            return self._json(
                {
                    "id": cid,
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "service_tier": "default",
                    "choices": [
                        {
                            "index": 0,
                            "message": {
                                "role": "assistant",
                                "content": text,
                                "refusal": None,
                                "annotations": [],
                            },
                            "logprobs": None,
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": usage,
                },
                headers=self._common_headers(),
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(delta: JSON, finish: str | None) -> bytes:
            payload: JSON = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "service_tier": "default",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                payload["usage"] = None
            return _sse_data(payload)

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
            for i, piece in enumerate(self.pieces(text), start=1):
                yield chunk({"content": piece}, None)
                await self._after_text_chunk(request, i)
            yield chunk({}, "stop")
            if include_usage:
                yield _sse_data(
                    {
                        "id": cid,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "system_fingerprint": "fp_fake",
                        "choices": [],
                        "usage": usage,
                    }
                )
            yield b"data: [DONE]\n\n"

        return await self._stream(request, events())

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", ""))
        prompt = body.get("prompt", "")
        prompt_text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt))
        text = self.reply_for(prompt_text)
        usage = {
            "prompt_tokens": _words(prompt_text),
            "completion_tokens": _words(text),
            "total_tokens": _words(prompt_text) + _words(text),
        }
        cid = self._new_id("cmpl-")
        created = int(time.time())

        def payload(piece: str, finish: str | None) -> JSON:
            return {
                "id": cid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}],
            }

        if not body.get("stream"):
            return self._json(
                {**payload(text, "stop"), "usage": usage}, headers=self._common_headers()
            )

        async def events() -> AsyncIterator[bytes]:
            for i, piece in enumerate(self.pieces(text), start=1):
                yield _sse_data(payload(piece, None))
                await self._after_text_chunk(request, i)
            yield _sse_data(payload("", "stop"))
            yield b"data: [DONE]\n\n"

        return await self._stream(request, events())

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", ""))
        raw_input = body.get("input", "")
        inputs: list[Any] = raw_input if isinstance(raw_input, list) else [raw_input]
        if inputs and all(isinstance(x, int) for x in inputs):
            inputs = [inputs]  # one token array
        dims = int(body.get("dimensions") or 8)
        as_base64 = body.get("encoding_format") == "base64"
        data: list[JSON] = []
        tokens = 0
        for index, item in enumerate(inputs):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += _words(text)
            vector = _embedding(text, dims)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
                if as_base64
                else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return self._json(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
            headers=self._common_headers(),
        )

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", ""))
        raw_input = body.get("input", "")
        if isinstance(raw_input, str):
            user_text = raw_input
            input_tokens = _words(raw_input)
        else:
            user_text = _last_user_text(raw_input)
            input_tokens = _count_tokens(raw_input)
        text = self.reply_for(user_text)
        rid = self._new_id("resp_")
        mid = self._new_id("msg_")
        created = int(time.time())
        usage = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": _words(text),
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + _words(text),
        }

        def part(value: str) -> JSON:
            return {"type": "output_text", "text": value, "annotations": [], "logprobs": []}

        def item(status: str, content: list[JSON]) -> JSON:
            return {
                "id": mid,
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": content,
            }

        def response(status: str, output: list[JSON], with_usage: bool) -> JSON:
            return {
                "id": rid,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": False,
                "error": None,
                "incomplete_details": None,
                "instructions": body.get("instructions"),
                "max_output_tokens": body.get("max_output_tokens"),
                "model": model,
                "output": output,
                "parallel_tool_calls": True,
                "previous_response_id": None,
                "reasoning": {"effort": None, "summary": None},
                "service_tier": "default",
                "store": True,
                "temperature": 1.0,
                "text": {"format": {"type": "text"}, "verbosity": "medium"},
                "tool_choice": "auto",
                "tools": [],
                "top_p": 1.0,
                "truncation": "disabled",
                "usage": usage if with_usage else None,
                "user": None,
                "metadata": {},
            }

        if not body.get("stream"):
            return self._json(
                response("completed", [item("completed", [part(text)])], True),
                headers=self._common_headers(),
            )

        seq = itertools.count(0)

        def event(name: str, payload: JSON) -> bytes:
            data = {"type": name, "sequence_number": next(seq), **payload}
            return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

        where = {"item_id": mid, "output_index": 0, "content_index": 0}

        async def events() -> AsyncIterator[bytes]:
            yield event("response.created", {"response": response("in_progress", [], False)})
            yield event("response.in_progress", {"response": response("in_progress", [], False)})
            yield event(
                "response.output_item.added",
                {"output_index": 0, "item": item("in_progress", [])},
            )
            yield event("response.content_part.added", {**where, "part": part("")})
            for i, piece in enumerate(self.pieces(text), start=1):
                yield event("response.output_text.delta", {**where, "delta": piece, "logprobs": []})
                await self._after_text_chunk(request, i)
            yield event("response.output_text.done", {**where, "text": text, "logprobs": []})
            yield event("response.content_part.done", {**where, "part": part(text)})
            yield event(
                "response.output_item.done",
                {"output_index": 0, "item": item("completed", [part(text)])},
            )
            yield event(
                "response.completed",
                {"response": response("completed", [item("completed", [part(text)])], True)},
            )

        return await self._stream(request, events())

    async def _models(self, request: web.Request) -> web.StreamResponse:
        if "anthropic-version" in request.headers:
            data = [
                {
                    "type": "model",
                    "id": m,
                    "display_name": m,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for m in self.models
            ]
            return self._json(
                {
                    "data": data,
                    "has_more": False,
                    "first_id": self.models[0] if self.models else None,
                    "last_id": self.models[-1] if self.models else None,
                },
                headers=self._common_headers(),
            )
        return self._json(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": 1700000000, "owned_by": self.name}
                    for m in self.models
                ],
            },
            headers=self._common_headers(),
        )

    # ------------------------------------------------------------------ Anthropic

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        user_text = _last_user_text(messages)
        text = self.reply_for(user_text)
        input_tokens = _count_tokens(messages) + _words(_text_of(body.get("system", "")))
        output_tokens = _words(text)
        mid = self._new_id("msg_")
        if not body.get("stream"):
            return self._json(
                {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [{"type": "text", "text": text}],
                    "stop_reason": "end_turn",
                    "stop_sequence": None,
                    "usage": {
                        "input_tokens": input_tokens,
                        "output_tokens": output_tokens,
                        "cache_creation_input_tokens": 0,
                        "cache_read_input_tokens": 0,
                        "service_tier": "standard",
                    },
                },
                headers=self._common_headers(),
            )

        def event(name: str, payload: JSON) -> bytes:
            return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()

        async def events() -> AsyncIterator[bytes]:
            yield event(
                "message_start",
                {
                    "message": {
                        "id": mid,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {
                            "input_tokens": input_tokens,
                            "output_tokens": 1,
                            "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 0,
                        },
                    }
                },
            )
            yield event(
                "content_block_start",
                {"index": 0, "content_block": {"type": "text", "text": ""}},
            )
            yield event("ping", {})
            for i, piece in enumerate(self.pieces(text), start=1):
                yield event(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": piece}},
                )
                await self._after_text_chunk(request, i)
            yield event("content_block_stop", {"index": 0})
            yield event(
                "message_delta",
                {
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
            )
            yield event("message_stop", {})

        return await self._stream(request, events())

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await self._json_body(request)
        messages = body.get("messages") or []
        tokens = _count_tokens(messages) + _words(_text_of(body.get("system", "")))
        return self._json({"input_tokens": tokens}, headers=self._common_headers())

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        raise _json_error(
            request.path, 404, f"fake: no such endpoint {request.method} {request.path}"
        )


# ---------------------------------------------------------------------- helpers


class _Aborted(Exception):
    """Raised inside a stream after the connection was deliberately dropped."""


def _sse_data(payload: JSON) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def _error_body(path: str, status: int, message: str) -> JSON:
    """The provider's own error shape for ``path``."""
    if "/v1/messages" in path:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            403: "permission_error",
            404: "not_found_error",
            413: "request_too_large",
            429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    kind = {
        400: "invalid_request_error",
        401: "invalid_request_error",
        404: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _json_error(path: str, status: int, message: str) -> web.HTTPException:
    exc = web.HTTPException(
        text=json.dumps(_error_body(path, status, message)), content_type="application/json"
    )
    exc.set_status(status)
    return exc


def _text_of(content: Any) -> str:
    """Text of an OpenAI/Anthropic message content (string or list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, str):
                texts.append(part)
        return "".join(texts)
    return ""


def _last_user_text(messages: Any) -> str:
    if not isinstance(messages, list):
        return ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _words(text: str) -> int:
    return len(text.split())


def _count_tokens(messages: Any) -> int:
    if not isinstance(messages, list):
        return 1
    total = 0
    for message in messages:
        if isinstance(message, dict):
            total += 3 + _words(_text_of(message.get("content")))
    return total


def _embedding(text: str, dims: int) -> list[float]:
    """A deterministic vector, so equal inputs embed equally and tests can compare."""
    seed = sum(text.encode()) or 1
    return [round(((seed * (i + 7)) % 1000) / 1000.0, 3) for i in range(dims)]
