"""Compiler benchmark: 500 policies x 10 rules, IP sets of 100 members, 200 endpoints.

    .venv/bin/python bench/compile.py [--policies 500] [--endpoints 200] [--per-endpoint 5,25]
                                      [--baseline-endpoints 10] [--seed 1]

Each endpoint is selected by `--per-endpoint` of the policies (spread over two tiers, the first
with default action Pass), like a cluster where selectors pick a subset of the policies for each
pod. Rules: allow from an IP set (pods selected by a selector) to tcp/udp ports, allow to a named
port set, deny from a CIDR, pass with a negated CIDR, ICMP type matches, a negated port range and
a log. Prints compile time, rules per endpoint and the expansion factor (flat rules / source
rules), beside the previous compiler (bench/previous_compiler.py, on `--baseline-endpoints`
endpoints spread over the run, same lists), then re-checks a sample of packets against the
reference evaluator.

Restriction (policy/reach.py): each list without the rules no packet reaching the endpoint can
match, as the VPP driver writes it (ingress; egress as pods' sources are guarded,
acl/lists.RESTRICT_EGRESS). Rules per list before and after, per direction, and compile +
restriction time per list. The bench's endpoints (10.80.x.x) are in none of its sets (10.64-10.71),
the kindest case for restriction; the same lists are also restricted for endpoints addressed as
set members (each endpoint takes a random member address of the sets: some of its policies' set
rules then stay). The re-check runs reachable packets (the endpoint's address on its side, the
other side a set member half of the time) through the unrestricted and both restricted lists.

The classifier gate (classifier/gate.py, ingress only): the lists as the VPP driver writes
them at its default member threshold (DEFAULT_CLASSIFIER_MIN_MEMBERS; smaller sets when they
pay, classifier/source.pays) and at `--classifier-min-members` (default 1: every set that
qualifies, paying or not): ms per ingress list (what the driver runs, gate.list_and_gate: the
gate's analysis, and the ordinary compile where it does not serve), rules per list (mean, p50,
max), admit sessions per gate, and a sample of packets through L_U and the chain against the
evaluator.

The cold compile goes through a CompileCache (policy/cache.py), as the VPP driver's does. Two
next state versions follow it: one policy's body changed, then one member added to one IP set.
For each: the incremental recompile (every list asked for again, the cache answers what did not
change), a cold recompile of the same state (fresh catalog, no cache; the results must be equal),
how many lists recompiled, and the same affected lists compiled without the cache and by the
previous compiler (on up to `--baseline-endpoints` of them).

Times are CPU time of this process (time.process_time): the compiler is single-threaded, so on
an idle machine that is the wall time, and on a shared one it does not count other processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import ipaddress
import itertools
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import previous_compiler as baseline
from vppagent.drivers.vpp.acl.lists import RESTRICT_EGRESS
from vppagent.drivers.vpp.classifier.admits import members as admit_members
from vppagent.drivers.vpp.classifier.admits import set_sessions
from vppagent.drivers.vpp.classifier.gate import GapEntry, Gate, list_and_gate
from vppagent.drivers.vpp.classifier.layout import LAYOUT
from vppagent.drivers.vpp.driver import DEFAULT_CLASSIFIER_MIN_MEMBERS
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.cache import CompileCache
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.flat import CompiledList, FlatRule
from vppagent.policy.model import Direction, IPNetwork, PortRange, WorkloadEndpoint
from vppagent.policy.packet import Packet
from vppagent.policy.reach import restrict
from vppagent.state.model import DataplaneState, WorkloadKey, policy_key


def _clock() -> float:
    return time.process_time()


def _members(rng: random.Random, n: int) -> list[str]:
    if rng.random() < 0.5:  # pods of one node: mostly contiguous, so aggregation helps
        base = rng.randrange(0, 250) * 256
        return [f"10.{(base + i) // 65536 + 64}.{(base + i) // 256 % 256}.{(base + i) % 256}/32" for i in range(n)]
    return sorted({f"10.{rng.randrange(64, 72)}.{rng.randrange(256)}.{rng.randrange(256)}/32" for _ in range(n)})


def _rule(rng: random.Random, i: int, sets: list[str], named: list[str]) -> felix.Rule:
    kind = i % 10
    ports = [felix.PortRange(first=p, last=p) for p in rng.sample((80, 443, 8080, 5432, 6379, 9090), 2)]
    if kind in (0, 1, 2, 3):
        return felix.Rule(action="allow", protocol=felix.Protocol(name=rng.choice(("tcp", "udp"))),
                          src_ip_set_ids=[rng.choice(sets)], dst_ports=ports)
    if kind == 4:
        return felix.Rule(action="allow", protocol=felix.Protocol(name="tcp"),
                          dst_named_port_ip_set_ids=[rng.choice(named)])
    if kind == 5:
        return felix.Rule(action="deny", src_net=[f"10.{rng.randrange(64, 72)}.{rng.randrange(256)}.0/24"])
    if kind == 6:
        return felix.Rule(action="pass", not_src_net=["10.64.0.0/10"], protocol=felix.Protocol(name="tcp"))
    if kind == 7:
        return felix.Rule(action="allow", protocol=felix.Protocol(name="icmp"), icmp_type=8)
    if kind == 8:
        return felix.Rule(action="deny", protocol=felix.Protocol(name="tcp"), src_ip_set_ids=[rng.choice(sets)],
                          not_dst_ports=[felix.PortRange(first=1024, last=65535)])
    return felix.Rule(action="log", protocol=felix.Protocol(name="udp"))


def build(args: argparse.Namespace) -> tuple[DataplaneState, list[WorkloadKey]]:
    rng = random.Random(args.seed)
    state = DataplaneState()
    sets = [f"s:sel{i}" for i in range(args.sets)]
    for s in sets:
        state.apply(felix.ToDataplane(ipset_update=felix.IPSetUpdate(id=s, type="NET",
                                                                       members=_members(rng, args.members))))
    named = [f"n:port{i}" for i in range(20)]
    for s in named:
        members = [f"{m.split('/')[0]},tcp:{rng.choice((8080, 9090))}" for m in _members(rng, args.members)]
        state.apply(felix.ToDataplane(ipset_update=felix.IPSetUpdate(id=s, type="IP_AND_PORT", members=members)))
    pids = []
    for p in range(args.policies):
        pid = felix.PolicyID(name=f"pol{p}", namespace="default")
        rules = [_rule(rng, i, sets, named) for i in range(args.rules)]
        policy = felix.Policy(namespace="default", inbound_rules=rules, outbound_rules=rules[::-1])
        state.apply(felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(id=pid, policy=policy)))
        pids.append(pid)
    state.apply(felix.ToDataplane(active_profile_update=felix.ActiveProfileUpdate(
        id=felix.ProfileID(name="kns.default"), profile=felix.Profile(inbound_rules=[felix.Rule(action="allow")],
                                                                       outbound_rules=[felix.Rule(action="allow")]))))
    keys = []
    for e in range(args.endpoints):
        chosen = rng.sample(pids, args.per_endpoint)
        split = max(1, len(chosen) // 5)
        tiers = [felix.TierInfo(name="security", ingress_policies=chosen[:split], egress_policies=chosen[:split],
                                default_action="Pass"),
                 felix.TierInfo(name="default", ingress_policies=chosen[split:], egress_policies=chosen[split:],
                                default_action="Deny")]
        key = WorkloadKey("k8s", f"default/pod{e}", "eth0")
        ep = felix.WorkloadEndpoint(state="active", name=f"cali{e}", ipv4_nets=[f"10.80.{e // 256}.{e % 256}/32"],
                                    profile_ids=["kns.default"], tiers=tiers)
        state.apply(felix.ToDataplane(workload_endpoint_update=felix.WorkloadEndpointUpdate(
            id=felix.WorkloadEndpointID(orchestrator_id=key.orchestrator_id, workload_id=key.workload_id,
                                        endpoint_id=key.endpoint_id), endpoint=ep)))
        keys.append(key)
    return state, keys


def _run(compile_fn: Callable[..., CompiledList], cat: Catalog,
         keys: list[WorkloadKey]) -> tuple[list[float], dict[tuple[WorkloadKey, str], CompiledList]]:
    times, lists = [], {}
    for key in keys:
        for direction in ("ingress", "egress"):
            start = _clock()
            lists[(key, direction)] = compile_fn(cat, key, direction, rule_limit=200_000)
            times.append(_clock() - start)
    return times, lists


def _run_cached(cache: CompileCache, state: DataplaneState,
                keys: list[WorkloadKey]) -> tuple[float, dict[tuple[WorkloadKey, str], CompiledList]]:
    cat = Catalog(state)
    start = _clock()
    lists = {(key, d): compile_endpoint(cat, key, d, rule_limit=200_000, cache=cache)
             for key in keys for d in ("ingress", "egress")}
    return _clock() - start, lists


def _changed_policy(state: DataplaneState, key: WorkloadKey) -> tuple[DataplaneState, str]:
    """The next version: the first default-tier policy of `key` with one port of its first
    allow-to-ports rule changed (the same name, another body)."""
    pid = state.workload_endpoints[key].tiers[1].ingress_policies[0]
    pb = felix.Policy()
    pb.CopyFrom(state.policies[policy_key(pid)])
    rule = next(r for r in pb.inbound_rules if r.dst_ports)
    rule.dst_ports[0].first = rule.dst_ports[0].last = 7777
    new = state.copy()
    new.apply(felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(id=pid, policy=pb)))
    return new, pid.name


def _changed_set(state: DataplaneState, key: WorkloadKey) -> tuple[DataplaneState, str]:
    """The next version: one member added to the first IP set `key`'s first policy uses."""
    pid = state.workload_endpoints[key].tiers[1].ingress_policies[0]
    set_id = next(s for r in state.policies[policy_key(pid)].inbound_rules for s in r.src_ip_set_ids)
    new = state.copy()
    new.apply(felix.ToDataplane(ipset_delta_update=felix.IPSetDeltaUpdate(id=set_id, added_members=["10.99.0.1/32"])))
    return new, set_id


