"""JWT bearer verification: claims, algorithms, JWKS caching and rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

import sidecar.identity.jwt as jwt_module
from sidecar.errors import ErrorKind, SidecarError
from sidecar.identity.jwt import ClaimMap, JwtIssuerConfig, JwtVerifier
from sidecar.identity.principal import Principal

ISS = "https://idp.example.com"
AUD = "sidecar"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


RSA_JWK = rsa_jwk(RSA_KEY, "rsa-1")
RSA_OTHER_JWK = rsa_jwk(RSA_OTHER, "rsa-2")
EC_JWK = ec_jwk(EC_KEY, "ec-1")


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISS,
        "aud": AUD,
        "sub": "bot-1",
        "tenant": "acme",
        "iat": now,
        "exp": now + 300,
        "roles": ["analyst", "writer"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def rs256(kid: str | None = "rsa-1", key: rsa.RSAPrivateKey = RSA_KEY, **over: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**over), key, algorithm="RS256", headers=headers)


def es256(kid: str = "ec-1", **over: Any) -> str:
    return jwt.encode(claims(**over), EC_KEY, algorithm="ES256", headers={"kid": kid})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """Hand-built tokens PyJWT refuses to sign (alg none, HS256 keyed with a public key)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def issuer(**over: Any) -> JwtIssuerConfig:
    fields: dict[str, Any] = {
        "issuer": ISS,
        "audiences": (AUD, "other-aud"),
        "jwks": {"keys": [RSA_JWK, EC_JWK]},
    }
    fields.update(over)
    return JwtIssuerConfig(**fields)


STATIC = JwtVerifier([issuer()])


async def rejects(verifier: JwtVerifier, token: str, code: str, fragment: str) -> SidecarError:
    with pytest.raises(SidecarError) as info:
        await verifier.verify(token)
    err = info.value
    assert err.kind is ErrorKind.UNAUTHENTICATED and err.status == 401
    assert err.code == code, err.message
    assert fragment in err.message, err.message
    if len(token) > 20:
        assert token not in err.message
        assert token.split(".")[-1] not in err.message or not token.split(".")[-1]
    return err


# --- valid tokens ---------------------------------------------------------------


async def test_rs256_token_maps_to_principal_with_roles_list() -> None:
    principal = await STATIC.verify(rs256())
    assert principal == Principal(
        id="bot-1",
        tenant="acme",
        agent="bot-1",
        user="",
        roles=frozenset({"analyst", "writer"}),
        via="jwt",
    )


async def test_es256_token_with_scope_string_user_and_agent_claims() -> None:
    verifier = JwtVerifier(
        [issuer(claims=ClaimMap(principal="client_id", user="email", agent="azp", roles="scope"))]
    )
    token = es256(
        client_id="svc-7",
        email="ada@example.com",
        azp="billing-agent",
        scope="read  write admin",
        aud=["x", "other-aud"],
    )
    principal = await verifier.verify(token)
    assert principal == Principal(
        id="svc-7",
        tenant="acme",
        agent="billing-agent",
        user="ada@example.com",
        roles=frozenset({"read", "write", "admin"}),
        via="jwt",
    )


async def test_absent_roles_and_nested_claim_path() -> None:
    principal = await STATIC.verify(rs256(roles=None))
    assert principal.roles == frozenset()
    nested = JwtVerifier([issuer(claims=ClaimMap(roles="realm_access.roles"))])
    principal = await nested.verify(rs256(realm_access={"roles": ["ops"]}))
    assert principal.roles == frozenset({"ops"})


async def test_token_without_kid_uses_the_only_key() -> None:
    verifier = JwtVerifier([issuer(jwks={"keys": [RSA_JWK]})])
    assert (await verifier.verify(rs256(kid=None))).id == "bot-1"
    await rejects(STATIC, rs256(kid=None), "unknown_key", "no 'kid'")


async def test_expiry_within_leeway_is_accepted() -> None:
    now = int(time.time())
    assert (await STATIC.verify(rs256(exp=now - 10))).id == "bot-1"


# --- rejections -----------------------------------------------------------------


async def test_expired_token() -> None:
    exp = int(time.time()) - 120
    when = datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await rejects(STATIC, rs256(exp=exp, iat=exp - 60), "token_expired", f"token expired at {when}")


