"""Reusable fakes for tests: real network servers, so nothing of our own code is mocked.

Import as ``from fakes.upstream import FakeUpstream`` (``tests/`` is the import root
because ``tests/`` itself is not a package).
"""

from .upstream import FakeUpstream, ForcedResponse, RecordedRequest

__all__ = ["FakeUpstream", "ForcedResponse", "RecordedRequest"]
