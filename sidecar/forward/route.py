"""The route stage: which upstream serves this model on this path."""

from __future__ import annotations

from sidecar.chain.exchange import Exchange
from sidecar.chain.stage import Stage
from sidecar.errors import ErrorKind, SidecarError
from sidecar.telemetry import names


class RouteStage(Stage):
    name = "route"
    span_name = names.SPAN_ROUTE

    def __init__(self, recording: bool) -> None:
        self.recording = recording

    def request(self, ex: Exchange) -> None:
        assert ex.gen is not None and ex.call is not None
        snapshot, call = ex.gen.snapshot, ex.call
        route = snapshot.route(call.path, call.model)
        if route is None:
            raise SidecarError(
                ErrorKind.NOT_FOUND,
                f"no route in bundle revision {snapshot.revision} serves model "
                f"'{call.model}' on {call.path}",
                code="model_not_found",
                param="model",
            )
        spec = snapshot.upstreams[route.upstream]
        ex.route, ex.upstream = route, spec
        if self.recording and ex.span is not None:
            ex.span.set_attributes(
                {
                    names.GEN_AI_PROVIDER_NAME: spec.provider_name,
                    names.SIDECAR_ROUTE: route.name,
                    names.SIDECAR_UPSTREAM: spec.name,
                }
            )
            if spec.host:
                ex.span.set_attributes(
                    {names.SERVER_ADDRESS: spec.host, names.SERVER_PORT: spec.port}
                )
        if spec.credential_problem:
            raise SidecarError(
                ErrorKind.MISCONFIGURED,
                "configuration error in the sidecar, not in the request: it cannot call "
                f"this model because {spec.credential_problem}",
                code="upstream_credential_missing",
                retryable=False,
            )
