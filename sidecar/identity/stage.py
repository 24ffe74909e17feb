"""The identify stage: who is calling, from the credentials the surface extracted."""

from __future__ import annotations

from collections.abc import Awaitable

from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import Stage
from sidecar.identity.principal import PodIdentity, Principal
from sidecar.identity.resolve import identify, identify_with_jwt
from sidecar.telemetry import names


class Identify(Stage):
    name = "identify"
    span_name = names.SPAN_IDENTIFY

    def __init__(self, pod: PodIdentity, recording: bool) -> None:
        self.pod = pod
        self.recording = recording

    def request(self, ex: Exchange) -> Awaitable[None] | None:
        assert ex.gen is not None and ex.call is not None
        config = ex.gen.snapshot.identity
        if config.jwt is not None:
            return self._verify(ex)  # a token may need the issuer's keys fetched
        self._known(ex, identify(config, self.pod, ex.call.headers))
        return None

    async def _verify(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None
        config = ex.gen.snapshot.identity
        self._known(ex, await identify_with_jwt(config, self.pod, ex.call.headers))

    def _known(self, ex: Exchange, principal: Principal) -> None:
        ex.principal = principal
        if self.recording and ex.span is not None:
            ex.span.set_attribute(names.SIDECAR_TENANT_ID, principal.tenant)
            ex.span.set_attribute(names.SIDECAR_PRINCIPAL_ID, principal.id)
