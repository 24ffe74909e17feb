"""The egress guard reads hosts the way a WHATWG client will, and finds URLs in text."""

from __future__ import annotations

import json
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.guards.egress import (
    BAD_SCHEME,
    EGRESS_NOT_ALLOWED,
    EXTRA_HOLD_CHARS,
    MALFORMED_URL,
    SSRF_METADATA,
    SSRF_PRIVATE_ADDRESS,
    EgressChecker,
    strings_in,
)

CHECKER = EgressChecker()

PRIVATE = [
    # loopback, unspecified, RFC 1918, CGNAT, link-local, multicast, reserved, broadcast
    "http://127.0.0.1/",
    "http://127.255.255.254:8080/x",
    "http://0.0.0.0/",
    "http://10.1.2.3/",
    "http://172.16.0.1/",
    "http://172.31.255.255/",
    "http://192.168.1.1/",
    "http://100.64.0.1/",
    "http://169.254.1.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    # IPv6 and its IPv4-carrying forms
    "http://[::1]/",
    "http://[::]/",
    "http://[0:0:0:0:0:0:0:1]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd12:3456::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:0:127.0.0.1]/",
    "http://[::127.0.0.1]/",
    "http://[64:ff9b::7f00:1]/",
    "http://[64:ff9b::10.0.0.1]/",
    "http://[2002:7f00::1]/",
    "http://[2002:c0a8:101::1]/",
    # numeric spellings WHATWG turns into loopback / private addresses
    "http://2130706433/",
    "http://0177.0.0.1/",
    "http://0x7f.0.0.1/",
    "http://0x7f000001/",
    "http://0x7F.1/",
    "http://127.1/",
    "http://10.1/",
    "http://127.0.0.1./",
    "http://0/",
    "http://0x7f.0.00.0x1/",
    "http://017700000001/",
    # percent-encoding, Unicode digits and dots, invisible characters
    "http://%31%32%37.0.0.1/",
    "http://%6c%6f%63%61%6c%68%6f%73%74/",
    "http://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/",  # full width
    "http://127。0。0。1/",
    "http://①②⑦.0.0.1/",
    "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/",
    "http://loc\u00adalhost/",
    "http://LOCALHOST/",
    "http://loc\talhost/",
    # names only a local resolver answers
    "http://localhost/",
    "http://localhost./",
    "http://localhost:8080/",
    "http://api.localhost/",
    "http://printer.local/",
    "http://db.internal:5432/",
    "http://router.home.arpa/",
    "http://kubernetes.default.svc/",
    "http://vault:8200/",
    "http://redis/",
    "http://lvh.me/",
    "http://app.localtest.me/",
    "http://127.0.0.1.nip.io/",
    "http://app-10-0-0-1.sslip.io/",
    # userinfo, fragment and backslash tricks: the host that is really contacted
    "http://allowed.com@127.0.0.1/",
    "http://127.0.0.1#@allowed.com/",
    "http://127.0.0.1?@allowed.com/",
    "http://allowed.com\\@127.0.0.1/",
    "http://127.0.0.1:80\\@allowed.com/",
    "http://a@b@127.0.0.1/",
    "http:\\\\127.0.0.1\\",
    "http:/127.0.0.1/",
    "http:///127.0.0.1/",
    "https:10.0.0.1",
    # zone ids: WHATWG rejects them, other clients connect anyway
    "http://[fe80::1%25eth0]/",
    # upper-case scheme, whitespace WHATWG strips
    "HTTP://127.0.0.1/",
    "  http://127.0.0.1/\n",
]


@pytest.mark.parametrize("url", PRIVATE)
def test_private_targets_are_reported(url: str) -> None:
    assert CHECKER.check(url) == SSRF_PRIVATE_ADDRESS


METADATA = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254:80/",
    "http://2852039166/",
    "http://0xa9fea9fe/",
    "http://0251.0376.0251.0376/",
    "http://169.254.43518/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[64:ff9b::169.254.169.254]/",
    "http://[fd00:ec2::254]/latest/",
    "http://100.100.100.200/latest/meta-data/",
    "http://169.254.170.2/v2/credentials",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata.google.internal./",
    "http://metadata/computeMetadata/v1/",
    "http://instance-data/latest/",
    "http://evil.com@169.254.169.254/",
    "http://169.254.169.254.nip.io/",
]


@pytest.mark.parametrize("url", METADATA)
def test_metadata_endpoints_are_reported(url: str) -> None:
    assert CHECKER.check(url) == SSRF_METADATA


