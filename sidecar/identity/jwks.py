"""A JWKS parsed into ready-to-use key objects, once per document.

Which algorithms each key may verify is decided here, from the key's own
`alg` or its type and curve, so verifying a token only looks a key up.
Symmetric keys (`oct`) and private members are never used: a JWKS is public.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

# Which algorithms can ever verify with which key type; HS* and "none" are absent on purpose.
_RSA_ALGS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_EC_ALGS_BY_CURVE = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
_OKP_CURVES = frozenset({"Ed25519", "Ed448"})
ASYMMETRIC_ALGORITHMS = _RSA_ALGS | frozenset(_EC_ALGS_BY_CURVE.values()) | {"EdDSA"}

# JWK members that only a private key has; a JWKS should never carry them, and
# if one does we verify with the public half only.
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


@dataclass(frozen=True)
class KeySet:
    # kid -> algorithm -> key bound to that algorithm (PyJWT refuses any other alg with it).
    by_kid: Mapping[str, Mapping[str, jwt.PyJWK]]
    # The single usable key, for tokens that carry no kid.
    sole: Mapping[str, jwt.PyJWK] | None
    count: int


def key_algorithms(jwk: Mapping[str, Any]) -> frozenset[str]:
    """The asymmetric algorithms this JWK may verify, from its own alg or its kty/crv."""
    kty, crv, alg = jwk.get("kty"), jwk.get("crv"), jwk.get("alg")
    if kty == "RSA":
        possible = _RSA_ALGS
    elif kty == "EC" and isinstance(crv, str) and crv in _EC_ALGS_BY_CURVE:
        possible = frozenset({_EC_ALGS_BY_CURVE[crv]})
    elif kty == "OKP" and crv in _OKP_CURVES:
        possible = frozenset({"EdDSA"})
    else:  # oct (a shared secret) or something PyJWT cannot verify with
        return frozenset()
    if alg is not None:
        return possible & {alg} if isinstance(alg, str) else frozenset()
    return possible


def parse_jwks(document: Any, allowed: frozenset[str]) -> KeySet:
    """Build key objects for every usable signing key; raise ValueError if there is none."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS must be a JSON object with a 'keys' list")
    by_kid: dict[str, dict[str, jwt.PyJWK]] = {}
    usable: list[dict[str, jwt.PyJWK]] = []
    for raw in document["keys"]:
        if not isinstance(raw, dict):
            continue
        if raw.get("use", "sig") != "sig":
            continue
        ops = raw.get("key_ops")
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        kid = raw.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        public = {k: v for k, v in raw.items() if k not in _PRIVATE_MEMBERS}
        keys: dict[str, jwt.PyJWK] = {}
        for alg in sorted(key_algorithms(public) & allowed):
            try:
                key = jwt.PyJWK(public, alg)
            except jwt.PyJWTError:
                continue
            if key.Algorithm.check_key_length(key.key) is not None:
                continue  # e.g. RSA below 2048 bits: not a key we trust signatures from
            keys[alg] = key
        if not keys:
            continue
        usable.append(keys)
        if kid is not None:
            merged = by_kid.setdefault(kid, {})
            for alg, key in keys.items():
                merged.setdefault(alg, key)
    if not usable:
        raise ValueError(
            f"the JWKS holds no usable signing key for algorithms {', '.join(sorted(allowed))}"
        )
    frozen = {kid: MappingProxyType(keys) for kid, keys in by_kid.items()}
    sole = MappingProxyType(usable[0]) if len(usable) == 1 else None
    return KeySet(MappingProxyType(frozen), sole, len(usable))
