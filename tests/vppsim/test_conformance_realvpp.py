"""The conformance suite against a real VPP: the ``real_vpp`` fixture's (a private VPP when one is
installed, or the one ``VPPAGENT_TEST_VPP_SOCKET`` names); skipped without one.

It should be the release ``VPPAGENT_TEST_VPP_RELEASE`` names (default 26.06).  Optionally
``VPPAGENT_TEST_VPP_API_DIR`` names its ``.api.json`` directory (default ``/usr/share/vpp/api``) for
the "apidir" variant.  The tests create loopbacks, ACLs, routes and classifier tables and remove them.
"""

from __future__ import annotations

import pytest

from tests.vppsim.conformance import *  # noqa: F403  (the shared test functions and fixtures)
from tests.vppsim.conformance_iplink import *  # noqa: F403  (pod IP and classifier read-back)
from tests.vppsim.conftest import Target

pytestmark = pytest.mark.realvpp


@pytest.fixture
def target(real_vpp_target: Target) -> Target:
    return real_vpp_target
