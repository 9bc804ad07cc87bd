"""Make the Services' source-NAT address reachable: VPP answers ARP / ND for it on the uplink whose
subnet holds it (docs/services.md, "Source NAT").

cnat takes the configured address (`service_snat_ipv4` / `_ipv6`) over in VPP's FIB, but VPP answers
no ARP or neighbour solicitation for it, and refuses it as a second address inside the uplink's
subnet. So, for each configured address inside the subnet of an uplink (an interface holding node
addresses: not a pod's, not the pod gateway, not local0), the driver keeps
- IPv4: a proxy ARP range of exactly that address (table 0) and proxy ARP enabled on that uplink;
- IPv6: an ND proxy entry for the address on that uplink.
An address in no uplink's subnet needs none: the network routes it to the node (a static route or
BGP); the pass says so (`ProxyPass.notes`, logged and in the driver's status).

Ownership, by diff against what VPP holds (proxy ARP read back on every pass: `proxy_arp_dump`,
`proxy_arp_intfc_dump`). ND entries cannot be read back: VPP (25.10, 26.06) sends `ip6nd_proxy_details`
under the module-relative message id (`ip6_nd_api.c` leaves out the module's base), so a client
reads another message (vpp_papi fails to decode it, seen on 26.06), and the entry's FIB source is
hidden by cnat's own on the same /128 (`ip_route_v2_dump` by source finds nothing). So ND entries
are written without reading: on a new connection every wanted one is added and ours not wanted
deleted on every uplink (both idempotent in VPP), after that only what changes (`ProxyPass.nd`).
Proxy ARP ranges and ND entries carry no tag, so an entry is ours when it is
- a single-address range in table 0, or an ND entry, on the configured address of its family, or
- the same on a retired address: one cnat held as its source-NAT address when the driver connected
  and that the configuration no longer names (the driver owns cnat's source-NAT setting, so what
  cnat held was the previous configuration's).
Everything else (wider ranges, other tables, other addresses) is left alone. Proxy ARP on an
interface is a flag VPP does not count: the driver turns it off only where it turned it on itself
(`made_interfaces`, the driver's life) and no configured address needs it any more; one it found on
(set before an agent restart, or by the operator) stays on.

A refused write or read is the pass's `error` (the driver makes it the error of every Service
reached from outside, the ones that need the address); nothing raises but a lost connection.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused
from vppagent.drivers.vpp.services.settings import ServiceSettings
from vppagent.drivers.vpp.services.translations import Address

log = logging.getLogger(__name__)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
ArpRange = tuple[int, ipaddress.IPv4Address, ipaddress.IPv4Address]  # table id, low, high
NdEntry = tuple[int, ipaddress.IPv6Address]  # interface, address


@dataclass(frozen=True)
class Uplink:
    sw_if_index: int
    name: str
    prefixes: tuple[IPInterface, ...]


@dataclass(frozen=True)
class HeldProxies:
    arp_ranges: tuple[ArpRange, ...] = ()
    arp_interfaces: frozenset[int] = frozenset()
    nd: frozenset[NdEntry] | None = None  # None: not known (VPP's dump cannot be read, see above)


@dataclass(frozen=True)
class WantedProxies:
    arp: frozenset[ipaddress.IPv4Address] = frozenset()  # single-address ranges, table 0
    arp_interfaces: frozenset[int] = frozenset()
    nd: frozenset[NdEntry] = frozenset()
    notes: tuple[str, ...] = ()  # per configured address: where it is announced, or why not


@dataclass
class ProxyPlan:
    arp_add: list[ipaddress.IPv4Address] = field(default_factory=list)
    arp_delete: list[ipaddress.IPv4Address] = field(default_factory=list)
    enable: list[int] = field(default_factory=list)
    disable: list[int] = field(default_factory=list)
    nd_add: list[NdEntry] = field(default_factory=list)
    nd_delete: list[NdEntry] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.arp_add or self.arp_delete or self.enable or self.disable or self.nd_add or self.nd_delete)


def configured(settings: ServiceSettings) -> list[Address]:
    return [a for a in (settings.snat_ipv4, settings.snat_ipv6) if a is not None]


def wanted_proxies(settings: ServiceSettings, uplinks: Iterable[Uplink]) -> WantedProxies:
    """What the configured addresses need on these uplinks (pure)."""
    arp: set[ipaddress.IPv4Address] = set()
    interfaces: set[int] = set()
    nd: set[NdEntry] = set()
    notes = []
    uplinks = sorted(uplinks, key=lambda u: u.sw_if_index)
    for address in configured(settings):
        on = [u for u in uplinks if any(address in p.network and address != p.ip for p in u.prefixes)]
        if not on:
            notes.append(f"{address}: in no uplink's subnet, no proxy ARP/ND (the network must route it to this node)")
            continue
        names = ", ".join(u.name for u in on)
        if isinstance(address, ipaddress.IPv4Address):
            arp.add(address)
            interfaces.update(u.sw_if_index for u in on)
            notes.append(f"{address}: proxy ARP on {names}")
        else:
            nd.update((u.sw_if_index, address) for u in on)
            notes.append(f"{address}: ND proxy on {names}")
    return WantedProxies(frozenset(arp), frozenset(interfaces), frozenset(nd), tuple(notes))


def plan_proxies(held: HeldProxies, wanted: WantedProxies, ours: AbstractSet[Address],
                 made_interfaces: AbstractSet[int], uplinks: Iterable[int] = ()) -> ProxyPlan:
    """`ours`: the configured and retired addresses (the ownership rule above). ND entries not known
    (`held.nd` None): every wanted one is added, and ours not wanted deleted on every uplink (both
    idempotent in VPP)."""
    held_single = {low for table, low, high in held.arp_ranges if table == 0 and low == high}
    plan = ProxyPlan()
    plan.arp_add = sorted(wanted.arp - held_single)
    plan.arp_delete = sorted(a for a in held_single if a in ours and a not in wanted.arp)
    plan.enable = sorted(wanted.arp_interfaces - held.arp_interfaces)
    plan.disable = sorted((held.arp_interfaces & made_interfaces) - wanted.arp_interfaces)
    nd = held.nd if held.nd is not None else {(i, a) for i in uplinks for a in ours
                                               if isinstance(a, ipaddress.IPv6Address)}
    plan.nd_add = sorted(wanted.nd - (held.nd or frozenset()))
    plan.nd_delete = sorted(e for e in nd if e[1] in ours and e not in wanted.nd)
    return plan


@dataclass
class ProxyPass:
    error: str | None = None
    notes: tuple[str, ...] = ()
    writes: int = 0
    nd: frozenset[NdEntry] | None = None  # the ND entries VPP holds of ours, when this pass got through


def read_proxies(calls: VppCalls, nd: frozenset[NdEntry] | None) -> HeldProxies:
    return HeldProxies(tuple(calls.proxy_arp_ranges()), frozenset(calls.proxy_arp_interfaces()), nd)


def converge_proxies(calls: VppCalls, settings: ServiceSettings, uplinks: Sequence[Uplink],
                     retired: AbstractSet[Address], made_interfaces: set[int], *, removing: bool = False,
                     nd: frozenset[NdEntry] | None = None) -> ProxyPass:
    """Read, plan, write; `made_interfaces` gains (and loses) the interfaces this driver turned proxy ARP
    on for. Adds come before deletes and the interface flag before its range is removed. `removing`
    (the driver swapped out): nothing is wanted, ours goes. `nd`: the ND entries of ours VPP holds,
    as the last pass on this connection left them (None: not known)."""
    result = ProxyPass()
    try:
        wanted = WantedProxies() if removing else wanted_proxies(settings, uplinks)
        result.notes = wanted.notes
        plan = plan_proxies(read_proxies(calls, nd), wanted, set(configured(settings)) | set(retired),
                            made_interfaces, [u.sw_if_index for u in uplinks])
        for address in plan.arp_add:
            calls.proxy_arp_range(address, add=True)
            result.writes += 1
        for sw_if_index in plan.enable:
            calls.proxy_arp_interface(sw_if_index, enable=True)
            made_interfaces.add(sw_if_index)
            result.writes += 1
        for sw_if_index, address6 in plan.nd_add:
            calls.nd_proxy(sw_if_index, address6, add=True)
            result.writes += 1
        for sw_if_index in plan.disable:
            calls.proxy_arp_interface(sw_if_index, enable=False)
            made_interfaces.discard(sw_if_index)
            result.writes += 1
        for address in plan.arp_delete:
            calls.proxy_arp_range(address, add=False)
            result.writes += 1
        for sw_if_index, address6 in plan.nd_delete:
            calls.nd_proxy(sw_if_index, address6, add=False)
            result.writes += 1
    except ApiRefused as exc:
        result.error = f"source-NAT address not announced: {exc}"
        return result
    result.nd = wanted.nd
    return result


@dataclass
class SnatProxy:
    """The driver's proxy ARP / ND state: what it made and retired (its life), and whether this
    connection has converged them. One pass on each connection and resync, and again while the last
    one failed."""

    retired: set[Address] = field(default_factory=set)  # cnat's previous source-NAT addresses
    made_interfaces: set[int] = field(default_factory=set)
    done: bool = False  # on this connection
    last: ProxyPass = field(default_factory=ProxyPass)

    def connected(self) -> None:
        self.done = False
        self.last.nd = None  # a new connection may be a new VPP: ND entries not known

    def converge(self, calls: VppCalls, problem: str | None, settings: ServiceSettings, uplinks: Sequence[Uplink],
                 *, reread: bool, removing: bool = False) -> None:
        if self.done and not reread and self.last.error is None and not removing:
            return
        if problem is not None:
            self.last = ProxyPass(error=problem if configured(settings) else None)
            self.done = True
            return
        previous_notes = self.last.notes
        self.last = converge_proxies(calls, settings, uplinks, self.retired, self.made_interfaces,
                                     removing=removing, nd=self.last.nd)
        self.done = self.last.error is None
        if self.last.error is not None:
            log.warning("%s", self.last.error)
        elif self.last.notes != previous_notes or self.last.writes:
            for note in self.last.notes:
                log.info("service source NAT address %s", note)

    def status(self) -> dict[str, object]:
        return {"notes": list(self.last.notes), "error": self.last.error, "retired": sorted(map(str, self.retired))}