def _incremental(args: argparse.Namespace, cache: CompileCache, keys: list[WorkloadKey], what: str,
                 state: DataplaneState, before: dict[tuple[WorkloadKey, str], CompiledList]) -> int:
    """One next state version: incremental vs cold recompile; returns the number of mismatches."""
    cache.sweep()  # the previous version's generation ends, as after a driver pass
    compiled, computed = cache.stats.lists_compiled, cache.stats.rules_computed
    t_inc, lists = _run_cached(cache, state, keys)
    recompiled = cache.stats.lists_compiled - compiled
    cold_cat = Catalog(state)
    t_cold, cold = _run(compile_endpoint, cold_cat, keys)
    bad = sum(lists[k].fingerprint() != cold[k].fingerprint() for k in lists)
    affected = [k for k in lists if lists[k].rules is not before[k].rules]
    print(f"  next version, {what}: {recompiled} of {len(lists)} lists recompiled ({len(affected)} changed "
          f"identity, {cache.stats.rules_computed - computed} rule fragments computed); incremental "
          f"{t_inc * 1000:.0f} ms vs cold recompile {sum(t_cold) * 1000:.0f} ms "
          f"({sum(t_cold) / t_inc:.1f}x); {bad} lists differ from the cold recompile")
    if affected and args.baseline_endpoints:
        sample = affected[:2 * args.baseline_endpoints]
        fresh = Catalog(state)  # without the cache: what the driver did before (name-based invalidation)
        t_fresh = []
        for key, d in sample:
            start = _clock()
            compile_endpoint(fresh, key, d, rule_limit=200_000)
            t_fresh.append(_clock() - start)
        t_old = []
        for key, d in sample[:args.baseline_endpoints]:
            start = _clock()
            baseline.compile_endpoint(fresh, key, d, rule_limit=200_000)
            t_old.append(_clock() - start)
        print(f"    the {recompiled} affected lists (ms per list on {len(sample)} of them): with the cache "
              f"{t_inc * 1000 / max(recompiled, 1):.1f} (lookups of the others included), without "
              f"{statistics.mean(t_fresh) * 1000:.1f}, previous compiler {statistics.mean(t_old) * 1000:.1f} "
              f"(on {len(t_old)})")
    return bad


