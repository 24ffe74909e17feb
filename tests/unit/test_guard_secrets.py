"""The secrets detector: provider formats by exact span, keyword values, and what is not a secret.

Keys are assembled from a prefix and a seeded random body in the provider's
alphabet, so no credential-shaped literal sits in the source for other
scanners to trip over, and every run sees the same inputs.
"""

from __future__ import annotations

import base64
import json
import random
import string
import time
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.guards import redact
from sidecar.guards.finding import Finding
from sidecar.guards.secrets import EXTRA_HOLD_CHARS, TYPES, SecretsDetector, shannon_entropy
from sidecar.guards.stream import StreamScanner

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B64URL = ALNUM + "_-"
UPPER_ALNUM = string.ascii_uppercase + string.digits
LOWER_ALNUM = string.ascii_lowercase + string.digits
STREAM_ALPHABET = ALNUM + "_.%+-@:/=~"

DETECTOR = SecretsDetector()


def body(alphabet: str, n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def jwt(header: dict[str, object], payload: dict[str, object], sig: str) -> str:
    return f"{b64url(header)}.{b64url(payload)}.{sig}"


def pem(label: str, lines: int, seed: int, newline: str = "\n") -> str:
    rows = [body(B64, 64, seed + i) for i in range(lines)] + [body(B64, 20, seed) + "=="]
    return newline.join([f"-----BEGIN {label}-----", *rows, f"-----END {label}-----"])


def spans(text: str, detector: SecretsDetector = DETECTOR) -> list[tuple[str, str]]:
    return [(f.type, text[f.start : f.end]) for f in detector.scan(text)]


OPENAI_LEGACY = "sk-" + body(ALNUM, 20, 1) + "T3BlbkFJ" + body(ALNUM, 20, 2)
OPENAI_PROJECT = "sk-proj-" + body(B64URL, 74, 3) + "T3BlbkFJ" + body(B64URL, 74, 4)
OPENAI_SVCACCT = "sk-svcacct-" + body(B64URL, 60, 5)
ANTHROPIC = "sk-ant-api03-" + body(B64URL, 93, 6) + "AA"
ANTHROPIC_ADMIN = "sk-ant-admin01-" + body(B64URL, 93, 7) + "AA"
AWS_ID = "AKIA" + body(UPPER_ALNUM, 16, 8)
AWS_STS_ID = "ASIA" + body(UPPER_ALNUM, 16, 9)
AWS_SECRET = body(B64, 40, 10)
GITHUB_CLASSIC = "ghp_" + body(ALNUM, 36, 11)
GITHUB_APP = "ghs_" + body(ALNUM, 36, 12)
GITHUB_FINE = "github_pat_" + body(ALNUM, 22, 13) + "_" + body(ALNUM, 59, 14)
SLACK_BOT = "xoxb-" + body(string.digits, 12, 15) + "-" + body(string.digits, 13, 16) + "-"
SLACK_BOT += body(ALNUM, 24, 17)
SLACK_APP = "xapp-1-A" + body(UPPER_ALNUM, 10, 18) + "-" + body(string.digits, 13, 19) + "-"
SLACK_APP += body("0123456789abcdef", 64, 20)
SLACK_HOOK = "https://hooks.slack.com/services/T" + body(UPPER_ALNUM, 10, 21) + "/B"
SLACK_HOOK += body(UPPER_ALNUM, 10, 22) + "/" + body(ALNUM, 24, 23)
STRIPE_LIVE = "sk_live_" + body(ALNUM, 24, 24)
STRIPE_RESTRICTED = "rk_live_" + body(ALNUM, 99, 25)
STRIPE_TEST = "sk_test_" + body(ALNUM, 24, 26)
GOOGLE = "AIza" + body(B64URL, 35, 27)
HUGGINGFACE = "hf_" + body(string.ascii_letters, 34, 28)
NPM = "npm_" + body(ALNUM, 36, 29)
JWT = jwt({"alg": "HS256", "typ": "JWT"}, {"sub": "42", "iat": 1700000000}, body(B64URL, 43, 30))
GENERIC = body(ALNUM, 28, 31)


OPENAI_CLASSIC = "sk-" + body(ALNUM, 48, 32)  # no marker: the oldest keys, and look-alikes
ANTHROPIC_UNVERSIONED = "sk-ant-" + body(B64URL, 90, 33)
SLACK_USER = "xoxp-" + body(ALNUM, 40, 34)


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        (OPENAI_LEGACY, "OPENAI_KEY"),
        (OPENAI_CLASSIC, "OPENAI_KEY"),
        (ANTHROPIC_UNVERSIONED, "ANTHROPIC_KEY"),
        (SLACK_USER, "SLACK_TOKEN"),
        (OPENAI_PROJECT, "OPENAI_KEY"),
        (OPENAI_SVCACCT, "OPENAI_KEY"),
        (ANTHROPIC, "ANTHROPIC_KEY"),
        (ANTHROPIC_ADMIN, "ANTHROPIC_KEY"),
        (AWS_ID, "AWS_ACCESS_KEY"),
        (AWS_STS_ID, "AWS_ACCESS_KEY"),
        (GITHUB_CLASSIC, "GITHUB_TOKEN"),
        (GITHUB_APP, "GITHUB_TOKEN"),
        (GITHUB_FINE, "GITHUB_TOKEN"),
        (SLACK_BOT, "SLACK_TOKEN"),
        (SLACK_APP, "SLACK_TOKEN"),
        (SLACK_HOOK, "SLACK_TOKEN"),
        (STRIPE_LIVE, "STRIPE_KEY"),
        (STRIPE_RESTRICTED, "STRIPE_KEY"),
        (GOOGLE, "GOOGLE_API_KEY"),
        (HUGGINGFACE, "HUGGINGFACE_TOKEN"),
        (NPM, "NPM_TOKEN"),
        (JWT, "JWT"),
    ],
)
@pytest.mark.parametrize(
    "carrier",
    [
        "{}",
        "my key is {}, please keep it safe.",
        'config = {{"api_key": "{}"}}',
        "export TOKEN={}\n",
        "curl -H 'Authorization: Bearer {}' https://api.example.com/v1",
        "`{}`",
    ],
)
def test_each_provider_format_is_found_with_its_exact_span(
    key: str, kind: str, carrier: str
) -> None:
    text = carrier.format(key)
    findings = DETECTOR.scan(text)
    assert [(f.kind, f.type, f.start, f.end) for f in findings] == [
        ("secrets", kind, text.index(key), text.index(key) + len(key))
    ]
    assert findings[0].confidence == 1.0


