"""Random batches of valid and invalid Felix objects, and the oracle that says which endpoints
must be "up" and what they must hold (issue 13's property test).

The universe is small on purpose (2 IP sets, 3 policies, 2 profiles, 4 endpoints) so that
objects keep referring to each other, replacing and removing each other. Invalid objects are of
the kinds Felix can send and the agent must survive: an address that does not parse, a CIDR
/33, a delta for an IP set that does not exist, a reference to a missing policy, profile or set.

The oracle works from Felix's messages alone: an endpoint is valid when its own data parses,
every policy and profile it names exists and validates against the IP sets, and every IP set
those use exists with no invalid member. A valid endpoint must be "up" and hold exactly
`compile_endpoint` of the desired state ("down" when its admin state is not active); any other
endpoint must be "error".
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass
from typing import Any

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.compile import compile_endpoint, compile_host_endpoint
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, PolicyError, validate_policy, validate_profile
from vppagent.state.model import DataplaneState, Kind, PolicyKey, endpoint_policy_keys, ip_set_ids

SETS = ("s:a", "s:b")
POLICIES = ("p0", "p1", "p2")
PROFILES = ("r0", "r1")
ENDPOINTS = {f"ns/e{i}": f"calie{i}" for i in range(4)}
HOSTS = {"hep0": "eth9"}  # host endpoint id -> interface (dry-run and kernel mixes only)
GOOD_MEMBERS = ("10.65.1.0/24", "10.65.2.7/32", "10.66.0.0/16", "192.0.2.9/32")


def endpoint_ip(workload: str) -> str:
    return f"10.65.0.{2 + list(ENDPOINTS).index(workload)}/32"


def _rule(rng: random.Random, bad: bool) -> felix.Rule:
    fields: dict[str, Any] = {}
    shape = rng.randrange(5)
    if shape == 0:
        fields.update(protocol=rng.choice(["tcp", "udp"]), dst_ports=[rng.choice([80, 443, (8000, 8099)])])
    elif shape == 1:
        fields["src_net"] = [rng.choice(["10.65.0.0/16", "10.66.3.0/24", "192.0.2.0/28"])]
    elif shape == 2:
        fields["src_ip_set_ids"] = [rng.choice(SETS)]
    elif shape == 3:
        fields.update(protocol="tcp", dst_ports=[22], dst_ip_set_ids=[rng.choice(SETS)])
    if bad:
        fields.update(rng.choice([{"src_net": ["10.0.0.0/33"]}, {"src_ip_set_ids": ["s:missing"]},
                                  {"protocol": "tcp", "dst_ports": [(90, 80)]}]))
    return b.rule(rng.choice(["allow", "allow", "deny"]), **fields)


def random_message(rng: random.Random, bad_ratio: float, hosts: bool = False) -> felix.ToDataplane:
    bad = rng.random() < bad_ratio
    if hosts and rng.random() < 0.1:
        endpoint_id = rng.choice(list(HOSTS))
        if rng.random() < 0.2:
            return felix.ToDataplane(host_endpoint_remove=felix.HostEndpointRemove(
                id=felix.HostEndpointID(endpoint_id=endpoint_id)))
        ingress = rng.sample([*POLICIES, "p-missing"] if bad else POLICIES, rng.randrange(0, 3))
        return b.host_endpoint(endpoint_id, HOSTS[endpoint_id], profiles=["r-missing" if bad else rng.choice(PROFILES)],
                               tiers=[b.tier("default", ingress=ingress)] if ingress else [])
    kind = rng.randrange(10)
    if kind <= 1:
        members = rng.sample(GOOD_MEMBERS, rng.randrange(0, 3)) + (["10.65.0.300"] if bad else [])
        return b.ipset(rng.choice(SETS), members)
    if kind == 2:
        set_id = "s:unknown" if bad else rng.choice(SETS)
        return b.ipset_delta(set_id, added=[rng.choice(GOOD_MEMBERS)])
    if kind <= 4:
        rules = [_rule(rng, bad and i == 0) for i in range(rng.randrange(1, 4))]
        return b.policy(rng.choice(POLICIES), inbound=rules, outbound=[_rule(rng, False)] if rng.random() < 0.5 else [])
    if kind == 5:
        return b.profile(rng.choice(PROFILES), inbound=[_rule(rng, bad)], outbound=[b.rule("allow")])
    if kind <= 8:
        workload = rng.choice(list(ENDPOINTS))
        ingress = rng.sample([*POLICIES, "p-missing"] if bad else POLICIES, rng.randrange(0, 3))
        egress = rng.sample(POLICIES, rng.randrange(0, 2))
        profiles = ["r-missing"] if bad and rng.random() < 0.3 else [rng.choice(PROFILES)]
        ipv4 = "10.65.0.300/32" if bad and rng.random() < 0.5 else endpoint_ip(workload)
        state = "down" if rng.random() < 0.15 else "active"  # admin down: "down", lists that drop
        return b.workload(workload, ENDPOINTS[workload], ipv4=[ipv4], profiles=profiles, state=state,
                          tiers=[b.tier("default", ingress=ingress, egress=egress)] if ingress or egress else [])
    which = rng.randrange(3)
    if which == 0:
        return b.workload_remove(rng.choice(list(ENDPOINTS)))
    if which == 1:
        return b.policy_remove(rng.choice(POLICIES))
    return b.ipset_remove(rng.choice(SETS))


def first_snapshot(hosts: bool = False) -> list[felix.ToDataplane]:
    """Every endpoint valid: a profile allowing everything and the policies they name."""
    return [b.config({}), *(b.ipset(s, GOOD_MEMBERS[:2]) for s in SETS),
            *(b.policy(p, inbound=[b.rule("allow", protocol="tcp", dst_ports=[80])]) for p in POLICIES),
            *(b.profile(r, inbound=[b.rule("allow")], outbound=[b.rule("allow")]) for r in PROFILES),
            *(b.workload(w, i, ipv4=[endpoint_ip(w)], profiles=["r0"]) for w, i in ENDPOINTS.items()),
            *(b.host_endpoint(h, i, profiles=["r0"]) for h, i in (HOSTS.items() if hosts else ()))]


def random_batches(seed: int, batches: int, bad_ratio: float = 0.25,
                   hosts: bool = False) -> list[list[felix.ToDataplane]]:
    rng = random.Random(seed)
    return [[random_message(rng, bad_ratio, hosts) for _ in range(rng.randrange(1, 6))] for _ in range(batches)]


Ref = tuple[Kind, Any]  # (WORKLOAD_ENDPOINT, WorkloadKey) or (HOST_ENDPOINT, endpoint id)


@dataclass
class Expected:
    """The oracle's verdict for the desired state: lists per valid endpoint, and the invalid ones."""

    state: DataplaneState
    lists: dict[Ref, tuple[CompiledList, CompiledList]]  # (egress, ingress)
    invalid: dict[Ref, str]


