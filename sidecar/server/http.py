"""The proxy listener: OpenAI- and Anthropic-shaped endpoints.

This module knows routes and nothing of policy: the server (`h1.py`) reads
the body within the size limit; here the adapter parses it, the pipeline
runs, and the reply — whole, or a stream relayed chunk by chunk — goes back
to the server to write.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import orjson
from multidict import CIMultiDict

from sidecar.adapters import anthropic, openai
from sidecar.adapters.base import Adapter
from sidecar.bundle.store import BundleStore
from sidecar.call import Call, Resource
from sidecar.chain.exchange import Exchange
from sidecar.errors import ErrorKind, SidecarError
from sidecar.pipeline import Pipeline
from sidecar.replies import Reply, StreamReply
from sidecar.server.h1 import BUSY_RETRY_AFTER, Request, Server
from sidecar.settings import Resources

log = logging.getLogger("sidecar.http")

ADAPTERS: dict[str, Adapter] = {
    **{path: openai.ADAPTER for path in openai.OPERATIONS},
    **{path: anthropic.ADAPTER for path in anthropic.OPERATIONS},
}


def new_decision_id() -> str:
    return os.urandom(12).hex()


class ProxyHandlers:
    """Routes a request to its handler; answers unknown paths and methods in kind."""

    def __init__(self, store: BundleStore, pipeline: Pipeline, max_body_bytes: int) -> None:
        self.store = store
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes

    async def __call__(self, request: Request) -> Reply | StreamReply:
        path = request.path
        adapter = ADAPTERS.get(path)
        if adapter is not None:
            if request.method == "POST":
                return await self.llm(request, adapter)
            return _wrong_method(request, "POST")
        if path == "/v1/models" or (path.startswith("/v1/models/") and len(path) > 11):
            if request.method not in ("GET", "HEAD"):
                return _wrong_method(request, "GET")
            return await self._models(request, path[11:] or None)
        return _unknown_path(request)

    # --- LLM calls -----------------------------------------------------------------------

    async def llm(self, request: Request, adapter: Adapter) -> Reply | StreamReply:
        ex = Exchange(new_decision_id(), "", time.perf_counter())
        gen = self.store.acquire()
        if gen is None:
            return self._not_ready(adapter, ex)
        held = True
        try:
            ex.revision = gen.snapshot.revision
            try:
                if request.too_large:
                    raise _too_large(request.length, self.max_body_bytes)
                call = adapter.parse(request.path, request.body)
                call.query = request.query
            except SidecarError as err:
                return self._refuse(adapter, err, ex)
            call.headers = request.headers
            result = await self.pipeline.llm(gen, adapter, call, ex)
            if isinstance(result, StreamReply):
                # A stream keeps the bundle generation it started on until it ends.
                result.done = _then(result.done, partial(self.store.release, gen))
                held = False
            return result
        finally:
            if held:
                self.store.release(gen)

    def _refuse(self, adapter: Adapter, err: SidecarError, ex: Exchange) -> Reply:
        reply = self.pipeline.error(adapter, err, ex)
        self.pipeline.count(ex, reply.status)
        return reply

    def _not_ready(self, adapter: Adapter, ex: Exchange) -> Reply:
        err = SidecarError(
            ErrorKind.UNAVAILABLE,
            "the sidecar has no valid policy bundle loaded yet; see its log or /bundle",
            code="bundle_not_loaded",
            retry_after=1,
        )
        reply = self.pipeline.error(adapter, err, ex)
        self.pipeline.count(ex, reply.status)
        return reply

    # --- models --------------------------------------------------------------------------

    async def _models(self, request: Request, model: str | None) -> Reply:
        """Answered from the bundle, in Anthropic's shape when the caller is Anthropic's SDK."""
        ex = Exchange(new_decision_id(), "", time.perf_counter())
        anthropic_shape = "anthropic-version" in request.headers
        adapter: Adapter = anthropic.ADAPTER if anthropic_shape else openai.ADAPTER
        gen = self.store.acquire()
        if gen is None:
            return self._not_ready(adapter, ex)
        try:
            ex.revision = gen.snapshot.revision
            call = Call(
                surface=adapter.provider.value,
                action="llm.models",
                resource=Resource("Model", model or ""),
                path=request.path,
                provider=adapter.provider,
                headers=request.headers,
            )
            created = int(gen.snapshot.loaded_at)
            render = partial(_anthropic_models if anthropic_shape else _openai_models, created)
            return await self.pipeline.models(gen, adapter, call, ex, render)
        finally:
            self.store.release(gen)


def _openai_models(created: int, models: list[str], one: bool) -> bytes:
    if one:
        return orjson.dumps(_openai_model(models[0], created))
    return orjson.dumps({"object": "list", "data": [_openai_model(m, created) for m in models]})


def _anthropic_models(created: int, models: list[str], one: bool) -> bytes:
    if one:
        return orjson.dumps(_anthropic_model(models[0], created))
    return orjson.dumps(
        {
            "data": [_anthropic_model(m, created) for m in models],
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }
    )


def _openai_model(model: str, created: int) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": created, "owned_by": "sidecar"}


def _anthropic_model(model: str, created: int) -> dict[str, Any]:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
    return {"type": "model", "id": model, "display_name": model, "created_at": stamp}


def _too_large(length: int | None, limit: int) -> SidecarError:
    size = f"{length} bytes" if length is not None else f"more than {limit} bytes"
    return SidecarError(
        ErrorKind.TOO_LARGE,
        f"request body is {size}; this sidecar accepts at most {limit} bytes "
        "(set --max-body-bytes / SIDECAR_MAX_BODY_BYTES)",
        code="request_too_large",
        retryable=False,
    )


def _then(first: Callable[[], None] | None, then: Callable[[], None]) -> Callable[[], None]:
    def both() -> None:
        try:
            if first is not None:
                first()
        finally:
            then()

    return both


def proxy_server(
    store: BundleStore, pipeline: Pipeline, max_body_bytes: int, resources: Resources | None = None
) -> Server:
    res = resources or Resources()
    return Server(
        ProxyHandlers(store, pipeline, max_body_bytes),
        error_reply,
        max_body_bytes=max_body_bytes,
        body_timeout=res.body_timeout_ms / 1000.0,
        body_min_rate=res.body_min_rate,
        max_connections=res.max_connections,
        buffer_budget=res.max_buffered_bytes,
    )


def _shape_for(request: Request | None) -> Adapter:
    if request is not None and (
        request.path.startswith("/v1/messages") or "anthropic-version" in request.headers
    ):
        return anthropic.ADAPTER
    return openai.ADAPTER


def _error(adapter: Adapter, err: SidecarError, **extra: str) -> Reply:
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json", **extra})
    return Reply(err.status, headers, adapter.error_body(err))


_SERVER_ERRORS = {
    400: (ErrorKind.INVALID_REQUEST, None),
    408: (ErrorKind.TIMEOUT, "request_timeout"),
    431: (ErrorKind.HEADERS_TOO_LARGE, None),
    500: (ErrorKind.INTERNAL, None),
    503: (ErrorKind.UNAVAILABLE, "sidecar_busy"),
}


def error_reply(status: int, message: str, request: Request | None) -> Reply:
    """The server's own refusals (malformed HTTP, huge heads, slow bodies, too much held, a
    failed handler), in kind. The status is the server's: a 408 is not the 504 of its kind."""
    kind, code = _SERVER_ERRORS.get(status, (ErrorKind.INTERNAL, None))
    reply = _error(_shape_for(request), SidecarError(kind, message, code=code))
    reply.status = status
    if status == 503:
        reply.headers["retry-after"] = BUSY_RETRY_AFTER
    return reply


def _unknown_path(request: Request) -> Reply:
    err = SidecarError(
        ErrorKind.NOT_FOUND, f"the sidecar does not serve {request.method} {request.path}"
    )
    return _error(_shape_for(request), err)


def _wrong_method(request: Request, allowed: str) -> Reply:
    err = SidecarError(
        ErrorKind.METHOD_NOT_ALLOWED,
        f"{request.method} is not allowed on {request.path}; use {allowed}",
    )
    return _error(_shape_for(request), err, allow=allowed)