def test_every_reported_type_is_declared() -> None:
    kinds = {"OPENAI_KEY", "AWS_SECRET_KEY", "PRIVATE_KEY", "GENERIC_SECRET", "SLACK_TOKEN"}
    assert kinds <= set(TYPES)
    assert len(TYPES) == len(set(TYPES)) == 13


def test_stripe_test_keys_are_reported_with_less_confidence_and_publishable_keys_not() -> None:
    text = f"test: {STRIPE_TEST} publishable: pk_live_{body(ALNUM, 24, 40)}"
    (finding,) = DETECTOR.scan(text)
    assert (finding.type, text[finding.start : finding.end]) == ("STRIPE_KEY", STRIPE_TEST)
    assert finding.confidence < 1.0


def test_aws_secret_key_is_the_value_of_its_assignment() -> None:
    for text in (
        f'aws_secret_access_key = "{AWS_SECRET}"',
        f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}",
        f'{{"SecretAccessKey": "{AWS_SECRET}", "AccessKeyId": "{AWS_ID}"}}',
    ):
        found = spans(text)
        assert ("AWS_SECRET_KEY", AWS_SECRET) in found, text
        assert all(AWS_SECRET not in value or value == AWS_SECRET for _, value in found)


@pytest.mark.parametrize(
    "template",
    [
        'password = "{}"',
        "password='{}'",
        "api_key: {}",
        '"client_secret": "{}",',
        "TOKEN={}",
        "export GITHUB_TOKEN={}",
        'os.environ["SERVICE_API_KEY"] = "{}"',
        "db_passwd := {}",
        "--token={}",
        "Authorization: Bearer {}",
        "https://api.example.com/v1/items?access_token={}&page=2",
    ],
)
def test_a_keyword_assignment_reports_the_value_only(template: str) -> None:
    text = template.format(GENERIC)
    (finding,) = DETECTOR.scan(text)
    assert (finding.type, text[finding.start : finding.end]) == ("GENERIC_SECRET", GENERIC)
    assert finding.confidence < 1.0


