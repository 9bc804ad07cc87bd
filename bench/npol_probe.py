"""Probe VPP's npol plugin (VPP 26.06) on a real VPP: facts, a differential check, figures.

    sudo .venv/bin/python bench/npol_probe.py facts        # each fact with the probe that shows it
    sudo .venv/bin/python bench/npol_probe.py diff [-n 200] [--seed 1]
    sudo .venv/bin/python bench/npol_probe.py figures [--per-endpoint 25]
    sudo .venv/bin/python bench/npol_probe.py packets      # real packets through npol-configured pods
    sudo .venv/bin/python bench/npol_probe.py hook --plugin-path DIR   # master's packet path (docs/npol.md)

Research code outside the package (docs/npol.md says what was found). It talks to VPP with
vpp_papi directly. VPP 26.06's npol has **no packet path**: nothing in the release calls its
match function but the `npol match` CLI (the ACL-plugin hook Calico VPP used is not upstream, and
the cnat slow-path hook came after 26.06). `packets` shows that with real packets; the semantic
facts and the differential check therefore ask VPP's own matcher through `npol match`, which is
the function a packet path would call. `hook` runs real packets and the packet generator through a
VPP that loads master's cnat and npol plugins from DIR (npol behind cnat's session slow path).

Over 400 lines on purpose: the client, the probes and the three reports share one VPP and one
encoding of the mapping's objects, and read best side by side.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import itertools
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp_papi import VPPApiClient

from bench import npol_mapping as nm
from vppagent.netns import call_in_netns
from vppagent.policy.catalog import Catalog
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet
from vppagent.state.ipset import IPSetType
from vppagent.vpprun import VppProcess, vpp_problem

API_DIR = "/usr/share/vpp/api"
# entry types and filter types (npol.api)
CIDR, PORT_RANGE, PORT_IP_SET, IP_SET = 0, 1, 2, 3
F_NONE, F_ICMP_TYPE, F_ICMP_CODE, F_L4_PROTO = 0, 1, 2, 3
# protocol names `npol match` reads (unformat_ip_protocol: vnet/ip/protocols.def)
PROTO_NAMES = {1: "ICMP", 4: "IP_IN_IP", 6: "TCP", 17: "UDP", 47: "GRE", 58: "ICMP6", 132: "SCTP"}


def _ip(a: object) -> Any:
    return ipaddress.ip_address(str(a))


@dataclass(frozen=True)
class Filter:
    type: int
    value: int
    should_match: bool = True


@dataclass(frozen=True)
class Entry:
    is_src: bool
    is_not: bool
    type: int
    value: object  # IPNetwork, (start, end) or a set id

    def wire(self) -> dict[str, Any]:
        if self.type == CIDR:
            data: dict[str, Any] = {"cidr": self.value}
        elif self.type == PORT_RANGE:
            start, end = cast(tuple[int, int], self.value)
            data = {"port_range": {"start": start, "end": end}}
        else:
            data = {"set_id": {"set_id": self.value}}
        return {"is_src": self.is_src, "is_not": self.is_not, "type": self.type, "data": data}


def rule_wire(action: int, filters: list[Filter], entries: list[Entry]) -> dict[str, Any]:
    if len(filters) > nm.MAX_FILTERS:
        raise nm.MappingGap(f"{len(filters)} filters, npol takes {nm.MAX_FILTERS}")
    padded = [{"type": f.type, "value": f.value, "should_match": int(f.should_match)} for f in filters]
    padded += [{"type": F_NONE, "value": 0, "should_match": 0}] * (nm.MAX_FILTERS - len(filters))
    return {"action": action, "filters": padded, "num_entries": len(entries), "matches": [e.wire() for e in entries]}


class NpolError(RuntimeError):
    def __init__(self, what: str, retval: int) -> None:
        super().__init__(f"{what}: retval {retval}")
        self.retval = retval


class Npol:
    """A private VPP (own directory under /run/vpp) and a vpp_papi client for npol."""

    def __init__(self, name: str | None = None, plugin_path: str | None = None) -> None:
        """`plugin_path`: a directory of VPP plugins to load instead of the installed ones (a build
        of master's cnat and npol beside links to the rest; see `hook`)."""
        self.dir = Path("/run/vpp") / (name or f"npol-probe-{os.getpid()}")
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        extra = f"plugins {{ path {plugin_path} }}\n" if plugin_path else ""
        self.vpp = VppProcess(self.dir, heap="1G", extra_config=extra)
        self.api_calls = 0
        try:
            self.vpp.start()
            self.vpp.wait_ready()
            self.client = VPPApiClient(server_address=str(self.vpp.api_socket), apidir=[API_DIR],
                                       async_thread=False, read_timeout=60)
            self.client.connect(f"npol-probe-{os.getpid()}")
        except BaseException:
            self.vpp.stop(remove_dir=True)
            raise

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.vpp.stop(remove_dir=True)

    def __enter__(self) -> Npol:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- raw calls ---------------------------------------------------------------------------
    def call(self, name: str, **kwargs: Any) -> Any:
        self.api_calls += 1
        return getattr(self.client.api, name)(**kwargs)

    def ok(self, name: str, **kwargs: Any) -> Any:
        reply = self.call(name, **kwargs)
        if reply.retval != 0:
            raise NpolError(name, reply.retval)
        return reply

    def cli(self, command: str) -> str:
        return str(self.client.api.cli_inband(cmd=command).reply)

    def loopback(self) -> int:
        index = int(self.client.api.create_loopback().sw_if_index)
        self.client.api.sw_interface_set_flags(sw_if_index=index, flags=1)
        return index

    # -- objects -----------------------------------------------------------------------------
    def ipset(self, type_: IPSetType, members: list[object]) -> int:
        set_id = int(self.ok("npol_ipset_create", type=int(type_)).set_id)
        self.members(set_id, type_, members, add=True)
        return set_id

    def members(self, set_id: int, type_: IPSetType, members: list[object], add: bool, batch: int = 1000) -> None:
        wire: list[dict[str, Any]] = []
        for m in members:
            if type_ is IPSetType.IP_AND_PORT:
                addr, proto, port = cast(tuple[object, int, int], m)
                wire.append({"val": {"tuple": {"address": _ip(addr), "l4_proto": proto, "port": port}}})
            elif type_ is IPSetType.IP:
                net = ipaddress.ip_network(str(m))
                wire.append({"val": {"address": net.network_address}})
            else:
                wire.append({"val": {"prefix": ipaddress.ip_network(str(m))}})
        for i in range(0, len(wire), batch):
            chunk = wire[i:i + batch]
            self.ok("npol_ipset_add_del_members", set_id=set_id, is_add=add, len=len(chunk), members=chunk)

    def rule(self, action: int, filters: list[Filter] = (), entries: list[Entry] = ()) -> int:  # type: ignore[assignment]
        return int(self.ok("npol_rule_create", rule=rule_wire(action, list(filters), list(entries))).rule_id)

    def policy(self, rx: list[int] = (), tx: list[int] = ()) -> int:  # type: ignore[assignment]
        items = [{"is_inbound": True, "rule_id": r} for r in rx] + [{"is_inbound": False, "rule_id": r} for r in tx]
        return int(self.ok("npol_policy_create", num_items=len(items), rules=items).policy_id)

    def configure(self, sw_if_index: int, rx: list[int] = (), tx: list[int] = (),  # type: ignore[assignment]
                  profiles: list[int] = (), policy_default_rx: int = nm.DEFAULT_ALLOW,  # type: ignore[assignment]
                  policy_default_tx: int = nm.DEFAULT_ALLOW, profile_default_rx: int = nm.DEFAULT_ALLOW,
                  profile_default_tx: int = nm.DEFAULT_ALLOW, invert: bool = False) -> Any:
        ids = [*rx, *tx, *profiles]
        return self.call("npol_configure_policies", sw_if_index=sw_if_index, num_rx_policies=len(rx),
                         num_tx_policies=len(tx), total_ids=len(ids), invert_rx_tx=int(invert),
                         policy_default_rx=policy_default_rx, policy_default_tx=policy_default_tx,
                         profile_default_rx=profile_default_rx, profile_default_tx=profile_default_tx,
                         policy_ids=ids)

    def match(self, sw_if_index: int, inbound: bool, pkt: Packet) -> str:
        """VPP's matcher on one packet: 'ALLOW', 'DENY' or what the CLI prints for no verdict.
        ICMP type and code travel in the port fields, as the 5-tuple carries them."""
        sport, dport = (pkt.icmp_type, pkt.icmp_code) if pkt.is_icmp else (pkt.src_port, pkt.dst_port)
        fam = "ip6 " if pkt.family == 6 else ""
        text = self.cli(f"npol match sw_if_index {sw_if_index} {'inbound' if inbound else 'outbound'} {fam}"
                        f"{pkt.src};{sport}->{pkt.dst};{dport} {PROTO_NAMES[pkt.proto]}")
        if "action:" not in text:
            raise RuntimeError(f"npol match: {text.strip()}")
        return text.split("action:")[1].split()[0]


# -- the mapping's objects on VPP ----------------------------------------------------------------

def cond_wire(c: nm.Cond, set_ids: dict[object, int]) -> tuple[list[Filter], list[Entry]]:
    filters = []
    if c.proto is not None:
        filters.append(Filter(F_L4_PROTO, c.proto))
    filters += [Filter(F_L4_PROTO, p, False) for p in sorted(c.not_protos)]
    if c.icmp_type is not None:
        filters.append(Filter(F_ICMP_TYPE, c.icmp_type))
    filters += [Filter(F_ICMP_TYPE, t, False) for t in sorted(c.not_icmp_types)]
    if c.icmp_code is not None:
        filters.append(Filter(F_ICMP_CODE, c.icmp_code))
    filters += [Filter(F_ICMP_CODE, t, False) for t in sorted(c.not_icmp_codes)]
    entries: list[Entry] = []
    for is_src, side in ((True, c.src), (False, c.dst)):
        entries += [Entry(is_src, False, CIDR, n) for n in side.cidrs or ()]
        entries += [Entry(is_src, True, CIDR, n) for n in side.not_cidrs]
        entries += [Entry(is_src, False, IP_SET, set_ids[s]) for s in side.sets or ()]
        entries += [Entry(is_src, True, IP_SET, set_ids[s]) for s in side.not_sets]
        for is_not, group in ((False, side.ports), (True, side.not_ports)):
            if group is None:
                continue
            entries += [Entry(is_src, is_not, PORT_RANGE, (r.first, r.last)) for r in group.ranges]
            entries += [Entry(is_src, is_not, PORT_IP_SET, set_ids[s]) for s in group.sets]
    return filters, entries


@dataclass
class Programmed:
    """What one endpoint's programming created (no dumps: the caller must remember it)."""

    sets: list[int] = field(default_factory=list)
    rules: list[int] = field(default_factory=list)
    policies: list[int] = field(default_factory=list)
    set_members: int = 0


def program(npol: Npol, sw_if_index: int, cat: Catalog, ep: nm.NpolEndpoint) -> Programmed:
    """Sets, then rules, then policies, then the interface (rx = egress, tx = ingress). Raises
    MappingGap before creating anything if a rule needs more filters than npol has."""
    for d in (ep.ingress, ep.egress):
        for body in (*d.policies, *d.profiles):
            for r in body:
                if r.cond.filter_count() > nm.MAX_FILTERS:
                    raise nm.MappingGap(f"{r.cond.filter_count()} filters, npol takes {nm.MAX_FILTERS}")
    done = Programmed()
    addr_refs, port_refs = nm.set_refs(ep)
    set_ids: dict[object, int] = {}
    for ref in sorted(addr_refs, key=sorted):
        s = nm.address_set(cat, ref)
        set_ids[ref] = npol.ipset(s.type, list(s.members))
        done.set_members += len(s.members)
    for pref in sorted(port_refs, key=lambda r: (sorted(r.ids), r.ranges or ())):
        s = nm.port_set(cat, pref)
        set_ids[pref] = npol.ipset(s.type, list(s.members))
        done.set_members += len(s.members)
    done.sets = list(set_ids.values())

    def bodies(bodies: tuple[tuple[nm.NRule, ...], ...], inbound: bool) -> list[int]:
        out = []
        for body in bodies:
            rule_ids = [npol.rule(r.action, *cond_wire(r.cond, set_ids)) for r in body]
            done.rules += rule_ids
            out.append(npol.policy(rx=rule_ids) if inbound else npol.policy(tx=rule_ids))
        done.policies += out
        return out

    rx, tx = bodies(ep.egress.policies, True), bodies(ep.ingress.policies, False)
    # one profile list serves both directions: each profile policy gets rx and tx items
    profiles = []
    for i in range(max(len(ep.egress.profiles), len(ep.ingress.profiles))):
        rx_rules = [npol.rule(r.action, *cond_wire(r.cond, set_ids)) for r in
                    (ep.egress.profiles[i] if i < len(ep.egress.profiles) else ())]
        tx_rules = [npol.rule(r.action, *cond_wire(r.cond, set_ids)) for r in
                    (ep.ingress.profiles[i] if i < len(ep.ingress.profiles) else ())]
        done.rules += rx_rules + tx_rules
        profiles.append(npol.policy(rx=rx_rules, tx=tx_rules))
    done.policies += profiles
    reply = npol.configure(sw_if_index, rx, tx, profiles, ep.egress.policy_default, ep.ingress.policy_default,
                           ep.egress.profile_default, ep.ingress.profile_default)
    if reply.retval != 0:
        raise NpolError("npol_configure_policies", reply.retval)
    return done


def unprogram(npol: Npol, sw_if_index: int, done: Programmed) -> None:
    """Interface first (nothing refers to the objects afterwards), then policies, rules, sets."""
    npol.configure(sw_if_index)
    for pid in done.policies:
        npol.ok("npol_policy_delete", policy_id=pid)
    for rid in done.rules:
        npol.ok("npol_rule_delete", rule_id=rid)
    for sid in done.sets:
        npol.ok("npol_ipset_delete", set_id=sid)


# -- the differential check ----------------------------------------------------------------------

def differential(npol: Npol, cases: int, seed: int, packets: int = 12, flat_tiers: bool = False) -> dict[str, Any]:
    """Random cases of vppagent.policy.generate, mapped and programmed on VPP, each packet asked of
    VPP's matcher and of the reference evaluator (`flat_tiers`: Calico VPP's tier handling)."""
    from vppagent.policy.generate import random_case, random_packets

    rng = random.Random(seed)
    sw_if_index = npol.loopback()
    figures: Counter[str] = Counter()
    disagreements: list[str] = []
    gaps: list[str] = []  # cases the mapping refuses (MappingGap): not programmed, no verdicts
    for index in range(cases):
        case = random_case(rng)
        pkts = random_packets(rng, case, packets)
        cat = Catalog(case.state)
        try:
            ep = nm.map_endpoint(cat, case.endpoint, flat_tiers=flat_tiers)
        except nm.MappingGap as exc:
            figures["mapping_gaps"] += 1
            gaps.append(f"seed {seed} case {index}: mapping gap: {exc}")
            continue
        try:
            done = program(npol, sw_if_index, cat, ep)
        except nm.MappingGap as exc:
            figures["mapping_gaps"] += 1
            gaps.append(f"seed {seed} case {index}: mapping gap: {exc}")
            continue
        figures["cases"] += 1
        figures["rules"] += len(done.rules)
        for pkt in pkts:
            want = verdict(cat, case.endpoint, case.direction, pkt)
            got = npol.match(sw_if_index, case.direction == "egress", pkt)
            figures["packets"] += 1
            figures[f"evaluator_{want.action}"] += 1
            if got != want.action.upper():
                figures["disagree"] += 1
                disagreements.append(f"seed {seed} case {index} {case.direction} {pkt}: npol {got}, evaluator "
                                     f"{want.describe()}")
        unprogram(npol, sw_if_index, done)
    return {"figures": dict(figures), "disagreements": disagreements, "gaps": gaps}


# -- facts ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    name: str
    claim: str
    holds: bool
    evidence: str


def pkt(text: str) -> Packet:
    return Packet.parse(text)


def _cidr(net: str, src: bool = True, neg: bool = False) -> Entry:
    return Entry(src, neg, CIDR, ipaddress.ip_network(net))


def _ports(first: int, last: int, src: bool = False, neg: bool = False) -> Entry:
    return Entry(src, neg, PORT_RANGE, (first, last))


TCP80 = "tcp 10.1.0.5:40000 > 10.2.0.7:80"
UDP53 = "udp 10.1.0.5:40000 > 10.2.0.7:53"


def fact_probes() -> list[Callable[[Npol], Fact]]:
    """Every fact as a probe on a fresh loopback of the given VPP (objects are left behind)."""

    def direction(n: Npol) -> Fact:
        lo = n.loopback()
        deny = n.rule(nm.DENY)
        n.configure(lo, rx=[n.policy(rx=[deny])])
        rx, tx = n.match(lo, True, pkt(TCP80)), n.match(lo, False, pkt(TCP80))
        n.configure(lo, rx=[n.policy(rx=[deny])], invert=True)
        inv_rx, inv_tx = n.match(lo, True, pkt(TCP80)), n.match(lo, False, pkt(TCP80))
        return Fact("direction", "rx policies judge packets VPP receives on the interface (`inbound`: from the pod, "
                    "Calico egress), tx policies packets VPP sends out of it (to the pod, Calico ingress); "
                    "a policy's rules are filed per direction (is_inbound); invert_rx_tx swaps the lists",
                    (rx, tx, inv_rx, inv_tx) == ("DENY", "ALLOW", "ALLOW", "DENY"),
                    f"rx deny-all policy: inbound {rx}, outbound {tx}; with invert_rx_tx: inbound {inv_rx}, "
                    f"outbound {inv_tx}")

    def order(n: Npol) -> Fact:
        lo = n.loopback()
        allow80 = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 6)], [_ports(80, 80)])
        deny = n.rule(nm.DENY)
        allow = n.rule(nm.ALLOW)
        first, second = n.policy(rx=[allow80, deny]), n.policy(rx=[allow])
        n.configure(lo, rx=[first, second])
        a, b = n.match(lo, True, pkt(TCP80)), n.match(lo, True, pkt(UDP53))
        n.configure(lo, rx=[n.policy(rx=[allow80]), second], policy_default_rx=nm.DEFAULT_DENY)
        c = n.match(lo, True, pkt(UDP53))
        return Fact("first-match", "within a policy the first matching rule decides; a policy with no match "
                    "hands the packet to the next policy", (a, b, c) == ("ALLOW", "DENY", "ALLOW"),
                    f"[allow tcp/80, deny] then [allow]: tcp/80 {a}, udp/53 {b}; [allow tcp/80] then [allow]: "
                    f"udp/53 {c}")

    def pass_to_profiles(n: Npol) -> Fact:
        lo = n.loopback()
        pass_all, deny, allow = n.rule(nm.PASS), n.rule(nm.DENY), n.rule(nm.ALLOW)
        deny_pol, allow_prof = n.policy(rx=[deny]), n.policy(rx=[allow])
        n.configure(lo, rx=[n.policy(rx=[pass_all]), deny_pol], profiles=[allow_prof],
                    policy_default_rx=nm.DEFAULT_DENY, profile_default_rx=nm.DEFAULT_DENY)
        a = n.match(lo, True, pkt(TCP80))
        n.configure(lo, rx=[n.policy(rx=[pass_all]), deny_pol], policy_default_rx=nm.DEFAULT_DENY,
                    profile_default_rx=nm.DEFAULT_ALLOW)
        b = n.match(lo, True, pkt(TCP80))
        return Fact("pass", "a matching pass rule skips every later policy (not just its tier: npol has no "
                    "tiers) and goes to the profiles, then profile_default", (a, b) == ("ALLOW", "ALLOW"),
                    f"[pass] then [deny], profile [allow]: {a}; no profiles, profile_default allow: {b}")

    def log_ends_policy(n: Npol) -> Fact:
        lo = n.loopback()
        log, deny, allow = n.rule(nm.LOG), n.rule(nm.DENY), n.rule(nm.ALLOW)
        n.configure(lo, rx=[n.policy(rx=[log, deny]), n.policy(rx=[allow])], policy_default_rx=nm.DEFAULT_DENY)
        a = n.match(lo, True, pkt(TCP80))
        return Fact("log", "a matching log rule ends its policy (the later rules of that policy are skipped, "
                    "the next policy runs); Felix's log continues with the next rule, so a driver leaves log "
                    "rules out", a == "ALLOW", f"[log, deny] then [allow]: {a}")

    def defaults(n: Npol) -> Fact:
        lo = n.loopback()
        allow_prof = n.policy(rx=[n.rule(nm.ALLOW)])
        seen = {}
        for name, pd, prd, profs in (("policy allow", 0, 1, []), ("policy deny", 1, 0, [allow_prof]),
                                     ("policy pass, profile allows", 2, 1, [allow_prof]),
                                     ("policy pass, no profile, profile default deny", 2, 1, []),
                                     ("policy pass, no profile, profile default allow", 2, 0, []),
                                     ("policy pass, profile default pass", 2, 2, [])):
            n.configure(lo, rx=[], profiles=profs, policy_default_rx=pd, profile_default_rx=prd)
            seen[name] = n.match(lo, True, pkt(TCP80))
        lo2 = n.loopback()
        unconfigured = n.cli(f"npol match sw_if_index {lo2} inbound 10.1.0.5;1->10.2.0.7;80 TCP").strip()
        want = {"policy allow": "ALLOW", "policy deny": "DENY", "policy pass, profile allows": "ALLOW",
                "policy pass, no profile, profile default deny": "DENY",
                "policy pass, no profile, profile default allow": "ALLOW"}
        return Fact("defaults", "no policy matches: policy_default decides (allow, deny, or pass = to the "
                    "profiles); no profile matches: profile_default (allow or deny; pass there gives no "
                    "verdict); an interface never configured: allow, 'matched:0'",
                    all(seen[k] == v for k, v in want.items()) and seen["policy pass, profile default pass"]
                    not in ("ALLOW", "DENY") and "matched:0 action:ALLOW" in unconfigured,
                    f"{seen}; unconfigured: {unconfigured!r}")

    def pass_in_profile(n: Npol) -> Fact:
        lo = n.loopback()
        prof1, prof2 = n.policy(rx=[n.rule(nm.PASS)]), n.policy(rx=[n.rule(nm.ALLOW)])
        n.configure(lo, profiles=[prof1, prof2], policy_default_rx=nm.DEFAULT_PASS,
                    profile_default_rx=nm.DEFAULT_DENY)
        a = n.match(lo, True, pkt(TCP80))
        return Fact("pass-in-profile", "a pass rule in a profile ends evaluation with no verdict (VPP logs "
                    "'pass in profile'); Calico goes on to the next profile, so a driver must not program one",
                    a not in ("ALLOW", "DENY"), f"profiles [pass], [allow]: action {a}")

    def set_types(n: Npol) -> Fact:
        lo = n.loopback()
        ip = n.ipset(IPSetType.IP, ["10.1.0.5"])
        net = n.ipset(IPSetType.NET, ["10.1.0.0/24"])
        ipport = n.ipset(IPSetType.IP_AND_PORT, [("10.2.0.7", 6, 8080)])
        r_ip = n.rule(nm.ALLOW, entries=[Entry(True, False, IP_SET, ip)])
        r_net = n.rule(nm.ALLOW, entries=[Entry(True, False, IP_SET, net)])
        r_ipport = n.rule(nm.ALLOW, entries=[Entry(False, False, PORT_IP_SET, ipport)])
        got = {}
        for label, rule in (("IP", r_ip), ("NET", r_net), ("IP_AND_PORT", r_ipport)):
            n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
            got[label] = [n.match(lo, True, pkt(t)) for t in (
                "tcp 10.1.0.5:1 > 10.2.0.7:8080", "tcp 10.1.0.6:1 > 10.2.0.7:8080", "udp 10.1.0.5:1 > 10.2.0.7:8080",
                "tcp 10.1.0.5:1 > 10.2.0.7:8081", "tcp 10.1.1.5:1 > 10.2.0.7:8080")]
        want = {"IP": ["ALLOW", "DENY", "ALLOW", "ALLOW", "DENY"], "NET": ["ALLOW", "ALLOW", "ALLOW", "ALLOW", "DENY"],
                "IP_AND_PORT": ["ALLOW", "ALLOW", "DENY", "DENY", "ALLOW"]}
        return Fact("set-types", "IP sets match an exact address, NET sets a prefix, IP_AND_PORT sets "
                    "(address, protocol, port) with the protocol part of the match",
                    got == want, f"packets [tcp .5->:8080, tcp .6, udp .5, tcp :8081, tcp 10.1.1.5]: {got}")

    def sets_or(n: Npol) -> Fact:
        lo = n.loopback()
        a, b = n.ipset(IPSetType.NET, ["10.1.0.0/24"]), n.ipset(IPSetType.NET, ["10.1.0.5/32"])
        rule = n.rule(nm.ALLOW, entries=[Entry(True, False, IP_SET, a), Entry(True, False, IP_SET, b)])
        n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
        v = n.match(lo, True, pkt("tcp 10.1.0.6:1 > 10.2.0.7:80"))
        return Fact("sets-or", "several IP sets in one positive category OR (member of any); Felix's "
                    "src_ip_set_ids AND (member of every), so a driver needs a derived intersection set",
                    v == "ALLOW", f"src in [10.1.0.0/24] or [10.1.0.5/32], packet from 10.1.0.6: {v}")

    def ports_or_named(n: Npol) -> Fact:
        lo = n.loopback()
        named = n.ipset(IPSetType.IP_AND_PORT, [("10.2.0.7", 6, 8080)])
        rule = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 6)], [_ports(80, 80), Entry(False, False, PORT_IP_SET, named)])
        n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
        got = [n.match(lo, True, pkt(t)) for t in ("tcp 10.1.0.5:1 > 10.2.0.7:80", "tcp 10.1.0.5:1 > 10.2.0.7:8080",
                                                  "tcp 10.1.0.5:1 > 10.2.0.8:8080", "tcp 10.1.0.5:1 > 10.2.0.7:81")]
        return Fact("ports-or-named", "on one side, port ranges and IP+port sets form one OR group (Felix's "
                    "ports OR named ports); ranges are inclusive", got == ["ALLOW", "ALLOW", "DENY", "DENY"],
                    f"dst 80 or named (10.2.0.7,tcp,8080): to :80, .7:8080, .8:8080, :81 -> {got}")

    def negations(n: Npol) -> Fact:
        lo = n.loopback()
        s = n.ipset(IPSetType.NET, ["10.1.0.0/28"])
        rule = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 17, False)],
                      [_cidr("10.1.0.0/16"), _cidr("10.1.0.4/30", neg=True), Entry(True, True, IP_SET, s),
                       _ports(22, 22, neg=True)])
        n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
        got = [n.match(lo, True, pkt(t)) for t in (
            "tcp 10.1.0.20:1 > 10.2.0.7:80", "tcp 10.1.0.5:1 > 10.2.0.7:80", "tcp 10.1.0.2:1 > 10.2.0.7:80",
            "tcp 10.1.0.20:1 > 10.2.0.7:22", "udp 10.1.0.20:1 > 10.2.0.7:80", "tcp 10.3.0.1:1 > 10.2.0.7:80")]
        return Fact("negations", "not-categories (CIDR, set, port, protocol via should_match=0) fail on any hit "
                    "and AND with the positive ones", got == ["ALLOW", "DENY", "DENY", "DENY", "DENY", "DENY"],
                    f"src 10.1/16, not 10.1.0.4/30, not in set 10.1.0.0/28, dst port not 22, proto not udp: "
                    f"{got}")

    def icmp(n: Npol) -> Fact:
        lo = n.loopback()
        t8 = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 1), Filter(F_ICMP_TYPE, 8)])
        n.configure(lo, rx=[n.policy(rx=[t8])], policy_default_rx=nm.DEFAULT_DENY)
        a = [n.match(lo, True, pkt(t)) for t in ("icmp 10.1.0.5 > 10.2.0.7 type 8 code 3",
                                                 "icmp 10.1.0.5 > 10.2.0.7 type 0")]
        not80 = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 1), Filter(F_ICMP_TYPE, 8, False), Filter(F_ICMP_CODE, 0, False)])
        n.configure(lo, rx=[n.policy(rx=[not80])], policy_default_rx=nm.DEFAULT_DENY)
        b = [n.match(lo, True, pkt(t)) for t in ("icmp 10.1.0.5 > 10.2.0.7 type 8 code 1",
                                                 "icmp 10.1.0.5 > 10.2.0.7 type 13 code 0",
                                                 "icmp 10.1.0.5 > 10.2.0.7 type 13 code 1")]
        only_type = n.rule(nm.ALLOW, [Filter(F_ICMP_TYPE, 8, False)])
        n.configure(lo, rx=[n.policy(rx=[only_type])], policy_default_rx=nm.DEFAULT_DENY)
        c = n.match(lo, True, pkt(TCP80))
        v6 = n.rule(nm.ALLOW, [Filter(F_ICMP_TYPE, 128)])
        n.configure(lo, rx=[n.policy(rx=[v6])], policy_default_rx=nm.DEFAULT_DENY)
        d = n.match(lo, True, pkt("icmpv6 fd00::1 > fd00::2 type 128"))
        ok = a == ["ALLOW", "DENY"] and b == ["DENY", "DENY", "ALLOW"] and c == "DENY" and d == "ALLOW"
        return Fact("icmp", "ICMP type and code filters match ICMP and ICMPv6 packets only (also when negated); "
                    "negated type and code filters AND, so Calico's not_icmp_type_code = NOT(type AND code) "
                    "needs two rules", ok,
                    f"type 8: 8/3 {a[0]}, 0/0 {a[1]}; type!=8 and code!=0: 8/1 {b[0]}, 13/0 {b[1]}, 13/1 {b[2]}; "
                    f"type!=8 alone on tcp: {c}; type 128 on ICMPv6: {d}")

    def ports_without_proto(n: Npol) -> Fact:
        lo = n.loopback()
        rule = n.rule(nm.ALLOW, entries=[_ports(8, 8, src=True)])
        n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
        a = n.match(lo, True, pkt("icmp 10.1.0.5 > 10.2.0.7 type 8"))
        gre = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 47)])
        n.configure(lo, rx=[n.policy(rx=[gre])], policy_default_rx=nm.DEFAULT_DENY)
        b, c = n.match(lo, True, pkt("47 10.1.0.5 > 10.2.0.7")), n.match(lo, True, pkt(TCP80))
        anyp = n.rule(nm.ALLOW, entries=[_cidr("10.1.0.0/16")])
        n.configure(lo, rx=[n.policy(rx=[anyp])], policy_default_rx=nm.DEFAULT_DENY)
        d = [n.match(lo, True, pkt(t)) for t in ("47 10.1.0.5 > 10.2.0.7", UDP53, "icmp 10.1.0.5 > 10.2.0.7 type 8")]
        return Fact("ports-and-protocols", "port ranges apply whatever the protocol (an ICMP packet's type and "
                    "code sit in the port fields), so a port rule needs its protocol filter; any protocol = no "
                    "L4 filter; a protocol filter takes any number", a == "ALLOW" and (b, c) == ("ALLOW", "DENY")
                    and d == ["ALLOW"] * 3,
                    f"src port 8, no protocol, ICMP type 8: {a}; proto 47: GRE {b}, tcp {c}; no filter: {d}")

    def families(n: Npol) -> Fact:
        lo = n.loopback()
        r6 = n.rule(nm.ALLOW, entries=[_cidr("fd00::/8")])
        n.configure(lo, rx=[n.policy(rx=[r6])], policy_default_rx=nm.DEFAULT_DENY)
        a, b = n.match(lo, True, pkt(TCP80)), n.match(lo, True, pkt("tcp [fd00::1]:1 > [fd01::2]:80"))
        not6 = n.rule(nm.ALLOW, entries=[_cidr("fd00::/8", neg=True)])
        n.configure(lo, rx=[n.policy(rx=[not6])], policy_default_rx=nm.DEFAULT_DENY)
        c = n.match(lo, True, pkt(TCP80))
        pin = n.rule(nm.ALLOW, entries=[_cidr("0.0.0.0/0"), _cidr("10.1.0.0/16", neg=True)])
        n.configure(lo, rx=[n.policy(rx=[pin])], policy_default_rx=nm.DEFAULT_DENY)
        v6 = "tcp [fd00::1]:1 > [fd01::2]:80"
        d = [n.match(lo, True, pkt(t)) for t in ("tcp 10.3.0.1:1 > 10.2.0.7:80", TCP80, v6)]
        pin6 = n.rule(nm.ALLOW, entries=[_cidr("::/0")])
        n.configure(lo, rx=[n.policy(rx=[pin6])], policy_default_rx=nm.DEFAULT_DENY)
        e = [n.match(lo, True, pkt(t)) for t in (TCP80, v6)]
        ok = (a, b, c) == ("DENY", "ALLOW", "ALLOW") and d == ["ALLOW", "DENY", "DENY"] and e == ["DENY", "ALLOW"]
        return Fact("families", "rules have no family: entries of the other family are skipped, so a positive "
                    "CIDR list of one family pins the rule, a negated one does not (Felix drops the rule for "
                    "the other family): a driver pins with a positive 0.0.0.0/0 or ::/0, which npol accepts",
                    ok, f"src fd00::/8: v4 {a}, v6 {b}; not fd00::/8: v4 {c}; 0.0.0.0/0 and not 10.1/16: "
                        f"10.3.0.1 / 10.1.0.5 / v6 {d}; ::/0: v4 / v6 {e}")

    def updates(n: Npol) -> Fact:
        lo = n.loopback()
        s = n.ipset(IPSetType.NET, ["10.1.0.0/24"])
        rule = n.rule(nm.DENY, entries=[Entry(True, False, IP_SET, s)])
        pol = n.policy(rx=[rule])
        n.configure(lo, rx=[pol], policy_default_rx=nm.DEFAULT_ALLOW)
        seen = [n.match(lo, True, pkt(TCP80))]
        n.members(s, IPSetType.NET, ["10.1.0.0/24"], add=False)
        seen.append(n.match(lo, True, pkt(TCP80)))
        n.members(s, IPSetType.NET, ["10.1.0.5/32"], add=True)
        seen.append(n.match(lo, True, pkt(TCP80)))
        n.ok("npol_rule_update", rule_id=rule, rule=rule_wire(nm.ALLOW, [], [Entry(True, False, IP_SET, s)]))
        n.configure(lo, rx=[pol], policy_default_rx=nm.DEFAULT_DENY)
        seen.append(n.match(lo, True, pkt(TCP80)))
        other = n.rule(nm.DENY)
        n.ok("npol_policy_update", policy_id=pol, num_items=1, rules=[{"is_inbound": True, "rule_id": other}])
        seen.append(n.match(lo, True, pkt(TCP80)))
        return Fact("updates", "member add/del, rule_update and policy_update take effect on the next "
                    "evaluation, keeping ids; bound policies need no re-configure",
                    seen == ["DENY", "ALLOW", "DENY", "ALLOW", "DENY"], f"deny-from-set: {seen}")

    def ipport_delete_bug(n: Npol) -> Fact:
        lo = n.loopback()
        s = n.ipset(IPSetType.IP_AND_PORT, [("10.2.0.7", 6, 80), ("10.2.0.8", 6, 8080), ("10.2.0.9", 6, 80)])
        rule = n.rule(nm.ALLOW, [Filter(F_L4_PROTO, 6)], [Entry(False, False, PORT_IP_SET, s)])
        n.configure(lo, rx=[n.policy(rx=[rule])], policy_default_rx=nm.DEFAULT_DENY)
        probes = ["tcp 10.1.0.5:1 > 10.2.0.7:80", "tcp 10.1.0.5:1 > 10.2.0.8:8080", "tcp 10.1.0.5:1 > 10.2.0.9:80"]
        before = [n.match(lo, True, pkt(t)) for t in probes]
        n.members(s, IPSetType.IP_AND_PORT, [("10.2.0.7", 6, 80)], add=False)
        after = [n.match(lo, True, pkt(t)) for t in probes]
        return Fact("ipport-delete", "deleting one IP+port member also deletes every member with another port or "
                    "protocol (npol_ipset_member_cmp's IP_AND_PORT case reads as 'equal' when port or "
                    "protocol differ); a driver must rebuild such sets, not delete members",
                    before == ["ALLOW"] * 3 and after == ["DENY", "DENY", "ALLOW"],
                    f"members (.7,tcp,80) (.8,tcp,8080) (.9,tcp,80); before {before}; after deleting .7: {after}")

    def errors_and_ids(n: Npol) -> Fact:
        lo = n.loopback()
        ids = [n.rule(nm.ALLOW) for _ in range(3)]
        n.ok("npol_rule_delete", rule_id=ids[0])
        n.ok("npol_rule_delete", rule_id=ids[1])
        reused = [n.rule(nm.ALLOW), n.rule(nm.ALLOW)]
        replies = {
            "rule_delete unknown": n.call("npol_rule_delete", rule_id=99999).retval,
            "policy_delete unknown": n.call("npol_policy_delete", policy_id=99999).retval,
            "ipset_delete unknown": n.call("npol_ipset_delete", set_id=99999).retval,
            "members to unknown set": n.call("npol_ipset_add_del_members", set_id=99999, is_add=True, len=0,
                                             members=[]).retval,
            "configure unknown policy": n.configure(lo, rx=[99999]).retval,
            "configure bad sw_if_index": n.configure(99999).retval,
            "rule with unknown set id": n.call("npol_rule_create", rule=rule_wire(
                nm.ALLOW, [], [Entry(True, False, IP_SET, 99999)])).retval,
            "policy with unknown rule id": n.call("npol_policy_create", num_items=1,
                                                  rules=[{"is_inbound": True, "rule_id": 99999}]).retval,
        }
        before = n.cli("show npol rules").count("[rule#")
        upd = n.call("npol_rule_update", rule_id=88888, rule=rule_wire(nm.DENY, [], [])).retval
        after = n.cli("show npol rules").count("[rule#")
        ok = (reused == [ids[1], ids[0]] and replies["rule_delete unknown"] == -6
              and replies["configure unknown policy"] != 0 and upd == 0 and after == before + 1)
        return Fact("errors-and-ids", "ids are pool indexes, the last freed reused first; unknown ids in deletes "
                    "answer -6 (NO_SUCH_ENTRY), configure with an unknown policy fails (old config kept); "
                    "references inside rules and policies are NOT checked, and rule_update of an unknown id "
                    "creates a new rule whose id the reply does not say",
                    ok, f"created {ids}, deleted {ids[:2]}, next two got {reused}; replies {replies}; "
                        f"rule_update(88888): retval {upd}, rules {before} -> {after}")

    def dangling_rule(n: Npol) -> Fact:
        lo = n.loopback()
        deny80 = n.rule(nm.DENY, [Filter(F_L4_PROTO, 6)], [_ports(80, 80)])
        n.configure(lo, rx=[n.policy(rx=[deny80])], policy_default_rx=nm.DEFAULT_ALLOW)
        before = n.match(lo, True, pkt(UDP53))
        n.ok("npol_rule_delete", rule_id=deny80)
        after = n.match(lo, True, pkt(UDP53))
        return Fact("dangling-rule", "deleting a rule that a policy still lists is accepted, and the freed rule "
                    "then matches every packet with its old action: delete policies before their rules",
                    (before, after) == ("ALLOW", "DENY"), f"policy [deny tcp/80]: udp/53 {before}; after "
                    f"npol_rule_delete of that rule: udp/53 {after}")

    def no_dumps(n: Npol) -> Fact:
        names = sorted(m for m in n.client.messages if m.startswith("npol_"))
        dumps = [m for m in names if m.endswith("_dump") or m.endswith("_details")]
        shows = {c: n.cli(c).splitlines()[:2] for c in ("show npol ipsets", "show npol policies verbose")}
        return Fact("no-dumps", "the API has no dump or details messages; the only read-back is CLI text "
                    "(`show npol ipsets|rules|policies verbose|interfaces` through cli_inband), which prints "
                    "ids, members and rules", not dumps and all(shows.values()),
                    f"npol messages: {len(names)}, dumps: {dumps}; CLI sample: {shows}")

    return [direction, order, pass_to_profiles, log_ends_policy, defaults, pass_in_profile, set_types, sets_or,
            ports_or_named, negations, icmp, ports_without_proto, families, updates, ipport_delete_bug,
            errors_and_ids, dangling_rule, no_dumps]


