"""From the effective state to desired chains, IP sets and routes, re-rendering only what changed.

Each object's rendering is cached with the message it came from and redone only when the message
object changes; settings or IP set type changes drop the caches. When no policy, profile,
endpoint, setting or IP set type changed, the previous chain lists are handed back as the same
objects, which tells the tables there is nothing to write. A chain that renders the same in
both families is one shared object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.iptables.chains import WORKLOAD_CHAINS_PER_FAMILY, ChainRenderer
from vppagent.drivers.iptables.ipsets import KernelSet, kernel_members
from vppagent.drivers.iptables.names import BadInterfaceName, check_interface, ipset_name
from vppagent.drivers.iptables.routes import RouteSpec
from vppagent.drivers.iptables.settings import Settings
from vppagent.drivers.iptables.table import Chain, Rule
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.model import HostEndpoint, PolicyError, WorkloadEndpoint, build_policy, build_profile
from vppagent.state.ipset import IPSetType
from vppagent.state.model import DataplaneState, Kind
from vppagent.state.routes import Encap, remote_routes

log = logging.getLogger(__name__)
TABLES = ("filter", "raw", "mangle")


@dataclass
class Desired:
    """Everything to program: chains and hooks per (family, table), kernel sets, routes."""

    chains: dict[tuple[int, str], list[Chain]] = field(default_factory=dict)
    hooks: dict[tuple[int, str], dict[str, list[Rule]]] = field(default_factory=dict)
    ipsets: dict[str, KernelSet] = field(default_factory=dict)
    routes: list[RouteSpec] = field(default_factory=list)
    workload_ifaces: list[str] = field(default_factory=list)
    # Workload interfaces whose endpoint may send from IPv4 sources not routed to it: the kernel's
    # own rp_filter is off there (as Felix does), the raw table's rpf-skip and rpfilter decide.
    spoofing_ifaces: frozenset[str] = frozenset()
    failed: dict[tuple[Kind, Any], str] = field(default_factory=dict)


def _set_value(ipset: Any) -> tuple[Any, frozenset[str]]:
    return ipset.type, frozenset(ipset.members)


@dataclass
class _Cached:
    source: Any
    per_family: dict[int, list[Chain]]
    error: str | None = None
    extra: Any = None


def _refresh(cache: dict[Any, _Cached], current: dict[Any, Any], render: Any, snapshot: Any = None) -> bool:
    """Re-render the objects whose value changed; whether anything was added, changed or removed.
    Protobuf messages are never mutated, so the same object means the same value; IP sets may be
    updated in place by the state's fold, so they are compared by a snapshot of their value."""
    changed = False
    for key in [k for k in cache if k not in current]:
        del cache[key]
        changed = True
    for key, obj in current.items():
        source = obj if snapshot is None else snapshot(obj)
        hit = cache.get(key)
        if hit is None or (hit.source is not source and hit.source != source):
            cache[key] = render(key, obj)
            changed = True
    return changed


def _share(per_family: dict[int, list[Chain]]) -> dict[int, list[Chain]]:
    """Make a chain equal to the IPv4 one the same object, so its hashes and restore text are
    computed once (most chains do not depend on the family)."""
    first = per_family.get(4)
    if first is None:
        return per_family
    for family, chains in per_family.items():
        if family != 4 and len(chains) == len(first):
            per_family[family] = [a if a == b else b for a, b in zip(first, chains, strict=True)]
    return per_family


