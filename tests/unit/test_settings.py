from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.settings import Settings, SettingsError, parse_listen


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SIDECAR_BUNDLE",
        "SIDECAR_HTTP",
        "SIDECAR_ADMIN",
        "SIDECAR_MAX_BODY_BYTES",
        "SIDECAR_OTEL_EXPORTER",
    ):
        monkeypatch.delenv(name, raising=False)
    s = Settings.resolve()
    assert (str(s.http), str(s.admin), s.bundle, s.otel_exporter) == (
        "127.0.0.1:8700",
        "127.0.0.1:8702",
        None,
        "none",
    )
    assert s.max_body_bytes == 16 * 1024 * 1024


def test_flags_win_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_HTTP", "0.0.0.0:9000")
    monkeypatch.setenv("SIDECAR_BUNDLE", "/env/bundle")
    monkeypatch.setenv("SIDECAR_MAX_BODY_BYTES", "100")
    s = Settings.resolve()
    assert (str(s.http), s.bundle, s.max_body_bytes) == ("0.0.0.0:9000", Path("/env/bundle"), 100)
    s = Settings.resolve(http="127.0.0.1:1", bundle="/flag", max_body_bytes=5)
    assert (str(s.http), s.bundle, s.max_body_bytes) == ("127.0.0.1:1", Path("/flag"), 5)


@pytest.mark.parametrize("value", ["8700", "host:", "host:99999", "a:b"])
def test_bad_listen(value: str) -> None:
    with pytest.raises(SettingsError, match="HOST:PORT"):
        parse_listen(value, "http")


def test_ipv6_listen() -> None:
    assert parse_listen("[::1]:8700", "http").host == "::1"


def test_bad_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIDECAR_OTEL_EXPORTER", "jaeger")
    with pytest.raises(SettingsError, match="SIDECAR_OTEL_EXPORTER"):
        Settings.resolve()
    monkeypatch.setenv("SIDECAR_OTEL_EXPORTER", "none")
    monkeypatch.setenv("SIDECAR_MAX_BODY_BYTES", "lots")
    with pytest.raises(SettingsError, match="SIDECAR_MAX_BODY_BYTES"):
        Settings.resolve()


def test_probes_listener_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDECAR_PROBES", raising=False)
    assert Settings.resolve().probes is None
    monkeypatch.setenv("SIDECAR_PROBES", "0.0.0.0:8703")
    assert str(Settings.resolve().probes) == "0.0.0.0:8703"
    assert str(Settings.resolve(probes="127.0.0.1:9").probes) == "127.0.0.1:9"
    with pytest.raises(SettingsError):
        Settings.resolve(probes="nope")


def test_bundle_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "SIDECAR_BUNDLE_MAX_BYTES",
        "SIDECAR_BUNDLE_MAX_FILES",
        "SIDECAR_BUNDLE_MAX_DEPTH",
    ):
        monkeypatch.delenv(name, raising=False)
    limits = Settings.resolve().bundle_limits
    assert (limits.max_bytes, limits.max_files, limits.max_depth) == (16 * 1024 * 1024, 1000, 64)
    monkeypatch.setenv("SIDECAR_BUNDLE_MAX_BYTES", "1048576")
    monkeypatch.setenv("SIDECAR_BUNDLE_MAX_FILES", "20")
    monkeypatch.setenv("SIDECAR_BUNDLE_MAX_DEPTH", "256")
    limits = Settings.resolve().bundle_limits
    assert (limits.max_bytes, limits.max_files, limits.max_depth) == (1048576, 20, 256)
    monkeypatch.setenv("SIDECAR_BUNDLE_MAX_DEPTH", "257")  # past what later stages survive
    with pytest.raises(SettingsError, match="at most 256"):
        Settings.resolve()


def test_resource_bounds_come_from_flags_then_env_then_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIDECAR_BODY_TIMEOUT_MS", "2500")
    monkeypatch.setenv("SIDECAR_MAX_CONNECTIONS", "10")
    monkeypatch.delenv("SIDECAR_MAX_EVENT_BYTES", raising=False)
    res = Settings.resolve(resources={"max_connections": 20, "body_timeout_ms": None}).resources
    assert (res.max_connections, res.body_timeout_ms) == (20, 2500)
    assert res.max_event_bytes == 8 * 1024 * 1024
    assert res.max_buffered_bytes is None  # the server derives it from the body limit


@pytest.mark.parametrize("value", ["many", "0", "-5"])
def test_a_bad_resource_bound_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("SIDECAR_MAX_BUFFERED_BYTES", value)
    with pytest.raises(SettingsError, match=r"SIDECAR_MAX_BUFFERED_BYTES|max-buffered-bytes"):
        Settings.resolve()


def test_a_buffered_budget_below_the_body_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIDECAR_MAX_BUFFERED_BYTES", raising=False)
    with pytest.raises(SettingsError, match="could never be accepted"):
        Settings.resolve(max_body_bytes=1000, resources={"max_buffered_bytes": 999})
