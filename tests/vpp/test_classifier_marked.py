"""The marked compile (classifier/marked.py) against the evaluator where its argument is
delicate: an allow rule spelt with another case ("Allow": the model reads it as allow, so the
set is a candidate, and its rules must carry the marker, or L_0 holds the set as every address)."""

from __future__ import annotations

import pytest

from tests.vpp.helpers import Target, make_driver, state_of, wkey
from tests.vpp.test_classifier import PODS, agrees_with_evaluator, established
from tests.vpp.test_classifier_multiset import G1, G2
from vppagent.drivers.vpp.classifier import gate
from vppagent.drivers.vpp.classifier.gate import gated_lists
from vppagent.drivers.vpp.classifier.regions import Unfit, View, marked_region
from vppagent.lab import builders as b
from vppagent.policy.boxes import full_box
from vppagent.policy.catalog import Catalog
from vppagent.policy.model import TCP, Direction


def messages(action: str) -> list:  # type: ignore[type-arg]
    web_tiers = [b.tier("default", ingress=["web"], namespace="ns")]
    return [
        b.config({}),
        b.ipset("g1", G1, kind="ip"),
        b.ipset("g2", G2[:600], kind="ip"),
        b.policy("web", namespace="ns", inbound=[
            b.rule(action, protocol="tcp", dst_ports=[80], src_ip_set_ids=["g1"]),
            b.rule("allow", protocol="tcp", dst_ports=[22], src_ip_set_ids=["g2"])]),
        b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")]),
        *[b.workload(p, f"cali{i}", ipv4=[f"{ip}/32"], tiers=web_tiers if p.startswith("ns/web") else [],
                     profiles=["open"]) for i, (p, ip) in enumerate(PODS.items())],
    ]


def test_allow_spelt_in_capitals_is_marked_too(sim_target: Target) -> None:
    interfaces = {p: sim_target.pod(p) for p in PODS}
    driver = make_driver(sim_target)
    try:
        state = state_of(messages("Allow"))
        assert driver.resync(state).ok
        assert driver.status()["gated_lists"] == 1
        # ns/other is in neither set: port 80 is g1's only
        assert not established(sim_target, interfaces, "ns/other", "ns/web0", "tcp", 80)
        assert established(sim_target, interfaces, "ns/client", "ns/web0", "tcp", 80)
        agrees_with_evaluator(sim_target, interfaces, state, ("ns/web0",),
                              (("tcp", 22), ("tcp", 80), ("tcp", 443), ("udp", 80)))
    finally:
        driver.close()


def test_a_source_port_range_spanning_markers_is_unfit() -> None:
    tcp = full_box()._replace(proto_lo=TCP, proto_hi=TCP, b_lo=80, b_hi=80)
    joined = View({4: [(tcp._replace(a_lo=1, a_hi=2), "allow")], 6: []}, "deny")
    with pytest.raises(Unfit):
        marked_region(joined, 4, 1)
    single = View({4: [(tcp._replace(a_lo=1, a_hi=1), "allow")], 6: []}, "deny")
    assert marked_region(single, 4, 1) and not marked_region(single, 4, 2)


def test_an_unexpected_unfit_leaves_the_list_ungated(monkeypatch: pytest.MonkeyPatch) -> None:
    state = state_of(messages("allow"))
    catalog = Catalog(state)
    ep = catalog.workload(wkey("ns/web0"))
    assert gated_lists(catalog, state, ep, Direction.INGRESS, 100_000, 500) is not None

    def unfit(*_: object) -> None:
        raise Unfit("unexpected")

    monkeypatch.setattr(gate, "MEMBER_WISE", True)
    monkeypatch.setattr(gate, "basis", unfit)
    assert gated_lists(catalog, state, ep, Direction.INGRESS, 100_000, 500) is None
