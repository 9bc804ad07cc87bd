"""Issue 13, the store's side: what a held-back object still uses stays programmed (finding 6),
and a delta for an IP set Felix never sent is named as such (finding 7)."""

from __future__ import annotations

from tests.agentproc import wait_for
from tests.server.test_store import synced_store
from tests.status.harness import start_core
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.lab import builders as b
from vppagent.state.model import Kind, PolicyKey

ALLOW_WEB = PolicyKey("allow-web", "", "")


def test_an_ip_set_a_held_back_policy_uses_stays_until_nothing_uses_it() -> None:
    """Finding 6: Felix replaces allow-web (no longer using s:web) with an invalid version, then
    removes s:web. allow-web is held back at its old version, which uses s:web: s:web must stay
    programmed (the kernel cannot destroy a set a rule uses) and the report must say why."""
    store = synced_store()
    store.apply(b.policy("allow-web", inbound=[b.rule("allow", src_net=["10.0.0.300/32"])]))
    store.apply(b.ipset_remove("s:web"))
    diff, eff = store.prepare()
    assert diff is not None and "ipsets" not in diff.summary()["removes"], diff.summary()
    assert "s:web" in eff.ipsets and list(eff.policies[ALLOW_WEB].inbound_rules[0].src_ip_set_ids) == ["s:web"]
    reason = store.held[(Kind.IPSET, "s:web")]
    assert "removed by Felix" in reason and "allow-web" in reason, reason
    store.commit(eff)
    # allow-web fixed (not using s:web): now the set goes
    store.apply(b.policy("allow-web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])]))
    diff, eff = store.prepare()
    assert diff is not None and diff.summary()["removes"] == {"ipsets": ["s:web"]}, diff.summary()
    assert (Kind.IPSET, "s:web") not in store.held and "s:web" not in eff.ipsets


def test_a_policy_a_held_back_endpoint_uses_stays_until_nothing_uses_it() -> None:
    store = synced_store()
    store.apply(b.workload("ns/pod1", "cali1", ipv4=["10.0.0.5/32"],
                           tiers=[b.tier("default", ingress=["gone"])], profiles=["kns.ns"]))
    store.apply(b.policy_remove("allow-web"))
    diff, eff = store.prepare()
    assert diff is not None and "policies" not in diff.summary()["removes"], diff.summary()
    assert ALLOW_WEB in eff.policies and "s:web" in eff.ipsets
    assert "removed by Felix" in store.held[(Kind.POLICY, ALLOW_WEB)]


def test_a_delta_for_an_unknown_set_is_named_as_such() -> None:
    """Finding 7: not `invalid members ['<delta for unknown set>']`."""
    core, feed = start_core(DryRunDriver())
    try:
        feed.send(b.ipset("s:web", ["10.0.0.1/32"]), b.in_sync(), b.ipset_delta("s:nope", added=["10.0.0.9"]))
        wait_for(lambda: core.state_report()["held_back"], what="the set held back")
        held = core.state_report()["held_back"]
        assert held == [{"kind": "ipsets", "key": "s:nope", "reason":
                         "IP set s:nope: a delta arrived for a set Felix has not sent "
                         "(held back until a full update of the set)"}], held
    finally:
        core.stop()
