"""Per-packet cost of the compiled lists in a real VPP: the ACL nodes (`acl-plugin-out-ip4-fa` for
a pod's ingress list, `acl-plugin-in-ip4-fa` for its egress list) and the classifier gate
(`ip4-outacl`), for lists of the P1 state, beside no ACL and a one-rule ACL, in one run.

    python bench/vpp_packet.py [--flows 10000] [--packets 500000] [--rounds 7]
                               [--policies 500 --endpoints 2000 --ipsets 200 --big-set 10000]

One private VPP (vppagent.vpprun, main thread only; skipped with the reason without vpp or root).
Every interface is a packet-generator (pg) interface; pg0 is the uplink. The lists are the
driver's: pods of the P1 state (bench/vpp_converge.py's `build_state`) are pg interfaces tagged as
the driver tags pods, and `VppDriver.resync` programs them (ACLs, classifier chain, routes) - the
smallest, median and largest ingress list as the driver writes it, and the endpoint whose ingress is
gated (a 10,000-member set in the classifier). Beside them: the gated endpoint's list with the set
in the ACL (classifier off), "no ACL", and one-rule ACLs (permit+reflect any; deny any), each on a
pg interface of its own. All 64-byte TCP SYNs, from pg streams whose source address (20 of them)
and source port (a window of P ports, P coprime to 20) increment together, so one pass is 20 x P
distinct flows (>= --flows):

- deny: a flow the list denies (from 172.16.0.x, outside every set): every packet is a lookup
  that no hash entry answers; --packets packets cycle over the flows. Compared with the one-rule
  "deny any".
- deny-member: from the same set members the list admits on tcp/443, to tcp/8080, which no rule
  allows: before acl/tuplemerge.py steered the lists, the lookup found their entries (keyed by
  the source's /26, no port) and compared the rules colliding there one by one.
- deny-neighbour: from addresses next to those members (the same /24, in no set the list admits
  on tcp/443), to tcp/443: steered, the entry keyed by the port is met and its rules compared;
  unsteered, the entry of their /26, which holds the members' rules too.
- deny-stranger: from pods in no /26 that any host rule of the list comes from, to tcp/443: what
  the steering made dearer (unsteered, only coarse mask types meet them; steered, the port's entry).
- new: allowed flows never seen (a fresh port window each time): every packet is a lookup that
  creates a reflect session. Compared with the one-rule "permit+reflect any".
- established: the same flows again: the session table answers (the classifier has no sessions).

The pod's ingress list is its interface's output ACL (traffic from pg0 to the pod's address); its
egress list is the input ACL (traffic entering on the pod's interface to 203.0.113.x).
`--unsteered` adds, for the smallest, median and largest list, the same list as the compiler
orders it (no seed: acl/tuplemerge.py not applied) on an interface of its own: the before and the
after in one run (ungated lists only: a gated list's L_U is exact only with its chain). The
evaluator (vppagent.policy.evaluate) confirms each stream's verdict before it is sent, and each
run checks what VPP did with it (packets delivered, sessions made; a gated list's denied streams
may leave one reflect session per flow, as its L_U admits what the chain drops). Rounds rotate the order;
figures are medians over rounds with the spread (min-max). Clocks per packet per node come from
`show runtime`; "path" is every node but the generator's own (pg-input); packets per second are
the core's rate over that path (clock rate / path clocks) and the wall rate of the stream. Speed is
printed, never asserted. One file holds the whole run (setup, streams, report) because each part
only makes sense with the others; bench/vpp_tables.py is the part bench/vpp_converge.py shares.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vpp_papi import VPPApiClient

from bench import vpp_tables
from bench.vpp_converge import NoPlumbing, build_state
from vppagent.drivers.vpp.acl.lists import ListCompiler
from vppagent.drivers.vpp.acl.render import allow_any, rule_from_flat
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.types import DENY, PERMIT_REFLECT, AclContent, AclRule
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import DEFAULT_RULE_LIMIT, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.model import Direction, WorkloadEndpoint
from vppagent.policy.packet import Packet
from vppagent.policy.reach import restrict
from vppagent.state.model import DataplaneState, WorkloadKey
from vppagent.vpprun import VppProcess, vpp_problem

SOURCES = 20  # source addresses per stream; the port window is coprime to it
UPLINK_NET, UPLINK_PEER = "192.0.2.1/24", "192.0.2.2"
EGRESS_DST = "203.0.113.1"  # egress flows go to 203.0.113.1-20 through the uplink
DENIED_SRC = "172.16.0.1"
ALLOWED_PORT, EGRESS_DENIED_PORT, MEMBER_DENIED_PORT = 443, 25, 8080
ANY4 = ipaddress.ip_network("0.0.0.0/0")
CLASSIFIER_NODES = ("ip4-outacl", "ip4-inacl")
CLASSES = ("deny", "deny-member", "deny-neighbour", "deny-stranger", "new", "established")
OUT_CLASSES = CLASSES  # a pod's ingress list
IN_CLASSES = ("deny", "new", "established")  # its egress list: all its flows come from its one address
UNSTEERED = ("P1 smallest ingress", "P1 median ingress", "P1 largest ingress")


@dataclass
class Variant:
    """One interface under test and what its list should do with each traffic class."""

    name: str
    pg: str
    address: str  # the pod's address: traffic to it (output), from it (input)
    direction: str  # "out" (the pod's ingress list) or "in" (its egress list)
    classes: tuple[str, ...]
    allowed_sources: list[str] = field(default_factory=list)
    key: WorkloadKey | None = None
    neighbours: list[str] = field(default_factory=list)  # refused on tcp/ALLOWED_PORT, next to them
    strangers: list[str] = field(default_factory=list)  # pods refused on it, far from every host rule
    rules: int = 0
    shapes: vpp_tables.MaskShapes | None = None


class Bench:
    def __init__(self, name: str, acl_plugin: str = "") -> None:
        """`acl_plugin`: more settings for the startup.conf's acl-plugin section (room for the
        sessions every "new" stream leaves: a clear is not served in a main-thread-only VPP)."""
        self.vpp = VppProcess(Path("/run/vpp") / name, heap="2G", stats="64M",
                              extra_config=f"acl-plugin {{ connection count max 2000000 {acl_plugin} }}\n")
        self.vpp.start()
        try:
            self.vpp.wait_ready()
            self.client = VPPApiClient(server_address=str(self.vpp.api_socket), bootstrapapi=True,
                                       read_timeout=60, async_thread=False)
            self.client.connect("bench-packet")
        except BaseException:
            self.vpp.stop(remove_dir=True)
            raise
        self.pgs = 0
        self.window = 0

    def cli(self, command: str) -> str:
        reply = self.client.api.cli_inband(cmd=command)
        text = str(reply.reply)
        if reply.retval != 0 or text.startswith(("unknown input", "parse error")):
            raise RuntimeError(f"vpp cli {command!r}: retval {reply.retval}: {text.strip()}")
        return text

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.vpp.stop(remove_dir=True)  # by pid

    def pg_interface(self, pod: bool = True) -> tuple[str, int]:
        """A pg interface, up; a pod's has IPv4 on (unnumbered to the uplink, as a pod interface is
        to the gateway loopback) so that what it sends is routed."""
        name = f"pg{self.pgs}"
        self.pgs += 1
        self.cli(f"create packet-generator interface {name}")
        index = self.client.api.sw_interface_dump(name_filter_valid=True, name_filter=name)[0].sw_if_index
        if pod:
            self.cli(f"set interface unnumbered {name} use pg0")
        self.cli(f"set interface state {name} up")
        return name, index

    def neighbour(self, pg: str, address: str) -> None:
        """The pod's MAC for its address, as CNI Add leaves it: after the route (with the neighbour
        first, `ip_route_dump` shows the neighbour's adjacency entry as if it were the route, the
        driver takes the route as present and the adjacency entry alone does not forward)."""
        index = self.client.api.sw_interface_dump(name_filter_valid=True, name_filter=pg)[0].sw_if_index
        self.cli(f"set ip neighbor {pg} {address} 02:00:00:00:{index // 256:02x}:{index % 256:02x} static")

    def runtime(self) -> dict[str, tuple[int, float]]:
        """node -> (vectors, clocks per vector) since `clear runtime`."""
        nodes = {}
        for line in self.cli("show runtime").splitlines():
            parts = line.split()
            if len(parts) >= 6 and re.fullmatch(r"\d+", parts[-4]) and parts[0] != "Name":
                vectors = int(parts[-4])
                if vectors:
                    nodes[parts[0]] = (vectors, float(parts[-2]))
        return nodes

    def sessions_added(self) -> int:
        m = re.search(r"Sessions total: add (\d+)", self.cli("show acl-plugin sessions"))
        return int(m.group(1)) if m else 0

    def clock_hz(self) -> float:
        m = re.search(r"clocks per second: ([\d.]+)", self.cli("show acl-plugin sessions"))
        return float(m.group(1)) if m else float("nan")

    def send(self, v: Variant, kind: str, ports: int, packets: int) -> dict[str, Any]:
        """One stream through `v`; its costs and what VPP did with it."""
        first_port = 1024 + (self.window if kind == "new" else 0) * ports
        if kind == "new":
            self.window += 1
        elif kind == "established":
            first_port = 1024 + (self.window - 1) * ports  # the window the last "new" run opened
        if first_port + ports - 1 > 65535:
            raise RuntimeError("no fresh source ports left for new flows: lower --rounds or --flows")
        src, dst, dport, pg = flow_ends(v, kind)
        name = f"s{self.window}{kind[0]}{v.pg}"
        last_src = ipaddress.ip_address(src) + (SOURCES - 1 if v.direction == "out" else 0)
        last_dst = ipaddress.ip_address(dst) + (SOURCES - 1 if v.direction == "in" else 0)
        self.cli(f"packet-generator new {{ name {name} limit {packets} size 64-64 interface {pg} node ip4-input "
                 f"data {{ TCP: {src} - {last_src} -> {dst} - {last_dst} "
                 f"TCP: {first_port} - {first_port + ports - 1} -> {dport} SYN incrementing 30 }} }}")
        before = self.sessions_added()
        self.cli("clear runtime")
        start = time.perf_counter()
        self.cli(f"packet-generator enable-stream {name}")
        while re.search(rf"^{name}\s+Yes", self.cli("show packet-generator"), re.M):
            time.sleep(0.002)
        wall = time.perf_counter() - start
        nodes = self.runtime()
        self.cli(f"packet-generator delete {name}")
        tx = f"{v.pg if v.direction == 'out' else 'pg0'}-tx"
        acl = "acl-plugin-out-ip4-fa" if v.direction == "out" else "acl-plugin-in-ip4-fa"
        path = sum(n * c for node, (n, c) in nodes.items() if node != "pg-input") / packets
        gate = [c for node, (_, c) in nodes.items() if node in CLASSIFIER_NODES]
        return {"variant": v.name, "class": kind, "packets": packets, "acl": nodes.get(acl, (0, 0.0))[1],
                "acl_packets": nodes.get(acl, (0, 0.0))[0], "gate": gate[0] if gate else 0.0, "path": path,
                "wall_pps": packets / wall, "delivered": nodes.get(tx, (0, 0.0))[0],
                "sessions": self.sessions_added() - before, "nodes": nodes}


def flow_ends(v: Variant, kind: str) -> tuple[str, str, int, str]:
    """(first source, first destination, destination port, pg interface the stream enters on)."""
    if v.direction == "in":
        return v.address, EGRESS_DST, EGRESS_DENIED_PORT if kind == "deny" else ALLOWED_PORT, v.pg
    if kind == "deny":
        return DENIED_SRC, v.address, ALLOWED_PORT, "pg0"
    if kind == "deny-neighbour":
        return v.neighbours[0], v.address, ALLOWED_PORT, "pg0"
    if kind == "deny-stranger":
        return v.strangers[0], v.address, ALLOWED_PORT, "pg0"
    return v.allowed_sources[0], v.address, MEMBER_DENIED_PORT if kind == "deny-member" else ALLOWED_PORT, "pg0"


def coprime_ports(flows: int) -> int:
    ports = max(1, math.ceil(flows / SOURCES))
    while math.gcd(ports, SOURCES) != 1:
        ports += 1
    return ports


def first_run(addresses: Iterable[int], fits: Callable[[int], bool]) -> list[str] | None:
    """The first SOURCES consecutive addresses among `addresses` (ascending) that all fit."""
    run: list[int] = []
    for h in addresses:
        if not fits(h):
            run = []
            continue
        run = [*run, h] if run and h == run[-1] + 1 else [h]
        if len(run) == SOURCES:
            return [str(ipaddress.ip_address(a)) for a in run]
    return None


def consecutive_run(members: list[str]) -> list[str]:
    """The longest run of consecutive addresses among `members` (at most SOURCES of them)."""
    addrs = sorted(int(ipaddress.ip_address(m)) for m in members if ipaddress.ip_address(m).version == 4)
    best: list[int] = []
    run: list[int] = []
    for a in addrs:
        run = [*run, a] if run and a == run[-1] + 1 else [a]
        if len(run) > len(best):
            best = list(run)
    return [str(ipaddress.ip_address(a)) for a in best[:SOURCES]]


def allowed_sources(state: DataplaneState, key: WorkloadKey, address: str) -> list[str]:
    """SOURCES consecutive members of an IP set the endpoint admits tcp/ALLOWED_PORT from, checked
    against the reference evaluator (each address, lowest and highest source port)."""
    for _, pb in sorted(state.ipsets.items()):
        run = consecutive_run(list(pb.members))
        if len(run) == SOURCES and all(admits(state, key, Direction.INGRESS, s, address) for s in run):
            return run
    raise RuntimeError(f"{key}: no IP set gives {SOURCES} consecutive sources it admits on tcp/{ALLOWED_PORT}")


def neighbours(state: DataplaneState, key: WorkloadKey, address: str, sources: list[str]) -> list[str]:
    """SOURCES consecutive addresses in the /24 of `sources` (the lowest run after them, else
    before), each refused on tcp/ALLOWED_PORT by the reference evaluator."""
    first, last = ipaddress.ip_address(sources[0]), ipaddress.ip_address(sources[-1])
    hosts = [int(h) for h in ipaddress.ip_network(f"{first}/24", strict=False).hosts()]
    for candidates in ([h for h in hosts if h > int(last)], [h for h in hosts if h < int(first)]):
        run = first_run(candidates, lambda h: refuses(state, key, Direction.INGRESS, str(ipaddress.ip_address(h)),
                                                      address))
        if run is not None:
            return run
    raise RuntimeError(f"{key}: no {SOURCES} consecutive addresses next to {first} refused on tcp/{ALLOWED_PORT}")


def strangers(state: DataplaneState, key: WorkloadKey, address: str, content: AclContent) -> list[str]:
    """SOURCES consecutive pod addresses refused on tcp/ALLOWED_PORT (reference evaluator), none in
    a /26 that a rule of `content` with a source of /26 or longer comes from."""
    near = {r.src.supernet(new_prefix=26) if r.src.prefixlen > 26 else r.src
            for r in content.rules if r.src.version == 4 and r.src.prefixlen >= 26}
    pods = sorted({int(n.network_address) for k, pb in state.workload_endpoints.items()
                   for n in WorkloadEndpoint.from_proto(k, pb).ipv4_nets})

    def fits(h: int) -> bool:
        addr = ipaddress.ip_address(h)
        return ipaddress.ip_network(f"{addr}/26", strict=False) not in near and refuses(
            state, key, Direction.INGRESS, str(addr), address)

    run = first_run(pods, fits)
    if run is None:
        raise RuntimeError(f"{key}: no {SOURCES} consecutive pods refused on tcp/{ALLOWED_PORT} away from its rules")
    return run


def admits(state: DataplaneState, key: WorkloadKey, direction: Direction, src: str, dst: str,
           port: int = ALLOWED_PORT) -> bool:
    return judged("allow", state, key, direction, src, dst, port)


def refuses(state: DataplaneState, key: WorkloadKey, direction: Direction, src: str, dst: str,
            port: int = ALLOWED_PORT) -> bool:
    return judged("deny", state, key, direction, src, dst, port)


def judged(action: str, state: DataplaneState, key: WorkloadKey, direction: Direction, src: str, dst: str,
           port: int) -> bool:
    """The reference evaluator gives `action` to TCP from `src` to `dst`:`port`, at the lowest and
    the highest source port."""
    return all(verdict(state, key, direction, Packet(6, ipaddress.ip_address(src), ipaddress.ip_address(dst),
                                                     sport, port)).action == action for sport in (1024, 65535))


def pick_endpoints(state: DataplaneState, min_members: int) -> dict[str, tuple[WorkloadKey, int]]:
    """The smallest, median and largest ingress list as the driver writes it, and a gated one."""
    compiler = ListCompiler(DEFAULT_RULE_LIMIT, min_members)
    catalog = Catalog(state)
    lists: dict[Any, tuple[int, WorkloadKey, bool]] = {}
    for key, pb in state.workload_endpoints.items():
        known = compiler.endpoint(key, pb)
        spec = known.specs[Direction.INGRESS]
        if spec not in lists:
            content, gate = compiler.program(catalog, known.ep, Direction.INGRESS, spec)
            lists[spec] = (len(content), key, gate is not None)
    # ranked among the ungated lists (all lists when every one is gated, e.g. a low --classifier-min-members)
    ranked = (sorted((n, str(k), k) for n, k, gated in lists.values() if not gated)
              or sorted((n, str(k), k) for n, k, _ in lists.values()))
    picks = {"smallest": ranked[0], "median": ranked[len(ranked) // 2], "largest": ranked[-1]}
    out = {f"P1 {what} ingress": (k, n) for what, (n, _, k) in picks.items()}
    gated = sorted((str(k), k, n) for n, k, g in lists.values() if g)
    if gated:
        out["P1 gated ingress"] = (gated[0][1], gated[0][2])
    return out


def setup(bench: Bench, state: DataplaneState, min_members: int, unsteered: bool = False) -> list[Variant]:
    bench.pg_interface(pod=False)  # pg0, the uplink
    bench.cli(f"set interface ip address pg0 {UPLINK_NET}")
    bench.cli(f"set ip neighbor pg0 {UPLINK_PEER} 02:00:00:00:00:02 static")
    variants: list[Variant] = []
    api = bench.client.api
    for name, (key, _) in pick_endpoints(state, min_members).items():
        ep = WorkloadEndpoint.from_proto(key, state.workload_endpoints[key])
        address = str(ep.ipv4_nets[0].network_address)
        pg, index = bench.pg_interface()
        api.sw_interface_tag_add_del(is_add=True, sw_if_index=index, tag=workload_tag(key))
        allowed = allowed_sources(state, key, address)
        content = ListCompiler(DEFAULT_RULE_LIMIT, min_members).workload(Catalog(state), ep, Direction.INGRESS)
        variants.append(Variant(name, pg, address, "out", OUT_CLASSES, allowed, key,
                                neighbours(state, key, address, allowed), strangers(state, key, address, content)))
    egress_key = variants[1].key  # the median pod's egress list (all pods here share one)
    assert egress_key is not None
    variants.append(Variant("P1 egress", variants[1].pg, variants[1].address, "in", IN_CLASSES, key=egress_key))
    for v in variants:  # what each stream will carry, by the reference evaluator
        assert v.key is not None
        if v.direction == "out":
            denied = [str(ipaddress.ip_address(DENIED_SRC) + i) for i in range(SOURCES)]
            bad = [s for s in denied if not refuses(state, v.key, Direction.INGRESS, s, v.address)]
            bad += [s for s in v.allowed_sources
                    if not refuses(state, v.key, Direction.INGRESS, s, v.address, MEMBER_DENIED_PORT)]
        else:
            dsts = [str(ipaddress.ip_address(EGRESS_DST) + i) for i in range(SOURCES)]
            bad = [d for d in dsts if not admits(state, v.key, Direction.EGRESS, v.address, d)
                   or not refuses(state, v.key, Direction.EGRESS, v.address, d, EGRESS_DENIED_PORT)]
        if bad:
            raise RuntimeError(f"{v.name}: the evaluator does not give the expected verdicts for {bad[:3]}")
    conn = VppConnection(bench.vpp.api_socket, request_timeout=120)
    conn.connect()
    driver = VppDriver(conn, classifier_min_members=min_members, plumbing=NoPlumbing())
    report = driver.resync(state)
    if not report.ok or report.failed:
        raise RuntimeError(f"the driver could not program the pods: {report}")
    for v in variants:
        if v.direction == "out":
            bench.neighbour(v.pg, v.address)
    calls = VppCalls(conn)
    gated = next((v for v in variants if v.name == "P1 gated ingress"), None)
    if gated is not None and gated.key is not None:  # the same list with its set in the ACL
        ep = WorkloadEndpoint.from_proto(gated.key, state.workload_endpoints[gated.key])
        content = ListCompiler(DEFAULT_RULE_LIMIT, 0).workload(Catalog(state), ep, Direction.INGRESS)
        pg = bound(bench, calls, "10.250.0.4", content, ("out",))
        variants.append(Variant("P1 gated, set in the ACL", pg, "10.250.0.4", "out", OUT_CLASSES,
                                gated.allowed_sources, neighbours=gated.neighbours, strangers=gated.strangers))
    if unsteered:  # the compiler's order, no seed: what the ACL plugin got before acl/tuplemerge.py
        for i, v in enumerate([v for v in variants if v.name in UNSTEERED]):
            assert v.key is not None
            ep = WorkloadEndpoint.from_proto(v.key, state.workload_endpoints[v.key])
            if ListCompiler(DEFAULT_RULE_LIMIT, min_members).program(Catalog(state), ep, Direction.INGRESS)[1]:
                continue  # gated: its L_U is exact only with its chain, which this interface lacks
            exact = restrict(compile_endpoint(Catalog(state), ep, Direction.INGRESS, rule_limit=DEFAULT_RULE_LIMIT),
                             ep, Direction.INGRESS)
            content = AclContent.of([rule_from_flat(r) for r in exact.rules] +
                                    (list(allow_any()) if exact.default_action == "allow" else []))
            address = f"10.250.0.{11 + i}"
            pg = bound(bench, calls, address, content, ("out",))
            variants.append(Variant(f"{v.name}, unsteered", pg, address, "out", OUT_CLASSES, v.allowed_sources,
                                    neighbours=v.neighbours, strangers=v.strangers))
    sources, near, far = variants[1].allowed_sources, variants[1].neighbours, variants[1].strangers
    baselines = [("no ACL", "10.250.0.1", None, CLASSES),
                 ("1 rule, permit+reflect any", "10.250.0.2", PERMIT_REFLECT, ("new", "established")),
                 ("1 rule, deny any", "10.250.0.3", DENY, ("deny", "deny-member", "deny-neighbour", "deny-stranger"))]
    for name, address, action, classes in baselines:
        one = None if action is None else AclContent.of([AclRule(action, ANY4, ANY4, 0, (0, 65535), (0, 65535))])
        pg = bound(bench, calls, address, one, ("in", "out"))
        variants += [Variant(name, pg, address, d, tuple(k for k in classes if d == "out" or k in IN_CLASSES),
                             sources, neighbours=near, strangers=far) for d in ("out", "in")]
    bench.cli(f"ip route add {EGRESS_DST}/24 via {UPLINK_PEER} pg0")
    describe(bench, variants)
    driver.close()
    return variants


def bound(bench: Bench, calls: VppCalls, address: str, acl: AclContent | None, directions: tuple[str, ...]) -> str:
    """An interface of ours (not a pod), `acl` bound in `directions`, `address` routed through it."""
    pg, index = bench.pg_interface()
    bench.cli(f"ip route add {address}/32 via {address} {pg}")
    bench.neighbour(pg, address)
    if acl is not None:
        acl_index = calls.acl_add_replace(NO_INDEX, f"bench:{address}", acl)
        calls.set_acl_list(index, acl_index if "in" in directions else None,
                           acl_index if "out" in directions else None)
    return pg


def describe(bench: Bench, variants: list[Variant]) -> None:
    """Rules and TupleMerge mask shapes of each variant's list, from VPP."""
    index_of = {d.interface_name: d.sw_if_index for d in bench.client.api.sw_interface_dump()}
    acls = {a.acl_index: a.count for a in bench.client.api.acl_dump(acl_index=NO_INDEX)}
    contexts = {(lc.sw_if_index, lc.is_input): lc for lc in vpp_tables.lookup_contexts(bench.cli)}
    for v in variants:
        lc = contexts.get((index_of[v.pg], v.direction == "in"))
        if lc is not None:
            v.rules = sum(acls.get(a, 0) for a in lc.acls)
            v.shapes = vpp_tables.mask_shapes(bench.cli, lc.lc_index)


