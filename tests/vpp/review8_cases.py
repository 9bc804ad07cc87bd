"""Random gated-list states for review8's differential (tests/vpp/test_review_gate8.py).

Two endpoints of one list spec (pod-a, pod-b: the same tiers and profiles, other addresses,
dual-stack half of the time) behind tiers whose rules mix what the gate's compile takes apart:
source sets allowed on service ports and port ranges (gated at threshold 1), denies from nets in
between, named-port sets and destination sets (plain and negated) that hold pod-a, pod-b, both or
neither, Pass rules, ICMP, IPv6 members and rules, and sometimes a profile (alone, or after the
tiers). `mutate` then moves the endpoints in and out of the destination sets (by the sets'
members, or pod-b readdressed) and changes the source sets (anew, or one member in or out of a
run of addresses: admit blocks that split or join), so that an endpoint's list key must follow.
Every state is built with the lab's builders (Felix's messages) from a `random.Random`.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.policy.packet import Packet
from vppagent.state.model import WorkloadKey

POD_A = WorkloadKey("k8s", "default/pod-a", "eth0")
POD_B = WorkloadKey("k8s", "default/pod-b", "eth0")
ADDRESSES = {POD_A: ("10.65.0.2", "fd65::2"), POD_B: ("10.65.0.3", "fd65::3")}
SOURCES = [f"10.66.0.{i}" for i in range(1, 13)] + ["10.65.0.9", "10.65.0.10"]
SOURCES6 = ["fd66::1", "fd66::2", "fd66::3"]
RUN = [f"10.66.1.{i}" for i in range(48)]  # a run of addresses: members in blocks (admits.py)
OTHERS = ["10.71.0.1", "10.71.0.2", "10.65.0.5", "10.65.0.4"]  # destinations that are other pods
MOVED = "10.65.0.4"  # pod-b's address after a move (OTHERS has it: sets may hold it beforehand)
OTHERS6 = ["fd71::1", "fd65::5"]
PORTS = (22, 53, 80, 443, 8080)


@dataclass
class World:
    """What a step's state is made of: sets' members by id, the policies, and the endpoints."""

    sets: dict[str, tuple[str, list[str]]]  # id -> (kind, members)
    policies: list[felix.ToDataplane]
    tiers: list[felix.TierInfo]
    dual: bool
    moved: bool = False  # pod-b readdressed to MOVED (a set may hold its new address, or not)
    profile: list[felix.Rule] | None = None  # the endpoints' profile's inbound rules, when they have one

    def messages(self) -> list[felix.ToDataplane]:
        out = [b.config({})]
        out += [b.ipset(set_id, members, kind=kind) for set_id, (kind, members) in sorted(self.sets.items())]
        out += self.policies
        if self.profile is not None:
            out.append(b.profile("prof", inbound=self.profile))
        for key, (v4, v6) in ADDRESSES.items():
            v4 = MOVED if key == POD_B and self.moved else v4
            out.append(b.workload(key.workload_id, f"cali-{key.workload_id[-5:]}", ipv4=[f"{v4}/32"],
                                  ipv6=[f"{v6}/128"] if self.dual else [], tiers=self.tiers,
                                  profiles=["prof"] if self.profile is not None else []))
        return out


def _ports(rng: random.Random) -> list[tuple[int, int]]:
    out = []
    for p in rng.sample(PORTS, rng.randint(1, 2)):
        out.append((p, p + rng.choice((0, 0, 0, 1, 7))))
    return out


def _holding(rng: random.Random) -> list[str]:
    """Which endpoints' IPv4 addresses a destination set holds (and sometimes IPv6 too)."""
    return [ADDRESSES[k][0] for k in (POD_A, POD_B) if rng.random() < 0.5]


def _dst_members(rng: random.Random, named: tuple[str, int] | None) -> list[str]:
    addrs = rng.sample(OTHERS, rng.randint(0, 2)) + _holding(rng)
    if rng.random() < 0.3:
        addrs += rng.sample(OTHERS6, 1) + ([ADDRESSES[POD_A][1]] if rng.random() < 0.5 else [])
    if named is None:
        return sorted(set(addrs))
    proto, port = named
    return sorted({f"{a},{proto}:{port}" for a in addrs})