def run_facts(npol: Npol) -> list[Fact]:
    return [probe(npol) for probe in fact_probes()]


# -- real packets ---------------------------------------------------------------------------------

def _sh(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=True).stdout


_LABS = itertools.count()
UDP_WAIT = 3.0  # a datagram VPP passes arrives in well under a millisecond; generous for a loaded machine


class PacketLab:
    """Two namespaces ("pod" 10.66.0.2, "peer" 10.66.1.2), each on a veth whose other end VPP takes
    as an af_packet interface (10.66.0.1/24, 10.66.1.1/24), as tests/realvpp attaches pods."""

    def __init__(self, npol: Npol) -> None:
        self.npol, self.tag = npol, f"np{os.getpid() % 100000}{chr(ord('a') + next(_LABS) % 26)}"
        self.ns = {"pod": f"{self.tag}a", "peer": f"{self.tag}b"}
        self.addr = {"pod": "10.66.0.2", "peer": "10.66.1.2"}
        self.sw_if_index: dict[str, int] = {}
        for i, (role, ns) in enumerate(self.ns.items()):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "link", "add", ns, "type", "veth", "peer", "name", "eth0", "netns", ns)
            _sh("ip", "link", "set", ns, "up")
            _sh("ip", "-n", ns, "addr", "add", f"10.66.{i}.2/24", "dev", "eth0")
            _sh("ip", "-n", ns, "link", "set", "eth0", "up")
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            _sh("ip", "-n", ns, "route", "add", "default", "via", f"10.66.{i}.1")
            npol.cli(f"create host-interface name {ns}")
            npol.cli(f"set interface ip address host-{ns} 10.66.{i}.1/24")
            npol.cli(f"set interface state host-{ns} up")
            npol.cli(f"set interface rx-mode host-{ns} interrupt")
            [details] = npol.client.api.sw_interface_dump(name_filter_valid=True, name_filter=f"host-{ns}")
            self.sw_if_index[role] = int(details.sw_if_index)

    def cleanup(self) -> None:
        for ns in self.ns.values():
            with contextlib.suppress(Exception):
                self.npol.cli(f"delete host-interface name {ns}")
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30, check=False)
            subprocess.run(["ip", "link", "del", ns], capture_output=True, timeout=30, check=False)

    def udp(self, src: str, dst: str, port: int, sport: int = 0) -> bool:
        """One UDP datagram from namespace role `src` to `dst` (from `sport`, or a new ephemeral port:
        a new flow); True if it arrived."""
        receiver = call_in_netns(self.ns[dst], lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        try:
            call_in_netns(self.ns[dst], lambda: receiver.bind((self.addr[dst], port)))
            receiver.settimeout(UDP_WAIT)

            def send() -> None:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((self.addr[src], sport))
                    s.sendto(b"npol probe", (self.addr[dst], port))

            call_in_netns(self.ns[src], send)
            try:
                return receiver.recv(100) == b"npol probe"
            except TimeoutError:
                return False
        finally:
            receiver.close()

    def both_ways(self, port: int) -> tuple[bool, bool]:
        return self.udp("pod", "peer", port), self.udp("peer", "pod", port + 1)

    def warm_up(self) -> None:
        """Until UDP passes both ways (neighbours resolved; slow on a loaded machine), a few tries."""
        for attempt in range(5):
            if self.both_ways(4900 + 2 * attempt) == (True, True):
                return


def real_packets(npol: Npol) -> Fact:
    """Deny everything with npol on the pod's interface, both directions; then the ACL plugin as the
    control that the probe sees a drop."""
    lab = PacketLab(npol)
    try:
        lab.warm_up()
        baseline = lab.both_ways(5002)
        deny = npol.rule(nm.DENY)
        pol = npol.policy(rx=[deny], tx=[deny])
        reply = npol.configure(lab.sw_if_index["pod"], rx=[pol], tx=[pol], profiles=[],
                               policy_default_rx=nm.DEFAULT_DENY, policy_default_tx=nm.DEFAULT_DENY,
                               profile_default_rx=nm.DEFAULT_DENY, profile_default_tx=nm.DEFAULT_DENY)
        configured = npol.cli("show npol interfaces")
        matcher = npol.match(lab.sw_if_index["pod"], True, pkt("udp 10.66.0.2:5004 > 10.66.1.2:5004"))
        with_npol = lab.both_ways(5004)
        graph = npol.cli("show vlib graph")
        features = npol.cli(f"show interface features host-{lab.ns['pod']}")
        acl = npol.client.api.acl_add_replace(acl_index=0xFFFFFFFF, tag="npol-control", count=1, r=[{
            "is_permit": 0, "src_prefix": ipaddress.ip_network("0.0.0.0/0"),
            "dst_prefix": ipaddress.ip_network("0.0.0.0/0"), "proto": 0,
            "srcport_or_icmptype_first": 0, "srcport_or_icmptype_last": 65535,
            "dstport_or_icmpcode_first": 0, "dstport_or_icmpcode_last": 65535}])
        npol.client.api.acl_interface_set_acl_list(sw_if_index=lab.sw_if_index["pod"], count=1, n_input=1,
                                                   acls=[acl.acl_index])
        with_acl = lab.both_ways(5006)
        npol.client.api.acl_interface_set_acl_list(sw_if_index=lab.sw_if_index["pod"], count=0, n_input=0, acls=[])
    finally:
        lab.cleanup()
    npol_nodes = [line.split()[0] for line in graph.splitlines() if "npol" in line.lower() and line[:1].strip()]
    ok = (baseline == (True, True) and reply.retval == 0 and "policy#" in configured and matcher == "DENY"
          and with_npol == (True, True) and not npol_nodes and "npol" not in features
          and with_acl == (False, True))
    return Fact("no-packet-path", "VPP 26.06's npol filters no packet: with deny-all policies and every default "
                "deny on a pod's af_packet interface (accepted, shown by `show npol interfaces`, and `npol match` "
                "says DENY) real UDP still passes both ways; no graph node or interface feature belongs to "
                "npol; the ACL plugin on the same interface drops the same traffic (the probe sees drops)", ok,
                f"(pod->peer, peer->pod) arrived: before {baseline}, with npol {with_npol}, with an input ACL "
                f"deny-all {with_acl}; npol match {matcher}; npol graph nodes {npol_nodes}")


# -- figures ----------------------------------------------------------------------------------------

def figures(npol: Npol, per_endpoint: int, endpoints: int, acl_endpoints: int, matches: int) -> dict[str, Any]:
    """bench/compile.py's state: npol objects per endpoint against ACL rules per list; cold programming
    of one endpoint and one member change on VPP; the matcher's cost through `npol match`."""
    import time

    from bench import compile as compile_bench
    from vppagent.policy.compile import compile_endpoint

    args = argparse.Namespace(policies=500, rules=10, sets=100, members=100, endpoints=endpoints,
                              per_endpoint=per_endpoint, seed=1)
    state, keys = compile_bench.build(args)
    cat = Catalog(state)
    out: dict[str, Any] = {"per_endpoint": per_endpoint, "endpoints": len(keys)}
    t0 = time.perf_counter()
    mapped = [nm.map_endpoint(cat, k) for k in keys]
    out["map_ms_per_endpoint"] = (time.perf_counter() - t0) * 1000 / len(keys)
    rules, pols, members, sets = [], [], [], []
    for ep in mapped:
        rules.append(sum(len(b) for d in (ep.ingress, ep.egress) for b in (*d.policies, *d.profiles)))
        pols.append(sum(len(d.policies) + len(d.profiles) for d in (ep.ingress, ep.egress)))
        addr, ports = nm.set_refs(ep)
        sets.append(len(addr) + len(ports))
        members.append(sum(len(nm.address_set(cat, r).members) for r in addr)
                       + sum(len(nm.port_set(cat, r).members) for r in ports))
    out["npol_rules_per_endpoint"] = statistics.mean(rules)
    out["npol_rules_per_direction_max"] = max(sum(len(b) for b in (*d.policies, *d.profiles))
                                              for ep in mapped for d in (ep.ingress, ep.egress))
    out["npol_policies_per_endpoint"] = statistics.mean(pols)
    out["npol_sets_per_endpoint"] = statistics.mean(sets)
    out["npol_set_members_per_endpoint"] = statistics.mean(members)
    acl = [len(compile_endpoint(cat, k, d, rule_limit=200_000).rules) for k in keys[:acl_endpoints]
           for d in ("ingress", "egress")]
    out["acl_rules_per_list"] = statistics.mean(acl)
    # cold programming of the first endpoint on a loopback, then one member change
    lo = npol.loopback()
    calls = npol.api_calls
    t0 = time.perf_counter()
    done = program(npol, lo, cat, mapped[0])
    out["cold_program_s"] = time.perf_counter() - t0
    out["cold_program_api_calls"] = npol.api_calls - calls
    sid = done.sets[0]
    t0 = time.perf_counter()
    npol.members(sid, IPSetType.NET, ["10.127.255.254/32"], add=True)
    out["member_change_ms"] = (time.perf_counter() - t0) * 1000
    npol.members(sid, IPSetType.NET, ["10.127.255.254/32"], add=False)
    # the matcher: a packet no rule takes (evaluates everything) vs an unconfigured interface
    probe = pkt(f"udp 10.200.0.1:1 > {cat.workload(keys[0]).ipv4_nets[0].network_address}:1")
    bare = npol.loopback()
    timings = {}
    for label, index in (("configured", lo), ("unconfigured", bare)):
        # one `exec` of a file of match commands: one API round trip for all of them
        script = npol.dir / f"match-{label}.txt"
        line = f"npol match sw_if_index {index} outbound {probe.src};1->{probe.dst};1 UDP\n"
        script.write_text(line * matches)
        t0 = time.perf_counter()
        npol.cli(f"exec {script}")
        timings[label] = (time.perf_counter() - t0) / matches
    out["match_verdict"] = npol.match(lo, False, probe)
    out["match_us_configured"] = timings["configured"] * 1e6
    out["match_us_unconfigured"] = timings["unconfigured"] * 1e6
    out["match_us_evaluation"] = (timings["configured"] - timings["unconfigured"]) * 1e6
    unprogram(npol, lo, done)
    return out


# -- command line ---------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("facts", "packets", "diff", "figures", "all", "hook"))
    parser.add_argument("--flows", type=int, default=100_000, help="hook: distinct flows per stream")
    parser.add_argument("--plugin-path", help="load VPP plugins from here (hook: master's cnat and npol)")
    parser.add_argument("-n", "--cases", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-endpoint", type=int, default=25)
    parser.add_argument("--endpoints", type=int, default=20)
    parser.add_argument("--acl-endpoints", type=int, default=5)
    parser.add_argument("--matches", type=int, default=2000)
    parser.add_argument("--flat-tiers", action="store_true", help="diff: Calico VPP's tier handling instead")
    args = parser.parse_args()
    problem = vpp_problem()
    if problem is not None:
        print(f"skipped: {problem}")
        return 0
    failed = 0
    with Npol(plugin_path=args.plugin_path) as npol:
        print(npol.cli("show version").strip())
        if args.what in ("facts", "all"):
            for fact in run_facts(npol):
                failed += not fact.holds
                print(f"[{'holds' if fact.holds else 'DOES NOT HOLD'}] {fact.name}: {fact.claim}\n    {fact.evidence}")
        if args.what in ("packets", "all"):
            fact = real_packets(npol)
            failed += not fact.holds
            print(f"[{'holds' if fact.holds else 'DOES NOT HOLD'}] {fact.name}: {fact.claim}\n    {fact.evidence}")
        if args.what in ("diff", "all"):
            t0 = time.perf_counter()
            result = differential(npol, args.cases, args.seed, flat_tiers=args.flat_tiers)
            print(f"differential ({time.perf_counter() - t0:.1f} s): {result['figures']}")
            for line in [*result["disagreements"][:40], *result["gaps"]]:
                print("  " + line)
            failed += bool(result["figures"].get("disagree"))
        if args.what == "hook":
            for key, value in hook_cost(npol, args.flows).items():
                print(f"  {key}: {value}")
            for fact in [*hook_facts(npol), *hook_update_window(npol)]:
                failed += not fact.holds
                print(f"[{'holds' if fact.holds else 'DOES NOT HOLD'}] {fact.name}: {fact.claim}\n    {fact.evidence}")
            t0 = time.perf_counter()
            result = hook_differential(npol, args.cases, args.seed)
            print(f"real-packet differential on master's path ({time.perf_counter() - t0:.1f} s): {result['figures']}")
            for line in [*result["disagreements"][:40], *result["gaps"]]:
                print("  " + line)
            failed += bool(result["disagreements"])
        if args.what in ("figures", "all"):
            for key, value in figures(npol, args.per_endpoint, args.endpoints, args.acl_endpoints,
                                      args.matches).items():
                print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    return 1 if failed else 0


# -- master's packet path (cnat slow-path hook), on a build of master's cnat and npol plugins -------

def hook_facts(npol: Npol) -> list[Fact]:
    """Real packets with npol behind cnat's session path (VPP master, after 26.06): needs `npol` on
    a VPP whose cnat and npol plugins come from master (`--plugin-path`)."""
    lab = PacketLab(npol)
    facts = []
    try:
        pod, peer = lab.sw_if_index["pod"], lab.sw_if_index["peer"]
        for name in lab.ns.values():
            npol.cli(f"set cnat feature host-{name} enable")
        lab.warm_up()
        udp = Filter(F_L4_PROTO, 17)
        deny_5102 = npol.rule(nm.DENY, [udp], [_ports(5102, 5102)])
        deny_5202 = npol.rule(nm.DENY, [udp], [_ports(5202, 5202)])
        rx_pol, tx_pol = npol.policy(rx=[deny_5102]), npol.policy(tx=[deny_5202])
        npol.configure(pod, rx=[rx_pol], tx=[tx_pol])
        seen = {"pod->peer :5102": lab.udp("pod", "peer", 5102), "pod->peer :5104": lab.udp("pod", "peer", 5104),
                "peer->pod :5202": lab.udp("peer", "pod", 5202), "peer->pod :5204": lab.udp("peer", "pod", 5204)}
        facts.append(Fact("hook-direction", "with cnat's feature on the interfaces, master's npol filters real "
                          "packets: rx policies judge what the pod sends (Calico egress), tx policies what it "
                          "receives (Calico ingress)",
                          seen == {"pod->peer :5102": False, "pod->peer :5104": True, "peer->pod :5202": False,
                                   "peer->pod :5204": True}, f"deny udp 5102 on rx, 5202 on tx: {seen}"))
        hooks = npol.cli("show cnat feature-hooks").split()
        facts.append(Fact("hook-registered", "npol registers its hooks with cnat when an interface is first "
                          "configured", "input" in hooks and len(hooks) > 6, " ".join(hooks)))
        # stateful: ingress denies everything; the pod's own flow gets its reply
        npol.configure(pod, rx=[], tx=[npol.policy(tx=[npol.rule(nm.DENY)])])
        new_in = lab.udp("peer", "pod", 5302)
        reply = _udp_exchange(lab, "pod", "peer", 5304)
        facts.append(Fact("hook-replies", "replies of a flow the pod started come back although ingress denies "
                          "everything (the cnat session carries them)", (new_in, reply) == (False, (True, True)),
                          f"ingress deny-all: new inbound flow {new_in}; pod's flow out, reply back: {reply}"))
        # established flows across a change, both ways
        allow_all = npol.rule(nm.ALLOW)
        npol.configure(pod, rx=[npol.policy(rx=[allow_all])], tx=[], policy_default_rx=nm.DEFAULT_DENY)
        first = _udp_exchange(lab, "pod", "peer", 5402)
        npol.ok("npol_rule_update", rule_id=allow_all, rule=rule_wire(nm.DENY, [], []))
        same_flow = _udp_exchange(lab, "pod", "peer", 5402)
        new_flow = lab.udp("pod", "peer", 5404)
        denied_flow = lab.udp("pod", "peer", 5406, sport=5406)
        npol.ok("npol_rule_update", rule_id=allow_all, rule=rule_wire(nm.ALLOW, [], []))
        denied_again = lab.udp("pod", "peer", 5406, sport=5406)
        purged = npol.cli("cnat purge").strip()
        after_purge = lab.udp("pod", "peer", 5406, sport=5406)
        facts.append(Fact("hook-sessions", "verdicts live in cnat sessions: a policy change does not re-judge a "
                          "flow that has one; an allowed flow goes on after its rule turns to deny, and a denied "
                          "flow stays dropped after the rule allows it again, until its session ends "
                          "(`cnat purge` here, else its timeout)",
                          first == (True, True) and same_flow == (True, True) and not new_flow
                          and not denied_flow and not denied_again and after_purge,
                          f"allowed flow {first}; after rule->deny: same flow {same_flow}, new flow {new_flow}, "
                          f"flow :5406 {denied_flow}; rule->allow again: flow :5406 {denied_again}; after "
                          f"`cnat purge` ({purged!r}): {after_purge}"))
        facts.append(_hook_icmp(npol, lab))
        npol.configure(pod)
        unconfigured_peer = lab.udp("peer", "pod", 5502)
        facts.append(Fact("hook-peer", "an interface without npol configuration is not judged", unconfigured_peer,
                          f"peer->pod with npol cleared on the pod and none on the peer: {unconfigured_peer} "
                          f"(peer sw_if_index {peer})"))
    finally:
        lab.cleanup()
    return facts


def _hook_icmp(npol: Npol, lab: PacketLab) -> Fact:
    """ICMP from the pod through master's path: which types npol judges, and what its ICMP type
    filter sees (cnat's 5-tuple puts an echo's identifier in the port fields)."""
    from tests.realvpp.traffic import Captures, Probe, run

    pod = lab.sw_if_index["pod"]
    src, dst = ipaddress.ip_address(lab.addr["pod"]), ipaddress.ip_address(lab.addr["peer"])

    def sent(*types: int) -> list[bool]:
        npol.cli("cnat purge")
        captures = Captures(list(lab.ns.values()))
        try:
            probes = [Probe(Packet(1, src, dst, icmp_type=t), lab.ns["pod"], lab.ns["peer"]) for t in types]
            return [o.arrived for o in run(probes, captures)]
        finally:
            captures.close()

    npol.configure(pod, rx=[npol.policy(rx=[npol.rule(nm.DENY)])])
    deny_all = sent(8, 13)
    type8 = npol.rule(nm.ALLOW, [Filter(F_L4_PROTO, 1), Filter(F_ICMP_TYPE, 8)])
    npol.configure(pod, rx=[npol.policy(rx=[type8])], policy_default_rx=nm.DEFAULT_DENY)
    allow8 = sent(8)
    proto_only = npol.rule(nm.ALLOW, [Filter(F_L4_PROTO, 1)])
    npol.configure(pod, rx=[npol.policy(rx=[proto_only])], policy_default_rx=nm.DEFAULT_DENY)
    allow_icmp = sent(8)
    matcher = npol.match(pod, True, Packet(1, src, dst, icmp_type=8))
    npol.configure(pod)
    return Fact("hook-icmp", "on cnat's path npol judges ICMP echo only: other non-error ICMP (timestamp 13) "
                "gets no cnat session and passes unjudged, even with deny-all; and an echo's ICMP type "
                "filter does not see type 8 (cnat's 5-tuple carries the echo identifier where the type "
                "would be), so `allow icmp type 8` drops pings that `npol match` allows",
                deny_all == [False, True] and allow8 == [False] and allow_icmp == [True] and matcher == "ALLOW",
                f"rx deny-all: echo {deny_all[0]}, timestamp {deny_all[1]}; rx [allow icmp type 8], default "
                f"deny: echo {allow8[0]} (npol match says {matcher}); rx [allow icmp]: echo {allow_icmp[0]}")


def _udp_exchange(lab: PacketLab, client: str, server: str, port: int) -> tuple[bool, bool]:
    """A UDP flow client:port -> server:port and the server's answer back on the same 5-tuple."""
    srv = call_in_netns(lab.ns[server], lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    cli = call_in_netns(lab.ns[client], lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    try:
        call_in_netns(lab.ns[server], lambda: srv.bind((lab.addr[server], port)))
        call_in_netns(lab.ns[client], lambda: cli.bind((lab.addr[client], port)))
        srv.settimeout(UDP_WAIT)
        cli.settimeout(UDP_WAIT)
        cli.sendto(b"ping", (lab.addr[server], port))
        try:
            srv.recv(100)
        except TimeoutError:
            return False, False
        srv.sendto(b"pong", (lab.addr[client], port))
        try:
            return True, cli.recv(100) == b"pong"
        except TimeoutError:
            return True, False
    finally:
        srv.close()
        cli.close()


def _runtime_clocks(text: str, node: str) -> float | None:
    """Clocks per packet of `node` in `show runtime` (Name State Calls Vectors Suspends Clocks ...)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == node and len(fields) >= 6:
            return float(fields[5])
    return None


def _pg0(npol: Npol) -> int:
    """The packet generator's interface pg0, addressed, with cnat's feature (made once per VPP: a
    second `create packet-generator interface pg0` makes another interface)."""
    found = [d for d in npol.client.api.sw_interface_dump(name_filter_valid=True, name_filter="pg0")
             if d.interface_name == "pg0"]
    if found:
        return int(found[0].sw_if_index)
    npol.cli("create packet-generator interface pg0")
    npol.cli("set interface ip address pg0 10.9.0.1/24")
    npol.cli("set interface state pg0 up")
    npol.cli("set cnat feature pg0 enable")
    [details] = [d for d in npol.client.api.sw_interface_dump(name_filter_valid=True, name_filter="pg0")
                 if d.interface_name == "pg0"]
    return int(details.sw_if_index)


def hook_cost(npol: Npol, packets: int) -> dict[str, Any]:
    """Clocks per packet in cnat-input-ip4 (where master runs npol, for new flows) with VPP's packet
    generator: cnat alone, npol with one rule, npol with bench/compile.py's 25-policy endpoint;
    `packets` distinct flows (source addresses 10.200.0.0 up), and one denied flow repeated."""
    from bench import compile as compile_bench

    pg0 = _pg0(npol)
    args = argparse.Namespace(policies=500, rules=10, sets=100, members=100, endpoints=2, per_endpoint=25, seed=1)
    state, keys = compile_bench.build(args)
    cat = Catalog(state)
    endpoint = nm.map_endpoint(cat, keys[0])
    last = 200 + packets // 65536
    streams = {"many flows": f"UDP: 10.200.0.0 - 10.{last}.255.255 -> 10.9.0.2 UDP: 1234 -> 80 incrementing 30",
               "one flow": "UDP: 10.200.0.1 -> 10.9.0.2 UDP: 1234 -> 80 incrementing 30"}
    out: dict[str, Any] = {}
    count = 0
    for scenario in ("cnat only", "npol one allow rule", "npol 25-policy endpoint"):
        npol.configure(pg0)  # back to "configured, nothing in it" (allow); then the scenario
        done = None
        if scenario == "npol one allow rule":
            npol.configure(pg0, rx=[npol.policy(rx=[npol.rule(nm.ALLOW)])])
        elif scenario == "npol 25-policy endpoint":
            done = program(npol, pg0, cat, endpoint)  # its egress (rx) rules judge pg0's input
        for label, data in streams.items():
            if scenario == "cnat only" and label == "one flow":
                continue
            npol.cli("cnat purge")
            name = f"s{count}"
            count += 1
            limit = packets if label == "many flows" else min(packets, 20000)
            npol.cli(f"packet-generator new {{ name {name} limit {limit} size 64-64 interface pg0 node ip4-input "
                     f"data {{ {data} }} }}")
            npol.cli("clear runtime")
            npol.cli(f"packet-generator enable-stream {name}")
            deadline = time.monotonic() + 300
            while "Yes" in npol.cli("show packet-generator") and time.monotonic() < deadline:
                time.sleep(0.2)
            runtime = npol.cli("show runtime")
            npol.cli(f"packet-generator delete {name}")
            out[f"{scenario}, {label}: cnat-input-ip4 clocks/packet"] = _runtime_clocks(runtime, "cnat-input-ip4")
        if scenario == "npol 25-policy endpoint":
            probe = pkt("udp 10.200.0.1:1234 > 10.9.0.2:80")
            out["25-policy endpoint verdict for the stream's packets"] = npol.match(pg0, True, probe)
        if done is not None:
            unprogram(npol, pg0, done)
    return out


def _flow_counters(npol: Npol) -> dict[str, int]:
    """master's npol flow decision counters (/net/npol/{rx,tx}/flows/{allow,deny}), all interfaces."""
    text = subprocess.run(["vpp_get_stats", "socket-name", str(npol.dir / "stats.sock"), "dump", "/net/npol/"],
                          capture_output=True, text=True, timeout=30, check=True).stdout
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        fields = line.split()
        # "[1 @ 0]: 146865 packets /net/npol/rx/flows/allow" (interface 1, thread 0)
        if len(fields) >= 3 and fields[-1].startswith("/net/npol/") and fields[-2] == "packets":
            totals[fields[-1]] += int(fields[-3])
    return dict(totals)


def _two_messages(npol: Npol, pol: int, item: list[dict[str, Any]]) -> None:
    npol.ok("npol_policy_update", policy_id=pol, num_items=0, rules=[])
    npol.ok("npol_policy_update", policy_id=pol, num_items=1, rules=item)


def hook_update_window(npol: Npol, seconds: float = 8.0, rate: int = 20000) -> list[Fact]:
    """New flows from the packet generator (distinct sources, `rate` per second) into pg0, whose rx
    policy allows them all (default deny), while the API rewrites that policy: every denied flow is
    a moment a packet saw a half-made state. Single in-place messages, then a two-message change
    (list emptied, then refilled) as the control that shows such a moment is seen."""
    pg0 = _pg0(npol)
    allow = npol.rule(nm.ALLOW)
    pol = npol.policy(rx=[allow])
    npol.configure(pg0, rx=[pol], policy_default_rx=nm.DEFAULT_DENY)
    item = [{"is_inbound": True, "rule_id": allow}]
    cases: dict[str, Callable[[int], None]] = {
        "rule_update in place (allow-all, alternating equivalent forms)": lambda i: npol.ok(
            "npol_rule_update", rule_id=allow, rule=rule_wire(nm.ALLOW, [], [_cidr("0.0.0.0/0")] if i % 2 else [])),
        "policy_update in place (same list)": lambda i: npol.ok(
            "npol_policy_update", policy_id=pol, num_items=1, rules=item),
        "configure_policies again (same config)": lambda i: npol.configure(
            pg0, rx=[pol], policy_default_rx=nm.DEFAULT_DENY),
        "control: policy emptied, then refilled (two messages)": lambda i: _two_messages(npol, pol, item),
    }
    facts = []
    for index, (label, change) in enumerate(cases.items()):
        npol.cli("cnat purge")
        before = _flow_counters(npol)
        name = f"w{index}"
        npol.cli(f"packet-generator new {{ name {name} limit {int(rate * seconds)} rate {rate} size 64-64 "
                 f"interface pg0 node ip4-input data {{ UDP: 10.100.0.0 - 10.127.255.255 -> 10.9.0.2 "
                 f"UDP: 1234 -> 80 incrementing 30 }} }}")
        npol.cli(f"packet-generator enable-stream {name}")
        changes = 0
        while "Yes" in npol.cli("show packet-generator"):
            change(changes)
            changes += 1
        npol.cli(f"packet-generator delete {name}")
        after = _flow_counters(npol)
        allowed = after.get("/net/npol/rx/flows/allow", 0) - before.get("/net/npol/rx/flows/allow", 0)
        denied = after.get("/net/npol/rx/flows/deny", 0) - before.get("/net/npol/rx/flows/deny", 0)
        control = label.startswith("control")
        facts.append(Fact(f"window: {label}", "a change made by one message is atomic for packets: no new flow is "
                          "denied while it is repeated" if not control else
                          "a change made of two messages opens a window that new flows fall into",
                          (denied > 0) if control else (denied == 0 and allowed > 0),
                          f"{changes} changes while {allowed} new flows were allowed and {denied} denied"))
    return facts


def _generator_routes(npol: Npol, lab: PacketLab) -> None:
    """The generator's universe on the lab: the pod owns 10.65.0.2 and fd65::2 (its endpoint's
    addresses), the peer every other address a probe uses (added per case); VPP routes them."""
    pod, peer = lab.ns["pod"], lab.ns["peer"]
    for i, ns in enumerate((pod, peer)):
        _sh("ip", "-n", ns, "addr", "add", f"fd66:{i}::2/64", "dev", "eth0", "nodad")
        _sh("ip", "-n", ns, "-6", "route", "add", "default", "via", f"fd66:{i}::1")
        npol.cli(f"set interface ip address host-{ns} fd66:{i}::1/64")
    _sh("ip", "-n", pod, "addr", "add", "10.65.0.2/32", "dev", "eth0")
    _sh("ip", "-n", pod, "addr", "add", "fd65::2/128", "dev", "eth0", "nodad")
    npol.cli(f"ip route add 10.65.0.2/32 via 10.66.0.2 host-{pod}")
    npol.cli(f"ip route add fd65::2/128 via fd66:0::2 host-{pod}")
    npol.cli(f"ip route add 10.64.0.0/10 via 10.66.1.2 host-{peer}")
    npol.cli(f"ip route add fd64::/15 via fd66:1::2 host-{peer}")


def _known_gap(pkt: Packet) -> str:
    """Which known gap of cnat's path explains a disagreement (hook-icmp), else "unexplained"."""
    if pkt.is_icmp:
        echo = (8, 0) if pkt.family == 4 else (128, 129)
        return "icmp-echo-type-filter" if pkt.icmp_type in echo else "icmp-not-judged"
    return "unexplained"


def hook_differential(npol: Npol, cases: int, seed: int, packets: int = 10) -> dict[str, Any]:
    """The differential check with real packets on master's packet path: each random case mapped and
    programmed on the pod's interface (cnat feature on), its NEW first packets sent for real between
    the pod and the peer (tests/realvpp/traffic.py), arrival compared with the reference evaluator.
    Disagreements a known gap of the path explains (`_known_gap`) are listed under "gaps"."""
    from tests.realvpp.traffic import Captures, Probe, run
    from vppagent.policy.generate import random_case, random_packets

    rng = random.Random(seed)
    lab = PacketLab(npol)
    figures: Counter[str] = Counter()
    disagreements: list[str] = []
    gaps: list[str] = []
    owned: set[str] = set()
    try:
        for ns in lab.ns.values():
            npol.cli(f"set cnat feature host-{ns} enable")
        _generator_routes(npol, lab)
        pod_addresses = {"10.65.0.2", "fd65::2"}
        captures = Captures(list(lab.ns.values()))
        try:
            for index in range(cases):
                case = random_case(rng)
                cat = Catalog(case.state)
                pkts = [p for p in random_packets(rng, case, packets * 3, new_only=True)
                        if p.proto in (1, 6, 17, 58) and p.src != p.dst
                        and not (p.has_ports and 0 in (p.src_port, p.dst_port))]
                pkts = list({(p.proto, p.src, p.dst, p.src_port, p.dst_port, p.icmp_type): p
                             for p in pkts}.values())[:packets]
                others = {str(a) for p in pkts for a in (p.src, p.dst)} - pod_addresses - owned
                batch = "".join(f"addr replace {a}/{32 if ':' not in a else 128} dev eth0"
                                f"{' nodad' if ':' in a else ''}\n" for a in sorted(others))
                if batch:
                    subprocess.run(["ip", "-n", lab.ns["peer"], "-batch", "-"], input=batch, text=True,
                                   capture_output=True, timeout=30, check=True)
                    owned |= others
                try:
                    done = program(npol, lab.sw_if_index["pod"], cat, nm.map_endpoint(cat, case.endpoint))
                except nm.MappingGap as exc:
                    figures["mapping_gaps"] += 1
                    gaps.append(f"seed {seed} case {index}: mapping gap (not programmed): {exc}")
                    continue
                npol.cli("cnat purge")
                probes = [Probe(p, lab.ns["pod"] if str(p.src) in pod_addresses else lab.ns["peer"],
                                lab.ns["pod"] if str(p.dst) in pod_addresses else lab.ns["peer"]) for p in pkts]
                outcomes = run(probes, captures)
                for o in outcomes:
                    want = verdict(cat, case.endpoint, case.direction, o.probe.packet)
                    figures["packets"] += 1
                    figures[f"evaluator_{want.action}"] += 1
                    figures["ipv6_packets"] += o.probe.packet.family == 6
                    figures["arrived"] += o.arrived
                    if o.arrived != want.allowed:
                        kind = _known_gap(o.probe.packet)
                        figures[f"disagree_{kind}"] += 1
                        (disagreements if kind == "unexplained" else gaps).append(
                            f"seed {seed} case {index} {case.direction} {o.probe.packet}: "
                            f"{'arrived' if o.arrived else 'dropped'}, evaluator {want.describe()} [{kind}]")
                figures["cases"] += 1
                unprogram(npol, lab.sw_if_index["pod"], done)
        finally:
            captures.close()
    finally:
        lab.cleanup()
    return {"figures": dict(figures), "disagreements": disagreements, "gaps": gaps}


if __name__ == "__main__":
    sys.exit(main())