def run(flows: int, packets: int, rounds: int, policies: int, endpoints: int, ipsets: int, big_set: int,
        min_members: int = 500, acl_plugin: str = "", unsteered: bool = False) -> dict[str, Any]:
    """Set up one VPP, send every variant's streams `rounds` times; rows and the setup's figures."""
    state = build_state(policies, endpoints, ipsets, big_set)
    bench = Bench(f"vpa-pkt-{os.getpid()}", acl_plugin)
    try:
        variants = setup(bench, state, min_members, unsteered)
        ports = coprime_ports(flows)
        rows: list[dict[str, Any]] = []
        for r in range(rounds):
            for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                for kind in v.classes:
                    rows.append(bench.send(v, kind, ports, SOURCES * ports if kind == "new" else packets))
                    rows[-1].update(direction=v.direction, round=r)
        return {"variants": variants, "rows": rows, "flows": SOURCES * ports, "hz": bench.clock_hz(),
                "mask_types_total": vpp_tables.global_mask_types(bench.cli),
                "version": bench.cli("show version").split()[1]}
    finally:
        bench.stop()


def expected(v: Variant, kind: str, packets: int, flows: int) -> tuple[int, int]:
    """(packets delivered, sessions made) the list's verdict means for a stream of `kind`."""
    has_acl = v.name != "no ACL"
    delivered = 0 if kind.startswith("deny") and has_acl else packets
    return delivered, flows if kind == "new" and has_acl else 0


