"""Rules remembered by their message's bytes (model.build_rules): a changed rule is built anew,
an equal one is the same Rule wherever it stands, an invalid one is never remembered (its error
names its own place), and set references are checked against each state's sets every time."""

from __future__ import annotations

import pytest

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy import model
from vppagent.policy.model import PolicyError, build_policy
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import PolicyKey

WEB, DB = PolicyKey("web", "ns", ""), PolicyKey("db", "ns", "")
SETS = {"s": IPSet("s", IPSetType.NET, frozenset({"10.0.0.0/24"}))}


def _allow(port: int, *sets: str) -> felix.Rule:
    return felix.Rule(action="allow", protocol=felix.Protocol(name="tcp"),
                      dst_ports=[felix.PortRange(first=port, last=port)], src_ip_set_ids=list(sets))


def test_a_changed_rule_is_built_anew_and_an_equal_one_is_shared() -> None:
    before = build_policy(WEB, felix.Policy(inbound_rules=[_allow(80, "s")]), SETS)
    after = build_policy(WEB, felix.Policy(inbound_rules=[_allow(8080, "s")]), SETS)
    assert [p.first for p in before.inbound_rules[0].dst_ports] == [80]
    assert [p.first for p in after.inbound_rules[0].dst_ports] == [8080], "never the rule built before"
    elsewhere = build_policy(DB, felix.Policy(inbound_rules=[_allow(9, "s"), _allow(80, "s")]), SETS)
    assert elsewhere.inbound_rules[1] is before.inbound_rules[0], "the same message: the same Rule"


def test_an_invalid_rule_is_never_remembered_and_names_its_own_place() -> None:
    bad = felix.Rule(action="allow", dst_ports=[felix.PortRange(first=80, last=80)])  # ports without tcp/udp
    with pytest.raises(PolicyError, match=r"policy ns/web \(rule 0, inbound\)"):
        build_policy(WEB, felix.Policy(inbound_rules=[bad]))
    with pytest.raises(PolicyError, match=r"policy ns/db \(rule 1, inbound\)"):
        build_policy(DB, felix.Policy(inbound_rules=[_allow(80), bad]))
    assert bad.SerializeToString(deterministic=True) not in model._BUILT


def test_set_references_are_checked_against_each_states_sets() -> None:
    policy = felix.Policy(inbound_rules=[_allow(80, "s")])
    build_policy(WEB, policy, SETS)  # remembered
    with pytest.raises(PolicyError, match="references missing IP set 's'"):
        build_policy(WEB, policy, {})
    ports = {"s": IPSet("s", IPSetType.IP_AND_PORT, frozenset({"10.0.0.1,tcp:80"}))}
    with pytest.raises(PolicyError, match="used as an address set"):
        build_policy(WEB, policy, ports)


def test_the_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model, "BUILT_BOUND", 4)
    monkeypatch.setattr(model, "_BUILT", {})
    for port in range(1, 11):
        build_policy(WEB, felix.Policy(inbound_rules=[_allow(port)]))
        assert len(model._BUILT) <= 4