def expected(state: DataplaneState) -> Expected:
    bad_sets = {s for s, ipset in state.ipsets.items() if ipset.invalid}

    def policy_problem(kind: Kind, key: Any) -> str | None:
        pb = state.tables[kind].get(key)
        if pb is None:
            return f"{key} missing"
        try:
            (validate_policy if kind == Kind.POLICY else validate_profile)(key, pb, state.ipsets)
        except PolicyError as exc:
            return str(exc)
        used = set().union(*(ip_set_ids(r) for r in (*pb.inbound_rules, *pb.outbound_rules)))
        return f"uses invalid IP set {sorted(used & bad_sets)}" if used & bad_sets else None

    lists: dict[Ref, tuple[CompiledList, CompiledList]] = {}
    invalid: dict[Ref, str] = {}
    for kind in (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT):
        for key, pb in state.tables[kind].items():
            problem = None
            try:
                for net in getattr(pb, "ipv4_nets", ()):
                    ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                problem = str(exc)
            refs: list[tuple[Kind, Any]] = [(Kind.PROFILE, p) for p in pb.profile_ids]
            refs += [(Kind.POLICY, k) for k in sorted(endpoint_policy_keys(pb))]
            for ref_kind, ref in refs:
                problem = problem or policy_problem(ref_kind, ref)
            if problem is not None:
                invalid[(kind, key)] = problem
                continue
            if kind == Kind.WORKLOAD_ENDPOINT:
                lists[(kind, key)] = (compile_endpoint(state, key, Direction.EGRESS),
                                      compile_endpoint(state, key, Direction.INGRESS))
            else:
                lists[(kind, key)] = (compile_host_endpoint(state, key, Direction.EGRESS),
                                      compile_host_endpoint(state, key, Direction.INGRESS))
    return Expected(state, lists, invalid)


def fold(messages: list[felix.ToDataplane], state: DataplaneState | None = None) -> DataplaneState:
    state = state or DataplaneState()
    for m in messages:
        state.apply(m)
    return state


__all__ = ["ENDPOINTS", "HOSTS", "Expected", "PolicyKey", "Ref", "expected", "first_snapshot", "fold", "random_batches"]