def _rule(rng: random.Random, named_port: tuple[str, int], negated_gated: bool = True) -> felix.Rule:
    proto = rng.choice(("tcp", "udp"))
    g = rng.choice(("g0", "g0", "g1"))
    kind = rng.randrange(12)
    if kind <= 2:
        return b.rule("allow", protocol=proto, src_ip_set_ids=[g], dst_ports=_ports(rng))
    if kind == 3:
        length = rng.choice((24, 30, 32))
        net = ipaddress.ip_network(f"{rng.choice(SOURCES + RUN[::5])}/{length}", strict=False)
        return b.rule("deny", protocol=proto, src_net=[str(net)], dst_ports=_ports(rng))
    if kind == 4:
        return b.rule("allow", protocol=named_port[0], dst_named_port_ip_set_ids=["n:np"],
                      **({"src_ip_set_ids": [g]} if rng.random() < 0.3 else {}))
    if kind == 5:
        return b.rule(rng.choice(("deny", "pass", "allow")), protocol=proto, dst_ip_set_ids=["d"],
                      **({"dst_ports": _ports(rng)} if rng.random() < 0.7 else {}))
    if kind == 6:
        action, ports = rng.choice(("deny", "allow")), _ports(rng)
        gated = rng.random() < 0.5 and negated_gated
        return b.rule(action, protocol=proto, not_dst_ip_set_ids=["d"], dst_ports=ports,
                      **({"src_ip_set_ids": [g]} if gated else {}))
    if kind == 7:
        return b.rule(rng.choice(("deny", "pass")), protocol=named_port[0],
                      not_dst_named_port_ip_set_ids=["n:np"])
    if kind == 8:
        return b.rule(rng.choice(("allow", "deny")), protocol="icmp",
                      **({"src_ip_set_ids": [g]} if rng.random() < 0.5 else {}))
    if kind == 9:
        return b.rule("allow", protocol=proto, src_ip_set_ids=[g], dst_ip_set_ids=["d"],
                      **({"dst_ports": _ports(rng)} if rng.random() < 0.7 else {}))
    if kind == 10:
        pod = rng.choice((POD_A, POD_B))
        return b.rule(rng.choice(("allow", "deny")), protocol=proto, src_ip_set_ids=[g],
                      dst_net=[f"{ADDRESSES[pod][0]}/32"], dst_ports=_ports(rng))
    return b.rule(rng.choice(("allow", "deny")), protocol=proto, dst_ports=_ports(rng),
                  src_net=[rng.choice(("10.66.0.0/28", "10.66.0.8/29", "fd66::/120"))])


def _sources(rng: random.Random) -> list[str]:
    if rng.random() < 0.4:  # a run with a few holes (blocks of members, cut where a hole is)
        return sorted(set(RUN) - set(rng.sample(RUN, rng.randint(0, 4))), key=ipaddress.ip_address)
    members = rng.sample(SOURCES, rng.randint(1, 6))
    if rng.random() < 0.2:
        members.append(str(ipaddress.ip_network(f"{rng.choice(SOURCES)}/30", strict=False)))
    if rng.random() < 0.1:
        members.append(rng.choice(SOURCES6))  # an IPv6 member: the set stays in the ACL
    return sorted(set(members))