MALFORMED = [
    "http://",
    "http:// ",
    "http://?",
    "http://#",
    "http://..",
    "http://localhost..",
    "//",
    "http://exa mple.com/",
    "http://example.com:99999/",
    "http://example.com:80a/",
    "http://[::1/",
    "http://[::1]x/",
    "http://[::1]]/",
    "http://1.2.3.4.5/",
    "http://08.0.0.1/",
    "http://256.0.0.1/",
    "http://foo.0x7f/",
    "http://%2531%2532%2537.0.0.1/",
    "http://%ff/",
    "http://xn--localhost-/",
    "http://ex\u200dample.com/",
    "0://evil.com:80;http://google.com:80/",
    ":// 127.0.0.1",
    # credentials, and hosts that WHATWG and RFC 3986 clients read differently
    "http://user:password@example.com/",
    "http://user@example.com/",
    "http://example.com\\@example.org/",
    # a zone id on a public address: one client rejects it, another connects
    "http://[2001:4860::1%25eth0]/",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_and_ambiguous_urls_are_reported(url: str) -> None:
    assert CHECKER.check(url) == MALFORMED_URL


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
        "ftp://example.com/file",
        "dict://127.0.0.1:11211/stat",
        "ldap://example.com/",
        "javascript:alert(1)",
        "data:text/html,hi",
        "ws://example.com/socket",
        "a://127.0.0.1",
        "rdar://1234",
    ],
)
def test_schemes_outside_the_allowed_set_are_reported(url: str) -> None:
    assert CHECKER.check(url) == BAD_SCHEME


PUBLIC = [
    "https://api.openai.com/v1/chat/completions",
    "https://example.com",
    "https://example.com:8443/path?q=1#frag",
    "http://142.42.1.1/",
    "http://8.8.8.8/",
    "http://172.32.0.1/",
    "http://223.255.255.254/",
    "http://[2001:4860:4860::8888]/",
    "http://[::ffff:8.8.8.8]/",
    "http://[64:ff9b::808:808]/",
    "http://a.b-c.de/",
    "http://j.mp",
    "https://☺.damowmow.com/",
    "http://xn--nxasmq6b.com/",
    "http://مثال.إختبار",
    "https://foo.com/blah_(wikipedia)#cite-1",
    "https://example.com/?next=user@host",
    "https://www.example.com/local",
    "https://localhost.example.com/",
    "https://internal.example.com/",
    # text without a scheme is a target only when it names a public host
    "www.example.com",
    "example.com:8080/x",
    "142.42.1.1:8080/",
    "a/b/c",
    "just words",
    "134744072",  # 8.8.8.8
]


@pytest.mark.parametrize("url", PUBLIC)
def test_public_urls_pass(url: str) -> None:
    assert CHECKER.check(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("10.0.0.1:9000", SSRF_PRIVATE_ADDRESS),
        ("127.0.0.1", SSRF_PRIVATE_ADDRESS),
        ("::1", SSRF_PRIVATE_ADDRESS),
        ("0:0:0:0:0:0:0:1", SSRF_PRIVATE_ADDRESS),
        ("[::1]:8080", SSRF_PRIVATE_ADDRESS),
        ("localhost", SSRF_PRIVATE_ADDRESS),
        ("localhost:6379", SSRF_PRIVATE_ADDRESS),
        ("redis:6379", SSRF_PRIVATE_ADDRESS),
        ("//127.0.0.1/x", SSRF_PRIVATE_ADDRESS),
        ("//①②⑦.0.0.1", SSRF_PRIVATE_ADDRESS),
        ("127.001", SSRF_PRIVATE_ADDRESS),
        ("2130706433", SSRF_PRIVATE_ADDRESS),
        ("0x7f000001", SSRF_PRIVATE_ADDRESS),
        ("0", SSRF_PRIVATE_ADDRESS),
        ("169.254.169.254/latest", SSRF_METADATA),
        ("metadata.google.internal", SSRF_METADATA),
    ],
)
def test_targets_without_a_scheme(url: str, expected: str) -> None:
    assert CHECKER.check(url) == expected


def test_allow_list_globs() -> None:
    checker = EgressChecker(allow_hosts=["api.example.com", "*.github.com", "10.0.0.5"])
    assert checker.check("https://api.example.com/v1") is None
    assert checker.check("https://API.Example.COM./v1") is None
    assert checker.check("https://api.github.com/repos") is None
    assert checker.check("https://a.b.github.com/") is None
    assert checker.check("https://github.com/") == EGRESS_NOT_ALLOWED
    assert checker.check("https://evilgithub.com/") == EGRESS_NOT_ALLOWED
    assert checker.check("https://api.github.com.evil.com/") == EGRESS_NOT_ALLOWED
    assert checker.check("https://example.com/") == EGRESS_NOT_ALLOWED
    assert checker.check("https://api.github.com@evil.com/") == MALFORMED_URL
    assert checker.check("https://api.github.com\\@evil.com/") == MALFORMED_URL
    # An allowed host never lifts the private-address block.
    assert checker.check("http://0xa.0.0.5/") == SSRF_PRIVATE_ADDRESS


