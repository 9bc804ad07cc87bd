"""Random Felix states and packets for differential tests (compiler, iptables and VPP drivers).

`random_case(rng)` builds a valid state over a small universe, so that random packets hit rules:
hosts of 10.65.0.0/28 and 10.65.1.0/28 (fd65::/124 and fd65:1::/124), ports 22, 53, 80, 443, 8080
plus a few ephemeral ones, protocols tcp/udp/icmp plus a port-less one. It has 1–4 tiers of 1–3
policies with 0–5 rules per direction, every match kind and negation, all actions, default
actions Deny / Pass / "", staged policies, profiles and IP sets of all three types. Rules stay
valid (validate_policy accepts them) and VPP-expressible (no SCTP port matches).

`random_packets(rng, case, n)` draws packets biased to rule boundaries: addresses at the edges of
every CIDR in the state, ports at range edges ±1, ICMP types/codes mentioned ±1.

Hypothesis: `cases()` and `case_and_packets()` draw a seed; the seed reproduces the case
(`random_case(random.Random(seed))`). Shrinking is by seed only, which is what reproduction needs.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.evaluate import first_packet_ct_state
from vppagent.policy.model import ICMP_FOR_FAMILY, IPAddress
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState, WorkloadKey

if TYPE_CHECKING:  # hypothesis is a test dependency: imported only when a strategy is asked for
    from hypothesis.strategies import SearchStrategy

LOCAL = {4: ipaddress.ip_network("10.65.0.0/28"), 6: ipaddress.ip_network("fd65::/124")}
REMOTE = {4: ipaddress.ip_network("10.65.1.0/28"), 6: ipaddress.ip_network("fd65:1::/124")}
PORTS = (22, 53, 80, 443, 8080)
EPHEMERAL = (32768, 40000, 40001, 60999)
ENDPOINT = WorkloadKey("k8s", "default/pod-a", "eth0")


@dataclass
class Case:
    messages: list[felix.ToDataplane]
    endpoint: WorkloadKey
    direction: str
    family: int  # the packets' family (rules may use both)
    state: DataplaneState = field(default_factory=DataplaneState)

    def __post_init__(self) -> None:
        for m in self.messages:
            self.state.apply(m)

    @property
    def endpoint_address(self) -> IPAddress:
        return ipaddress.ip_address("10.65.0.2" if self.family == 4 else "fd65::2")


def _host(rng: random.Random, family: int, local: bool | None = None) -> IPAddress:
    net = (LOCAL if (rng.random() < 0.5 if local is None else local) else REMOTE)[family]
    return net[rng.randrange(net.num_addresses)]


def _cidr(rng: random.Random, family: int) -> str:
    host = _host(rng, family)
    extra = 96 if family == 6 else 0
    length = rng.choice((26, 28, 29, 30, 31, 32, 32)) + extra
    return str(ipaddress.ip_network(f"{host}/{length}", strict=False))


def _ports(rng: random.Random, k: int) -> list[felix.PortRange]:
    out = []
    for _ in range(k):
        if rng.random() < 0.6:
            p = rng.choice(PORTS)
            out.append(felix.PortRange(first=p, last=p))
        else:
            a, b = sorted(rng.sample((*PORTS, *EPHEMERAL, 1, 1024, 65535), 2))
            out.append(felix.PortRange(first=a, last=b))
    return out


def _ipsets(rng: random.Random, family: int) -> tuple[list[felix.IPSetUpdate], list[str], list[str]]:
    sets, addr_ids, port_ids = [], [], []
    for i in range(rng.randint(1, 4)):
        kind = rng.choice(("NET", "NET", "IP"))
        members = set()
        for _ in range(rng.randint(0, 4)):
            fam = family if rng.random() < 0.85 else 10 - family  # sometimes the other family
            members.add(_cidr(rng, fam) if kind == "NET" else str(_host(rng, fam)))
        set_id = f"s:{kind.lower()}{i}"
        sets.append(felix.IPSetUpdate(id=set_id, type=kind, members=sorted(members)))
        addr_ids.append(set_id)
    for i in range(rng.randint(0, 2)):
        members = set()
        for _ in range(rng.randint(1, 4)):
            proto = rng.choice(("tcp", "udp"))
            members.add(f"{_host(rng, family, local=rng.random() < 0.6)},{proto}:{rng.choice(PORTS)}")
        set_id = f"n:port{i}"
        sets.append(felix.IPSetUpdate(id=set_id, type="IP_AND_PORT", members=sorted(members)))
        port_ids.append(set_id)
    return sets, addr_ids, port_ids


def _rule(rng: random.Random, family: int, addr_sets: list[str], port_sets: list[str]) -> felix.Rule:
    r = felix.Rule(action=rng.choice(("allow", "allow", "deny", "deny", "pass", "next-tier", "log", "", "Allow")))
    fam = family if rng.random() < 0.85 else 10 - family
    proto = rng.choice((None, None, "tcp", "tcp", "udp", "icmp", 6, 17, 1, 47))
    if proto == "icmp" or proto == 1:
        proto = "icmp" if fam == 4 else "icmpv6"
        proto = proto if rng.random() < 0.7 else ICMP_FOR_FAMILY[fam]
    if isinstance(proto, str):
        r.protocol.name = proto
    elif proto is not None:
        r.protocol.number = proto
    elif rng.random() < 0.15:
        r.not_protocol.name = rng.choice(("tcp", "udp"))
    proto_num = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58}.get(str(proto), proto)
    used_nets = False
    for field_name in ("src_net", "dst_net", "not_src_net", "not_dst_net"):
        if rng.random() < 0.2:
            getattr(r, field_name).extend(_cidr(rng, fam) for _ in range(rng.randint(1, 3)))
            used_nets = True
    if not used_nets and rng.random() < 0.15:
        r.ip_version = rng.choice((felix.IPV4, felix.IPV6))
    elif used_nets and rng.random() < 0.2:
        r.ip_version = felix.IPV4 if fam == 4 else felix.IPV6
    if proto_num in (1, 58) and r.ip_version and r.ip_version != (4 if proto_num == 1 else 6):
        r.ip_version = felix.IPV4 if proto_num == 1 else felix.IPV6
    if proto_num in (1, 58) and used_nets and fam != (4 if proto_num == 1 else 6):
        del r.src_net[:], r.dst_net[:], r.not_src_net[:], r.not_dst_net[:]
    for field_name in ("src_ip_set_ids", "dst_ip_set_ids", "not_src_ip_set_ids", "not_dst_ip_set_ids"):
        if addr_sets and rng.random() < 0.15:
            getattr(r, field_name).extend(rng.sample(addr_sets, rng.randint(1, min(2, len(addr_sets)))))
    if proto_num in (6, 17):
        for field_name in ("src_ports", "dst_ports", "not_src_ports", "not_dst_ports"):
            if rng.random() < (0.35 if field_name == "dst_ports" else 0.12):
                getattr(r, field_name).extend(_ports(rng, rng.randint(1, 2)))
    if port_sets:
        for field_name in ("dst_named_port_ip_set_ids", "not_dst_named_port_ip_set_ids",
                           "src_named_port_ip_set_ids", "not_src_named_port_ip_set_ids", "dst_ip_port_set_ids"):
            if rng.random() < (0.2 if field_name.startswith("dst_named") else 0.06):
                getattr(r, field_name).extend(rng.sample(port_sets, rng.randint(1, len(port_sets))))
    if proto_num in (1, 58):
        choice = rng.random()
        if choice < 0.3:
            r.icmp_type = rng.choice((0, 3, 8, 13, 128, 129))
        elif choice < 0.5:
            r.icmp_type_code.type, r.icmp_type_code.code = rng.choice((8, 128)), rng.choice((0, 1))
        choice = rng.random()
        if choice < 0.25:
            r.not_icmp_type = rng.choice((0, 8, 128))
        elif choice < 0.4:
            r.not_icmp_type_code.type, r.not_icmp_type_code.code = rng.choice((8, 128)), rng.choice((0, 1))
    return r


def random_case(rng: random.Random, *, v6: bool | None = None, direction: str | None = None) -> Case:
    family = (6 if rng.random() < 0.25 else 4) if v6 is None else (6 if v6 else 4)
    ipsets, addr_sets, port_sets = _ipsets(rng, family)
    messages = [felix.ToDataplane(ipset_update=s) for s in ipsets]
    tiers = []
    for t in range(rng.randint(1, 4)):
        tier = felix.TierInfo(name=f"tier{t}", default_action=rng.choice(("Deny", "Pass", "Pass", "")))
        for p in range(rng.randint(1, 3)):
            kind = rng.choice(("", "", "NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy"))
            pid = felix.PolicyID(name=f"t{t}p{p}", namespace="default" if kind != "GlobalNetworkPolicy" else "",
                                 kind=kind)
            policy = felix.Policy(
                inbound_rules=[_rule(rng, family, addr_sets, port_sets) for _ in range(rng.randint(0, 5))],
                outbound_rules=[_rule(rng, family, addr_sets, port_sets) for _ in range(rng.randint(0, 5))])
            messages.append(felix.ToDataplane(active_policy_update=felix.ActivePolicyUpdate(id=pid, policy=policy)))
            where = rng.random()
            if where < 0.75:
                tier.ingress_policies.append(pid)
            if where > 0.25:
                tier.egress_policies.append(pid)
        tiers.append(tier)
    profile_ids = []
    for i in range(rng.randint(0, 2)):
        name = f"prof{i}"
        flavour = rng.random()
        if flavour < 0.3:
            profile = felix.Profile(inbound_rules=[felix.Rule(action="allow")], outbound_rules=[felix.Rule()])
        elif flavour < 0.85:
            profile = felix.Profile(
                inbound_rules=[_rule(rng, family, addr_sets, port_sets) for _ in range(rng.randint(1, 4))],
                outbound_rules=[_rule(rng, family, addr_sets, port_sets) for _ in range(rng.randint(1, 4))])
        else:
            profile = felix.Profile()
        messages.append(felix.ToDataplane(active_profile_update=felix.ActiveProfileUpdate(
            id=felix.ProfileID(name=name), profile=profile)))
        profile_ids.append(name)
    endpoint = felix.WorkloadEndpoint(
        state="active" if rng.random() < 0.97 else "", name="cali1234", profile_ids=profile_ids,
        ipv4_nets=["10.65.0.2/32"], ipv6_nets=["fd65::2/128"], tiers=tiers)
    wid = felix.WorkloadEndpointID(orchestrator_id=ENDPOINT.orchestrator_id, workload_id=ENDPOINT.workload_id,
                                   endpoint_id=ENDPOINT.endpoint_id)
    messages.append(felix.ToDataplane(workload_endpoint_update=felix.WorkloadEndpointUpdate(
        id=wid, endpoint=endpoint)))
    messages.append(felix.ToDataplane(in_sync=felix.InSync()))
    return Case(messages, ENDPOINT, direction or rng.choice(("ingress", "egress")), family)


# -- packets --------------------------------------------------------------------------------------


def _interesting(case: Case) -> tuple[list[IPAddress], list[int], list[int]]:
    """Addresses, ports and ICMP values at the edges of everything the state mentions."""
    fam = case.family
    addrs: set[IPAddress] = {case.endpoint_address}
    ports: set[int] = {*PORTS, *EPHEMERAL}
    icmp: set[int] = {0, 3, 8, 13} if fam == 4 else {1, 128, 129, 135}

    def add_net(text: str) -> None:
        net = ipaddress.ip_network(text, strict=False)
        if net.version != fam:
            return
        for a in (int(net.network_address) - 1, int(net.network_address), int(net.broadcast_address),
                  int(net.broadcast_address) + 1):
            addrs.add(ipaddress.ip_address(a) if fam == 4 else ipaddress.IPv6Address(a))

    for m in case.messages:
        if m.HasField("ipset_update"):
            for member in m.ipset_update.members:
                addr, _, proto_port = member.partition(",")
                add_net(addr)
                if proto_port:
                    ports.add(int(proto_port.partition(":")[2]))
        elif m.HasField("active_policy_update") or m.HasField("active_profile_update"):
            rules = [*m.active_policy_update.policy.inbound_rules, *m.active_policy_update.policy.outbound_rules,
                     *m.active_profile_update.profile.inbound_rules, *m.active_profile_update.profile.outbound_rules]
            for r in rules:
                for n in [*r.src_net, *r.dst_net, *r.not_src_net, *r.not_dst_net]:
                    add_net(n)
                for pr in [*r.src_ports, *r.dst_ports, *r.not_src_ports, *r.not_dst_ports]:
                    ports.update(p for p in (pr.first - 1, pr.first, pr.last, pr.last + 1) if 0 <= p <= 65535)
                for t in (r.icmp_type, r.not_icmp_type, r.icmp_type_code.type, r.not_icmp_type_code.type):
                    icmp.update(x for x in (t - 1, t, t + 1) if 0 <= x <= 255)
    return sorted(addrs, key=int), sorted(ports), sorted(icmp)


def random_packets(rng: random.Random, case: Case, n: int, *, new_only: bool = False) -> list[Packet]:
    """Packets to or from the case's endpoint (per its direction), biased to boundaries.

    With `new_only`, only packets conntrack treats as a flow's NEW first packet (for kernel tests).
    """
    addrs, ports, icmp_values = _interesting(case)
    fam = case.family
    out: list[Packet] = []
    while len(out) < n:
        proto = rng.choice((6, 6, 17, 17, ICMP_FOR_FAMILY[fam], ICMP_FOR_FAMILY[fam], 47, 132, 4))
        other = rng.choice(addrs) if rng.random() < 0.8 else _host(rng, fam)
        me = case.endpoint_address
        src, dst = (other, me) if case.direction == "ingress" else (me, other)
        if proto in (6, 17, 132):
            sport = rng.choice(ports) if rng.random() < 0.5 else rng.choice(EPHEMERAL)
            dport = rng.choice(ports) if rng.random() < 0.8 else 4789
            pkt = Packet(proto, src, dst, sport, dport)
        elif proto == ICMP_FOR_FAMILY[fam]:
            pkt = Packet(proto, src, dst, icmp_type=rng.choice(icmp_values), icmp_code=rng.choice((0, 0, 1, 2)))
        else:
            pkt = Packet(proto, src, dst)
        if new_only and first_packet_ct_state(pkt) != "new":
            continue
        out.append(pkt)
    return out


# -- hypothesis -----------------------------------------------------------------------------------



def seeds() -> SearchStrategy[int]:
    from hypothesis import strategies as st

    return st.integers(min_value=0, max_value=2**32 - 1)


def cases(*, v6: bool | None = None) -> SearchStrategy[Case]:
    return seeds().map(lambda seed: random_case(random.Random(seed), v6=v6))


def case_and_packets(n: int = 12) -> SearchStrategy[tuple[int, Case, list[Packet]]]:
    """(seed, case, packets); `seed` reproduces both via `case_from_seed(seed, n)`."""
    return seeds().map(lambda seed: (seed, *case_from_seed(seed, n)))


def case_from_seed(seed: int, n: int = 12) -> tuple[Case, list[Packet]]:
    rng = random.Random(seed)
    case = random_case(rng)
    return case, random_packets(rng, case, n)