def world(rng: random.Random, negated_gated: bool = True) -> World:
    """A random world; without `negated_gated`, no allow rule from a source set has a negated
    destination set (the shape of review8's first hole, test_review_gate8.py)."""
    named_port = (rng.choice(("tcp", "udp")), rng.choice(PORTS))
    sets = {"g0": ("net", _sources(rng)), "g1": ("net", _sources(rng)),
            "n:np": ("ip_and_port", _dst_members(rng, named_port)), "d": ("ip", _dst_members(rng, None))}
    policies = []
    tiers = []
    for t in range(rng.randint(1, 2)):
        names = []
        for p in range(rng.randint(1, 2)):
            name = f"p{t}{p}"
            policies.append(b.policy(name, namespace="default",
                                     inbound=[_rule(rng, named_port, negated_gated) for _ in range(rng.randint(1, 5))]))
            names.append(name)
        tiers.append(b.tier(f"t{t}", ingress=names, namespace="default",
                            default_action=rng.choice(("Deny", "Pass")) if t == 0 else "Deny"))
    dual = rng.random() < 0.5
    profile = [_rule(rng, named_port, negated_gated) for _ in range(rng.randint(1, 3))] if rng.random() < 0.4 else None
    if profile is not None and rng.random() < 0.3:
        policies, tiers = [], []  # the profile alone
    return World(sets, policies, tiers, dual, profile=profile)


def named_port_of(w: World) -> tuple[str, int]:
    for _, (kind, members) in w.sets.items():
        if kind == "ip_and_port" and members:
            proto, _, port = members[0].partition(",")[2].partition(":")
            return proto, int(port)
    return "tcp", 80


def _order(member: str) -> tuple[bool, int, int]:
    net = ipaddress.ip_network(member, strict=False)
    return net.version == 6, int(net.network_address), net.prefixlen


def mutate(rng: random.Random, w: World) -> World:
    """The next step: an endpoint enters or leaves a destination set, a source set changes, or
    pod-b moves to another address (or back)."""
    sets = dict(w.sets)
    which = rng.choice(("n:np", "d", "g0", "g1", "move"))
    if which == "move":
        return World(sets, w.policies, w.tiers, w.dual, not w.moved, w.profile)
    kind, members = sets[which]
    if which.startswith("g") and rng.random() < 0.5:  # one member in or out (a block splits or joins)
        member = rng.choice(RUN if any(m in RUN for m in members) else SOURCES)
        sets[which] = (kind, sorted(set(members) ^ {member}, key=_order))
    elif which.startswith("g"):
        sets[which] = (kind, _sources(rng))
    else:
        pod = rng.choice((POD_A, POD_B))
        addr = MOVED if pod == POD_B and w.moved else ADDRESSES[pod][0]
        suffix = "" if kind == "ip" else "," + (members[0].partition(",")[2] if members else "tcp:80")
        entry = addr + suffix
        sets[which] = (kind, sorted(set(members) - {entry}) if entry in members else sorted({*members, entry}))
    return World(sets, w.policies, w.tiers, w.dual, w.moved, w.profile)


def packets(rng: random.Random, w: World, pod: WorkloadKey, n: int) -> list[Packet]:
    """Packets to the pod (IPv4, and IPv6 when dual-stack), from set members and nets' edges."""
    srcs4 = [ipaddress.ip_address(a) for a in [*SOURCES, "10.66.0.0", "10.66.0.15", "10.66.0.13", "10.70.0.1",
                                               *RUN[::3], *RUN[1::7], "10.66.1.48", "10.66.1.63"]]
    srcs6 = [ipaddress.ip_address(a) for a in [*SOURCES6, "fd66::ff", "fd70::1"]]
    ports = sorted({*PORTS, *(p + d for p in PORTS for d in (1, 7, 8)), 1000, 40000})
    out = []
    for _ in range(n):
        family = 6 if w.dual and rng.random() < 0.3 else 4
        src = rng.choice(srcs4 if family == 4 else srcs6)
        v4 = MOVED if pod == POD_B and w.moved else ADDRESSES[pod][0]
        dst = ipaddress.ip_address(v4 if family == 4 else ADDRESSES[pod][1])
        proto = rng.choice((6, 6, 17, 17, 1 if family == 4 else 58, 47))
        if proto in (6, 17):
            out.append(Packet(proto, src, dst, rng.choice((1000, 40000, 53, 8080)), rng.choice(ports)))
        elif proto in (1, 58):
            out.append(Packet(proto, src, dst, icmp_type=rng.choice((0, 8, 128)), icmp_code=0))
        else:
            out.append(Packet(proto, src, dst))
    return out