def test_allow_list_can_admit_a_private_host_when_private_blocking_is_off() -> None:
    checker = EgressChecker(allow_hosts=["10.0.0.5", "vault.internal"], block_private=False)
    assert checker.check("http://0xa.0.0.5/") is None
    assert checker.check("http://10.0.0.5:8200/") is None
    assert checker.check("http://vault.internal/") is None
    assert checker.check("http://10.0.0.6/") == EGRESS_NOT_ALLOWED
    # Metadata endpoints stay blocked whatever the configuration.
    assert checker.check("http://169.254.169.254/") == SSRF_METADATA


def test_unicode_allow_entries_match_their_punycode_form() -> None:
    checker = EgressChecker(allow_hosts=["bücher.example"])
    assert checker.check("https://xn--bcher-kva.example/") is None
    assert checker.check("https://BÜCHER.example/") is None


def test_private_blocking_can_be_turned_off() -> None:
    checker = EgressChecker(block_private=False)
    assert checker.check("http://127.0.0.1/") is None
    assert checker.check("http://localhost/") is None
    assert checker.check("http://[fd00:ec2::254]/") == SSRF_METADATA


def test_allowed_schemes_are_configurable() -> None:
    checker = EgressChecker(allow_schemes=("https", "wss"))
    assert checker.check("wss://example.com/stream") is None
    assert checker.check("http://example.com/") == BAD_SCHEME
    assert checker.check("wss://127.0.0.1/") == SSRF_PRIVATE_ADDRESS


def test_file_urls_only_leave_the_machine_with_a_host() -> None:
    checker = EgressChecker(allow_schemes=("http", "https", "file"))
    assert checker.check("file:///etc/hosts") is None
    assert checker.check("file://169.254.169.254/x") == SSRF_METADATA


def test_invalid_allow_entries_are_rejected() -> None:
    with pytest.raises(ValueError, match="allow_hosts"):
        EgressChecker(allow_hosts=[""])


def _found(text: str, checker: EgressChecker = CHECKER) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in checker.scan(text)]


def test_scan_prose_reports_exact_spans() -> None:
    text = (
        "Please fetch http://169.254.169.254/latest/meta-data/iam/, then compare it with "
        "https://example.com/docs (the public page) and with http://localhost:8080/admin."
    )
    assert _found(text) == [
        (SSRF_METADATA, "http://169.254.169.254/latest/meta-data/iam/"),
        (SSRF_PRIVATE_ADDRESS, "http://localhost:8080/admin"),
    ]
    finding = CHECKER.scan(text)[0]
    assert finding.kind == "egress"
    assert finding.start == text.index("http://169")
    assert finding.confidence == 1.0


def test_scan_json_argument_string() -> None:
    args = json.dumps(
        {"url": "http://[::ffff:127.0.0.1]:8080/x", "headers": {"Host": "api.example.com"}}
    )
    assert _found(args) == [(SSRF_PRIVATE_ADDRESS, "http://[::ffff:127.0.0.1]:8080/x")]
    escaped = '{"url":"http:\\/\\/10.0.0.1\\/admin"}'
    assert _found(escaped) == [(SSRF_PRIVATE_ADDRESS, "http:\\/\\/10.0.0.1\\/admin")]


def test_scan_bare_targets() -> None:
    text = (
        "connect to 10.0.0.1:9000, [::1]:8080, ::1, localhost:6379 and 192.168.0.1. "
        "Also metadata.google.internal and printer.local/admin and 0x7f.0.0.1."
    )
    assert _found(text) == [
        (SSRF_PRIVATE_ADDRESS, "10.0.0.1:9000"),
        (SSRF_PRIVATE_ADDRESS, "[::1]:8080"),
        (SSRF_PRIVATE_ADDRESS, "::1"),
        (SSRF_PRIVATE_ADDRESS, "localhost:6379"),
        (SSRF_PRIVATE_ADDRESS, "192.168.0.1"),
        (SSRF_METADATA, "metadata.google.internal"),
        (SSRF_PRIVATE_ADDRESS, "printer.local/admin"),
        (SSRF_PRIVATE_ADDRESS, "0x7f.0.0.1"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "The probability is 0.5 and the ratio 10.2, version 1.2.3 shipped.",
        "Open setup.py, config.local and README.md.",
        "Meet at 12:30:45 on 2024.01.15.",
        "In Python, a[::2] and x[::-1]; in C++, std::vector and Foo::bar.",
        "Mail john@example.com or admin@localhost.example.com.",
        "Use the metadata field and the localhost_only flag.",
        "Download from https://example.com/file.tar.gz (mirror: https://mirror.example.org).",
        "Prefix URLs with http:// or https:// please.",
        "See https://api.example.com/lookup?ip=10.0.0.1 for details.",
        "v10.0.0.1 is the release tag",
        '{"count": 3, "ratio": 0.25, "path": "/var/data/file.json"}',
    ],
)
def test_scan_leaves_ordinary_text_alone(text: str) -> None:
    assert CHECKER.scan(text) == []