def test_a_password_with_symbols_is_covered_whole() -> None:
    value = "Xk9#mQ2$pL7!vB4@nR8^"
    text = f"DB_PASSWORD={value} # rotated monthly"
    assert spans(text) == [("GENERIC_SECRET", value)]
    assert set(value) <= set(STREAM_ALPHABET + EXTRA_HOLD_CHARS)


@pytest.mark.parametrize(
    "text",
    [
        "sk-...",
        "sk-xxxxxxxxxxxxxxxxxxxxxxxx",
        "export OPENAI_API_KEY=sk-your-key-here",
        "sk-proj-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "AKIAXXXXXXXXXXXXXXXX",
        "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AKIA1234567890ABCDEF",
        'api_key = "<your-api-key>"',
        "API_KEY=YOUR_API_KEY",
        "api_key: ${OPENAI_API_KEY}",
        "token = $GITHUB_TOKEN_FOR_RELEASES",
        "password: ****************",
        'password = "aaaaaaaaaaaaaaaaaaaa"',
        'secret = "1234567890abcdef"',
        'secret = "abcdefghijklmnopqrstuvwxyz"',
        'password = "example-password-123456"',
        'password = "dummy_Pa55word_value"',
        'client_secret = "placeholder0123456789"',
        'password = "changeme!changeme!"',
        "ghp_" + "a" * 36,
        "xoxb-your-bot-token-here",
        "the xoxb- prefix marks bot tokens",
        "xoxb-tokens-are-issued-to-bot-users and sk-ant-style-keys-are-longer-than-this-one",
        "we use sk-learn and ghp-style tokens",
        "eyJ is how base64 JSON starts",
        "BEGIN PUBLIC KEY blocks are fine to share",
    ],
)
def test_placeholders_and_examples_are_not_secrets(text: str) -> None:
    assert DETECTOR.scan(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "request 607da0ff-27de-4f33-9e15-5d2fdb34b282 failed",
        "fixed in 290c2f9da6bbd58e43742af816c7568e2173cce1",
        "sha256: c997cde36d08d8f4ef7e55fe6aa446d27b371c5edb993160c3173a22b6914a72",
        "digest " + body(B64, 88, 50) + "==",
        "object id 5f9b2c1e8a7d4e3f2a1b0c9d",
        "hex id " + body("0123456789abcdef", 32, 51),
    ],
)
def test_ids_hashes_and_blobs_without_a_keyword_are_not_secrets(text: str) -> None:
    assert DETECTOR.scan(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "token = process.env.GITHUB_TOKEN;",
        "api_key = settings.OPENAI_API_KEY",
        'tokenizer: "sentence-transformers/all-MiniLM-L6-v2"',
        "secret_name: my-app-database-credentials",
        'token_url = "https://auth.example.com/oauth/token"',
        "password_file: /etc/app/secrets/db-password.txt",
        'max_tokens_per_1_minute: "max_tokens_per_1_minute"',
        "azure_ad_token_provider: AsyncAzureADTokenProvider | None",
        "self.password_handler = HTTPBasicAuthHandler()",
        '{"nextPageToken": "CiAKGjBpNDd2Nmp2Zml2cXRwYjBpOXA0dmNyN3ASAA"}',
        "PWD=/home/alice/projects/secret-sauce",
    ],
)
def test_names_references_and_paths_after_a_keyword_are_not_secrets(text: str) -> None:
    assert DETECTOR.scan(text) == []


def test_a_value_with_a_provider_prefix_but_not_its_format_is_not_a_generic_secret() -> None:
    for text in (
        'config = {"api_key": "sk-ant-BUUR2BATLzuB9x"}',
        "export TOKEN=ghp_dyMVqJGPom7Lk2Qx",
        "api_key: AIzaHQDVCooL60xYz9Kq",
    ):
        assert DETECTOR.scan(text) == [], text


def test_a_private_key_block_is_one_finding_from_begin_to_end() -> None:
    for label in ("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"):
        block = pem(label, 8, 60)
        text = f"here it is:\n{block}\nthanks"
        assert spans(text) == [("PRIVATE_KEY", block)], label


def test_a_private_key_split_by_crlf_or_escaped_newlines_is_covered() -> None:
    crlf = pem("PRIVATE KEY", 4, 61, "\r\n")
    escaped = pem("PRIVATE KEY", 4, 62, "\\n")
    text = f'{{"type": "service_account", "private_key": "{escaped}\\n"}}'
    assert spans(f"key:\r\n{crlf}\r\n") == [("PRIVATE_KEY", crlf)]
    assert spans(text) == [("PRIVATE_KEY", escaped)]


