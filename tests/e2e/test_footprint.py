"""What `sidecar run` on the default bundle imports, from start through its first calls.

A feature that is off costs no memory: the admin listener runs on the sidecar's
own HTTP server (aiohttp's web server was some 7 MB), and with no exporter the
OpenTelemetry SDK, its exporters and protobuf stay unimported. Peak memory
itself is measured in bench/proxy_bench.py; this keeps the imports from
creeping back in unnoticed. The module list comes from the process itself
(PYTHONPROFILEIMPORTTIME, the environment form of `python -X importtime`).
"""

from __future__ import annotations

import re

from .harness import SidecarLauncher

# Imported by a default-bundle sidecar only if a change brought them back.
NOT_IMPORTED = (
    "aiohttp",
    "opentelemetry.sdk",
    "opentelemetry.exporter",
    "google.protobuf",
)

_IMPORT_LINE = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(?P<module>\S+)\s*$")


def imported(stderr: str) -> set[str]:
    return {m.group("module") for m in map(_IMPORT_LINE.match, stderr.splitlines()) if m}


def unwanted(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules for prefix in NOT_IMPORTED if m == prefix or m.startswith(prefix + ".")
    )


async def test_default_bundle_imports_no_feature_that_is_off(launch: SidecarLauncher) -> None:
    sc = await launch(None, env={"PYTHONPROFILEIMPORTTIME": "1"})
    client = sc.openai()
    reply = await client.chat.completions.create(
        model="mock-echo",
        messages=[{"role": "user", "content": "my card is 4111 1111 1111 1111"}],
    )
    assert "[CREDIT_CARD]" in (reply.choices[0].message.content or "")
    stream = await client.chat.completions.create(
        model="mock-echo", messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    async for _ in stream:
        pass
    for path in ("/healthz", "/readyz", "/bundle", "/metrics"):
        assert (await sc.admin_get(path))[0] == 200, path
    await sc.terminate()

    modules = imported(sc.stderr())
    # The profile really was taken: the sidecar's own modules are in it.
    assert {"sidecar.server.app", "sidecar.guards.pii"} <= modules, sorted(modules)[:20]
    assert unwanted(modules) == []
