"""Probe VPP's npol plugin (VPP 26.06) on a real VPP: facts, a differential check, figures.

    sudo .venv/bin/python bench/npol_probe.py facts        # each fact with the probe that shows it
    sudo .venv/bin/python bench/npol_probe.py diff [-n 200] [--seed 1]
    sudo .venv/bin/python bench/npol_probe.py figures [--per-endpoint 25]
    sudo .venv/bin/python bench/npol_probe.py packets      # real packets through npol-configured pods

Research code outside the package (docs/npol.md says what was found). It talks to VPP with
vpp_papi directly. VPP 26.06's npol has **no packet path**: nothing in the release calls its
match function but the `npol match` CLI (the ACL-plugin hook Calico VPP used is not upstream, and
the cnat slow-path hook came after 26.06). `packets` shows that with real packets; the semantic
facts and the differential check therefore ask VPP's own matcher through `npol match`, which is
the function a packet path would call.

Over 400 lines on purpose: the client, the probes and the three reports share one VPP and one
encoding of the mapping's objects, and read best side by side.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp_papi import VPPApiClient

from bench import npol_mapping as nm
from vppagent.policy.catalog import Catalog
from vppagent.policy.evaluate import verdict
from vppagent.policy.packet import Packet
from vppagent.state.ipset import IPSetType
from vppagent.vpprun import VppProcess

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
            start, end = self.value  # type: ignore[misc]
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

    def __init__(self, name: str | None = None) -> None:
        self.dir = Path("/run/vpp") / (name or f"npol-probe-{os.getpid()}")
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        self.vpp = VppProcess(self.dir, heap="1G")
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
        wire = []
        for m in members:
            if type_ is IPSetType.IP_AND_PORT:
                addr, proto, port = m  # type: ignore[misc]
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
    """Sets, then rules, then policies, then the interface (rx = egress, tx = ingress)."""
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

def differential(npol: Npol, cases: int, seed: int, packets: int = 12) -> dict[str, Any]:
    """Random cases of vppagent.policy.generate, mapped and programmed on VPP, each packet asked of
    VPP's matcher and of the reference evaluator."""
    from vppagent.policy.generate import random_case, random_packets

    rng = random.Random(seed)
    sw_if_index = npol.loopback()
    figures: Counter[str] = Counter()
    disagreements: list[str] = []
    for index in range(cases):
        case = random_case(rng)
        pkts = random_packets(rng, case, packets)
        cat = Catalog(case.state)
        try:
            ep = nm.map_endpoint(cat, case.endpoint)
        except nm.MappingGap as exc:
            figures["mapping_gaps"] += 1
            disagreements.append(f"case {index}: mapping gap: {exc}")
            continue
        try:
            done = program(npol, sw_if_index, cat, ep)
        except nm.MappingGap as exc:
            figures["encoding_gaps"] += 1
            disagreements.append(f"case {index}: encoding gap: {exc}")
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
    return {"figures": dict(figures), "disagreements": disagreements}