def test_an_encrypted_legacy_key_with_headers_is_covered() -> None:
    block = pem("RSA PRIVATE KEY", 4, 63).replace(
        "-----\n", "-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0A1B2C3D4E5F6A7B\n\n", 1
    )
    assert spans(block) == [("PRIVATE_KEY", block)]


def test_a_private_key_quoted_or_indented_is_covered_to_its_end_line() -> None:
    block = pem("OPENSSH PRIVATE KEY", 4, 68)
    quoted = "\n".join("> " + line for line in block.splitlines())
    yaml = "tls:\n  key: |\n" + "\n".join("    " + line for line in block.splitlines())
    assert spans(quoted) == [("PRIVATE_KEY", quoted[2:])]
    assert spans(yaml) == [("PRIVATE_KEY", yaml[yaml.index("-----BEGIN") :])]


def test_blocks_next_to_each_other_are_told_apart() -> None:
    public, private = pem("PUBLIC KEY", 4, 69), pem("PRIVATE KEY", 4, 70)
    cut = pem("EC PRIVATE KEY", 3, 71)
    cut = cut[: cut.index("-----END")].rstrip("\n")
    text = f"{public}\n{cut}\n{private}\n"
    assert spans(text) == [("PRIVATE_KEY", cut), ("PRIVATE_KEY", private)]


def test_a_private_key_without_its_end_line_covers_the_key_lines() -> None:
    block = pem("RSA PRIVATE KEY", 6, 64)
    cut = block[: block.index("-----END")].rstrip("\n")
    text = f"{cut}\n\nI pasted only part of it, sorry."
    assert spans(text) == [("PRIVATE_KEY", cut)]


def test_public_keys_certificates_and_empty_private_key_templates_are_not_secrets() -> None:
    for text in (
        pem("PUBLIC KEY", 4, 65),
        pem("CERTIFICATE", 10, 66),
        pem("RSA PUBLIC KEY", 4, 67),
        "-----BEGIN RSA PRIVATE KEY-----\n<your private key here>\n-----END RSA PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----",
        "-----BEGIN PRIVATE KEY-----\nReplace this line with the contents of your private key"
        " file, and keep the file itself out of version control\n-----END PRIVATE KEY-----",
    ):
        assert DETECTOR.scan(text) == [], text[:30]


def test_jwt_needs_a_header_with_alg() -> None:
    no_alg = jwt({"typ": "JWT"}, {"sub": "42"}, body(B64URL, 43, 70))
    assert DETECTOR.scan(no_alg) == []
    assert DETECTOR.scan(JWT.rsplit(".", 1)[0]) == []  # two segments
    header = base64.urlsafe_b64encode(b'{ "alg": "RS256" }').decode().rstrip("=")
    spaced = f"{header}.{b64url({'sub': '1'})}.{body(B64URL, 86, 71)}"
    assert spaced.startswith("eyA")  # `{ "` encodes differently from `{"`
    unsigned = jwt({"alg": "none"}, {"sub": "1"}, "")
    text = f"Tokens: {JWT}. Then {spaced}, and {unsigned}."
    assert spans(text) == [("JWT", JWT), ("JWT", spaced), ("JWT", unsigned)]


def test_a_key_inside_a_longer_token_is_not_reported() -> None:
    for text in (
        "x" + AWS_ID,
        AWS_ID + "Q",
        "prefix" + GOOGLE,
        GOOGLE + "x",
        "my" + NPM,
        NPM + "z",
        "xx" + JWT,
    ):
        assert DETECTOR.scan(text) == [], text


def test_spans_index_the_original_text_with_wide_characters_before() -> None:
    text = f"Ключ 🔑 é\u0301: {GITHUB_CLASSIC} и пароль: password = '{GENERIC}' 👍"
    assert spans(text) == [("GITHUB_TOKEN", GITHUB_CLASSIC), ("GENERIC_SECRET", GENERIC)]


