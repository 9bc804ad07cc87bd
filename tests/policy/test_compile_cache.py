"""Lists compiled once per catalog: endpoints with the same tiers, profiles and state share one
compile (issue 15), and the shared list is still each endpoint's own and exact."""

from __future__ import annotations

from google.protobuf import json_format

from tests.policy.helpers import ALLOW_ALL, EP, build_state, tcp, tier
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet
from vppagent.state.model import WorkloadKey


def _add_endpoint(state: object, name: str, tiers: list[dict[str, object]]) -> WorkloadKey:
    key = WorkloadKey("k8s", f"default/{name}", "eth0")
    state.apply(json_format.ParseDict({"workload_endpoint_update": {  # type: ignore[attr-defined]
        "id": {"orchestrator_id": key.orchestrator_id, "workload_id": key.workload_id,
               "endpoint_id": key.endpoint_id},
        "endpoint": {"state": "active", "name": name, "ipv4_nets": ["10.65.0.9/32"], "profile_ids": ["p"],
                     "tiers": tiers}}}, felix.ToDataplane()))
    return key


def test_identical_endpoints_share_a_list_and_differing_ones_do_not() -> None:
    tiers = [tier("t", ingress=["web"])]
    state = build_state(policies={"web": ([tcp(80, action="allow")], []), "db": ([tcp(5432, action="allow")], [])},
                        profiles={"p": ALLOW_ALL}, profile_ids=["p"], tiers=tiers)
    twin = _add_endpoint(state, "twin", tiers)
    other = _add_endpoint(state, "other", [tier("t", ingress=["db"])])
    cat = Catalog(state)
    first = compile_endpoint(cat, EP, "ingress")
    second = compile_endpoint(cat, twin, "ingress")
    third = compile_endpoint(cat, other, "ingress")
    assert (first.endpoint, second.endpoint) == (str(EP), str(twin))
    assert second.rules is first.rules  # the same compile, not a second one
    assert third.fingerprint() != first.fingerprint()
    for key, compiled in ((twin, second), (other, third)):
        for text in ("tcp 10.65.1.1:9 > 10.65.0.9:80", "tcp 10.65.1.1:9 > 10.65.0.9:5432"):
            pkt = Packet.parse(text)
            assert first_match(compiled, pkt).action == verdict(cat, key, "ingress", pkt).action, (key, text)
