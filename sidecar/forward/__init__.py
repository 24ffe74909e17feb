"""Forwarding a call upstream: header rules, the resilience executor, one attempt, the relay."""

from sidecar.forward.headers import downstream_headers, upstream_headers

__all__ = ["downstream_headers", "upstream_headers"]
