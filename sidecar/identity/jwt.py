"""Verify an agent's bearer JWT against trusted issuers and map its claims to a Principal.

The JWT counterpart of the virtual API keys in `resolve`: instead of a digest
list in the bundle, the bundle names issuers (an IdP, a workload-identity
broker) and the JWKS their signing keys are published in. Everything that can
be decided once -- which algorithms an issuer may use, which key objects a JWKS
holds, the decode options -- is decided at construction or at JWKS fetch time,
so a request costs one header parse, one dict lookup and one signature check.
A token that verified is remembered (bounded, least recently used first out)
until it would no longer verify: its exp, or the key set it verified under
being replaced; so an agent re-sending its token costs one hash and a lookup.

Only asymmetric algorithms are accepted: with HS* the verification key is a
shared secret, and a JWKS is public, so accepting HS* would let anyone who
reads the JWKS mint tokens (the classic RS256/HS256 confusion attack).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NoReturn
from urllib.parse import urlsplit

import aiohttp
import jwt
from jwt.types import Options

from sidecar.identity.jwks import ASYMMETRIC_ALGORITHMS, KeySet, parse_jwks
from sidecar.identity.jwt_claims import ClaimMap as ClaimMap  # part of an issuer's config
from sidecar.identity.jwt_claims import _principal
from sidecar.identity.jwt_errors import _clip, _fail, _iso
from sidecar.identity.principal import Principal
from sidecar.lru import LruCache

log = logging.getLogger("sidecar.identity")

Fetch = Callable[[str], Awaitable[bytes]]

# Real tokens are a few KiB; anything far larger is not worth base64-decoding.
MAX_TOKEN_CHARS = 16 * 1024
MAX_JWKS_BYTES = 1024 * 1024
FETCH_TIMEOUT_S = 5.0
# Verified tokens remembered per bundle; an entry is a digest and a Principal, not the token.
VERIFIED_CACHE_LIMIT = 4096

_B64URL = re.compile(r"[A-Za-z0-9_-]*")

# Indirection so tests can move the JWKS cache's clock without touching the event loop's.
_monotonic = time.monotonic

# Reading iss/kid/alg to pick the issuer and key; the verified decode follows.
_UNVERIFIED: Options = {"verify_signature": False}


@dataclass(frozen=True)
class JwtIssuerConfig:
    issuer: str
    audiences: tuple[str, ...]
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    jwks: dict[str, Any] | None = None
    jwks_url: str | None = None
    leeway_s: float = 30.0
    claims: ClaimMap = field(default_factory=ClaimMap)
    cache_s: float = 300.0
    min_refresh_s: float = 30.0


class _RemoteJwks:
    """A JWKS fetched from a URL: cached, refetched when stale or on an unknown kid.

    One lock serialises fetches; a caller that waited for it checks whether a
    fetch happened meanwhile (the attempt counter moved) and, if so, uses that
    result instead of fetching again -- so a cold cache under load costs one fetch.
    Every attempt, failed or not, counts towards `min_refresh_s`, so a down
    JWKS endpoint is neither hammered nor allowed to add its timeout to every request.
    """

    def __init__(self, url: str, cache_s: float, min_refresh_s: float, allowed: frozenset[str]):
        self.url = url
        self._cache_s = cache_s
        self._min_refresh_s = min_refresh_s
        self._allowed = allowed
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._attempted_at = float("-inf")
        self._attempts = 0
        self._error = ""
        self._lock = asyncio.Lock()

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def keys(self) -> KeySet:
        assert self._keys is not None, "only called after current() succeeded"
        return self._keys

    def may_refetch(self) -> bool:
        return _monotonic() - self._attempted_at >= self._min_refresh_s

    async def current(self, fetch: Fetch) -> KeySet:
        """Keys to verify with: refreshed if stale, the previous ones if a refresh fails."""
        if self._keys is None or _monotonic() - self._fetched_at >= self._cache_s:
            await self.refetch(fetch, self._attempts)
        if self._keys is None:
            self.unavailable()
        return self._keys

    @property
    def failing(self) -> bool:
        """Whether the latest fetch attempt failed (we may be serving older keys)."""
        return bool(self._error)

    async def refetch(self, fetch: Fetch, seen: int) -> None:
        """Fetch unless someone did since `seen` or the last attempt is too recent."""
        async with self._lock:
            if self._attempts != seen or not self.may_refetch():
                return
            # The counter and timestamp move only once an attempt has finished: a
            # caller that snapshotted the counter meanwhile sees it move and reuses
            # the result, and a cancelled fetch leaves the next caller free to retry.
            try:
                body = await fetch(self.url)
                keys = parse_jwks(json.loads(body), self._allowed)
            except Exception as e:  # any fetch failure must become a 401, never a 500
                self._attempts += 1
                self._attempted_at = _monotonic()
                self._error = str(e) or type(e).__name__
                log.warning(
                    "JWKS fetch failed",
                    extra={"jwks_url": self.url, "error": self._error, "stale": bool(self._keys)},
                )
                return
            self._attempts += 1
            self._attempted_at = self._fetched_at = _monotonic()
            self._keys = keys
            self._error = ""

    def unavailable(self, prefix: str = "") -> NoReturn:
        _fail(
            f"{prefix}the JWKS at {self.url} could not be fetched: {self._error}",
            "jwks_unavailable",
        )


# ---------------------------------------------------------------------------
# Issuers, compiled once.


@dataclass(frozen=True)
class _Issuer:
    config: JwtIssuerConfig
    algorithms: frozenset[str]
    options: Options
    static: KeySet | None
    remote: _RemoteJwks | None


def _compile_issuer(config: JwtIssuerConfig) -> _Issuer:
    name = config.issuer
    if not name:
        raise ValueError("a JWT issuer needs a non-empty 'issuer'")
    if isinstance(config.audiences, str) or not config.audiences:
        raise ValueError(f"JWT issuer {name}: 'audiences' must be a non-empty list")
    if not config.algorithms:
        raise ValueError(f"JWT issuer {name}: 'algorithms' must not be empty")
    for alg in config.algorithms:
        if alg not in ASYMMETRIC_ALGORITHMS:
            why = (
                "unsigned tokens are never accepted"
                if alg.lower() == "none"
                else "symmetric algorithms are never accepted (a JWKS is public)"
                if alg.upper().startswith("HS")
                else "it is not a supported asymmetric algorithm"
            )
            raise ValueError(f"JWT issuer {name}: algorithm {alg!r} rejected: {why}")
    if (config.jwks is None) == (config.jwks_url is None):
        raise ValueError(f"JWT issuer {name}: give exactly one of 'jwks' and 'jwks_url'")
    for label, value in (
        ("leeway_s", config.leeway_s),
        ("cache_s", config.cache_s),
        ("min_refresh_s", config.min_refresh_s),
    ):
        if value < 0:
            raise ValueError(f"JWT issuer {name}: {label} must be >= 0")
    algorithms = frozenset(config.algorithms)
    static = remote = None
    if config.jwks is not None:
        try:
            static = parse_jwks(config.jwks, algorithms)
        except ValueError as e:
            raise ValueError(f"JWT issuer {name}: {e}") from None
    else:
        assert config.jwks_url is not None
        if urlsplit(config.jwks_url).scheme not in ("http", "https"):
            raise ValueError(f"JWT issuer {name}: jwks_url must be an http(s) URL")
        remote = _RemoteJwks(config.jwks_url, config.cache_s, config.min_refresh_s, algorithms)
    options: Options = {"require": ["exp", "iss"], "enforce_minimum_key_length": True}
    return _Issuer(config, algorithms, options, static, remote)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token that verified, and the window in which verifying it again would pass."""

    principal: Principal
    issuer: _Issuer
    keys: KeySet  # the key set it verified under: replaced keys mean verifying again
    not_before: float  # wall-clock seconds, leeway included, as PyJWT compares them
    expires: float


