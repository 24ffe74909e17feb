"""The `sidecar` process (uvloop) reaching a TLS upstream through an egress proxy.

The upstream's name resolves only inside the proxy and its certificate is signed by
a CA made here, so a reply proves both: the CONNECT tunnel from HTTPS_PROXY, and
TLS end to end with the bundle's `ca_file`.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from fakes.certs import PrivateCA
from fakes.connect_proxy import ConnectProxy
from fakes.upstream import FakeUpstream

from .harness import SidecarLauncher, write_bundle


async def test_https_proxy_and_a_private_ca_from_the_cli(
    tmp_path: Path, launch: SidecarLauncher
) -> None:
    ca = PrivateCA(tmp_path / "pki")
    issued = ca.issue("upstream", dns=("upstream.test",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(issued.cert, issued.key)
    async with (
        FakeUpstream(name="far", ssl_context=context) as upstream,
        ConnectProxy(hosts={"upstream.test": "127.0.0.1"}) as proxy,
    ):
        bundle = {
            "apiVersion": "sidecar/v1",
            "revision": "net-1",
            "upstreams": {
                "far": {
                    "base_url": f"https://upstream.test:{upstream.port}/v1",
                    "api_key": {"env": "FAKE_KEY"},
                    "ca_file": str(ca.cert),
                }
            },
            "routes": [{"match": {"model": "gpt-*"}, "upstream": "far"}],
            "roles": {"agent": [{"actions": ["*"]}]},
        }
        sc = await launch(write_bundle(tmp_path / "b", bundle), env={"HTTPS_PROXY": proxy.url})
        client = sc.openai(default_query={"api-version": "2024-10-21"})
        for _ in range(2):
            reply = await client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": "through"}]
            )
            assert reply.choices[0].message.content == "far says: through"
        assert proxy.connects == [f"upstream.test:{upstream.port}"]
        assert upstream.last_request.query_string == "api-version=2024-10-21"
