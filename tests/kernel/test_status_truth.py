"""Issue 13 on the kernel driver, through the agent in a node namespace: an IP set a held-back
policy still uses is kept, not destroyed every second in vain (finding 6); a swap back to
iptables from the dry run stands with the endpoint iptables cannot program in "error" (finding 5)."""

from __future__ import annotations

import pytest

from tests.agentproc import wait_for
from tests.kernel.conftest import KernelAgent
from tests.kernel.netlab import Lab, sh
from tests.kernel.test_lifecycle import snapshot
from vppagent.drivers.iptables.names import ipset_name
from vppagent.lab import builders as b
from vppagent.server.client import set_driver
from vppagent.state.ipset import IPSetType

pytestmark = pytest.mark.root


def _kernel_sets(lab: Lab) -> set[str]:
    return set(sh("ip", "netns", "exec", lab.node, "ipset", "list", "-n").split())


def _statuses(agent: KernelAgent) -> dict[str, str]:
    return {r["workload_id"]: r["status"] for r in agent.state()["workload_endpoints"]}


def test_a_set_a_held_back_policy_uses_is_kept_until_released(lab: Lab, agent: KernelAgent) -> None:
    peers = ipset_name("s:pod3-peers", IPSetType.NET, 4)
    agent.send(*snapshot(), b.in_sync())
    assert peers in _kernel_sets(lab)
    # pod3-in no longer uses the set, but cannot be programmed: it is held back at its old
    # version, which does. Felix then removes the set.
    agent.send(b.policy("pod3-in", inbound=[b.rule("allow", src_net=["10.65.0.0/33"])]),
               b.ipset_remove("s:pod3-peers"))
    # Instead of waiting for retries that may come: a later apply, awaited. Every apply destroys
    # the kernel sets nobody wants (ipsets.apply_deletes), so a set wrongly given up is tried
    # again here; and an apply that is ok with nothing failed schedules no retry (server/health.py),
    # so nothing more happens until Felix sends news.
    agent.send(b.ipset("s:unrelated", ["10.99.0.1/32"]))
    report = agent.state()
    assert report["last_apply"]["ok"] and report["last_apply"]["failed"] == 0, report["last_apply"]
    assert ipset_name("s:unrelated", IPSetType.NET, 4) in _kernel_sets(lab), "the later apply was programmed"
    assert peers in _kernel_sets(lab), "the old rules still use the set: it stays"
    assert "cannot be destroyed" not in agent.tail(20000), agent.tail()
    held = {h["key"]: h["reason"] for h in report["held_back"]}
    assert "removed by Felix" in held["s:pod3-peers"] and "pod3-in" in held["s:pod3-peers"], held
    assert _statuses(agent)["default/pod3"] == "error"
    # a good pod3-in that does not use the set releases it
    agent.send(b.policy("pod3-in", inbound=[b.rule("allow", protocol="tcp", dst_ports=[22])]))
    wait_for(lambda: peers not in _kernel_sets(lab), what="the released set destroyed")
    wait_for(lambda: _statuses(agent)["default/pod3"] == "up", what="pod3 up")
    assert not agent.state()["held_back"]


def test_swap_back_from_the_dry_run_keeps_a_bad_endpoint_in_error(lab: Lab, agent: KernelAgent) -> None:
    bad = b.workload("default/bad", "cali-name-too-long", ipv4=["10.65.0.9/32"], profiles=["kns.default"])
    agent.send(*snapshot(), bad, b.in_sync())
    wait_for(lambda: _statuses(agent).get("default/bad") == "error", what="bad in error on iptables")
    assert set_driver(agent.socket, "dry-run").ok
    reply = set_driver(agent.socket, "iptables")
    assert reply.ok and reply.active == "iptables", reply.error
    wait_for(lambda: _statuses(agent) == {"default/pod1": "up", "default/pod2": "up", "default/pod3": "up",
                                          "default/bad": "error"}, what="statuses after the swaps")