def _one_address_one_port(rule: FlatRule) -> bool:
    """One member of an address set (or of a named-port set) x one TCP/UDP destination port."""
    single = rule.src.prefixlen == rule.src.max_prefixlen or rule.dst.prefixlen == rule.dst.max_prefixlen
    return single and rule.proto in (6, 17) and rule.dstport_or_icmpcode.first == rule.dstport_or_icmpcode.last


def _mergeable(compiled: CompiledList) -> int:
    """Rules saved by merging, inside each run of rules with one action (where order does not
    matter), rules that differ only in their source prefix (into the fewest prefixes), or only
    in their destination port (adjacent ranges into one); per run the larger of the two.
    0: the list has no such pairs."""
    saved = 0
    runs = [list(g) for _, g in itertools.groupby(compiled.rules, key=lambda r: r.action)]
    for run in runs:
        by_rest: dict[tuple[object, ...], list[IPNetwork]] = defaultdict(list)
        by_ports: dict[tuple[object, ...], list[PortRange]] = defaultdict(list)
        for r in run:
            by_rest[(r.family, r.dst, r.proto, r.srcport_or_icmptype, r.dstport_or_icmpcode)].append(r.src)
            by_ports[(r.family, r.src, r.dst, r.proto, r.srcport_or_icmptype)].append(r.dstport_or_icmpcode)
        saved_src = 0
        for nets in by_rest.values():
            collapsed: list[IPNetwork] = list(ipaddress.collapse_addresses(nets))  # type: ignore[type-var]
            saved_src += len(nets) - len(collapsed)
        saved_ports = 0
        for ranges in by_ports.values():
            ranges.sort(key=lambda p: p.first)
            saved_ports += sum(1 for a, b in itertools.pairwise(ranges) if b.first <= a.last + 1)
        saved += max(saved_src, saved_ports)
    return saved


