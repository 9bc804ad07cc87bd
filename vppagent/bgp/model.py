"""What BIRD needs to know, derived from Felix's state and the agent's `bgp:` config.

`build_bgp_inputs` is pure: it parses every string Felix sent (IPs, AS numbers, CIDRs) into typed
values, decides the peerings (node mesh, route reflectors, explicit peers) and drops anything it
cannot parse, recording why in `BgpInputs.problems`. The renderer only ever sees typed values plus a
few strings that were validated here or in `BgpConfig`. One module past ~400 lines on purpose: the
parsing and the peering decisions share the typed values and the one list of problems.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from enum import StrEnum

from vppagent.bgp.config import (
    AS_MAX,
    BgpConfig,
    BgpPeerConfig,
    IPAddress,
    IPNetwork,
    check_peer_address,
    parse_community,
)
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

DEFAULT_INTERFACE_PREFIX = "cali"
_INTERFACE_PREFIX_RE = re.compile(r"^[A-Za-z0-9_.:@-]+$")
_ENCAP_OFF = ("", "Never")


class BgpInputsUnavailable(ValueError):
    """This node cannot be configured yet (no hostname, or no HostMetadata with an address)."""


class PeerKind(StrEnum):
    MESH = "Mesh"  # full mesh between cluster nodes
    REFLECTOR = "Rr"  # a route reflector node this node is a client of (or a fellow reflector)
    REFLECTOR_CLIENT = "RrClient"  # a cluster node this route reflector serves
    EXPLICIT = "Peer"  # from the `bgp.peers` config


@dataclass(frozen=True, order=True)
class BgpPeer:
    """One BGP session, i.e. one `protocol bgp` in bird.conf."""

    address: IPAddress
    port: int | None
    kind: PeerKind
    as_number: int
    passive: bool = False
    password: str | None = None
    route_reflector_client: bool = False
    ttl_security: bool = False
    multihop: int | None = None
    source_address: IPAddress | None = None
    keepalive: int | None = None
    hold_time: int | None = None
    graceful_restart: bool = True
    graceful_restart_time: int | None = None
    next_hop_self: bool = False
    # Only for a comment in bird.conf; the renderer sanitises it.
    description: str = ""

    @property
    def family(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class CommunityRule:
    """Communities added to advertised routes inside `prefix`."""

    prefix: IPNetwork
    standard: tuple[tuple[int, int], ...]
    large: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True)
class Pool:
    cidr: IPNetwork
    # IPIP or VXLAN: the dataplane programs these routes, BIRD must not put them in the kernel.
    encapsulated: bool


@dataclass(frozen=True)
class Timers:
    connect_delay: int
    connect_retry: int
    error_wait: tuple[int, int]


@dataclass(frozen=True)
class BgpInputs:
    hostname: str
    router_id: ipaddress.IPv4Address
    local_as: int
    node_ipv4: ipaddress.IPv4Address | None
    node_ipv6: ipaddress.IPv6Address | None
    route_reflector: bool
    route_reflector_cluster_id: ipaddress.IPv4Address | None
    peers: tuple[BgpPeer, ...]
    # IPAM blocks affine to this node: advertised and backed by a blackhole route.
    local_blocks: tuple[IPNetwork, ...]
    # Workload addresses this node borrowed from another node's block: advertised as host routes.
    borrowed_addresses: tuple[IPNetwork, ...]
    service_cidrs: tuple[IPNetwork, ...]
    pools: tuple[Pool, ...]
    communities: tuple[CommunityRule, ...]
    # Interface name patterns (`cali*`) BIRD's direct protocol ignores.
    ignored_interfaces: tuple[str, ...]
    listen_address: IPAddress | None
    listen_port: int | None
    kernel_persist: bool
    timers: Timers
    problems: tuple[str, ...] = field(default=(), compare=True)

    def families(self) -> tuple[int, ...]:
        """IP versions this node speaks BGP for (it needs its own address of that family)."""
        return tuple(v for v, ip in ((4, self.node_ipv4), (6, self.node_ipv6)) if ip is not None)

    def node_ip(self, family: int) -> IPAddress | None:
        return self.node_ipv4 if family == 4 else self.node_ipv6


@dataclass(frozen=True)
class _Node:
    hostname: str
    ipv4: ipaddress.IPv4Address | None
    ipv6: ipaddress.IPv6Address | None
    as_number: int
    route_reflector: bool

    def ip(self, family: int) -> IPAddress | None:
        return self.ipv4 if family == 4 else self.ipv6


def parse_as_number(text: str) -> int:
    """Calico's AS number string: plain (`64512`) or asdot (`1.10` = 65546)."""
    text = text.strip()
    if re.fullmatch(r"\d{1,10}", text):
        value = int(text)
    elif re.fullmatch(r"\d{1,5}\.\d{1,5}", text):
        high, low = (int(p) for p in text.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"AS number {text!r}: asdot parts are 16-bit")
        value = high << 16 | low
    else:
        raise ValueError(f"AS number {text!r} is not a number")
    if not 1 <= value <= AS_MAX:
        raise ValueError(f"AS number {text!r} out of range")
    return value


