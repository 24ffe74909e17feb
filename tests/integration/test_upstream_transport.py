"""The hop to the provider on real networks: query strings, proxies, private CAs, mutual
TLS, a connection cap per upstream, and which of the agent's headers travel on.

Everything here runs over real loopback sockets: the real SDK clients against an
in-process sidecar, a real aiohttp upstream (plain, TLS or mutual TLS, with a CA made
in the test) and a real CONNECT proxy (`fakes.connect_proxy`).
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest
import yaml

from fakes.certs import PrivateCA
from fakes.connect_proxy import ConnectProxy
from fakes.upstream import FakeUpstream
from integration.conftest import MakeSidecar, Running, openai_bundle
from sidecar.bundle.compile import BundleInvalid, load_snapshot

CHAT: dict[str, Any] = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def client(sc: Running, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sc.base}/v1", api_key="agent", max_retries=0, **kwargs)


def https_bundle(url: str, **upstream: Any) -> dict[str, Any]:
    return {
        "apiVersion": "sidecar/v1",
        "revision": "r1",
        "upstreams": {
            "tls": {"base_url": url, "api_key": {"env": "FAKE_UPSTREAM_KEY"}, **upstream}
        },
        "routes": [{"match": {"model": "gpt-*"}, "upstream": "tls"}],
        "roles": {"agent": [{"actions": ["*"]}]},
    }


@pytest.fixture
def ca(tmp_path: Path) -> PrivateCA:
    return PrivateCA(tmp_path / "pki")


def server_context(ca: PrivateCA, *, require_client: bool = False) -> ssl.SSLContext:
    issued = ca.issue("upstream", dns=("upstream.test", "localhost"), ips=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca.cert)
    return context


@pytest.fixture
async def tls_fake(ca: PrivateCA) -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(name="tls", ssl_context=server_context(ca)) as upstream:
        yield upstream


@pytest.fixture
async def proxy() -> AsyncIterator[ConnectProxy]:
    async with ConnectProxy(hosts={"upstream.test": "127.0.0.1"}) as running:
        yield running


@pytest.fixture(autouse=True)
def no_system_ca_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """The private CA must come from the bundle, not from the test's environment."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


# --- the query string --------------------------------------------------------------------------