def _spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    """mean, p50 and max of `values` (times `scale`)."""
    return (f"{statistics.mean(values) * scale:.{digits}f} (p50 {statistics.median(values) * scale:.{digits}f}, "
            f"max {max(values) * scale:.{digits}f})")


def _gated(args: argparse.Namespace, state: DataplaneState, keys: list[WorkloadKey],
           lists: dict[tuple[WorkloadKey, str], CompiledList], threshold: int, label: str) -> int:
    """The VPP driver's lists after the classifier gate (classifier/gate.py) takes the sets it
    can from each ingress list, at one member threshold: rules per ACL list as the driver
    writes them (restricted), admit and gap sessions and tables per chain, ms per ingress list
    (gate.list_and_gate, as the driver calls it: the gate's analysis, and the ordinary compile
    where the analysis gives no list); a sample of packets through L_U and the chain against the evaluator. Egress lists
    are not gated (docs/vpp-driver.md, "Large IP sets")."""
    cat = Catalog(state)
    cache = CompileCache()
    ingress, egress, sessions, gaps, tables, sets, times = [], [], [], [], [], [], []
    admit_tables: list[int] = []  # a lookup per packet each (a packet no session admits: every one)
    writes: list[int] = []  # cold writes per ingress list: ACL rules, and the chain's sessions and tables
    ungated_rules: list[int] = []  # the same list ungated (restricted)
    unrestricted: list[int] = []
    gates: dict[WorkloadKey, tuple[CompiledList, Gate]] = {}
    for key in keys:
        ep = WorkloadEndpoint.from_proto(key, state.workload_endpoints[key])
        start = _clock()  # what the driver runs (acl/lists.py): the gate's analysis, or the ordinary compile
        listed, gate = list_and_gate(cat, ep, Direction.INGRESS, 200_000, threshold, cache=cache)
        times.append(_clock() - start)
        egress.append(len(restrict(lists[(key, "egress")], ep, Direction.EGRESS).rules) if RESTRICT_EGRESS
                      else len(lists[(key, "egress")].rules))
        ungated_rules.append(len(restrict(lists[(key, "ingress")], ep, Direction.INGRESS).rules))
        if gate is None:
            ingress.append(len(restrict(listed, ep, Direction.INGRESS).rules))
            writes.append(ingress[-1])
            sets.append(0)
            continue
        universe = listed
        written = restrict(universe, ep, Direction.INGRESS)  # what the driver binds (acl/lists.py)
        gates[key] = (written, gate)
        unrestricted.append(len(universe.rules))
        ingress.append(len(written.rules))
        admits = [{x for g in gate.sets for x in set_sessions(g, f, admit_members(state, g.set_id, f))}
                  for f in gate.families()]
        sessions.append(sum(len(a) for a in admits))
        gaps.append(len(gate.gaps))
        admit_tables.append(sum(len({m for m, _ in a}) for a in admits))
        tables.append(admit_tables[-1] + len({g.shape for g in gate.gaps}))
        sets.append(len(gate.sets))
        writes.append(ingress[-1] + sessions[-1] + gaps[-1] + tables[-1])
    both = ingress + egress
    print(f"  {label}: {len(gates)} of {len(keys)} ingress lists gated, "
          f"{statistics.mean(sets):.1f} sets per list; ms per ingress list {_spread(times, 1000, 1)}")
    print(f"    rules per ACL list as written (restricted): ingress {_spread(ingress)}, egress "
          f"{statistics.mean(egress):.0f}, all lists {_spread(both)}")
    print(f"    cold writes per ingress list (ACL rules, and admit and gap sessions and tables where gated): "
          f"{_spread(writes)}, against {_spread(ungated_rules)} ACL rules ungated "
          f"({statistics.mean(writes) / statistics.mean(ungated_rules):.2f}x)")
    if gates:
        print(f"    per gate: admit sessions {_spread(sessions)}, gap sessions {statistics.mean(gaps):.0f} "
              f"(max {max(gaps)}), classifier tables {statistics.mean(tables):.1f} (max {max(tables)}; admit "
              f"tables {statistics.mean(admit_tables):.1f}, max {max(admit_tables)}); "
              f"gated ingress lists: L_U {statistics.mean(unrestricted):.0f} rules, restricted "
              f"{statistics.mean(ingress[i] for i, n in enumerate(sets) if n):.0f}")

    def policy_change() -> None:
        """The next version of bench's policy change, for the gated lists: the affected ones
        recompiled with their gates; a changed gate is a new chain (chains.py: every admit and
        gap session and table written again), an unchanged one writes nothing."""
        new_state, name = _changed_policy(state, keys[0])
        new_cat = Catalog(new_state)
        affected = [k for k in gates if any(p.name == name for t in state.workload_endpoints[k].tiers
                                            for p in t.ingress_policies)]
        spent, writes, in_place, changed = [], 0, 0, 0

        def sessions_of(st: DataplaneState, gate: Gate) -> set[tuple[bytes, bytes]]:
            return {x for f in gate.families() for g in gate.sets
                    for x in set_sessions(g, f, admit_members(st, g.set_id, f))}

        for key in affected:
            ep = WorkloadEndpoint.from_proto(key, new_state.workload_endpoints[key])
            start = _clock()
            _, again = list_and_gate(new_cat, ep, Direction.INGRESS, 200_000, threshold, cache=cache)
            spent.append(_clock() - start)
            if again != gates[key][1]:
                changed += 1
                if again is not None:
                    gate = again
                    admits = sessions_of(new_state, gate)
                    tables = len({m for m, _ in admits}) + len({e.shape for e in gate.gaps})
                    writes += len(admits) + len(gate.gaps) + tables
                    # in place (chains.py since the transitions work): the sessions that differ, and per
                    # mask shape that comes or goes a table made and linked, or unlinked and deleted
                    before = sessions_of(state, gates[key][1])
                    shapes = ({m for m, _ in before} | {("gap", e.shape) for e in gates[key][1].gaps},
                              {m for m, _ in admits} | {("gap", e.shape) for e in gate.gaps})
                    in_place += (len(before ^ admits) + len(set(gates[key][1].gaps) ^ set(gate.gaps))
                                 + 2 * len(shapes[0] ^ shapes[1]))
        if affected:
            print(f"    policy {name} changed: {len(affected)} gated lists recompiled with the gate, "
                  f"{statistics.mean(spent) * 1000:.0f} ms per list; {changed} gates changed: "
                  f"{writes} classifier writes as new chains (sessions and tables), {in_place} moving the "
                  f"chains in place; and one ACL replace per list")

    if gates:
        policy_change()
    return _check_gated(args, cat, keys, gates)


