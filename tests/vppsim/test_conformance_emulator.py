"""The conformance suite against the emulator."""

from __future__ import annotations

import pytest

from tests.vppsim.conformance import *  # noqa: F403  (the shared test functions and fixtures)
from tests.vppsim.conformance_iplink import *  # noqa: F403  (pod IP and classifier read-back)
from tests.vppsim.conftest import Target


@pytest.fixture
def target(emulator_target: Target) -> Target:
    return emulator_target