def test_findings_are_sorted_and_do_not_overlap_and_providers_win() -> None:
    text = (
        f"TOKEN={GITHUB_CLASSIC}\napi_key: {OPENAI_LEGACY}\npassword = {GENERIC}\n"
        f"{pem('PRIVATE KEY', 3, 80)}\n{AWS_ID} {JWT}"
    )
    findings = DETECTOR.scan(text)
    assert [f.type for f in findings] == [
        "GITHUB_TOKEN",
        "OPENAI_KEY",
        "GENERIC_SECRET",
        "PRIVATE_KEY",
        "AWS_ACCESS_KEY",
        "JWT",
    ]
    assert all(a.end <= b.start for a, b in pairwise(findings))


def test_no_secret_text_appears_in_the_findings() -> None:
    keys = [OPENAI_PROJECT, ANTHROPIC, AWS_ID, GITHUB_FINE, SLACK_HOOK, JWT, GENERIC, AWS_SECRET]
    text = (
        " ".join(keys[:6])
        + f"\npassword={GENERIC}\naws_secret_access_key={AWS_SECRET}\n"
        + pem("PRIVATE KEY", 3, 90)
    )
    findings = DETECTOR.scan(text)
    assert len(findings) == 9
    shown = repr(findings) + str(findings)
    for key in keys:
        assert key not in shown
        assert key[4:20] not in shown


def test_keywords_can_be_replaced_or_turned_off() -> None:
    text = f"password = {GENERIC}\nsession_cookie = {GENERIC}\nAuthorization: Bearer {GENERIC}"
    off = SecretsDetector(keywords=())
    assert off.scan(text) == []
    assert off.scan(f"password = {GITHUB_CLASSIC}")[0].type == "GITHUB_TOKEN"
    cookie = SecretsDetector(keywords=["session_cookie"])
    assert spans(text, cookie) == [("GENERIC_SECRET", GENERIC)]
    assert cookie.scan(text)[0].start == text.index("session_cookie") + len("session_cookie = ")
    assert len(DETECTOR.scan(text)) == 2  # the default list has password and bearer


def test_entropy_and_length_thresholds_apply_to_keyword_values() -> None:
    short = "Zq8vT3nR5wY1"
    assert DETECTOR.scan(f"password = {short}") == []
    assert spans(f"password = {short}", SecretsDetector(min_value_length=8)) == [
        ("GENERIC_SECRET", short)
    ]
    human = "s3cr3tP4ssw0rd!2024"
    assert 3.0 < shannon_entropy(human) < 3.5
    assert DETECTOR.scan(f"password = {human}") == []
    assert spans(f"password = {human}", SecretsDetector(entropy_threshold=3.0)) == [
        ("GENERIC_SECRET", human)
    ]
    with pytest.raises(ValueError):
        SecretsDetector(min_value_length=0)


def test_shannon_entropy() -> None:
    assert shannon_entropy("") == 0.0
    assert shannon_entropy("aaaa") == 0.0
    assert shannon_entropy("abcd") == pytest.approx(2.0)
    assert shannon_entropy("0123456789abcdef") == pytest.approx(4.0)


def stream(text: str, size: int) -> str:
    scanner = StreamScanner(DETECTOR.scan)
    out: list[str] = []
    for pos in range(0, len(text), size):
        release = scanner.feed(text[pos : pos + size])
        out.append(redact.apply(release.text, [(f, "placeholder") for f in release.findings]))
    release = scanner.flush()
    out.append(redact.apply(release.text, [(f, "placeholder") for f in release.findings]))
    return "".join(out)


def test_secrets_split_across_stream_pieces_are_never_released() -> None:
    keys = [OPENAI_PROJECT, AWS_ID, SLACK_HOOK, JWT, GENERIC]
    block = pem("RSA PRIVATE KEY", 4, 95)
    text = (
        f"Use {OPENAI_PROJECT} or {AWS_ID}.\nPost to {SLACK_HOOK} with {JWT}\n"
        f"password = {GENERIC}\n{block}\nDone."
    )
    whole = redact.apply(text, [(f, "placeholder") for f in DETECTOR.scan(text)])
    for size in (1, 2, 3, 5, 8, 13, 64):
        streamed = stream(text, size)
        assert streamed == whole, size
        for key in [*keys, block.splitlines()[2]]:
            assert key not in streamed


def test_keyword_values_use_only_the_stream_alphabet_and_the_extra_hold_characters() -> None:
    allowed = set(STREAM_ALPHABET + EXTRA_HOLD_CHARS)
    text = "password = 'a!b#c$d*e^f%g+h@i:j/k=l~m_n.o-p&q(r)s' secret=Qw3!rT5#yU7$iO9^"
    for f in DETECTOR.scan(text):
        assert set(text[f.start : f.end]) <= allowed