def _check_gated(args: argparse.Namespace, cat: Catalog, keys: list[WorkloadKey],
                 gates: dict[WorkloadKey, tuple[CompiledList, Gate]]) -> int:
    """Packets through L_U and the chain (admit -> permit, gap -> drop, else permit) against
    the evaluator; sources drawn from the gated sets' members half of the time."""
    rng = random.Random(args.seed + 2)
    gated = sorted(gates, key=keys.index)
    bad = checked = 0
    while gated and checked < args.check_packets:
        key = rng.choice(gated)
        universe, gate = gates[key]
        me = f"10.80.{keys.index(key) // 256}.{keys.index(key) % 256}"
        if rng.random() < 0.5:
            members = sorted(cat.state.ipsets[rng.choice(gate.sets).set_id].members)
            other = rng.choice(members).split("/")[0]
        else:
            other = f"10.{rng.randrange(64, 72)}.{rng.randrange(256)}.{rng.randrange(256)}"
        proto = rng.choice(("tcp", "udp"))
        pkt = Packet.parse(f"{proto} {other}:{rng.choice((1000, 40000))} > {me}:"
                           f"{rng.choice((80, 443, 8080, 5432, 6379, 9090, 53))}")
        expected = verdict(cat, key, "ingress", pkt).action
        actual = "deny" if first_match(universe, pkt).action != "allow" else _chain(cat.state, gate, pkt)
        bad += (expected == "allow") != (actual == "allow")
        checked += 1
    print(f"    check: {checked} packets through L_U and the chain against the evaluator, {bad} disagreements")
    return bad