async def test_the_agents_query_string_reaches_the_upstream(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    azure_style = client(sc, default_query={"api-version": "2024-10-21"})
    await azure_style.chat.completions.create(**CHAT)
    assert fake.last_request.path == "/v1/chat/completions"
    assert fake.last_request.query_string == "api-version=2024-10-21"


async def test_a_base_url_query_is_sent_and_wins_over_the_agents(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    doc = openai_bundle(fake)
    doc["upstreams"]["fake"]["base_url"] = f"{fake.url}/v1?api-version=2025-01-01"
    sc = await make_sidecar(doc)
    await client(sc).chat.completions.create(**CHAT)
    assert fake.last_request.path == "/v1/chat/completions"
    assert fake.last_request.query_string == "api-version=2025-01-01"
    mixed = client(sc, default_query={"api-version": "1999-01-01", "trace": "on"})
    await mixed.chat.completions.create(**CHAT)
    assert fake.last_request.query_string == "api-version=2025-01-01&trace=on"


# --- the agent's headers -----------------------------------------------------------------------

ACCOUNT_HEADERS = {
    "x-goog-api-key": "agent-google-key",
    "x-goog-user-project": "agent-billing-project",
    "X-Unknown-Vendor": "whatever",
}


async def test_account_selecting_headers_are_dropped_by_default(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    agent = client(
        sc, organization="org-agent", project="proj-agent", default_headers=ACCOUNT_HEADERS
    )
    await agent.chat.completions.create(**CHAT)
    seen = fake.last_request.headers
    for name in ("OpenAI-Organization", "OpenAI-Project", *ACCOUNT_HEADERS):
        assert name not in seen, f"{name} reached the upstream"
    # What the SDKs need the provider to see still travels.
    assert seen["x-stainless-lang"] == "python"
    assert seen["content-type"] == "application/json"
    assert "OpenAI" in seen["user-agent"]
    assert seen["Authorization"] == "Bearer sk-injected-upstream-key"


async def test_headers_the_upstream_lists_are_forwarded(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(
        openai_bundle(fake, forward_headers=["OpenAI-Organization", "x-goog-*"])
    )
    agent = client(
        sc, organization="org-agent", project="proj-agent", default_headers=ACCOUNT_HEADERS
    )
    await agent.chat.completions.create(**CHAT)
    seen = fake.last_request.headers
    assert seen["OpenAI-Organization"] == "org-agent"
    assert seen["x-goog-api-key"] == "agent-google-key"
    assert seen["x-goog-user-project"] == "agent-billing-project"
    assert "OpenAI-Project" not in seen and "X-Unknown-Vendor" not in seen


async def test_anthropic_beta_and_version_still_reach_the_upstream(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    agent = anthropic.AsyncAnthropic(
        base_url=sc.base,
        api_key="agent",
        max_retries=0,
        default_headers={"anthropic-beta": "tools-2024-04-04", "anthropic-workspace": "w"},
    )
    await agent.messages.create(
        model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    seen = fake.last_request.headers
    assert seen["anthropic-beta"] == "tools-2024-04-04"
    assert seen["anthropic-version"] == agent.default_headers["anthropic-version"]
    assert "anthropic-workspace" not in seen


@pytest.mark.parametrize("listed", ["Authorization", "x-api-key", "x-*", "X-Sidecar-Tenant", "*"])
def test_a_bundle_cannot_forward_credentials_or_sidecar_headers(
    tmp_path: Path, listed: str
) -> None:
    import yaml

    doc = https_bundle("https://example.com", forward_headers=[listed])
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(BundleInvalid) as info:
        load_snapshot(tmp_path)
    assert any(p.path == "upstreams.tls.forward_headers[0]" for p in info.value.problems), (
        info.value.problems
    )


# --- errors that are the sidecar's configuration, or a page instead of an API error ------------


async def test_a_missing_provider_key_is_a_configuration_error(
    fake: FakeUpstream, make_sidecar: MakeSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_FOR_TEST", raising=False)
    doc = openai_bundle(fake)
    for name in ("fake", "claude"):
        doc["upstreams"][name]["api_key"] = {"env": "NO_SUCH_KEY_FOR_TEST"}
    sc = await make_sidecar(doc)
    with pytest.raises(openai.InternalServerError) as info:
        await client(sc).chat.completions.create(**CHAT)
    body = info.value.response.json()["error"]
    assert body["code"] == "upstream_credential_missing"
    assert "configuration error" in body["message"]
    assert "NO_SUCH_KEY_FOR_TEST" in body["message"]
    assert info.value.response.headers["x-should-retry"] == "false"

    claude = anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent", max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as ainfo:
        await claude.messages.create(
            model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert ainfo.value.status_code == 500
    error = ainfo.value.response.json()["error"]
    assert error["type"] == "api_error"  # not overloaded_error: retrying will not help
    assert "configuration error" in error["message"]
    assert fake.requests == []


NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


async def test_an_html_error_page_reaches_the_sdk_with_a_useful_message(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    fake.fail_next(502, NGINX_502, content_type="text/html")
    with pytest.raises(openai.APIStatusError) as info:
        await client(sc).chat.completions.create(**CHAT)
    assert info.value.status_code == 502
    error = info.value.response.json()["error"]
    assert error["code"] == "upstream_error_page"
    assert "upstream 'fake' answered 502 with a text/html page" in error["message"]
    assert "502 Bad Gateway" in error["message"] and "<" not in error["message"]
    assert info.value.response.headers["content-type"] == "application/json"

    page = b"<html><head><title>504 Gateway Time-out</title></head><body></body></html>"
    fake.fail_next(504, page, content_type="text/html; charset=utf-8")
    with pytest.raises(openai.APIStatusError) as streamed:
        await client(sc).chat.completions.create(**CHAT, stream=True)
    assert streamed.value.status_code == 504
    assert "'504 Gateway Time-out'" in streamed.value.message

    fake.fail_next(403, b"Forbidden by WAF rule 7", content_type="text/plain")
    claude = anthropic.AsyncAnthropic(base_url=sc.base, api_key="agent", max_retries=0)
    with pytest.raises(anthropic.PermissionDeniedError) as ainfo:
        await claude.messages.create(
            model="claude-x", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    aerror = ainfo.value.response.json()["error"]
    assert aerror["type"] == "permission_error"
    assert "Forbidden by WAF rule 7" in aerror["message"]


async def test_a_json_error_from_the_provider_still_passes_unchanged(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake))
    own = {
        "error": {"message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}
    }
    fake.fail_next(429, own)
    with pytest.raises(openai.RateLimitError) as info:
        await client(sc).chat.completions.create(**CHAT)
    assert info.value.response.json() == own
    # JSON labelled as text (some gateways do) is still the provider's own error.
    fake.fail_next(400, own, content_type="text/plain")
    with pytest.raises(openai.BadRequestError) as mislabelled:
        await client(sc).chat.completions.create(**CHAT)
    assert mislabelled.value.response.json() == own


# --- the connection cap ------------------------------------------------------------------------


async def test_no_more_connections_than_the_cap_and_the_rest_wait(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake, max_connections=2))
    fake.head_delay = 0.2
    agent = client(sc)
    replies = await asyncio.gather(*(agent.chat.completions.create(**CHAT) for _ in range(7)))
    assert all(r.choices[0].message.content for r in replies)
    assert len(fake.requests) == 7
    assert fake.max_in_flight == 2
    assert len(fake.peers) == 2  # the waiting calls reused the two connections


async def test_a_call_that_waits_past_the_connect_timeout_gets_503(
    fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    sc = await make_sidecar(openai_bundle(fake, max_connections=1, timeouts={"connect_ms": 150}))
    fake.head_delay = 1.0
    agent = client(sc)
    first = asyncio.create_task(agent.chat.completions.create(**CHAT))
    await fake.wait_for_requests(1)
    with pytest.raises(openai.APIStatusError) as info:
        await agent.chat.completions.create(**CHAT)
    assert info.value.status_code == 503
    error = info.value.response.json()["error"]
    assert error["code"] == "upstream_connections_busy"
    assert "max_connections" in error["message"]
    assert (await first).choices[0].message.content
    assert len(fake.peers) == 1
    # The refused call did not count against the upstream: its breaker stays closed.
    fake.head_delay = 0
    await agent.chat.completions.create(**CHAT)


# --- TLS: a private CA, a client certificate -----------------------------------------------------


async def test_a_private_ca_from_the_bundle_verifies_the_upstream(
    ca: PrivateCA, tls_fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    untrusting = await make_sidecar(https_bundle(tls_fake.url))
    with pytest.raises(openai.APIStatusError) as info:
        await client(untrusting).chat.completions.create(**CHAT)
    assert info.value.status_code == 502
    assert "certificate verify failed" in info.value.message.lower()
    assert info.value.message.startswith("Error code: 502 - upstream 'tls' failed: cannot connect")

    trusting = await make_sidecar(https_bundle(tls_fake.url, ca_file=str(ca.cert)))
    reply = await client(trusting).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "tls says: hi"


async def test_mutual_tls_presents_the_client_certificate(
    ca: PrivateCA, make_sidecar: MakeSidecar
) -> None:
    mine = ca.issue("sidecar-client", client=True)
    async with FakeUpstream(
        name="mtls", ssl_context=server_context(ca, require_client=True)
    ) as upstream:
        anonymous = await make_sidecar(https_bundle(upstream.url, ca_file=str(ca.cert)))
        with pytest.raises(openai.APIStatusError) as info:
            await client(anonymous).chat.completions.create(**CHAT)
        assert info.value.status_code == 502
        assert upstream.requests == []

        known = await make_sidecar(
            https_bundle(
                upstream.url,
                ca_file=str(ca.cert),
                client_cert=str(mine.cert),
                client_key=str(mine.key),
            )
        )
        reply = await client(known).chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "mtls says: hi"


def test_tls_files_that_do_not_load_refuse_the_bundle(tmp_path: Path, ca: PrivateCA) -> None:
    other = ca.issue("other", client=True)
    cases = {
        "upstreams.tls.ca_file": {"ca_file": str(tmp_path / "missing.pem")},
        "upstreams.tls.client_cert": {"client_cert": str(ca.cert), "client_key": str(other.key)},
        "upstreams.tls.client_key": {"client_key": str(other.key)},
    }
    for path, fields in cases.items():
        (tmp_path / "bundle.yaml").write_text(
            yaml.safe_dump(https_bundle("https://x.test", **fields))
        )
        with pytest.raises(BundleInvalid) as info:
            load_snapshot(tmp_path)
        assert [p.path for p in info.value.problems] == [path], info.value.problems
    plain = https_bundle("http://x.test", ca_file=str(ca.cert))
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(plain))
    with pytest.raises(BundleInvalid):
        load_snapshot(tmp_path)


# --- proxies -----------------------------------------------------------------------------------


async def test_an_upstreams_proxy_tunnels_tls_end_to_end(
    ca: PrivateCA, tls_fake: FakeUpstream, proxy: ConnectProxy, make_sidecar: MakeSidecar
) -> None:
    # upstream.test resolves only inside the proxy: an answer proves the path.
    url = f"https://upstream.test:{tls_fake.port}"
    sc = await make_sidecar(https_bundle(url, ca_file=str(ca.cert), proxy=proxy.url))
    agent = client(sc)
    for _ in range(3):
        reply = await agent.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "tls says: hi"
    assert proxy.connects == [f"upstream.test:{tls_fake.port}"]  # one tunnel, kept alive
    assert tls_fake.last_request.headers["Host"] == f"upstream.test:{tls_fake.port}"


async def test_https_proxy_from_the_environment(
    ca: PrivateCA,
    tls_fake: FakeUpstream,
    proxy: ConnectProxy,
    make_sidecar: MakeSidecar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    url = f"https://upstream.test:{tls_fake.port}"
    sc = await make_sidecar(https_bundle(url, ca_file=str(ca.cert)))
    reply = await client(sc).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "tls says: hi"
    assert proxy.connects == [f"upstream.test:{tls_fake.port}"]

    # `proxy: false` connects directly whatever the environment says.
    direct = await make_sidecar(https_bundle(tls_fake.url, ca_file=str(ca.cert), proxy=False))
    await client(direct).chat.completions.create(**CHAT)
    assert len(proxy.connects) == 1


@pytest.mark.parametrize(
    ("no_proxy", "host"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("*", "127.0.0.1"),
        ("example.com 10.0.0.0/8,127.0.0.0/8", "127.0.0.1"),
        ("example.com,.localhost", "localhost"),  # a leading dot matches the domain itself
        ("*.localhost", "localhost"),
    ],
)
async def test_no_proxy_sends_matching_hosts_directly(
    ca: PrivateCA,
    tls_fake: FakeUpstream,
    proxy: ConnectProxy,
    make_sidecar: MakeSidecar,
    monkeypatch: pytest.MonkeyPatch,
    no_proxy: str,
    host: str,
) -> None:
    monkeypatch.setenv("https_proxy", proxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy)
    url = f"https://{host}:{tls_fake.port}"
    sc = await make_sidecar(https_bundle(url, ca_file=str(ca.cert)))
    reply = await client(sc).chat.completions.create(**CHAT)
    assert reply.choices[0].message.content == "tls says: hi"
    assert proxy.connects == [] and proxy.authorizations == []


async def test_no_proxy_that_does_not_match_leaves_the_proxy_in_use(
    ca: PrivateCA,
    tls_fake: FakeUpstream,
    proxy: ConnectProxy,
    make_sidecar: MakeSidecar,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    # Neither a suffix that is not at a label boundary nor another port matches.
    monkeypatch.setenv("no_proxy", f"st,pstream.test,upstream.test:{tls_fake.port + 1}")
    url = f"https://upstream.test:{tls_fake.port}"
    sc = await make_sidecar(https_bundle(url, ca_file=str(ca.cert)))
    await client(sc).chat.completions.create(**CHAT)
    assert proxy.connects == [f"upstream.test:{tls_fake.port}"]


async def test_http_proxy_from_the_environment_for_a_plain_http_upstream(
    proxy: ConnectProxy, make_sidecar: MakeSidecar, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeUpstream(name="plain") as upstream:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.com")  # does not match upstream.test
        sc = await make_sidecar(https_bundle(f"http://upstream.test:{upstream.port}"))
        # The agent's own client would read HTTP_PROXY too: it talks to the sidecar directly.
        agent = client(
            sc,
            default_query={"api-version": "1"},
            http_client=openai.DefaultAsyncHttpxClient(trust_env=False),
        )
        reply = await agent.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "plain says: hi"
        assert proxy.forwards == [
            f"POST http://upstream.test:{upstream.port}/v1/chat/completions?api-version=1 HTTP/1.1"
        ]
        assert upstream.last_request.query_string == "api-version=1"


async def test_proxy_credentials_from_the_url_and_a_refusal_named(
    ca: PrivateCA, tls_fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    expected = "Basic " + base64.b64encode(b"me:p@ss").decode()
    async with ConnectProxy(hosts={"upstream.test": "127.0.0.1"}, require_auth=expected) as guarded:
        url = f"https://upstream.test:{tls_fake.port}"
        good = f"http://me:p%40ss@127.0.0.1:{guarded.port}"
        sc = await make_sidecar(https_bundle(url, ca_file=str(ca.cert), proxy=good))
        reply = await client(sc).chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "tls says: hi"

        bad = await make_sidecar(https_bundle(url, ca_file=str(ca.cert), proxy=guarded.url))
        with pytest.raises(openai.APIStatusError) as info:
            await client(bad).chat.completions.create(**CHAT)
        assert info.value.status_code == 502
        assert "407" in info.value.message and f"127.0.0.1:{guarded.port}" in info.value.message
        # The sidecar retried the connect once (the default retry.on: [connect, reset]).
        assert guarded.authorizations[0] == expected
        assert guarded.authorizations[1:] == [None] * (len(guarded.authorizations) - 1)


async def test_proxy_credentials_for_a_plain_http_upstream(make_sidecar: MakeSidecar) -> None:
    expected = "Basic " + base64.b64encode(b"me:secret").decode()
    async with (
        FakeUpstream(name="plain") as upstream,
        ConnectProxy(hosts={"upstream.test": "127.0.0.1"}, require_auth=expected) as guarded,
    ):
        proxy_url = f"http://me:secret@127.0.0.1:{guarded.port}"
        url = f"http://upstream.test:{upstream.port}"
        sc = await make_sidecar(https_bundle(url, proxy=proxy_url))
        agent = client(sc)
        reply = await agent.chat.completions.create(**CHAT)
        assert reply.choices[0].message.content == "plain says: hi"
        assert guarded.authorizations == [expected]


def test_a_proxy_the_sidecar_cannot_speak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the bundle it is a problem with its path; in the environment, a load warning."""
    for bad in ("socks5://127.0.0.1:1080", "https://proxy.test:3128", "http://proxy.test:x"):
        doc = https_bundle("https://x.test", proxy=bad)
        (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(doc))
        with pytest.raises(BundleInvalid) as info:
            load_snapshot(tmp_path)
        assert [p.path for p in info.value.problems] == ["upstreams.tls.proxy"]
        assert "proxy" in info.value.problems[0].message

    monkeypatch.setenv("HTTPS_PROXY", "socks5://user:hunter2@127.0.0.1:1080")
    (tmp_path / "bundle.yaml").write_text(yaml.safe_dump(https_bundle("https://x.test")))
    snapshot = load_snapshot(tmp_path)
    assert snapshot.upstreams["tls"].transport.proxy is None
    warning = next(w for w in snapshot.warnings if "HTTPS_PROXY" in w)
    assert "socks5" in warning and "hunter2" not in warning


async def test_a_reload_keeps_connections_unless_a_tls_file_changed(
    ca: PrivateCA, tls_fake: FakeUpstream, make_sidecar: MakeSidecar
) -> None:
    ca_copy = ca.directory / "bundle-ca.pem"
    ca_copy.write_bytes(ca.cert.read_bytes())
    doc = https_bundle(tls_fake.url, ca_file=str(ca_copy))
    sc = await make_sidecar(doc)
    agent = client(sc)
    await agent.chat.completions.create(**CHAT)
    doc["revision"] = "r2"
    sc.write_bundle(doc)
    assert await sc.sidecar.reload() == "success"
    await agent.chat.completions.create(**CHAT)
    assert len(tls_fake.peers) == 1  # same settings, same files: same pool

    # A rotated CA file (here: the same CA written again with a comment) is a new pool.
    ca_copy.write_bytes(b"# rotated\n" + ca.cert.read_bytes())
    doc["revision"] = "r3"
    sc.write_bundle(doc)
    assert await sc.sidecar.reload() == "success"
    await agent.chat.completions.create(**CHAT)
    assert len(tls_fake.peers) == 2