@pytest.mark.parametrize(
    "text",
    [
        "sk-" * 70_000,
        "eyJa." * 40_000,
        "password=" * 20_000,
        "-----BEGIN PRIVATE KEY-----\n" * 8_000,
        "-----BEGIN PRIVATE KEY-----!" * 8_000 + "-----END PRIVATE KEY-----",
        "_" * 200_000,
        "A" * 200_000,
        ": " * 100_000,
        "xoxb-1" * 35_000,
    ],
)
def test_hostile_inputs_scan_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    DETECTOR.scan(text)
    assert time.perf_counter() - started < 2.0  # ~200 KB; quadratic work would take minutes


def check_findings(text: str, findings: list[Finding]) -> None:
    assert all(f.kind == "secrets" and f.type in TYPES for f in findings)
    assert all(0 <= f.start < f.end <= len(text) for f in findings)
    assert all(a.end <= b.start for a, b in pairwise(findings))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "sk-",
                "ant-api03-",
                "T3BlbkFJ",
                "ghp_",
                "AKIA",
                "AIza",
                "eyJ",
                ".",
                "-----BEGIN ",
                "PRIVATE KEY-----",
                "-----END ",
                "\n",
                " ",
                "password",
                "=",
                ": ",
                '"',
                "Bearer ",
                GENERIC,
                JWT,
                AWS_ID,
            ]
        )
        | st.text(alphabet=B64URL + "+/= \n", max_size=12),
        max_size=30,
    )
)
def test_any_mix_of_key_parts_gives_valid_sorted_findings(parts: list[str]) -> None:
    text = "".join(parts)
    check_findings(text, DETECTOR.scan(text))


@pytest.mark.parametrize(
    "value",
    [
        "66db666c-8fa6-1c6f-a13b-7a5f9c844e61",
        "62f4017a6389b2192ef2851d91d4e3c39e9d43ed",
        "bd2b6f2808ebb64de46d4bda141f080625c9fa4e5f4e38faea3b3da11010fc24",
    ],
)
def test_identifier_shapes_after_a_keyword_are_not_secrets(value: str) -> None:
    assert SecretsDetector().scan(f'config = {{"api_key": "{value}"}}') == []


def test_a_base64_blob_after_a_keyword_is_still_a_secret() -> None:
    text = 'config = {"api_key": "dlKEj4SBjFXOceMgQwzge+lgxWCHNFC2xw3OuFV5"}'
    assert [f.type for f in SecretsDetector().scan(text)] == ["GENERIC_SECRET"]


# --- a keyword assignment wherever it sits in a line ----------------------------------------

LINE_SECRET = body(ALNUM, 24, 77)


@pytest.mark.parametrize(
    "template",
    [
        "config: password={v}",
        "env: SECRET_KEY={v}",
        "Error: password={v} rejected",
        "log: user=bob password={v} ok",
        "a=1:b=2:token={v}",
        "password: {v}",
        '"password": "{v}"',
        '{{"db": {{"password": "{v}"}}}}',
        "--password {v}",
        "run --api-key {v} --verbose",
        "mysql --password '{v}' -u root",
        "SECRET_KEY={v}",
        "HOME=/root\nPATH=/usr/bin\nDB_PASSWORD={v}\nTERM=xterm",
        "export API_TOKEN={v}",
    ],
)
def test_a_keyword_assignment_is_found_wherever_it_sits_in_a_line(template: str) -> None:
    text = template.format(v=LINE_SECRET)
    assert ("GENERIC_SECRET", LINE_SECRET) in spans(text)


@pytest.mark.parametrize(
    "text",
    [
        "config: mode=production",
        "--password-file /etc/app/pw.txt",
        "--token $API_TOKEN",
        f"--verbose {LINE_SECRET}",
        f"config: region={LINE_SECRET}",
        "env: SECRET_KEY=settings.SECRET_KEY",
    ],
)
def test_a_harmless_assignment_in_a_line_is_not_a_secret(text: str) -> None:
    assert spans(text) == []


@pytest.mark.parametrize("text", ["a=" * 50_000, "config: password=" * 12_000, "--token " * 25_000])
def test_assignments_inside_values_scan_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    DETECTOR.scan(text)
    assert time.perf_counter() - started < 2.0
