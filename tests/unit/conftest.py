"""Fixtures the stage unit tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from unit.stage_kit import Recorded, recorded


@pytest.fixture
def rec() -> Iterator[Recorded]:
    """Telemetry whose spans and metrics a test can read, shut down after it."""
    r = recorded()
    yield r
    r.telemetry.shutdown()