def _chain(state: DataplaneState, gate: Gate, pkt: Packet) -> str:
    """The chain's verdict from its admit sessions as the driver writes them (admits.py: blocks of
    members) and its gap entries: a session matches when the packet's bytes under its mask equal
    its match (classifier/layout.py), as VPP's classifier reads them."""
    family, src, dst = pkt.family, pkt.src, pkt.dst
    proto_at, src_at, dst_at, dport_at, vectors = LAYOUT[family]
    header = bytearray(vectors * 16)
    header[proto_at] = pkt.proto
    header[src_at:src_at + len(src.packed)] = src.packed
    header[dst_at:dst_at + len(dst.packed)] = dst.packed
    header[dport_at:dport_at + 2] = pkt.dst_port.to_bytes(2, "big")
    packet = int.from_bytes(header, "big")
    for mask, matches in _admits_by_mask(state, gate, family).items():
        if (packet & mask).to_bytes(len(header), "big") in matches:
            return "allow"

    def hits(e: GapEntry) -> bool:
        return e.proto == pkt.proto and dst in e.dst and (pkt.dst_port & e.dport_mask) == e.dport and src in e.src

    return "deny" if any(hits(e) for e in gate.gaps if e.family == family) else "allow"  # gap tables, miss


_admit_memo: dict[tuple[int, int, int], dict[int, set[bytes]]] = {}


def _admits_by_mask(state: DataplaneState, gate: Gate, family: int) -> dict[int, set[bytes]]:
    key = (id(state), id(gate), family)
    if key not in _admit_memo:
        found: dict[int, set[bytes]] = defaultdict(set)
        for g in gate.sets:
            for mask, match in set_sessions(g, family, admit_members(state, g.set_id, family)):
                found[int.from_bytes(mask, "big")].add(match)
        _admit_memo[key] = found
    return _admit_memo[key]


def cat_members(state: DataplaneState, set_id: str, family: int) -> list[IPNetwork]:
    return [ipaddress.ip_network(m, strict=False) for m in admit_members(state, set_id, family)]


Lists = dict[tuple[WorkloadKey, str], CompiledList]


def _address(keys: list[WorkloadKey], key: WorkloadKey) -> str:
    """The endpoint's address as build() gives it."""
    return f"10.80.{keys.index(key) // 256}.{keys.index(key) % 256}"


def _member_addresses(rng: random.Random, state: DataplaneState, keys: list[WorkloadKey]) -> dict[WorkloadKey, str]:
    """Per endpoint a random member address of the bench's sets (address and named-port sets)."""
    pool = sorted({m.split(",")[0].split("/")[0] for s in state.ipsets.values() for m in s.members})
    return {key: rng.choice(pool) for key in keys}


def _readdressed(state: DataplaneState, key: WorkloadKey, address: str) -> WorkloadEndpoint:
    ep = WorkloadEndpoint.from_proto(key, state.workload_endpoints[key])
    return dataclasses.replace(ep, ipv4_nets=(ipaddress.ip_network(f"{address}/32"),))


def _restricted(state: DataplaneState, keys: list[WorkloadKey], lists: Lists,
                addresses: dict[WorkloadKey, str]) -> tuple[Lists, list[float]]:
    """Every list restricted to what can reach its endpoint (at `addresses`), and the time each took."""
    out, times = {}, []
    for (key, direction), compiled in lists.items():
        ep = _readdressed(state, key, addresses[key])
        start = _clock()
        out[(key, direction)] = restrict(compiled, ep, direction)
        times.append(_clock() - start)
    return out, times