def summarize(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Per (direction, variant, class): medians and spreads over rounds; ratios to the one-rule ACL
    of the same verdict and to no ACL, per round (median, spread) and of the minimums over rounds."""
    rows = result["rows"]
    by = {(r["direction"], r["variant"], r["class"], r["round"]): r for r in rows}
    baseline = {"deny": "1 rule, deny any", "deny-member": "1 rule, deny any", "deny-neighbour": "1 rule, deny any",
                "deny-stranger": "1 rule, deny any", "new": "1 rule, permit+reflect any",
                "established": "1 rule, permit+reflect any"}
    out = []
    for v in result["variants"]:
        for kind in v.classes:
            mine = [r for r in rows if (r["direction"], r["variant"], r["class"]) == (v.direction, v.name, kind)]
            problems = set()
            for r in mine:
                want = expected(v, kind, r["packets"], result["flows"])
                # a gated list's L_U admits what its chain then drops: the ACL leaves a reflect
                # session per denied flow (docs/vpp-driver.md, "Open: reflect sessions of dropped flows")
                left = kind.startswith("deny") and r["gate"] > 0 and r["sessions"] == result["flows"]
                if (r["delivered"], r["sessions"]) != want and not (left and r["delivered"] == want[0]):
                    problems.add(f"delivered {r['delivered']} sessions {r['sessions']}, expected {want[0]} / {want[1]}")
                if v.name != "no ACL" and r["acl_packets"] != r["packets"]:
                    problems.add(f"ACL node saw {r['acl_packets']} of {r['packets']} packets")
            entry: dict[str, Any] = {"direction": v.direction, "variant": v.name, "class": kind, "rules": v.rules,
                                     "shapes": v.shapes, "runs": len(mine), "problems": sorted(problems)}
            for metric in ("acl", "gate", "path", "wall_pps"):
                entry[metric] = spread([r[metric] for r in mine])
            for base_name, metric, label in ((baseline[kind], "acl", "acl_vs_1rule"),
                                             (baseline[kind], "path", "path_vs_1rule"),
                                             ("no ACL", "path", "path_vs_none")):
                ratios = [r[metric] / b[metric] for r in mine
                          if (b := by.get((v.direction, base_name, kind, r["round"]))) and b[metric]]
                entry[label] = spread(ratios) if ratios else None
                # the least disturbed run of each: preemption only ever adds clocks
                base = [r[metric] for r in rows if (r["direction"], r["variant"], r["class"]) ==
                        (v.direction, base_name, kind) and r[metric]]
                entry[label + "_min"] = min(r[metric] for r in mine) / min(base) if base else None
            out.append(entry)
    return out


def spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)


def fmt(s: tuple[float, float, float] | None, digits: int = 0) -> str:
    if s is None:
        return "-"
    return f"{s[0]:.{digits}f} ({s[1]:.{digits}f}-{s[2]:.{digits}f})"


def print_report(result: dict[str, Any], summary: list[dict[str, Any]]) -> None:
    hz = result["hz"]
    print(f"VPP {result['version']}, main thread only, clock {hz / 1e9:.2f} GHz; {result['flows']} distinct flows "
          f"per pass; TupleMerge mask types held over all ACLs: {result['mask_types_total']}")
    print("\nLists (rules as bound; mask types, hash entries and the most rules in one entry from "
          "`show acl-plugin tables applied`):")
    print(f"{'dir':<4}{'list':<30}{'rules':>7}{'mask types':>12}{'entries':>9}{'max coll.':>11}")
    seen = set()
    for v in result["variants"]:
        if (v.direction, v.name) in seen:
            continue
        seen.add((v.direction, v.name))
        s = v.shapes
        print(f"{v.direction:<4}{v.name:<30}{v.rules:>7}{s.mask_types if s else '-':>12}"
              f"{s.entries if s else '-':>9}{s.max_collisions if s else '-':>11}")
    print("\nClocks per packet: median (min-max) over rounds. Ratios against the one-rule ACL of the same "
          "verdict and against no ACL: of the minimums over rounds | median (min-max) of the per-round ratios. "
          "Mpps core = clock rate / median path clocks (one core, generator excluded); wall = the stream's rate.")
    for kind in CLASSES:
        print(f"\n[{kind}]")
        print(f"{'dir':<4}{'list':<30}{'ACL node':>20}{'classifier':>14}{'path':>20}{'Mpps core':>10}"
              f"{'Mpps wall':>10}{'ACL node / 1 rule':>26}{'path / 1 rule':>26}{'path / no ACL':>26}")
        for e in (e for e in summary if e["class"] == kind):
            core = hz / e["path"][0] / 1e6
            print(f"{e['direction']:<4}{e['variant']:<30}{fmt(e['acl']):>20}{e['gate'][0]:>14.0f}{fmt(e['path']):>20}"
                  f"{core:>10.2f}{e['wall_pps'][0] / 1e6:>10.2f}{ratio(e, 'acl_vs_1rule'):>26}"
                  f"{ratio(e, 'path_vs_1rule'):>26}{ratio(e, 'path_vs_none'):>26}"
                  + ("   CHECK: " + "; ".join(e["problems"]) if e["problems"] else ""))


def ratio(entry: dict[str, Any], label: str) -> str:
    least = entry[label + "_min"]
    return "-" if least is None else f"{least:.2f} | {fmt(entry[label], 2)}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--flows", type=int, default=10_000, help="distinct flows per pass (at least)")
    parser.add_argument("--packets", type=int, default=500_000, help="packets per deny/established stream")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--ipsets", type=int, default=200)
    parser.add_argument("--big-set", type=int, default=10_000)
    parser.add_argument("--classifier-min-members", type=int, default=500)
    parser.add_argument("--acl-plugin", default="", metavar="SETTINGS",
                        help="VPP startup settings for the acl-plugin section, e.g. 'use tuple merge 0' or "
                             "'tuple merge split threshold 8'")
    parser.add_argument("--unsteered", action="store_true",
                        help="also the smallest, median and largest list in the compiler's order, no seed "
                             "(before acl/tuplemerge.py), each on an interface of its own")
    args = parser.parse_args(argv)
    if args.flows < SOURCES or args.packets < 1 or args.rounds < 1:
        parser.error(f"--flows must be at least {SOURCES}, --packets and --rounds at least 1")
    problem = vpp_problem()
    if problem is not None:
        print(f"skipped: {problem}")
        return
    if args.acl_plugin:
        print(f"acl-plugin settings: {args.acl_plugin}")
    print(f"P1 state: {args.policies} policies, {args.endpoints} endpoints, {args.ipsets} IP sets "
          f"(the largest {args.big_set} members); {args.rounds} rounds, {args.packets} packets per deny/established "
          "stream, 64-byte TCP SYNs")
    result = run(args.flows, args.packets, args.rounds, args.policies, args.endpoints, args.ipsets, args.big_set,
                 args.classifier_min_members, args.acl_plugin, args.unsteered)
    print_report(result, summarize(result))


if __name__ == "__main__":
    main()
