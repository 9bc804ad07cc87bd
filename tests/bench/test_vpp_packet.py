"""bench/vpp_packet.py at a tiny size, so it cannot rot: one real VPP, every variant and traffic
class sent once, the verdicts VPP gave checked (structure and behaviour, never speed); and its
pure parts (flow shapes, the ACL plugin's table text) without VPP."""

from __future__ import annotations

import ipaddress

import pytest

from bench import vpp_packet, vpp_tables
from vppagent.vpprun import vpp_problem

# Captured from VPP 26.06 (`show acl-plugin lookup context`, `show acl-plugin tables applied lc_index 0`)
LOOKUP_CONTEXTS = """\
index 0:interface ACL sw_if_index: 2 is_input: 0, acl_indices: 0
index 1:interface ACL sw_if_index: 3 is_input: 1, acl_indices: 4, 7
"""
APPLIED = """\
Stats counters enabled for interface ACLs: 0
Use hash-based lookup for ACLs: 1
Applied lookup entries for lookup contexts
lc_index 0:
  applied acls: 0
  applied mask info entries:
       0: mask type index 3 first rule index 0 num_entries 20 max_collisions 16
       1: mask type index 5 first rule index 20 num_entries 13 max_collisions 2
  lookup applied entries:
       0: acl 0 rule 0 action 2 bitmask-ready rule 0 mask type index: 3 colliding_rules: 16 \
collision_head_ae_idx 0 hitcount 0 acl_pos: 0
"""


def test_lookup_contexts_and_mask_shapes_are_read_from_the_cli_text() -> None:
    contexts = vpp_tables.lookup_contexts(lambda _: LOOKUP_CONTEXTS)
    assert contexts == [vpp_tables.LookupContext(0, 2, False, (0,)), vpp_tables.LookupContext(1, 3, True, (4, 7))]
    assert vpp_tables.mask_shapes(lambda _: APPLIED, 0) == vpp_tables.MaskShapes(2, 33, 16)
    shapes = vpp_tables.shapes_per_acl(lambda c: LOOKUP_CONTEXTS if "context" in c else APPLIED, [0, 4, 9])
    assert shapes == {0: vpp_tables.MaskShapes(2, 33, 16)}  # 4 shares its context with 7; 9 is bound nowhere


def test_flows_are_sources_times_a_coprime_port_window() -> None:
    for flows in (20, 400, 10_000, 10_001):
        ports = vpp_packet.coprime_ports(flows)
        assert vpp_packet.SOURCES * ports >= flows and vpp_packet.SOURCES * (ports - 2) < flows
        assert all(ports % p for p in (2, 5))  # lockstep increments then visit every pair once
    run = vpp_packet.consecutive_run([f"10.0.0.{i}" for i in (9, 1, 2, 3, 7, 8, 10)])
    assert run == ["10.0.0.7", "10.0.0.8", "10.0.0.9", "10.0.0.10"]
    assert len(vpp_packet.consecutive_run([str(ipaddress.ip_address("10.1.0.0") + i) for i in range(50)])) == 20


@pytest.mark.realvpp
@pytest.mark.skipif(vpp_problem() is not None, reason=f"cannot start VPP here: {vpp_problem()}")
def test_a_tiny_run_sends_every_stream_and_vpp_gives_the_lists_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    result = vpp_packet.run(flows=100, packets=1000, rounds=1, policies=50, endpoints=1000, ipsets=60, big_set=600,
                            unsteered=True)
    summary = vpp_packet.summarize(result)
    assert result["flows"] >= 100
    got = {(e["direction"], e["variant"], e["class"]) for e in summary}
    for name in ("P1 smallest ingress", "P1 median ingress", "P1 largest ingress", "P1 gated ingress",
                 "P1 gated, set in the ACL", *(f"{n}, unsteered" for n in vpp_packet.UNSTEERED)):
        assert {("out", name, k) for k in vpp_packet.CLASSES} <= got
    assert {("in", "P1 egress", k) for k in ("deny", "new", "established")} <= got
    for direction in ("in", "out"):
        assert {("out", "1 rule, deny any", k) for k in vpp_packet.CLASSES if k.startswith("deny")} <= got
        assert {(direction, "1 rule, deny any", "deny"), (direction, "1 rule, permit+reflect any", "new"),
                (direction, "no ACL", "established")} <= got
    for e in summary:
        # denied flows were dropped, allowed ones delivered, each new flow made one session
        assert e["problems"] == [], (e["variant"], e["class"], e["problems"])
        has_acl = e["variant"] != "no ACL"
        assert (e["acl"][0] > 0) == has_acl, e
        assert e["path"][0] > 0 and e["wall_pps"][0] > 0
        if has_acl:
            assert e["shapes"] is not None and e["shapes"].mask_types >= 1 and e["rules"] >= 1
            assert e["acl_vs_1rule"] is not None and e["path_vs_none"] is not None
    gated = {e["class"]: e for e in summary if e["variant"] == "P1 gated ingress"}
    assert gated["new"]["gate"][0] > 0 and gated["established"]["gate"][0] > 0  # the classifier ran
    one_rule = [e for e in summary if e["variant"].startswith("1 rule")]
    assert all(e["shapes"].mask_types == 1 and e["rules"] == 1 for e in one_rule)
    vpp_packet.print_report(result, summary)
    out = capsys.readouterr().out
    assert "[deny]" in out and "[established]" in out and "P1 gated ingress" in out
