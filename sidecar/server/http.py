"""The proxy listener: OpenAI- and Anthropic-shaped endpoints over aiohttp.

This module knows HTTP and nothing of policy: it reads the body (within the
size limit), lets the adapter parse it, runs the pipeline, and writes what
comes back — streams chunk by chunk as they arrive.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from sidecar.adapters import anthropic, openai
from sidecar.adapters.base import Adapter
from sidecar.authz.context import listing_context
from sidecar.bundle.snapshot import Snapshot
from sidecar.bundle.store import BundleStore
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.principal import Principal
from sidecar.pipeline import Exchange, Pipeline, Reply, StreamReply

log = logging.getLogger("sidecar.http")

ADAPTERS: dict[str, Adapter] = {
    **{path: openai.ADAPTER for path in openai.OPERATIONS},
    **{path: anthropic.ADAPTER for path in anthropic.OPERATIONS},
}


def new_decision_id() -> str:
    return os.urandom(12).hex()


class ProxyHandlers:
    def __init__(self, store: BundleStore, pipeline: Pipeline, max_body_bytes: int) -> None:
        self.store = store
        self.pipeline = pipeline
        self.max_body_bytes = max_body_bytes

    def routes(self) -> list[web.RouteDef]:
        defs = [web.post(path, self.llm) for path in ADAPTERS]
        defs += [
            web.get("/v1/models", self.list_models),
            web.get("/v1/models/{model:.+}", self.get_model),
        ]
        # Registered after the real methods: any other method on a known path.
        defs += [web.route("*", path, _wrong_method) for path in ADAPTERS]
        defs += [web.route("*", "/v1/models", _wrong_method)]
        return defs

    # --- LLM calls -----------------------------------------------------------------------

    async def llm(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        adapter = ADAPTERS[path]
        ex = Exchange(new_decision_id(), "", time.perf_counter())
        gen = self.store.acquire()
        if gen is None:
            return self._not_ready(adapter, ex)
        try:
            ex.revision = gen.snapshot.revision
            try:
                raw = await self._read_body(request)
                call = adapter.parse(path, raw)
            except SidecarError as err:
                return self._refuse(adapter, err, ex)
            result = await self.pipeline.llm(gen, adapter, call, request.headers, ex)
            if isinstance(result, Reply):
                return _response(result)
            return await self._stream(request, result)
        finally:
            self.store.release(gen)

    async def _read_body(self, request: web.Request) -> bytes:
        length = request.content_length
        if length is not None and length > self.max_body_bytes:
            raise _too_large(length, self.max_body_bytes)
        try:
            # The application's client_max_size is the same limit, so a chunked body
            # that grows past it stops being read at the limit.
            return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large(None, self.max_body_bytes) from None

    async def _stream(self, request: web.Request, result: StreamReply) -> web.StreamResponse:
        response = web.StreamResponse(status=result.status, headers=result.headers)
        try:
            await response.prepare(request)
            async for chunk in result.chunks:
                await response.write(chunk)
            await response.write_eof()
        finally:
            # Ends the upstream stream at once if the agent went away mid-way.
            await result.chunks.aclose()  # type: ignore[attr-defined]
        return response

    def _refuse(self, adapter: Adapter, err: SidecarError, ex: Exchange) -> web.Response:
        reply = self.pipeline.error(adapter, err, ex)
        self.pipeline.count(ex, reply.status)
        return _response(reply)

    def _not_ready(self, adapter: Adapter, ex: Exchange) -> web.Response:
        err = SidecarError(
            ErrorKind.UNAVAILABLE,
            "the sidecar has no valid policy bundle loaded yet; see its log or /bundle",
            code="bundle_not_loaded",
            retry_after=1,
        )
        reply = self.pipeline.error(adapter, err, ex)
        self.pipeline.count(ex, reply.status)
        return _response(reply)

    # --- models --------------------------------------------------------------------------

    async def list_models(self, request: web.Request) -> web.Response:
        return await self._models(request, None)

    async def get_model(self, request: web.Request) -> web.Response:
        return await self._models(request, request.match_info["model"])

    async def _models(self, request: web.Request, model: str | None) -> web.Response:
        """Answered from the bundle, in Anthropic's shape when the caller is Anthropic's SDK."""
        ex = Exchange(new_decision_id(), "", time.perf_counter())
        anthropic_shape = "anthropic-version" in request.headers
        adapter: Adapter = anthropic.ADAPTER if anthropic_shape else openai.ADAPTER
        gen = self.store.acquire()
        if gen is None:
            return self._not_ready(adapter, ex)
        try:
            ex.revision = gen.snapshot.revision
            principal = await self.pipeline.identify(gen, request.headers, ex)
            models = permitted_models(gen.snapshot, principal)
            created = int(gen.snapshot.loaded_at)
            shape = _anthropic_model if anthropic_shape else _openai_model
            body: dict[str, Any]
            if model is not None:
                if model not in models:  # unknown and forbidden look alike: no oracle
                    raise SidecarError(
                        ErrorKind.NOT_FOUND,
                        f"model '{model}' is not offered by bundle revision {ex.revision}",
                        code="model_not_found",
                    )
                body = shape(model, created)
            elif anthropic_shape:
                body = {
                    "data": [shape(m, created) for m in models],
                    "has_more": False,
                    "first_id": models[0] if models else None,
                    "last_id": models[-1] if models else None,
                }
            else:
                body = {"object": "list", "data": [shape(m, created) for m in models]}
        except SidecarError as err:
            return self._refuse(adapter, err, ex)
        finally:
            self.store.release(gen)
        reply = Reply(200, self.pipeline.sidecar_headers(ex), orjson.dumps(body))
        reply.headers["content-type"] = "application/json"
        self.pipeline.count(ex, 200)
        return _response(reply)


LISTING_ACTIONS = ("llm.models", "llm.chat", "llm.responses", "llm.completion", "llm.embeddings")


def permitted_models(snapshot: Snapshot, principal: Principal) -> list[str]:
    """The bundle's models this caller may use with any action."""
    context = listing_context(principal)
    decide = snapshot.authorizer.decide
    return [
        m
        for m in snapshot.models
        if any(decide(principal, a, "Model", m, context).allowed for a in LISTING_ACTIONS)
    ]


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