def _parse_host_ip(text: str, version: int) -> IPAddress | None:
    """An address from HostMetadata, which may carry a prefix length (`10.0.0.1/24`)."""
    if not text:
        return None
    if "%" in text:
        raise ValueError(f"{text!r}: scoped addresses cannot be BGP peers")
    ip = ipaddress.ip_interface(text.strip()).ip
    if ip.version != version:
        raise ValueError(f"{text!r} is not an IPv{version} address")
    if ip.is_loopback:
        raise ValueError(f"{text!r} cannot be a BGP peer address")
    check_peer_address(ip)
    return ip


def hash_router_id(hostname: str) -> ipaddress.IPv4Address:
    """A stable router id for nodes without IPv4 (BGP router ids are 4 octets even for IPv6)."""
    digest = int.from_bytes(hashlib.sha256(hostname.encode()).digest()[:4], "big")
    # Avoid 0.0.0.0 and 255.255.255.255, which BIRD rejects or which look like placeholders.
    return ipaddress.IPv4Address(digest % 0xFFFFFFFE + 1)


def _label_matcher(selector: str | None) -> tuple[str, str | None] | None:
    if not selector:
        return None
    key, sep, value = selector.partition("=")
    return key, (value if sep else None)


def _is_reflector(metadata: felix.HostMetadataUpdate, matcher: tuple[str, str | None] | None) -> bool:
    if matcher is None:
        return False
    key, value = matcher
    if key not in metadata.labels:
        return False
    return value is None or metadata.labels[key] == value


def _parse_nodes(
    state: DataplaneState, config: BgpConfig, problems: list[str]
) -> dict[str, _Node]:
    matcher = _label_matcher(config.route_reflector_label)
    nodes: dict[str, _Node] = {}
    for hostname in sorted(state.host_metadata):
        metadata = state.host_metadata[hostname]
        try:
            ipv4 = _parse_host_ip(metadata.ipv4_addr, 4)
            ipv6 = _parse_host_ip(metadata.ipv6_addr, 6)
            as_number = parse_as_number(metadata.asnumber) if metadata.asnumber else config.as_number
        except ValueError as exc:
            problems.append(f"node {hostname!r} skipped: {exc}")
            continue
        nodes[hostname] = _Node(
            hostname,
            ipv4,  # type: ignore[arg-type]  # version checked by _parse_host_ip
            ipv6,  # type: ignore[arg-type]
            as_number,
            _is_reflector(metadata, matcher),
        )
    return nodes


def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


def _route_networks(
    state: DataplaneState, hostname: str, problems: list[str]
) -> tuple[list[IPNetwork], list[IPNetwork]]:
    """(local IPAM blocks, borrowed workload addresses) from Felix's routes."""
    blocks: list[IPNetwork] = []
    borrowed: list[IPNetwork] = []
    for dst in sorted(state.routes):
        route = state.routes[dst]
        if not route.types & felix.LOCAL_WORKLOAD:
            continue
        if route.dst_node_name and route.dst_node_name != hostname:
            continue
        try:
            net = _network(route.dst)
        except ValueError as exc:
            problems.append(f"route {dst!r} skipped: {exc}")
            continue
        is_host_route = net.prefixlen == net.max_prefixlen
        if route.local_workload:
            # A workload's own address. It is covered by our block unless it was borrowed from
            # another node's block, in which case only a host route gets traffic here.
            if route.borrowed and is_host_route:
                borrowed.append(net)
        elif not is_host_route:
            # Calico skips /32 (/128) blocks too: a blackhole there would shadow the workload.
            blocks.append(net)
    return sorted(set(blocks), key=_net_key), sorted(set(borrowed), key=_net_key)


