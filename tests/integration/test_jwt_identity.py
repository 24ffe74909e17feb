"""JWT identity through the real OpenAI SDK: keys made here, JWKS in the bundle or served."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import openai
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle

ISSUER = "https://issuer.example.test"
AUDIENCE = "agent-sidecar"


def jwk_of(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        public = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig"}


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def token(key: Any = RSA_KEY, kid: str = "rsa-1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "research-bot",
        "tenant": "acme",
        "roles": ["analyst"],
        "iat": now,
        "exp": now + 300,
        **claims,
    }
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def jwt_bundle(fake: FakeUpstream, **issuer: Any) -> dict[str, Any]:
    doc = openai_bundle(fake)
    doc["identity"] = {"jwt": [{"issuer": ISSUER, "audiences": [AUDIENCE], **issuer}]}
    doc["roles"] = {"analyst": [{"actions": ["llm.chat"], "models": ["gpt-4o*"]}]}
    return doc


async def with_jwks_file(fake: FakeUpstream, make_sidecar: MakeSidecar) -> Running:
    sc = await make_sidecar(None)
    jwks = {"keys": [jwk_of(RSA_KEY, "rsa-1"), jwk_of(EC_KEY, "ec-1")]}
    (sc.bundle_dir / "jwks.json").write_text(json.dumps(jwks))
    sc.write_bundle(jwt_bundle(fake, jwks_file="jwks.json"))
    assert await sc.sidecar.reload() == "success"
    return sc


def client(sc: Running, bearer: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key=bearer, max_retries=0)


async def chat(sc: Running, bearer: str, model: str = "gpt-4o") -> str:
    reply = await client(sc, bearer).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello"}]
    )
    return reply.choices[0].message.content or ""


async def test_valid_tokens_identify_the_caller_and_roles_drive_authorization(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await with_jwks_file(fake, make_sidecar)
    bearer = token()
    assert await chat(sc, bearer) == fake.reply_for("hello")
    assert await chat(sc, token(EC_KEY, "ec-1", "ES256")) == fake.reply_for("hello")
    span = await sc.wait_for_span("chat gpt-4o")
    attrs = dict(span.attributes or {})
    assert (attrs["sidecar.principal.id"], attrs["sidecar.tenant.id"]) == ("research-bot", "acme")
    assert bearer not in fake.everything_seen()  # the agent's token never goes upstream
    with pytest.raises(openai.PermissionDeniedError):  # the token's roles do not reach gpt-3.5
        await chat(sc, token(), model="gpt-3.5-turbo")
    with pytest.raises(openai.PermissionDeniedError):  # no roles in the token: default deny
        await chat(sc, token(roles=[]))


@pytest.mark.parametrize(
    ("bearer", "code", "fragment"),
    [
        (lambda: token(exp=int(time.time()) - 3600), "token_expired", "expired"),
        (lambda: token(aud="someone-else"), "invalid_audience", AUDIENCE),
        (lambda: token(OTHER_KEY, "rsa-unknown"), "unknown_key", "rsa-unknown"),
        (lambda: token(OTHER_KEY, "rsa-1"), "invalid_token", "signature"),
        (lambda: token(iss="https://evil.example.test"), "invalid_token", "evil.example.test"),
        (lambda: "sk-not-a-jwt", "invalid_token", "JWT"),
    ],
)
async def test_bad_tokens_are_refused_with_a_clear_reason(
    fake: FakeUpstream, make_sidecar: MakeSidecar, bearer: Any, code: str, fragment: str
) -> None:
    sc = await with_jwks_file(fake, make_sidecar)
    with pytest.raises(openai.AuthenticationError) as info:
        await chat(sc, bearer())
    assert info.value.code == code
    assert fragment in info.value.message
    assert fake.requests == []


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"keys": [jwk_of(RSA_KEY, "rsa-1")], "hits": 0}

    async def serve(request: web.Request) -> web.Response:
        state["hits"] += 1
        return web.json_response({"keys": state["keys"]})

    app = web.Application()
    app.router.add_get("/jwks.json", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/jwks.json", state
    await runner.cleanup()


async def test_jwks_url_is_cached_and_refreshed_for_a_new_key(
    fake: FakeUpstream, make_sidecar: MakeSidecar, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    url, state = jwks_server
    sc = await make_sidecar(jwt_bundle(fake, jwks_url=url, min_refresh_s=0))
    for _ in range(3):
        assert await chat(sc, token())
    assert state["hits"] == 1  # fetched once, then cached
    state["keys"].append(jwk_of(EC_KEY, "ec-rotated"))  # the issuer rotates in a new key
    assert await chat(sc, token(EC_KEY, "ec-rotated", "ES256"))
    assert state["hits"] == 2


async def test_a_token_that_verified_stops_working_at_its_exp(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await with_jwks_file(fake, make_sidecar)
    sc.write_bundle(jwt_bundle(fake, jwks_file="jwks.json", leeway_s=0))
    assert await sc.sidecar.reload() == "success"
    exp = int(time.time()) + 2
    bearer = token(exp=exp)
    for _ in range(3):  # verified once, then served as remembered
        assert await chat(sc, bearer) == fake.reply_for("hello")
    await asyncio.sleep(exp - time.time() + 0.05)
    with pytest.raises(openai.AuthenticationError) as info:
        await chat(sc, bearer)
    assert info.value.code == "token_expired"


async def test_a_token_verified_under_old_keys_is_refused_once_the_jwks_rotates(
    fake: FakeUpstream, make_sidecar: MakeSidecar, jwks_server: tuple[str, dict[str, Any]]
) -> None:
    url, state = jwks_server
    sc = await make_sidecar(jwt_bundle(fake, jwks_url=url, cache_s=1, min_refresh_s=0))
    bearer = token()
    for _ in range(3):
        assert await chat(sc, bearer)
    # The issuer replaces the key behind the same kid (a compromised key withdrawn).
    state["keys"] = [jwk_of(OTHER_KEY, "rsa-1")]
    await asyncio.sleep(1.1)  # the fetched JWKS is now stale: the next call refetches
    with pytest.raises(openai.AuthenticationError) as info:
        await chat(sc, bearer)
    assert info.value.code == "invalid_token"
    assert "signature" in info.value.message
    assert await chat(sc, token(OTHER_KEY, "rsa-1"))  # the new key's tokens pass


async def test_a_token_verified_under_old_keys_is_refused_after_a_bundle_reload(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await with_jwks_file(fake, make_sidecar)
    bearer = token()
    for _ in range(3):
        assert await chat(sc, bearer)
    (sc.bundle_dir / "jwks.json").write_text(json.dumps({"keys": [jwk_of(OTHER_KEY, "rsa-1")]}))
    assert await sc.sidecar.reload() == "success"
    with pytest.raises(openai.AuthenticationError) as info:
        await chat(sc, bearer)
    assert info.value.code == "invalid_token"