def _response(reply: Reply) -> web.Response:
    return web.Response(status=reply.status, headers=reply.headers, body=reply.body)


def proxy_app(store: BundleStore, pipeline: Pipeline, max_body_bytes: int) -> web.Application:
    # Handlers turn aiohttp's body-limit error into one in the caller's protocol.
    app = web.Application(client_max_size=max_body_bytes)
    app.add_routes(ProxyHandlers(store, pipeline, max_body_bytes).routes())
    app.router.add_route("*", "/{tail:.*}", _unknown_path)
    return app


def _shape_for(request: web.Request) -> Adapter:
    if request.path.startswith("/v1/messages") or "anthropic-version" in request.headers:
        return anthropic.ADAPTER
    return openai.ADAPTER


async def _unknown_path(request: web.Request) -> web.Response:
    err = SidecarError(
        ErrorKind.NOT_FOUND, f"the sidecar does not serve {request.method} {request.path}"
    )
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json"})
    return web.Response(status=404, headers=headers, body=_shape_for(request).error_body(err))


async def _wrong_method(request: web.Request) -> web.Response:
    allowed = "GET" if request.path == "/v1/models" else "POST"
    err = SidecarError(
        ErrorKind.METHOD_NOT_ALLOWED,
        f"{request.method} is not allowed on {request.path}; use {allowed}",
    )
    headers: CIMultiDict[str] = CIMultiDict({"content-type": "application/json", "allow": allowed})
    return web.Response(status=405, headers=headers, body=_shape_for(request).error_body(err))