def _per_direction(lists: Lists) -> str:
    ingress = [len(c.rules) for (_, d), c in lists.items() if d == "ingress"]
    egress = [len(c.rules) for (_, d), c in lists.items() if d == "egress"]
    both = ingress + egress
    return (f"ingress {statistics.mean(ingress):.0f}, egress {statistics.mean(egress):.0f}, mean "
            f"{statistics.mean(both):.0f} (p50 {statistics.median(both):.0f}, max {max(both)})")


def _restriction(args: argparse.Namespace, state: DataplaneState, keys: list[WorkloadKey], lists: Lists,
                 compile_times: list[float]) -> int:
    """Rules per list before and after restriction, compile + restriction time, and the re-check."""
    own = {key: _address(keys, key) for key in keys}
    restricted, times = _restricted(state, keys, lists, own)
    members = _member_addresses(random.Random(args.seed + 3), state, keys)
    as_members, _ = _restricted(state, keys, lists, members)
    written = {k: c if k[1] == "ingress" or RESTRICT_EGRESS else lists[k] for k, c in restricted.items()}
    total = [c + r for c, r in zip(compile_times, times, strict=True)]
    print(f"  rules per list, unrestricted: {_per_direction(lists)}")
    print(f"    restricted (policy/reach.py): {_per_direction(restricted)}; distinct lists "
          f"{len({c.fingerprint() for c in restricted.values()})}")
    print(f"    restricted, endpoints addressed as set members: {_per_direction(as_members)}")
    print(f"    what the VPP driver writes now (egress restricted: {RESTRICT_EGRESS}): {_per_direction(written)}")
    print(f"    restriction {statistics.mean(times) * 1000:.1f} ms per list (max {max(times) * 1000:.1f}); "
          f"compile + restriction per list mean {statistics.mean(total) * 1000:.1f} ms, "
          f"p50 {statistics.median(total) * 1000:.1f} ms, max {max(total) * 1000:.1f} ms")
    cat = Catalog(state)
    bad = _check(args, cat, keys, lists, own, "unrestricted lists")
    bad += _check(args, cat, keys, restricted, own, "restricted lists")
    return bad + _check(args, cat, keys, as_members, members, "restricted lists, endpoints as set members")


