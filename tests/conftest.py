"""Fixtures every test directory can use: a real VPP for the tests marked ``realvpp``.

``real_vpp`` is one VPP for the whole run: the outside one named by ``VPPAGENT_TEST_VPP_SOCKET``,
else a private instance started on first use (``tests/realvpp/__init__.py``) and stopped at the end.
``fresh_real_vpp`` is a private instance per test module, for tests that need a VPP nobody else
has touched.  Without VPP (or without root) both skip with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.realvpp import PrivateVpp, RealVpp, outside_vpp, unavailable_reason


@pytest.fixture(scope="session")
def real_vpp() -> Iterator[RealVpp]:
    try:
        outside = outside_vpp()
    except FileNotFoundError as missing:
        pytest.skip(str(missing))
    if outside is not None:
        yield outside
        return
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no real VPP: {reason}")
    with PrivateVpp() as vpp:
        yield vpp


@pytest.fixture(scope="module")
def fresh_real_vpp() -> Iterator[RealVpp]:
    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private VPP for this module: {reason}")
    with PrivateVpp() as vpp:
        yield vpp