def test_scan_checks_urls_nested_in_a_query() -> None:
    text = "https://example.com/redirect?to=http://127.0.0.1:2375/containers/json"
    assert _found(text) == [(SSRF_PRIVATE_ADDRESS, "http://127.0.0.1:2375/containers/json")]


def test_scan_reports_userinfo_tricks_with_the_real_host() -> None:
    text = "GET http://allowed.com@10.0.0.1/ and http://allowed.com#@example.org/"
    assert _found(text) == [(SSRF_PRIVATE_ADDRESS, "http://allowed.com@10.0.0.1/")]


def test_scan_reports_bad_schemes_and_allow_list() -> None:
    checker = EgressChecker(allow_hosts=["*.example.com"])
    text = "Read file:///etc/passwd, gopher://x.example.com/ and https://www.example.com/ "
    text += "or https://evil.org/x and www.evil.org and evil.org:443."
    assert _found(text, checker) == [
        (BAD_SCHEME, "file:///etc/passwd"),
        (BAD_SCHEME, "gopher://x.example.com/"),
        (EGRESS_NOT_ALLOWED, "https://evil.org/x"),
        (EGRESS_NOT_ALLOWED, "www.evil.org"),
        (EGRESS_NOT_ALLOWED, "evil.org:443"),
    ]


def test_bare_findings_are_less_certain_than_urls() -> None:
    findings = CHECKER.scan("http://10.0.0.1/ and 10.0.0.2 and localhost:80")
    assert [f.confidence for f in findings] == [1.0, 0.9, 0.8]


def test_strings_in_walks_values_not_keys() -> None:
    value = {
        "url": "http://a",
        "http://key-is-skipped": ["x", {"deep": ["y", 3, None, True]}],
        "n": 1.5,
    }
    assert list(strings_in(value)) == ["http://a", "x", "y"]
    assert list(strings_in("only")) == ["only"]
    assert list(strings_in(42)) == []


def test_strings_in_handles_deep_nesting() -> None:
    value: object = "leaf"
    for _ in range(5000):
        value = [value]
    assert list(strings_in(value)) == ["leaf"]


def test_extra_hold_chars_cover_url_characters_outside_the_stream_alphabet() -> None:
    assert set("[]\\") <= set(EXTRA_HOLD_CHARS)


@pytest.mark.parametrize(
    "unit", ["http://", "1.1.1.1 ", "a.", "[::", "::", "%2e", "0x1.", "http://a/?u=http://b "]
)
def test_scan_time_grows_linearly(unit: str) -> None:
    text = unit * (100_000 // len(unit))
    started = time.perf_counter()
    CHECKER.scan(text)
    assert time.perf_counter() - started < 2.0


URLISH = st.text(alphabet=string.ascii_letters[:8] + string.digits + ":/.@[]%\\#?x- ", max_size=60)


@settings(max_examples=400, deadline=None)
@given(URLISH)
def test_every_scanned_span_is_stopped_by_check(text: str) -> None:
    for finding in CHECKER.scan(text):
        assert 0 <= finding.start < finding.end <= len(text)
        assert CHECKER.check(text[finding.start : finding.end]) is not None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_check_and_scan_never_raise(text: str) -> None:
    verdict = CHECKER.check(text)
    assert verdict is None or verdict in EgressChecker.TYPES
    for finding in CHECKER.scan(text):
        assert finding.type in EgressChecker.TYPES


def test_scan_finds_a_url_nested_after_a_colon_in_the_path() -> None:
    text = "//example.com/a:b?next=http://10.0.0.1/"
    assert _found(text) == [(SSRF_PRIVATE_ADDRESS, "http://10.0.0.1/")]


def test_scan_skips_the_letter_of_a_json_escape_before_a_url() -> None:
    text = '{"body": "Site:\\nhttps://example.com/ and\\nhttp://127.0.0.1/"}'
    findings = CHECKER.scan(text)
    assert [(f.type, text[f.start : f.end]) for f in findings] == [
        (SSRF_PRIVATE_ADDRESS, "http://127.0.0.1/")
    ]
