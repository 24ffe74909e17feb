"""What crosses the hop: the agent's key never; the upstream's key always."""

from __future__ import annotations

from multidict import CIMultiDict

from sidecar.bundle.snapshot import UpstreamSpec
from sidecar.call import Provider
from sidecar.forward import downstream_headers, upstream_headers

OPENAI = UpstreamSpec(
    name="o",
    kind="http",
    provider=Provider.OPENAI,
    headers=(("Authorization", "Bearer up"), ("X-Static", "1")),
)
ANTHROPIC = UpstreamSpec(
    name="a", kind="http", provider=Provider.ANTHROPIC, headers=(("x-api-key", "up"),)
)


def incoming() -> CIMultiDict[str]:
    return CIMultiDict(
        [
            ("Host", "localhost:8700"),
            ("Authorization", "Bearer agent"),
            ("X-Api-Key", "agent"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "drop me"),
            ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"),
            ("Content-Length", "10"),
            ("Accept-Encoding", "br"),
            ("traceparent", "00-aaaa-bbbb-01"),
            ("X-Sidecar-Tenant", "spoof"),
            ("User-Agent", "OpenAI/Python"),
            ("X-Stainless-Lang", "python"),
            ("OpenAI-Beta", "assistants=v2"),
        ]
    )


def test_openai_hop() -> None:
    out = upstream_headers(incoming(), OPENAI, {"traceparent": "00-mine-01"})
    assert out.getall("Authorization") == ["Bearer up"]
    assert "x-api-key" not in out
    for gone in (
        "host",
        "x-hop",
        "keep-alive",
        "connection",
        "transfer-encoding",
        "content-length",
        "accept-encoding",
        "x-sidecar-tenant",
    ):
        assert gone not in out, gone
    assert out["traceparent"] == "00-mine-01"
    assert out["User-Agent"] == "OpenAI/Python"
    assert out["OpenAI-Beta"] == "assistants=v2"
    assert out["X-Static"] == "1"
    assert out["content-type"] == "application/json"


def test_anthropic_hop_sets_version_when_missing_and_passes_it_when_given() -> None:
    out = upstream_headers(incoming(), ANTHROPIC, {})
    assert out.getall("x-api-key") == ["up"]
    assert "authorization" not in out
    assert out["anthropic-version"] == "2023-06-01"
    given = incoming()
    given["anthropic-version"] = "2024-01-01"
    assert upstream_headers(given, ANTHROPIC, {})["anthropic-version"] == "2024-01-01"


def test_response_hop() -> None:
    out = downstream_headers(
        CIMultiDict(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", "5"),
                ("Content-Encoding", "gzip"),
                ("Transfer-Encoding", "chunked"),
                ("x-request-id", "req_1"),
                ("x-ratelimit-remaining-requests", "9"),
                ("Set-Cookie", "a=b"),
                ("x-sidecar-decision-id", "forged"),
            ]
        )
    )
    assert dict(out) == {
        "Content-Type": "application/json",
        "x-request-id": "req_1",
        "x-ratelimit-remaining-requests": "9",
    }


def test_an_allowed_header_the_agents_connection_names_still_ends_here() -> None:
    headers = CIMultiDict(
        [("Connection", "OpenAI-Beta, x-stainless-lang"), ("OpenAI-Beta", "v2"), ("Accept", "*/*")]
    )
    headers.add("X-Stainless-Lang", "python")
    out = upstream_headers(headers, OPENAI, {})
    assert "OpenAI-Beta" not in out and "X-Stainless-Lang" not in out
    assert out["Accept"] == "*/*"


def test_repeated_allowed_headers_keep_every_value_and_static_headers_replace() -> None:
    headers = CIMultiDict([("anthropic-beta", "a"), ("anthropic-beta", "b"), ("X-Static", "agent")])
    out = upstream_headers(headers, ANTHROPIC, {})
    assert out.getall("anthropic-beta") == ["a", "b"]
    assert "X-Static" not in out  # not allowed, and ANTHROPIC sets none
    out = upstream_headers(CIMultiDict([("X-Static", "agent")]), OPENAI, {})
    assert out.getall("X-Static") == ["1"]
