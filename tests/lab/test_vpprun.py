"""vppagent.vpprun, the package's VPP launcher (used by the lab and the VPP benchmark)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vppagent.lab.record import process_start_time
from vppagent.vpprun import VppProcess, VppStartError, vpp_problem

pytestmark = pytest.mark.skipif(vpp_problem() is not None, reason=f"cannot start VPP here: {vpp_problem()}")


def test_a_private_vpp_answers_refuses_bad_commands_and_leaves_nothing(tmp_path: Path) -> None:
    runtime = Path("/run/vpp") / f"vpprun-test-{os.getpid()}"
    with VppProcess(runtime, heap="256M", buffers=4096) as vpp:
        pid = vpp.pid
        assert pid is not None and process_start_time(pid) is not None
        assert vpp.cli("show version").startswith("vpp v")
        assert vpp.api_socket.exists() and (runtime / "startup.conf").exists()
        with pytest.raises(VppStartError, match="unknown input"):
            vpp.cli("no such command")
        with pytest.raises(VppStartError, match="unknown interface"):
            vpp.cli("set interface state host-nosuch up")
        with pytest.raises(VppStartError, match="Invalid interface name"):
            vpp.cli("create host-interface name nosuch0")
    assert process_start_time(pid) is None, "stopped by its pid"
    assert not runtime.exists()


def test_a_vpp_that_cannot_start_says_why(tmp_path: Path) -> None:
    runtime = Path("/run/vpp") / f"vpprun-test-bad-{os.getpid()}"
    vpp = VppProcess(runtime, heap="1M")  # far too small: VPP aborts at start
    try:
        vpp.start()
        with pytest.raises(VppStartError, match=r"vpp exited.*Out-of-memory"):
            vpp.wait_ready(timeout=20)
    finally:
        vpp.stop(remove_dir=True)
    assert not runtime.exists()
