"""This node's name and addresses: from Felix's FelixHostname and HostMetadata to node-port frontends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.agentproc import wait_for
from tests.server.conftest import AgentHarness
from tests.server.conftest import agent as agent  # the in-process agent (dry-run driver) fixture
from tests.services.test_source import FAST, Recorder
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab.apiserver import SERVICES, StandInApiServer
from vppagent.services.runner import ServiceRunner, node_identity
from vppagent.services.source import KubernetesServiceSource, load_api_client
from vppagent.state.model import DataplaneState


def web_service() -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "NodePort", "clusterIPs": ["10.96.0.20"], "ports": [{"port": 80, "nodePort": 30080}]}}


def felix_messages(hostname: str | None) -> list[felix.ToDataplane]:
    config = {"FelixHostname": hostname} if hostname else {}
    return [
        felix.ToDataplane(config_update=felix.ConfigUpdate(config=config)),
        felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
            hostname="node-1", ipv4_addr="192.168.1.10/24", ipv6_addr="fd00::10")),
        felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(hostname="node-2", ipv4_addr="192.168.1.11")),
        felix.ToDataplane(in_sync=felix.InSync()),
    ]


def test_node_identity_from_felix_hostname_and_host_metadata() -> None:
    state = DataplaneState()
    for msg in felix_messages("node-1"):
        state.apply(msg)
    assert node_identity(state, "fallback") == ("node-1", ("192.168.1.10", "fd00::10"))
    unnamed = DataplaneState()
    for msg in felix_messages(None):
        unnamed.apply(msg)
    assert node_identity(unnamed, "node-2") == ("node-2", ("192.168.1.11",))
    assert node_identity(DataplaneState(), "node-9") == ("node-9", ())


def test_set_node_adds_node_port_frontends(api: StandInApiServer, tmp_path: Path) -> None:
    api.put(SERVICES, web_service())
    recorder = Recorder()
    source = KubernetesServiceSource(load_api_client(api.write_kubeconfig(tmp_path / "kc")), recorder, backoff=FAST)
    source.start()
    try:
        wait_for(lambda: "default/web" in source.services())
        assert source.services()["default/web"].report()["frontends"] == ["10.96.0.20:80/tcp"]
        source.set_node("node-1", ("192.168.1.10", "fd00::10"))  # the IPv6 address: not this service's family
        assert source.services()["default/web"].report()["frontends"] == ["10.96.0.20:80/tcp", "192.168.1.10:30080/tcp"]
    finally:
        source.stop()


def test_agent_gives_the_source_its_node_from_felix(
    agent: AgentHarness, api: StandInApiServer, tmp_path: Path
) -> None:
    api.put(SERVICES, web_service())
    client = load_api_client(api.write_kubeconfig(tmp_path / "kc"))
    runner = ServiceRunner(lambda on_change: KubernetesServiceSource(client, on_change, backoff=FAST))
    runner.start(agent.core)
    try:
        agent.stream().send(*felix_messages("node-1"))

        def node_port_reported() -> bool:
            return any("192.168.1.10:30080/tcp" in s["frontends"] for s in agent.state().get("services", []))

        wait_for(node_port_reported)
        assert agent.state()["services_source"]["connected"] is True
    finally:
        runner.stop()