class StateRenderer:
    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.families: tuple[int, ...] = (4,)
        self._set_types: dict[str, IPSetType] = {}
        self._sets: dict[str, _Cached] = {}
        self._policies: dict[Any, _Cached] = {}
        self._profiles: dict[Any, _Cached] = {}
        self._workloads: dict[Any, _Cached] = {}
        self._heps: dict[Any, _Cached] = {}
        self.renderers: dict[int, ChainRenderer] = {}
        self._last: Desired | None = None  # the last assembly (chains, hooks, failures)
        self._local_routes: list[RouteSpec] = []  # its routes (the driver extends Desired.routes)
        self._dispatch: dict[int, tuple[tuple[str, ...], list[Chain]]] = {}

    def _set_name(self, family: int) -> Any:
        def name(set_id: str) -> str:
            return ipset_name(set_id, self._set_types.get(set_id, IPSetType.NET), family)
        return name

    def render(self, state: DataplaneState, settings: Settings) -> Desired:
        families = (4, 6) if settings.ipv6 else (4,)
        set_types = {k: v.type for k, v in state.ipsets.items()}
        changed = self._last is None
        if settings != self.settings or families != self.families:
            self.settings, self.families = settings, families
            self.renderers = {f: ChainRenderer(settings, f) for f in families}
            for cache in (self._policies, self._profiles, self._workloads, self._heps, self._sets):
                cache.clear()
            self._dispatch.clear()
            changed = True
        if set_types != self._set_types:
            self._set_types = set_types
            self._policies.clear()
            self._profiles.clear()
            changed = True
        _refresh(self._sets, state.ipsets, self._render_set, _set_value)
        # Not short-circuited: every cache must be brought up to date.
        changed = _refresh(self._policies, state.policies, self._render_policy) or changed
        changed = _refresh(self._profiles, state.profiles, self._render_profile) or changed
        changed = _refresh(self._workloads, state.workload_endpoints, self._render_workload) or changed
        changed = _refresh(self._heps, state.host_endpoints, self._render_hep) or changed
        last = self._last
        if not changed and last is not None:
            # Chains, hooks, failures and routes derive only from what did not change.
            return Desired(chains=last.chains, hooks=last.hooks,
                           ipsets=self._kernel_sets(),
                           routes=list(self._local_routes), workload_ifaces=last.workload_ifaces,
                           spoofing_ifaces=last.spoofing_ifaces,
                           failed=dict(last.failed))
        out = self._last = self._assemble(state)
        self._local_routes = list(out.routes)
        return out

    def _kernel_sets(self) -> dict[str, KernelSet]:
        return {kset.name: kset for cached in self._sets.values() for kset in cached.extra.values()}

    # -- per object ------------------------------------------------------------------------------
    def _render_set(self, set_id: str, ipset: Any) -> _Cached:
        sets = {}
        for family in self.families:
            name = ipset_name(set_id, ipset.type, family)
            sets[family] = KernelSet(name, ipset.type, family, kernel_members(ipset, family))
        return _Cached(_set_value(ipset), {}, extra=sets)

    def _fail_closed(self, names: list[str], owner: str) -> list[Chain]:
        # A policy we cannot render still exists as a chain (endpoints jump to it): it drops.
        return [Chain(n, (Rule("", "-j DROP"),), owner) for n in names]

    def _render_policy(self, key: Any, pb: felix.Policy) -> _Cached:
        try:
            policy = build_policy(key, pb, None)
            return _Cached(pb, _share({f: r.policy_chains(policy, self._set_name(f))
                                       for f, r in self.renderers.items()}))
        except (PolicyError, ValueError) as exc:
            from vppagent.drivers.iptables.names import policy_chain

            names = [policy_chain(key, True), policy_chain(key, False)]
            return _Cached(pb, {f: self._fail_closed(names, f"policy {key}") for f in self.families}, str(exc))

    def _render_profile(self, name: str, pb: felix.Profile) -> _Cached:
        try:
            profile = build_profile(name, pb, None)
            return _Cached(pb, _share({f: r.profile_chains(profile, self._set_name(f))
                                       for f, r in self.renderers.items()}))
        except (PolicyError, ValueError) as exc:
            from vppagent.drivers.iptables.names import profile_chain

            names = [profile_chain(name, True), profile_chain(name, False)]
            return _Cached(pb, {f: self._fail_closed(names, f"profile {name}") for f in self.families}, str(exc))

    def _render_workload(self, key: Any, pb: felix.WorkloadEndpoint) -> _Cached:
        try:
            wep = WorkloadEndpoint.from_proto(key, pb)
            check_interface(wep.name)
        except (BadInterfaceName, ValueError) as exc:
            return _Cached(pb, {}, f"workload endpoint {key}: {exc}")
        if WORKLOAD_CHAINS_PER_FAMILY:
            return _Cached(pb, _share({f: r.workload_chains(wep) for f, r in self.renderers.items()}), extra=wep)
        chains = self.renderers[self.families[0]].workload_chains(wep)  # the same in every family
        return _Cached(pb, dict.fromkeys(self.families, chains), extra=wep)

    def _render_hep(self, key: str, pb: felix.HostEndpoint) -> _Cached:
        try:
            hep = HostEndpoint.from_proto(key, pb)
            if hep.name == "*":
                raise ValueError("the all-interfaces host endpoint (*) is not supported by the iptables driver")
            if not hep.name:
                raise ValueError("host endpoints without an interface name are not supported")
            check_interface(hep.name)
        except (BadInterfaceName, ValueError) as exc:
            return _Cached(pb, {}, f"host endpoint {key}: {exc}")
        return _Cached(pb, {}, extra=(hep, {f: r.host_endpoint_chains(hep) for f, r in self.renderers.items()}))

    # -- everything ------------------------------------------------------------------------------
    def _missing_refs(self, tiers: Any, profiles: Any, state: DataplaneState) -> str | None:
        for tier in tiers:
            for key in (*tier.ingress_policies, *tier.egress_policies):
                if key not in state.policies:
                    return f"references policy {key}, which is not in the state"
        for name in profiles:
            if name not in state.profiles:
                return f"references profile {name}, which is not in the state"
        return None

    def _assemble(self, state: DataplaneState) -> Desired:
        out = Desired(ipsets=self._kernel_sets())
        for key, cached in self._policies.items():
            if cached.error:
                out.failed[(Kind.POLICY, key)] = cached.error
        for name, cached in self._profiles.items():
            if cached.error:
                out.failed[(Kind.PROFILE, name)] = cached.error
        weps: list[WorkloadEndpoint] = []
        for key, cached in self._workloads.items():
            wep = cached.extra
            problem = cached.error or (self._missing_refs(wep.tiers, wep.profile_ids, state) if wep else None)
            if problem or wep is None:
                out.failed[(Kind.WORKLOAD_ENDPOINT, key)] = problem or "not renderable"
                continue
            weps.append(wep)
        heps: list[tuple[HostEndpoint, dict[int, dict[str, list[Chain]]]]] = []
        for key, cached in self._heps.items():
            if cached.error or cached.extra is None:
                out.failed[(Kind.HOST_ENDPOINT, key)] = cached.error or "not renderable"
                continue
            hep = cached.extra[0]
            problem = self._missing_refs([*hep.tiers, *hep.untracked_tiers, *hep.pre_dnat_tiers,
                                          *hep.forward_tiers], hep.profile_ids, state)
            if problem:
                out.failed[(Kind.HOST_ENDPOINT, key)] = f"host endpoint {key} {problem}"
                continue
            heps.append(cached.extra)
        seen: dict[str, Any] = {}
        for wep in sorted(weps, key=lambda w: w.key):
            if wep.name in seen:  # two endpoints on one interface: neither is trustworthy
                out.failed[(Kind.WORKLOAD_ENDPOINT, wep.key)] = f"interface {wep.name} is also used by {seen[wep.name]}"
                continue
            seen[wep.name] = wep.key
        weps = [w for w in weps if (Kind.WORKLOAD_ENDPOINT, w.key) not in out.failed]
        ifaces = [w.name for w in weps]
        out.workload_ifaces = ifaces
        out.spoofing_ifaces = frozenset(w.name for w in weps
                                        if any(n.version == 4 for n in w.allowed_spoofed_sources))
        for family, renderer in self.renderers.items():
            self._assemble_family(out, family, renderer, weps, heps)
        out.routes = self._routes(state, weps)
        return out

    def _assemble_family(self, out: Desired, family: int, renderer: ChainRenderer, weps: list[WorkloadEndpoint],
                         heps: list[tuple[HostEndpoint, dict[int, dict[str, list[Chain]]]]]) -> None:
        policy_chains = [c for cached in self._policies.values() for c in cached.per_family.get(family, [])]
        policy_chains += [c for cached in self._profiles.values() for c in cached.per_family.get(family, [])]
        hep_objs = [h for h, _ in heps]
        filt, filt_hooks = renderer.filter_static(bool(heps), bool(heps))
        rpf_skip = renderer.rpf_skip_chain(weps)
        raw, raw_hooks = renderer.raw_static(any(h.untracked_tiers for h in hep_objs),
                                             any(h.untracked_tiers for h in hep_objs), rpf_skip is not None)
        if rpf_skip is not None:
            raw.append(rpf_skip)
        mangle, mangle_hooks = renderer.mangle_static(any(h.pre_dnat_tiers for h in hep_objs))
        filt += self._workload_dispatch(family, renderer, tuple(w.name for w in weps))
        for wep in weps:
            filt += self._workloads[wep.key].per_family[family]
        tables = {"filter": filt, "raw": raw, "mangle": mangle}
        if heps:
            for table, chains in renderer.host_dispatch(hep_objs).items():
                tables[table] += chains
            for _, per_family in heps:
                for table, chains in per_family[family].items():
                    tables[table] += chains
        for table, chains in tables.items():
            out.chains[(family, table)] = chains + policy_chains
        out.hooks[(family, "filter")] = filt_hooks
        out.hooks[(family, "raw")] = raw_hooks
        out.hooks[(family, "mangle")] = mangle_hooks

    def _workload_dispatch(self, family: int, renderer: ChainRenderer, ifaces: tuple[str, ...]) -> list[Chain]:
        """Dispatch chains, re-rendered only when the set of endpoint interfaces changes."""
        hit = self._dispatch.get(family)
        if hit is None or hit[0] != ifaces:
            chains = renderer.workload_dispatch(ifaces)
            v4 = self._dispatch.get(4)
            if family != 4 and v4 is not None and v4[0] == ifaces:
                chains = _share({4: v4[1], family: chains})[family]
            hit = self._dispatch[family] = (ifaces, chains)
        return hit[1]

    def _routes(self, state: DataplaneState, weps: list[WorkloadEndpoint]) -> list[RouteSpec]:
        routes = []
        for wep in weps:
            for net in (*wep.ipv4_nets, *wep.ipv6_nets):
                if net.version in self.families:
                    routes.append(RouteSpec(str(net), iface=wep.name, owner=str(wep.key)))
        return routes

    def remote_routes(self, state: DataplaneState) -> list[RouteSpec]:
        """Routes to other nodes' blocks that need no tunnel, when no BGP daemon programs them."""
        return [RouteSpec(str(route.dst), gateway=str(route.node_ip), owner=f"route {route.source}")
                for route in remote_routes(state)
                if route.encap is Encap.NONE and route.dst.version in self.families]
