"""Fixtures for the real-packet and fault tests: a private VPP per module that a test may crash
and restart (PrivateVpp from this package), pods and a peer around it (podlab.py), the agent.

These tests need a VPP of their own (they kill it, read its CLI), so VPPAGENT_TEST_VPP_SOCKET's
outside VPP is not used; without vpp installed, or without root, they skip with the reason.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.realvpp import PrivateVpp, RealVpp, pods_unavailable_reason
from tests.realvpp.cases import PODS, PODS6
from tests.realvpp.podlab import PodLab, VppAgentProcess, attach_pods

_RUN = f"vr{os.getpid() % 100000}"
_COUNTER = itertools.count()


@pytest.fixture(scope="module")
def vpp_process() -> Iterator[PrivateVpp]:
    reason = pods_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private VPP with pods: {reason}")
    # API trace on from the start, so a test can read in which order the agent wrote (after a restart too)
    process = PrivateVpp(f"vppagent-packets-{os.getpid()}-{next(_COUNTER)}", extra_config="api-trace { on }\n")
    process.start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def vpp(vpp_process: PrivateVpp) -> RealVpp:
    return RealVpp(str(vpp_process.api_socket), None, str(vpp_process.cli_socket), started=True)


@pytest.fixture(scope="module")
def lab(vpp: RealVpp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodLab]:
    pods = {wid: (PODS[wid], PODS6[wid]) for wid in PODS}
    lab = PodLab(f"{_RUN}{next(_COUNTER)}", pods, tmp_path_factory.mktemp("podlab"))
    try:
        lab.build()
        lab.attach_peer(vpp)
        yield lab
    finally:
        lab.cleanup()


@pytest.fixture
def reclassify_off(vpp: RealVpp) -> Iterator[None]:
    """The ACL plugin's reclassify-sessions off, as the driver sets it with
    VPPAGENT_VPP_RECLASSIFY_SESSIONS=false (the module's agent has the default, on: set back after)."""
    vpp.cli("set acl-plugin reclassify-sessions 0")
    try:
        yield
    finally:
        vpp.cli("set acl-plugin reclassify-sessions 1")


@pytest.fixture(scope="module")
def agent(lab: PodLab, vpp: RealVpp) -> Iterator[VppAgentProcess]:
    """The agent on the VPP driver with both pods attached through CNI Add and Felix's pipe open."""
    run_dir = Path(f"/tmp/vpr-{uuid.uuid4().hex[:8]}")  # unix socket paths must stay short
    run_dir.mkdir(mode=0o700)
    process = VppAgentProcess(lab, vpp, run_dir)
    try:
        process.start()
        attach_pods(process, vpp)
        process.start_felix()
        yield process
    finally:
        process.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