def _check(args: argparse.Namespace, cat: Catalog, keys: list[WorkloadKey], lists: Lists,
           addresses: dict[WorkloadKey, str], what: str) -> int:
    """Packets that can reach each list (the endpoint's address on its side) against the evaluator
    (which does not read addresses); the other side is a member of a set half of the time."""
    rng = random.Random(args.seed + 1)
    pool = sorted({m.split(",")[0].split("/")[0] for s in cat.state.ipsets.values() for m in s.members})
    checked = bad = 0
    t0 = _clock()
    while checked < args.check_packets:
        key = rng.choice(keys)
        direction = rng.choice(("ingress", "egress"))
        me = addresses[key]
        other = rng.choice(pool) if rng.random() < 0.5 else \
            f"10.{rng.randrange(64, 72)}.{rng.randrange(256)}.{rng.randrange(256)}"
        proto = rng.choice(("tcp", "udp", "icmp"))
        src, dst = (other, me) if direction == "ingress" else (me, other)
        text = (f"icmp {src} > {dst} type {rng.choice((0, 8))}" if proto == "icmp" else
                f"{proto} {src}:{rng.choice((1000, 40000))} > {dst}:{rng.choice((80, 443, 8080, 5432, 9090, 53))}")
        pkt = Packet.parse(text)
        v = verdict(cat, key, direction, pkt)
        bad += v.action != first_match(lists[(key, direction)], pkt).action
        checked += 1
    print(f"  check ({what}): {checked} reachable packets against the evaluator, {bad} disagreements "
          f"({_clock() - t0:.2f} s)")
    return bad


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--rules", type=int, default=10)
    parser.add_argument("--sets", type=int, default=100)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--endpoints", type=int, default=200)
    parser.add_argument("--per-endpoint", default="5,25", help="comma-separated: one run per figure")
    parser.add_argument("--baseline-endpoints", type=int, default=10,
                        help="endpoints (spread over the run) the previous compiler compiles too (it is "
                             "slow), 0 for none")
    parser.add_argument("--check-packets", type=int, default=2000)
    parser.add_argument("--classifier-min-members", type=int, default=1,
                        help="a second member threshold for the gated figures, beside the driver's default "
                             "(0: leave it out)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    bad = 0
    for per_endpoint in (int(x) for x in args.per_endpoint.split(",")):
        args.per_endpoint = per_endpoint
        t0 = _clock()
        state, keys = build(args)
        t_build = _clock() - t0
        cat = Catalog(state)
        cache = CompileCache()
        t0 = _clock()
        times, lists = _run(functools.partial(compile_endpoint, cache=cache), cat, keys)
        total = _clock() - t0
        sizes = [len(c.rules) for c in lists.values()]
        factors = [c.expansion_factor for c in lists.values()]
        print(f"state: {args.policies} policies x {args.rules} rules, {args.sets} IP sets x {args.members} members "
              f"(+20 named-port sets), {args.endpoints} endpoints x {per_endpoint} policies "
              f"(built in {t_build:.2f} s)")
        print(f"  compile: {len(times)} lists (endpoint x direction) in {total:.2f} s; per list mean "
              f"{statistics.mean(times) * 1000:.1f} ms, p50 {statistics.median(times) * 1000:.1f} ms, "
              f"max {max(times) * 1000:.1f} ms")
        print(f"  rules per list: mean {statistics.mean(sizes):.0f}, p50 {statistics.median(sizes):.0f}, "
              f"min {min(sizes)}, max {max(sizes)}; distinct lists {len({c.fingerprint() for c in lists.values()})}")
        print(f"  expansion factor (flat rules / source rules): mean {statistics.mean(factors):.2f}, "
              f"max {max(factors):.2f}")
        if args.baseline_endpoints:
            # Spread over the run: the new compiler's time for a list is then what it costs in
            # the middle of a converge (caches per catalog warm), as the mean above is.
            sample = keys[::max(1, len(keys) // args.baseline_endpoints)][:args.baseline_endpoints]
            old_times, old_lists = _run(baseline.compile_endpoint, cat, sample)
            new_times = [times[2 * keys.index(k) + i] for k in sample for i in (0, 1)]  # the same lists
            old_rules = statistics.mean(len(c.rules) for c in old_lists.values())
            new_rules = statistics.mean(len(lists[k].rules) for k in old_lists)
            old_ms, new_ms = statistics.mean(old_times) * 1000, statistics.mean(new_times) * 1000
            print(f"  previous compiler on {len(sample)} endpoints spread over the run ({len(old_times)} lists): "
                  f"rules per list {old_rules:.0f} -> {new_rules:.0f} ({old_rules / new_rules:.1f}x fewer), "
                  f"ms per list {old_ms:.1f} -> {new_ms:.1f} ({old_ms / new_ms:.1f}x faster)")
        point = sum(_one_address_one_port(r) for c in lists.values() for r in c.rules)
        mergeable = sum(_mergeable(c) for c in lists.values())
        size = cache.size()
        print(f"  rules that are one address (source or destination) x one destination port: "
              f"{100 * point / max(sum(sizes), 1):.1f}%; rules a merge inside a run of one action could "
              f"save: {mergeable} in all {len(lists)} lists")
        print(f"  cache after the cold compile: {size.rule_boxes} rule and {size.set_boxes} set fragments, "
              f"{size.boxes} boxes, {size.lists} lists")
        bad += _restriction(args, state, keys, lists, times)
        default = DEFAULT_CLASSIFIER_MIN_MEMBERS
        for threshold, label in ((default, f"the default: sets of >= {default} members, smaller ones when they pay"),
                                 (args.classifier_min_members, f"threshold {args.classifier_min_members}: every set "
                                                               "that qualifies, paying or not")):
            if threshold:
                bad += _gated(args, state, keys, lists, threshold, label)
        new_state, name = _changed_policy(state, keys[0])
        bad += _incremental(args, cache, keys, f"policy {name} changed", new_state, lists)
        _, lists = _run_cached(cache, new_state, keys)
        newer_state, set_id = _changed_set(new_state, keys[0])
        bad += _incremental(args, cache, keys, f"one member added to IP set {set_id}", newer_state, lists)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