async def test_token_without_exp_is_rejected() -> None:
    await rejects(STATIC, rs256(exp=None), "invalid_token", "missing required claim 'exp'")


async def test_not_yet_valid() -> None:
    now = int(time.time())
    await rejects(STATIC, rs256(nbf=now + 600), "invalid_token", "not valid yet: not before")
    await rejects(STATIC, rs256(iat=now + 600), "invalid_token", "issued in the future")
    assert (await STATIC.verify(rs256(nbf=now + 10))).id == "bot-1"  # within leeway


async def test_wrong_audience() -> None:
    err = await rejects(STATIC, rs256(aud="billing-api"), "invalid_audience", "billing-api")
    assert "sidecar, other-aud" in err.message
    await rejects(STATIC, rs256(aud=None), "invalid_audience", "missing required claim 'aud'")


async def test_wrong_issuer() -> None:
    await rejects(
        STATIC, rs256(iss="https://evil.example.com"), "invalid_token", "'https://evil.example.com'"
    )
    await rejects(STATIC, rs256(iss=None), "invalid_token", "missing required claim 'iss'")


async def test_bad_signature_same_kid_other_key() -> None:
    await rejects(STATIC, rs256(key=RSA_OTHER), "invalid_token", "signature does not verify")


async def test_alg_none_rejected() -> None:
    token = forge({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, claims(), None)
    assert JwtVerifier.looks_like_jwt(token)
    await rejects(STATIC, token, "invalid_token", "alg 'none'")


async def test_hs256_keyed_with_public_key_rejected() -> None:
    pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = forge({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), pem)
    await rejects(STATIC, token, "invalid_token", "algorithm 'HS256' is not accepted")


async def test_algorithm_not_listed_for_issuer() -> None:
    verifier = JwtVerifier([issuer(algorithms=("ES256",))])
    await rejects(verifier, rs256(), "invalid_token", "'RS256' is not accepted")
    # Listed, but the key under that kid is EC: PS256 cannot be verified with it.
    token = jwt.encode(claims(), RSA_KEY, algorithm="PS256", headers={"kid": "ec-1"})
    ps = JwtVerifier([issuer(algorithms=("ES256", "PS256"))])
    await rejects(ps, token, "invalid_token", "cannot verify PS256")


async def test_missing_or_bad_tenant() -> None:
    await rejects(STATIC, rs256(tenant=None), "invalid_token", "missing required claim 'tenant'")
    await rejects(STATIC, rs256(tenant=""), "invalid_token", "'tenant' must be a non-empty string")
    await rejects(STATIC, rs256(roles=[1, 2]), "invalid_token", "'roles' must be a list")


async def test_unknown_kid_with_inline_jwks() -> None:
    await rejects(STATIC, rs256(kid="nope"), "unknown_key", "unknown key id 'nope'")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "sk-abc123",
        "a.b",
        "a.b.c",
        "!!!.???.***",
        b64(b"not json") + "." + b64(b"{}") + ".sig",
        b64(b'{"alg":"RS256"}') + "." + b64(b"[1,2]") + ".c2ln",
        "x" * 20_000,
    ],
)
async def test_malformed_tokens(token: str) -> None:
    await rejects(STATIC, token, "invalid_token", "malformed token")


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "RS1"])
def test_config_rejects_non_asymmetric_algorithms(alg: str) -> None:
    with pytest.raises(ValueError, match=repr(alg)):
        JwtVerifier([issuer(algorithms=("RS256", alg))])


