"""`vppagent run --driver vpp --services kubernetes` as a process, on the emulator, against the API
server stand-in: the source's Services reach the driver through the agent's worker, VPP holds them
as cnat translations, and the state report says so per Service, also while VPP is away."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProcess, wait_for
from tests.services.test_source import dns_slice, publish_dns
from vppagent.lab.apiserver import ENDPOINTSLICES, StandInApiServer
from vppagent.vppsim import VppSim


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[VppSim]:
    with VppSim(tmp_path / "vpp.sock") as running:
        yield running


def translations(sim: VppSim) -> dict[str, list[str]]:
    with sim.state.lock:
        return {f"{t.vip.address}:{t.vip.port}/{t.proto}": [f"{dst.address}:{dst.port}" for dst, _, _ in t.paths]
                for _, t in sim.state.cnat.translations.items()}


def dns_row(agent: AgentProcess) -> dict[str, Any] | None:
    state = agent.try_state()
    rows = [] if state is None else [r for r in state.get("services", []) if r["name"] == "kube-system/dns"]
    return rows[0] if rows else None


def test_the_vpp_driver_programs_the_sources_services(sim: VppSim, api: StandInApiServer, tmp_path: Path) -> None:
    publish_dns(api, "10.65.0.2", "10.65.0.3")
    agent = AgentProcess(tmp_path / "agent.sock", tmp_path / "agent.log", [
        "--driver", "vpp", "--vpp-api-socket", str(sim.socket_path), "--services", "kubernetes",
        "--kubeconfig", str(api.write_kubeconfig(tmp_path / "kubeconfig"))])
    agent.start()
    try:
        row = wait_for(lambda: (r := dns_row(agent)) is not None and r["status"] == "up" and r,
                       what="dns up in the state report")
        assert row["error"] is None and agent.state()["services_source"]["programmed"] is True
        assert translations(sim) == {"10.96.0.10:53/17": ["10.65.0.2:53", "10.65.0.3:53"]}
        api.put(ENDPOINTSLICES, dns_slice("10.65.0.3"))  # one endpoint gone
        wait_for(lambda: translations(sim) == {"10.96.0.10:53/17": ["10.65.0.3:53"]}, what="the path removed")
        wait_for(lambda: (r := dns_row(agent)) is not None and r["backends"] == ["10.65.0.3:53"]
                 and r["status"] == "up", what="the report follows")
        sim.stop()  # VPP away: the Service is an error, steadily
        wait_for(lambda: (r := dns_row(agent)) is not None and r["status"] == "error", what="dns in error")
        for _ in range(3):
            row = dns_row(agent)
            assert row is not None and row["status"] == "error" and row["error"].startswith("VPP: "), row
        sim.start()  # a fresh VPP: everything is programmed again
        wait_for(lambda: translations(sim) == {"10.96.0.10:53/17": ["10.65.0.3:53"]}, timeout=30,
                 what="translations back after VPP's restart")
        wait_for(lambda: (r := dns_row(agent)) is not None and r["status"] == "up", what="dns up again")
    finally:
        agent.stop()
