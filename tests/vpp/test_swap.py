"""Driver swap at runtime (DESIGN.md section 5) through AgentCore.set_driver: vpp -> iptables -> vpp,
with timings, each old driver's objects removed, and a failing swap that leaves the old driver on.

The kernel driver programs a private network namespace (root); without root the swap partner is
the dry-run driver, and the test says so in its id.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from tests.agentproc import wait_for
from tests.vpp.helpers import Target, make_driver
from vppagent.config import AgentConfig
from vppagent.drivers.base import Driver
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.lab import builders as b
from vppagent.server.core import AgentCore
from vppagent.vppsim import Direction, Packet


@pytest.fixture
def kernel_netns() -> Iterator[str | None]:
    usable = os.geteuid() == 0 and shutil.which("ip") and shutil.which("ipset") and (
        shutil.which("iptables-nft-restore") or shutil.which("iptables-legacy-restore"))
    if not usable:
        yield None
        return
    name = f"vpaswap{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True, timeout=20).returncode:
        yield None
        return
    yield name
    subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=20)


def iptables_save(netns: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "iptables-save"], capture_output=True, text=True,
                          timeout=20).stdout


def test_swap_vpp_to_kernel_and_back(sim_target: Target, kernel_netns: str | None) -> None:
    pods = {"ns/a": sim_target.pod("ns/a"), "ns/b": sim_target.pod("ns/b")}
    fail_next_vpp: list[str] = []

    def factory(name: str) -> Driver:
        if name == "vpp":
            if fail_next_vpp:
                raise RuntimeError(fail_next_vpp.pop())
            return make_driver(sim_target)
        if name == "iptables" and kernel_netns is not None:
            from vppagent.drivers.iptables import IptablesDriver

            return IptablesDriver(netns=kernel_netns, refresh=False, program_routes=False)
        return DryRunDriver(name="iptables (dry-run stand-in)")

    core = AgentCore(AgentConfig.model_validate({"batch_window_ms": 1}), make_driver(sim_target), "test",
                     driver_factory=factory)
    core.start()
    try:
        generation = core.open_stream().generation
        for m in [b.config({}), b.profile("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])],
                                          outbound=[b.rule("allow")]),
                  b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], profiles=["web"]),
                  b.workload("ns/b", "cali2", ipv4=["10.65.0.3/32"], profiles=["web"]), b.in_sync()]:
            core.submit(generation, m)
        wait_for(lambda: core.store.programmed is not None, what="programmed on vpp")
        syn = Packet.make("10.65.0.3", "10.65.0.2", "tcp", 40000, 80)

        def vpp_allows() -> bool:  # a new flow (no reflect session from an earlier check)
            with sim_target.emulator.state.lock:
                sim_target.emulator.state.acl.clear_sessions()
            return sim_target.emulator.evaluate(pods["ns/a"], Direction.OUTPUT, syn).permitted

        assert vpp_allows()
        acls_on_vpp = len(sim_target.our_acls())

        ok, error, previous, seconds = core.set_driver("iptables")
        assert ok and previous == "vpp" and seconds > 0, error
        assert core.driver.name.startswith("iptables")
        # VPP keeps only drop-all on the pods' interfaces (never open); the routes to those
        # interfaces stay with them (remove_all: on a real VPP a deleted one reads back as present)
        assert all(d.count == 0 for d in sim_target.our_acls().values())
        assert not vpp_allows() and "10.65.0.2/32" in sim_target.routes()
        if kernel_netns is not None:
            assert "vpa-" in iptables_save(kernel_netns)

        ok, error, previous, seconds = core.set_driver("vpp")
        assert ok and previous.startswith("iptables") and seconds > 0, error
        assert vpp_allows() and "10.65.0.2/32" in sim_target.routes()
        assert len(sim_target.our_acls()) == acls_on_vpp
        if kernel_netns is not None:
            assert "vpa-" not in iptables_save(kernel_netns), "the kernel driver's chains were removed"

        # a swap that cannot start its driver leaves the current one in charge, untouched
        ok, error, _, _ = core.set_driver("iptables")
        assert ok
        fail_next_vpp.append("VPP 26.02 is not compatible: CRC differs for acl_add_replace")
        ok, error, previous, _ = core.set_driver("vpp")
        assert not ok and "CRC differs" in error and core.driver.name.startswith("iptables")
        if kernel_netns is not None:
            assert "vpa-" in iptables_save(kernel_netns)
    finally:
        core.stop()
