"""JWT identity cost per call: `JwtVerifier.verify` as the proxy calls it.

Two regimes per algorithm, on an issuer with a static two-key JWKS:

- same token: an agent re-sending its bearer token on every call (the usual case);
- new token: a different token on every call (every verification a first one).

Run: .venv/bin/python bench/jwt_bench.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sidecar.identity.jwt import JwtIssuerConfig, JwtVerifier

ISS = "https://idp.example.com"
AUD = "sidecar"


def keys() -> dict[str, tuple[Any, dict[str, Any]]]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    return {
        "RS256": (rsa_key, {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "r"}),
        "ES256": (ec_key, {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "e"}),
    }


def token(key: Any, alg: str, kid: str, n: int) -> str:
    now = int(time.time())
    claims = {
        "iss": ISS,
        "aud": AUD,
        "sub": f"bot-{n}",
        "tenant": "acme",
        "roles": ["analyst"],
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


async def timed(verifier: JwtVerifier, tokens: list[str]) -> list[float]:
    out = []
    for t in tokens:
        started = time.perf_counter_ns()
        await verifier.verify(t)
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


async def main(calls: int) -> None:
    made = keys()
    config = JwtIssuerConfig(
        issuer=ISS,
        audiences=(AUD,),
        algorithms=("RS256", "ES256"),
        jwks={"keys": [jwk for _, jwk in made.values()]},
    )
    print("| algorithm | regime | calls | p50 µs | p99 µs | mean µs |")
    print("|---|---|---:|---:|---:|---:|")
    for alg, (key, jwk) in made.items():
        verifier = JwtVerifier([config])
        same = token(key, alg, jwk["kid"], 0)
        await verifier.verify(same)  # the first verification is a new token's
        fresh = [token(key, alg, jwk["kid"], n) for n in range(1, calls + 1)]
        for regime, tokens in (("same token", [same] * calls), ("new token", fresh)):
            us = sorted(await timed(verifier, tokens))
            p99 = us[int(len(us) * 0.99) - 1]
            print(
                f"| {alg} | {regime} | {len(us)} | {statistics.median(us):.1f} | "
                f"{p99:.1f} | {statistics.fmean(us):.1f} |"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=2000)
    asyncio.run(main(parser.parse_args().calls))
