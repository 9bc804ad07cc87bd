"""Gated endpoints under faults: a pod attached (CNI Add) before its chain exists gets the exact
list, and an endpoint the resync after VPP restarted (the agent's poll) cannot program reaches the
agent as status "error"."""

from __future__ import annotations

from tests.vpp.helpers import FakePlumbing, Target, make_driver, pod_spec, state_of
from tests.vpp.test_classifier import MEMBERS, PODS, established, messages
from tests.vpp.test_faults import wait_for
from vppagent.config import AgentConfig
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.lab import builders as b
from vppagent.server.core import AgentCore


def pod_interfaces(target: Target) -> dict[str, int]:
    by_tag = {i.tag: i.sw_if_index for i in target.emulator.state.interfaces.all()}
    return {p: by_tag[f"vpa1:wl:k8s/{p}/eth0"] for p in PODS if f"vpa1:wl:k8s/{p}/eth0" in by_tag}


def test_cni_add_of_a_gated_endpoint_is_exact_before_any_chain(sim_target: Target) -> None:
    driver = make_driver(sim_target, pod_interface="tap")
    try:
        driver.resync(state_of(messages(MEMBERS)))  # Felix's endpoints first, no pod interfaces yet
        for i, (pod, ip) in enumerate(PODS.items()):
            driver.attach_pod(pod_spec(pod, [f"{ip}/32"], host_ifname=f"cali{i}"))
        interfaces = pod_interfaces(sim_target)
        # no convergence since: the gated list L_U must not be bound without its chain
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
    finally:
        driver.close()


def _statuses(core: AgentCore) -> dict[str, str]:
    return {r["workload_id"]: r["status"] for r in core.state_report()["workload_endpoints"]}


def test_an_endpoint_the_resync_after_a_restart_cannot_program_is_an_error_in_the_agent(sim_target: Target) -> None:
    plumbing = FakePlumbing()
    driver = make_driver(sim_target, pod_interface="tap", plumbing=plumbing, keepalive=0.05,
                         request_timeout=0.5)
    core = AgentCore(AgentConfig.model_validate({"driver": "vpp", "batch_window_ms": 1}), driver)
    core.start()
    try:
        generation = core.open_stream().generation
        for m in [*messages(MEMBERS), b.in_sync()]:
            core.submit(generation, m)
        for i, (pod, ip) in enumerate(PODS.items()):
            driver.attach_pod(pod_spec(pod, [f"{ip}/32"], host_ifname=f"cali{i}"))
        wait_for(lambda: set(_statuses(core).values()) == {"up"} and len(_statuses(core)) == len(PODS),
                 what="all endpoints up")
        # VPP restarts and then refuses the gate's classifier tables (they miss to permit, the source
        # guards' to drop): the gated pods cannot be programmed
        sim_target.emulator.faults.reject("classify_add_del_table", -7,
                                          when=lambda f: f["miss_next_index"] == NO_INDEX)
        sim_target.emulator.restart(downtime=0.3)
        # (while VPP is gone every endpoint is "error"; the resync after it came back restores the rest)
        wait_for(lambda: _statuses(core).get("ns/web0") == "error" and _statuses(core).get("ns/client") == "up",
                 what="ns/web0 in error, ns/client up")
        statuses = _statuses(core)
        assert statuses["ns/web1"] == "error" and statuses["ns/client"] == "up" and statuses["ns/other"] == "up"
        errors = {r["workload_id"]: r["error"] for r in core.state_report()["workload_endpoints"]}
        assert "classify_add_del_table" in errors["ns/web0"]
        interfaces = pod_interfaces(sim_target)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80), "closed, not open"
        # VPP accepts again: the next background resync brings them back up
        sim_target.emulator.faults.clear()
        core.submit(generation, b.ipset_delta("s:clients", added=["10.65.9.8"]))
        wait_for(lambda: _statuses(core).get("ns/web0") == "up", what="ns/web0 up again")
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
    finally:
        core.stop()