def test_config_rejects_bad_key_sources() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JwtVerifier([issuer(jwks_url="https://idp.example.com/jwks")])
    with pytest.raises(ValueError, match="exactly one"):
        JwtVerifier([issuer(jwks=None)])
    with pytest.raises(ValueError, match="no usable signing key"):
        JwtVerifier([issuer(jwks={"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "s"}]})])
    with pytest.raises(ValueError, match="audiences"):
        JwtVerifier([issuer(audiences=())])
    with pytest.raises(ValueError, match="twice"):
        JwtVerifier([issuer(), issuer()])


def test_looks_like_jwt() -> None:
    assert JwtVerifier.looks_like_jwt(rs256())
    assert JwtVerifier.looks_like_jwt(es256())
    assert not JwtVerifier.looks_like_jwt("sk-abc123")
    assert not JwtVerifier.looks_like_jwt("a.b")
    assert not JwtVerifier.looks_like_jwt("a.b.c")  # header is not JSON
    assert not JwtVerifier.looks_like_jwt(b64(b'{"typ":"JWT"}') + ".e30.c2ln")  # no alg
    assert not JwtVerifier.looks_like_jwt(b64(b"[" * 5000) + ".e30.c2ln")  # hostile nesting


# --- JWKS over HTTP -------------------------------------------------------------


class JwksServer:
    """A real aiohttp server on 127.0.0.1 that serves (and counts requests for) a JWKS."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = [RSA_JWK]
        self.requests = 0
        self.delay_s = 0.0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        return web.json_response({"keys": self.keys})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/jwks", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        host, port = self.runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/jwks"

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


Factory = Callable[..., JwtVerifier]


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    srv = JwksServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
async def remote(server: JwksServer) -> AsyncIterator[Factory]:
    """Verifiers reading `server`'s JWKS with the default aiohttp fetch; closed afterwards."""
    made: list[JwtVerifier] = []

    def make(**over: Any) -> JwtVerifier:
        fields: dict[str, Any] = {"jwks": None, "jwks_url": server.url}
        fields.update(over)
        verifier = JwtVerifier([issuer(**fields)])
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.close()


class FakeClock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(jwt_module, "_monotonic", lambda: self.now)


async def test_first_verify_fetches_and_then_caches(server: JwksServer, remote: Factory) -> None:
    verifier = remote()
    assert server.requests == 0  # nothing fetched at construction
    assert (await verifier.verify(rs256())).id == "bot-1"
    assert (await verifier.verify(rs256(sub="bot-2"))).id == "bot-2"
    assert server.requests == 1


async def test_key_rotation_new_kid_refetches(server: JwksServer, remote: Factory) -> None:
    verifier = remote(min_refresh_s=0)
    await verifier.verify(rs256())
    server.keys = [RSA_JWK, RSA_OTHER_JWK]
    principal = await verifier.verify(rs256(kid="rsa-2", key=RSA_OTHER))
    assert principal.id == "bot-1"
    assert server.requests == 2


async def test_unknown_kid_refetch_is_rate_limited(
    server: JwksServer, remote: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(monkeypatch)
    verifier = remote(min_refresh_s=60, cache_s=3600)
    await verifier.verify(rs256())
    assert server.requests == 1

    # Straight after a fetch, an unknown kid does not refetch.
    server.keys = [RSA_JWK, RSA_OTHER_JWK, EC_JWK]
    await rejects(verifier, rs256(kid="rsa-2", key=RSA_OTHER), "unknown_key", "'rsa-2'")
    assert server.requests == 1

    clock.now += 61  # window passed: one refetch picks up the rotated keys
    await verifier.verify(rs256(kid="rsa-2", key=RSA_OTHER))
    assert server.requests == 2

    clock.now += 10  # a second unknown kid within the window: rejected without fetching
    await rejects(verifier, rs256(kid="rsa-9"), "unknown_key", "unknown key id 'rsa-9'")
    assert server.requests == 2
    await verifier.verify(es256())  # fetched by the refetch above
    assert server.requests == 2


async def test_concurrent_verifies_on_cold_cache_share_one_fetch(
    server: JwksServer, remote: Factory
) -> None:
    server.delay_s = 0.01
    verifier = remote(min_refresh_s=0)
    tokens = [rs256(sub=f"bot-{i}") for i in range(20)]
    principals = await asyncio.gather(*(verifier.verify(t) for t in tokens))
    assert [p.id for p in principals] == [f"bot-{i}" for i in range(20)]
    assert server.requests == 1


async def test_concurrent_unknown_kids_share_one_refetch(
    server: JwksServer, remote: Factory
) -> None:
    verifier = remote(min_refresh_s=0)
    await verifier.verify(rs256())
    server.keys = [RSA_JWK, RSA_OTHER_JWK]
    server.delay_s = 0.01
    token = rs256(kid="rsa-2", key=RSA_OTHER)
    await asyncio.gather(*(verifier.verify(token) for _ in range(10)))
    assert server.requests == 2


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks"


async def test_jwks_server_down_on_cold_cache(remote: Factory) -> None:
    url = closed_port_url()
    verifier = remote(jwks_url=url)
    await rejects(verifier, rs256(), "jwks_unavailable", f"the JWKS at {url} could not be fetched")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (None, "HTTP 500"),
        (b"<html>", "could not be fetched"),
        (b'{"keys": []}', "no usable signing key"),
    ],
)
async def test_jwks_bad_responses(body: bytes | None, fragment: str) -> None:
    async def fetch(url: str) -> bytes:
        if body is None:
            raise RuntimeError("HTTP 500")
        return body

    verifier = JwtVerifier([issuer(jwks=None, jwks_url="https://idp.example.com/jwks")], fetch)
    err = await rejects(verifier, rs256(), "jwks_unavailable", fragment)
    assert "https://idp.example.com/jwks" in err.message


async def test_non_200_from_real_server(server: JwksServer, remote: Factory) -> None:
    verifier = remote(jwks_url=server.url.replace("/jwks", "/missing"))
    await rejects(verifier, rs256(), "jwks_unavailable", "HTTP 404")


async def test_stale_cache_survives_a_down_server(server: JwksServer, remote: Factory) -> None:
    verifier = remote(cache_s=0, min_refresh_s=0)  # every verify finds the cache stale
    await verifier.verify(rs256())
    assert server.requests == 1
    await server.stop()
    assert (await verifier.verify(rs256(sub="bot-2"))).id == "bot-2"
    # An unknown kid now fails because the refetch failed, and says so.
    await rejects(verifier, rs256(kid="rsa-2", key=RSA_OTHER), "jwks_unavailable", "'rsa-2'")


async def test_injected_fetch_is_used() -> None:
    calls: list[str] = []

    async def fetch(url: str) -> bytes:
        calls.append(url)
        return json.dumps({"keys": [EC_JWK]}).encode()

    fetcher: Callable[[str], Awaitable[bytes]] = fetch
    verifier = JwtVerifier([issuer(jwks=None, jwks_url="https://idp.example.com/k")], fetcher)
    assert (await verifier.verify(es256())).tenant == "acme"
    assert calls == ["https://idp.example.com/k"]
    await verifier.close()


# --- remembered verifications ----------------------------------------------------


async def test_a_verified_token_is_remembered_within_a_bound() -> None:
    verifier = JwtVerifier([issuer()], cache_limit=4)
    hot = rs256(sub="hot")
    first = await verifier.verify(hot)
    for i in range(20):
        assert (await verifier.verify(rs256(sub=f"bot-{i}"))).id == f"bot-{i}"
        assert await verifier.verify(hot) is first  # remembered: no second verification
        assert verifier.cached_tokens <= 4
    assert verifier.cached_tokens == 4
    await rejects(verifier, rs256(key=RSA_OTHER), "invalid_token", "signature")
    await rejects(verifier, rs256(key=RSA_OTHER), "invalid_token", "signature")  # not kept
    assert await verifier.verify(hot) is first


async def test_a_remembered_token_is_verified_again_when_the_jwks_is_refetched(
    server: JwksServer, remote: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock(monkeypatch)
    verifier = remote(cache_s=60, min_refresh_s=0)
    token = rs256()
    first = await verifier.verify(token)
    clock.now += 30
    assert await verifier.verify(token) is first
    server.keys = [rsa_jwk(RSA_OTHER, "rsa-1")]  # the key behind rsa-1 is replaced
    clock.now += 31  # the JWKS is stale: the next verification fetches it again
    await rejects(verifier, token, "invalid_token", "signature")
    assert server.requests == 2


async def test_a_remembered_token_keeps_its_exp_and_leeway() -> None:
    verifier = JwtVerifier([issuer(leeway_s=0)])
    exp = int(time.time()) + 1
    token = rs256(exp=exp)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is first
    await asyncio.sleep(exp - time.time() + 0.05)
    await rejects(verifier, token, "token_expired", "expired")
    assert verifier.cached_tokens == 0