def _verified(
    claims: Mapping[str, Any], principal: Principal, issuer: _Issuer, keys: KeySet
) -> _Verified:
    leeway = issuer.config.leeway_s
    starts = [
        t for t in (_seconds(claims.get("nbf")), _seconds(claims.get("iat"))) if t is not None
    ]
    exp = _seconds(claims.get("exp"))
    assert exp is not None, "PyJWT requires and checks exp"
    return _Verified(
        principal,
        issuer,
        keys,
        not_before=max(starts, default=float("-inf")) - leeway,
        expires=exp + leeway,
    )


def _seconds(value: Any) -> int | None:
    """A time claim as PyJWT reads it (`int()` of the value), or None if absent."""
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


# ---------------------------------------------------------------------------


class JwtVerifier:
    """Verifies bearer JWTs from the configured issuers; one instance per bundle.

    `fetch(url) -> body` is injectable (tests, custom transports); by default
    one aiohttp session, created lazily inside the running loop, fetches every
    issuer's JWKS. Call `close()` when the verifier is retired.
    """

    def __init__(
        self,
        issuers: Sequence[JwtIssuerConfig],
        fetch: Fetch | None = None,
        *,
        cache_limit: int = VERIFIED_CACHE_LIMIT,
    ) -> None:
        compiled: dict[str, _Issuer] = {}
        for config in issuers:
            if config.issuer in compiled:
                raise ValueError(f"JWT issuer {config.issuer} is configured twice")
            compiled[config.issuer] = _compile_issuer(config)
        self._issuers: Mapping[str, _Issuer] = MappingProxyType(compiled)
        self._trusted = ", ".join(compiled)
        self._fetch: Fetch = fetch or self._http_get
        self._session: aiohttp.ClientSession | None = None
        self._verified: LruCache[bytes, _Verified] = LruCache(cache_limit)

    @property
    def cached_tokens(self) -> int:
        """How many verified tokens are remembered (never more than the cache's limit)."""
        return len(self._verified)

    @staticmethod
    def looks_like_jwt(token: str) -> bool:
        """Whether a bearer credential is a JWT (as opposed to an opaque API key).

        A cheap structural test for routing, not a verification: three
        base64url segments (the signature may be empty, so unsigned tokens are
        routed here and rejected with a clear message) whose header is a JSON
        object naming an `alg`.
        """
        if len(token) > MAX_TOKEN_CHARS:
            return False
        parts = token.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            return False
        if not all(_B64URL.fullmatch(p) for p in parts):
            return False
        try:
            header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
        except (ValueError, binascii.Error, RecursionError):
            return False
        return isinstance(header, dict) and "alg" in header

    async def verify(self, token: str) -> Principal:
        """The Principal a valid token names; SidecarError(UNAUTHENTICATED) otherwise."""
        if len(token) > MAX_TOKEN_CHARS:
            _fail(f"malformed token: longer than {MAX_TOKEN_CHARS} characters")
        digest = _digest(token)
        seen = self._verified.get(digest, None)
        if seen is not None:
            now = time.time()
            if seen.not_before <= now < seen.expires and await self._keys(seen.issuer) is seen.keys:
                return seen.principal
            # Expired, or the keys changed: verify afresh (and fail as that says).
            self._verified.discard(digest)
        try:
            unverified = jwt.decode_complete(token, options=_UNVERIFIED)
        except jwt.PyJWTError as e:
            _fail(f"malformed token: {e}")
        header: dict[str, Any] = unverified["header"]
        payload: dict[str, Any] = unverified["payload"]

        iss = payload.get("iss")
        if not isinstance(iss, str):
            _fail("token is missing required claim 'iss'")
        issuer = self._issuers.get(iss)
        if issuer is None:
            _fail(f"token issuer {_clip(iss)} is not trusted (trusted issuers: {self._trusted})")

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in issuer.algorithms:
            if isinstance(alg, str) and alg.lower() == "none":
                _fail("unsigned tokens (alg 'none') are never accepted")
            _fail(
                f"token algorithm {_clip(alg)} is not accepted for issuer {iss} "
                f"(accepted: {', '.join(issuer.config.algorithms)})"
            )
        kid: str | None = header.get("kid")  # PyJWT has checked it is a string if present

        keys, key = await self._key(issuer, kid, alg)
        config = issuer.config
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=config.audiences,
                issuer=config.issuer,
                leeway=config.leeway_s,
                options=issuer.options,
            )
        except jwt.ExpiredSignatureError:
            _fail(f"token expired at {_iso(payload.get('exp'))}", "token_expired")
        except jwt.ImmatureSignatureError:
            nbf = payload.get("nbf")
            if isinstance(nbf, int | float) and nbf > time.time() + config.leeway_s:
                _fail(f"token is not valid yet: not before {_iso(nbf)}")
            _fail(f"token is not valid yet: issued in the future at {_iso(payload.get('iat'))}")
        except jwt.InvalidAudienceError:
            _fail(
                f"token audience {_clip(payload.get('aud'))} does not include any of the "
                f"expected audiences: {', '.join(config.audiences)}",
                "invalid_audience",
            )
        except jwt.MissingRequiredClaimError as e:
            code = "invalid_audience" if e.claim == "aud" else "invalid_token"
            _fail(f"token is missing required claim {e.claim!r}", code)
        except jwt.InvalidSignatureError:
            which = f"key {_clip(kid)}" if kid is not None else "the key"
            _fail(f"token signature does not verify with {which} of issuer {iss}")
        except jwt.DecodeError as e:
            _fail(f"malformed token: {e}")
        except jwt.PyJWTError as e:
            _fail(f"invalid token: {e}")
        principal = _principal(claims, config.claims)
        self._verified.put(digest, _verified(claims, principal, issuer, keys))
        return principal

    async def _keys(self, issuer: _Issuer) -> KeySet:
        """The key set a token of this issuer would be verified with now."""
        if issuer.remote is None:
            assert issuer.static is not None
            return issuer.static
        return await issuer.remote.current(self._fetch)

    async def _key(self, issuer: _Issuer, kid: str | None, alg: str) -> tuple[KeySet, jwt.PyJWK]:
        name = issuer.config.issuer
        remote = issuer.remote
        if remote is None:
            assert issuer.static is not None
            keys = issuer.static
        else:
            seen = remote.attempts
            keys = await remote.current(self._fetch)
            # An unknown kid is probably a key rotation: refetch, unless a fetch has
            # happened since this call began (then these keys are as fresh as any).
            if kid is not None and kid not in keys.by_kid:
                if remote.attempts == seen:
                    await remote.refetch(self._fetch, seen)
                    keys = remote.keys
                if kid not in keys.by_kid and remote.failing:
                    remote.unavailable(f"key id {_clip(kid)} is not in the cached JWKS and ")

        if kid is None:
            if keys.sole is None:
                _fail(
                    f"token has no 'kid' header and issuer {name} publishes {keys.count} keys",
                    "unknown_key",
                )
            by_alg = keys.sole
        else:
            found = keys.by_kid.get(kid)
            if found is None:
                _fail(f"unknown key id {_clip(kid)} for issuer {name}", "unknown_key")
            by_alg = found
        key = by_alg.get(alg)
        if key is None:
            which = f"key {_clip(kid)}" if kid is not None else "the issuer's key"
            _fail(f"{which} of issuer {name} cannot verify {alg} signatures")
        return keys, key

    async def _http_get(self, url: str) -> bytes:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
            )
        async with self._session.get(url, headers={"accept": "application/json"}) as resp:
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise RuntimeError(f"response larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
