"""NO_PROXY as curl and the HTTP libraries read it, and the proxy URL forms accepted."""

from __future__ import annotations

import pytest

from sidecar.upstream.proxy import bypasses, env_proxy_url, parse_proxy_url


@pytest.mark.parametrize(
    ("no_proxy", "host", "port", "direct"),
    [
        ("*", "api.openai.com", 443, True),
        ("openai.com", "api.openai.com", 443, True),
        ("openai.com", "openai.com", 443, True),
        (".openai.com", "openai.com", 443, True),
        ("*.openai.com", "api.openai.com", 443, True),
        ("openai.com", "notopenai.com", 443, False),
        ("OpenAI.COM.", "API.openai.com", 443, True),
        ("api.openai.com:443", "api.openai.com", 443, True),
        ("api.openai.com:8443", "api.openai.com", 443, False),
        ("10.0.0.0/8", "10.1.2.3", 443, True),
        ("10.0.0.0/8", "11.1.2.3", 443, False),
        ("10.0.0.0/8", "ten.example", 443, False),
        ("::1", "::1", 443, True),
        ("[::1]:8080", "::1", 8080, True),
        ("fd00::/8", "fd12::5", 443, True),
        ("192.168.1.1", "192.168.1.10", 443, False),
        ("example.com , internal.corp", "svc.internal.corp", 80, True),
        ("", "api.openai.com", 443, False),
        (" , ", "api.openai.com", 443, False),
    ],
)
def test_no_proxy_matching(no_proxy: str, host: str, port: int, direct: bool) -> None:
    assert bypasses(no_proxy, host, port) is direct


def test_the_scheme_picks_the_variable_and_lower_case_wins() -> None:
    env = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "HTTP_PROXY": "p:3"}
    assert env_proxy_url("https", "a.test", 443, env) == "http://lower:2"
    assert env_proxy_url("http", "a.test", 80, env) == "p:3"
    assert env_proxy_url("https", "a.test", 443, {**env, "NO_PROXY": ".test"}) is None
    assert env_proxy_url("https", "a.test", 443, {"HTTP_PROXY": "p:3"}) is None


def test_proxy_urls() -> None:
    assert parse_proxy_url("proxy.corp:3128").address == "proxy.corp:3128"
    assert parse_proxy_url("http://proxy.corp").port == 80
    assert parse_proxy_url("http://[fd00::1]:3128").address == "[fd00::1]:3128"
    with_auth = parse_proxy_url("http://me:p%40ss@proxy.corp:3128/")
    assert with_auth.authorization == "Basic bWU6cEBzcw=="
    assert "p@ss" not in repr(with_auth) and "bWU6" not in repr(with_auth)
    for bad in ("socks5://p:1", "https://p:1", "http://:3128", "http://p:99999", "http://p/x"):
        with pytest.raises(ValueError):
            parse_proxy_url(bad)