def _net_key(net: IPNetwork) -> tuple[int, int, int]:
    return (net.version, int(net.network_address), net.prefixlen)


def _pools(state: DataplaneState, problems: list[str]) -> list[Pool]:
    pools: dict[IPNetwork, Pool] = {}
    for pool_id in sorted(state.ipam_pools):
        pool = state.ipam_pools[pool_id]
        try:
            cidr = _network(pool.cidr)
        except ValueError as exc:
            problems.append(f"IP pool {pool_id!r} skipped: {exc}")
            continue
        encapsulated = pool.ipip_mode not in _ENCAP_OFF or pool.vxlan_mode not in _ENCAP_OFF
        previous = pools.get(cidr)
        pools[cidr] = Pool(cidr, encapsulated or (previous is not None and previous.encapsulated))
    return [pools[c] for c in sorted(pools, key=_net_key)]


def _service_cidrs(state: DataplaneState, problems: list[str]) -> list[IPNetwork]:
    bgp = state.global_bgp
    if bgp is None:
        return []
    cidrs: set[IPNetwork] = set()
    for text in (*bgp.service_cluster_cidrs, *bgp.service_external_cidrs, *bgp.service_loadbalancer_cidrs):
        try:
            cidrs.add(_network(text))
        except ValueError as exc:
            problems.append(f"service CIDR {text!r} skipped: {exc}")
    return sorted(cidrs, key=_net_key)


def _communities(config: BgpConfig) -> list[CommunityRule]:
    rules = []
    for entry in config.communities:
        parsed = [parse_community(text) for text in entry.communities]
        standard = tuple(sorted({(c[0], c[1]) for c in parsed if len(c) == 2}))
        large = tuple(sorted({(c[0], c[1], c[2]) for c in parsed if len(c) == 3}))
        rules.append(CommunityRule(entry.prefix, standard, large))
    return rules


def _ignored_interfaces(state: DataplaneState, config: BgpConfig, problems: list[str]) -> list[str]:
    prefixes = state.config.get("InterfacePrefix") or DEFAULT_INTERFACE_PREFIX
    patterns = set(config.ignored_interfaces)
    for prefix in prefixes.split(","):
        prefix = prefix.strip()
        if not prefix:
            continue
        if _INTERFACE_PREFIX_RE.match(prefix):
            patterns.add(prefix + "*")
        else:
            problems.append(f"InterfacePrefix {prefix!r} ignored: unexpected characters")
    return sorted(patterns)


def _cluster_peers(
    own: _Node,
    nodes: dict[str, _Node],
    config: BgpConfig,
    explicit: set[IPAddress],
    self_is_rr: bool,
    problems: list[str],
) -> list[BgpPeer]:
    password = config.node_mesh_password.get_secret_value() if config.node_mesh_password else None
    peers = []
    # Two nodes claiming one address would make two sessions to one neighbor: the first wins.
    claimed: dict[IPAddress, str] = {}
    for family in (4, 6):
        own_ip = own.ip(family)
        if own_ip is None:
            continue
        for node in nodes.values():
            peer_ip = node.ip(family)
            if node.hostname == own.hostname or peer_ip is None or peer_ip == own_ip or peer_ip in explicit:
                continue
            if peer_ip in claimed:
                problems.append(f"node {node.hostname!r}: {peer_ip} is also node {claimed[peer_ip]!r}'s address")
                continue
            claimed[peer_ip] = node.hostname
            if node.route_reflector:
                kind = PeerKind.REFLECTOR
            elif self_is_rr:
                kind = PeerKind.REFLECTOR_CLIENT
            elif config.node_mesh:
                kind = PeerKind.MESH
            else:
                continue
            peers.append(
                BgpPeer(
                    address=peer_ip,
                    # listen_port is cluster-wide (like Calico's BGPConfiguration.listenPort), so
                    # the other nodes listen there too.
                    port=config.listen_port,
                    kind=kind,
                    as_number=node.as_number,
                    # Both ends are ours: let only the lower address connect, so the two sides
                    # never race two TCP connections against each other.
                    passive=int(own_ip) > int(peer_ip),
                    password=password,
                    route_reflector_client=kind is PeerKind.REFLECTOR_CLIENT and node.as_number == own.as_number,
                    graceful_restart_time=config.node_mesh_graceful_restart_time,
                    description=node.hostname,
                )
            )
    return peers


