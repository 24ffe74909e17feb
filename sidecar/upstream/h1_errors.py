"""How a call to the upstream can fail, as types the rest of the proxy can catch.

The forwarder, the failure classification and the mock upstream match on these
without needing the client itself; each names one way the hop failed, so a retry
or an error reply can be chosen by type rather than by message.
"""

from __future__ import annotations


class UpstreamError(OSError):
    """The upstream connection failed; the message says how."""


class ConnectError(UpstreamError):
    pass


class Disconnected(UpstreamError):
    pass


class ProtocolError(UpstreamError):
    pass


class ConnectTimeout(ConnectError, TimeoutError):
    """No connection within the connect timeout."""


class PoolExhausted(UpstreamError, TimeoutError):
    """Every connection the upstream may have was busy for the whole wait: the upstream
    is not failing, this sidecar has as many calls in flight as it allows."""


class FirstByteTimeout(TimeoutError):
    """No response head within the first-byte timeout: nothing was received, so a retry
    is safe."""


class DeadlineExceeded(TimeoutError):
    """The call's total deadline passed while waiting for the upstream."""
