"""The scenario model: parsing, derived addresses, step replay, and readable errors."""

from __future__ import annotations

import ipaddress
import textwrap

import pytest

from tests.lab.scenarios import SMALL
from vppagent.lab.scenario import ScenarioError, load_scenario, parse_scenario
from vppagent.lab.scenario_objects import Port


def test_default_scenario_meets_the_acceptance_shape() -> None:
    sc = load_scenario()
    assert len(sc.nodes) >= 2 and len(sc.pods()) >= 4
    assert any(t.default_action == "Pass" for t in sc.tiers), "a tier that ends with Pass"
    assert any(rule.action == "pass" for p in sc.policies for rule in [*(p.ingress or []), *(p.egress or [])])
    assert any(step.change.ipsets for step in sc.steps), "an ipset change mid-run"
    cross = [e for e in sc.expect if sc.node_of(e.source).name != sc.node_of(e.target).name]
    assert {e.allowed for e in cross} == {True, False}, "a denied and an allowed cross-node flow"


def test_addresses_are_derived_from_node_and_position() -> None:
    sc = parse_scenario(SMALL)
    assert sc.node_address("n2") == ipaddress.IPv4Address("198.18.0.2")
    assert sc.node_block("n1") == ipaddress.IPv4Network("10.65.1.0/24")
    assert [str(sc.pod_address(p)) for p in ("web", "client", "db")] == ["10.65.1.2", "10.65.1.3", "10.65.2.2"]
    assert sc.pod("db").ports == [Port("tcp", 5432), Port("udp", 53)]


def test_steps_replay_on_the_declared_objects() -> None:
    snapshots = list(parse_scenario(SMALL).snapshots())
    assert [s.name for s in snapshots] == ["initial", "client joins web-pods"]
    assert snapshots[0].objects.ipsets["web-pods"] == ["web"]
    assert snapshots[1].objects.ipsets["web-pods"] == ["web", "client"]
    assert snapshots[1].ipset_changes["web-pods"].add == ["client"]
    # Each step carries its own written expectations.
    assert [(e.source, e.target) for e in snapshots[1].expectations] == [("client", "db")]
    assert ("client", "db") in [(e.source, e.target) for e in snapshots[0].expectations]


@pytest.mark.parametrize(("original", "broken"), [
    ("web-pods: [web]", "web-pods: [nobody]"),
    ("ipsets: [web-pods]", "ipsets: [missing]"),
    ("- {name: client}", "- {name: web}"),
    ("{from: web, to: db, port: 5432, allowed: true}", "{from: web, to: db, port: 8080, allowed: true}"),
    ("web-pods: {add: [client]}", "other: {add: [client]}"),
    ("{action: allow, protocol: tcp, source", "{action: allow, source"),
    ("pod_profiles: [allow-all]", "pod_profiles: [nope]"),
])
def test_broken_references_fail_at_load_time(original: str, broken: str) -> None:
    text = SMALL.replace(original, broken)
    assert text != SMALL
    with pytest.raises(ScenarioError):
        parse_scenario(text, "t.yaml")


def test_errors_name_the_step_and_object() -> None:
    text = SMALL.replace("web-pods: {add: [client]}", "web-pods: {add: [ghost]}")
    with pytest.raises(ScenarioError, match=r"t\.yaml: .*step 1 \(client joins web-pods\).*'ghost'"):
        parse_scenario(text, "t.yaml")
    with pytest.raises(ScenarioError, match="ports need protocol"):
        parse_scenario(SMALL.replace("{action: allow, protocol: tcp, source", "{action: allow, source"), "t.yaml")
    with pytest.raises(ScenarioError, match="listed twice"):
        parse_scenario(SMALL.replace("- {name: client}", "- {name: web}"), "t.yaml")


def test_a_removed_ipset_still_in_use_is_refused() -> None:
    text = SMALL + textwrap.indent(textwrap.dedent("""\
        - name: drop the set
          remove: {ipsets: [web-pods]}
        """), "  ")
    with pytest.raises(ScenarioError, match=r"step 2 \(drop the set\).*ipset in a rule of policy db"):
        parse_scenario(text, "t.yaml")


def test_yaml_and_shape_errors_are_one_readable_line() -> None:
    with pytest.raises(ScenarioError, match="not valid YAML"):
        parse_scenario("nodes: [", "bad.yaml")
    with pytest.raises(ScenarioError, match="a scenario is a mapping"):
        parse_scenario("- 1", "bad.yaml")
    with pytest.raises(ScenarioError, match=r"nodes\.0\.pods\.0\.ports\.0: .*write 80, tcp/80 or udp/53"):
        parse_scenario("name: x\nnodes: [{name: a, pods: [{name: p, ports: [icmp/1]}]}]", "bad.yaml")


def test_bgp_sections_are_validated_and_merged() -> None:
    sc = parse_scenario(SMALL.replace("pod_profiles:", "bgp: {node_mesh: false}\npod_profiles:").replace(
        "- name: n2", "- name: n2\n    bgp: {route_reflector_cluster_id: 224.0.0.1}"))
    assert sc.bgp_of(sc.nodes[1]) == {"node_mesh": False, "route_reflector_cluster_id": "224.0.0.1"}
    with pytest.raises(ScenarioError, match="set by the lab"):
        parse_scenario(SMALL.replace("pod_profiles:", "bgp: {socket_path: /tmp/x}\npod_profiles:"))
    with pytest.raises(ScenarioError, match=r"bgp\.as_number"):
        parse_scenario(SMALL.replace("pod_profiles:", "bgp: {as_number: 0}\npod_profiles:"))