def _explicit_peer(
    peer: BgpPeerConfig, own: _Node, local_as: int, problems: list[str]
) -> BgpPeer | None:
    own_ip = own.ip(peer.address.version)
    if own_ip is None:
        problems.append(f"peer {peer.address} skipped: this node has no IPv{peer.address.version} address")
        return None
    if peer.address == own_ip:
        problems.append(f"peer {peer.address} skipped: it is this node's own address")
        return None
    source = own_ip if peer.source_address == "node" else peer.source_address
    rr_client = peer.route_reflector_client
    if rr_client and peer.as_number != local_as:
        problems.append(f"peer {peer.address}: route_reflector_client ignored, it is an eBGP peer")
        rr_client = False
    return BgpPeer(
        address=peer.address,
        port=peer.port,
        kind=PeerKind.EXPLICIT,
        as_number=peer.as_number,
        passive=peer.passive,
        password=peer.password.get_secret_value() if peer.password else None,
        route_reflector_client=rr_client,
        ttl_security=peer.ttl_security,
        multihop=peer.multihop,
        source_address=source,
        keepalive=peer.keepalive,
        hold_time=peer.hold_time,
        graceful_restart=peer.graceful_restart,
        graceful_restart_time=peer.graceful_restart_time,
        next_hop_self=peer.next_hop_self,
    )


def own_hostname(state: DataplaneState, config: BgpConfig) -> str | None:
    return config.hostname or state.config.get("FelixHostname") or None


def build_bgp_inputs(state: DataplaneState, config: BgpConfig) -> BgpInputs:
    """Everything bird.conf depends on; raises BgpInputsUnavailable if this node is not known yet."""
    problems: list[str] = []
    hostname = own_hostname(state, config)
    if hostname is None:
        raise BgpInputsUnavailable("no hostname: set bgp.hostname or wait for Felix's FelixHostname")
    nodes = _parse_nodes(state, config, problems)
    own = nodes.get(hostname)
    if own is None or (own.ipv4 is None and own.ipv6 is None):
        detail = "; ".join(p for p in problems if repr(hostname) in p)
        raise BgpInputsUnavailable(
            f"no usable HostMetadata for this node {hostname!r}" + (f" ({detail})" if detail else "")
        )
    self_is_rr = own.route_reflector or config.route_reflector_cluster_id is not None
    explicit = [p for p in (_explicit_peer(c, own, own.as_number, problems) for c in config.peers) if p]
    cluster = _cluster_peers(own, nodes, config, {p.address for p in explicit}, self_is_rr, problems)
    blocks, borrowed = _route_networks(state, hostname, problems)
    return BgpInputs(
        hostname=hostname,
        router_id=config.router_id or own.ipv4 or hash_router_id(hostname),
        local_as=own.as_number,
        node_ipv4=own.ipv4,
        node_ipv6=own.ipv6,
        route_reflector=self_is_rr,
        route_reflector_cluster_id=config.route_reflector_cluster_id,
        peers=tuple(sorted(cluster + explicit, key=_peer_key)),
        local_blocks=tuple(blocks),
        borrowed_addresses=tuple(borrowed),
        service_cidrs=tuple(_service_cidrs(state, problems)),
        pools=tuple(_pools(state, problems)),
        communities=tuple(_communities(config)),
        ignored_interfaces=tuple(_ignored_interfaces(state, config, problems)),
        listen_address=config.listen_address,
        listen_port=config.listen_port,
        kernel_persist=config.kernel_persist,
        timers=Timers(config.connect_delay_time, config.connect_retry_time, config.error_wait_time),
        problems=tuple(problems),
    )


def _peer_key(peer: BgpPeer) -> tuple[int, int, int]:
    return (peer.family, int(peer.address), peer.port or 0)
