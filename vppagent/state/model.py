"""The dataplane state Felix describes, folded from ToDataplane messages.

One table per object kind, keyed as Felix keys them. Values are the protobuf messages themselves
(immutable by convention: we never mutate a stored message), except IP sets, which are held as
canonical member sets so that deltas and diffs compare like Felix does.

Contract for consumers: a value never changes once a state has been copied (`copy()`), and the
store hands drivers only copies. Until then the fold may grow an IP set it created in place (see
`IPSet`), which is what makes a burst of deltas cheap. Compare IP sets by value, not identity.

The same fold serves felix-shim (its compacted snapshot for replay) and the agent's store, so
both agree on what "latest value per key" means.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.ipset import IPSet, IPSetType


class Kind(StrEnum):
    """Object kinds, in the order Felix flushes them (dependencies first)."""

    CONFIG = "config"
    ENCAPSULATION = "encapsulation"
    GLOBAL_BGP = "global_bgp"
    HOST_METADATA = "host_metadata"
    IPAM_POOL = "ipam_pools"
    NAMESPACE = "namespaces"
    SERVICE_ACCOUNT = "service_accounts"
    SERVICE = "services"
    IPSET = "ipsets"
    POLICY = "policies"
    PROFILE = "profiles"
    HOST_ENDPOINT = "host_endpoints"
    WORKLOAD_ENDPOINT = "workload_endpoints"
    ROUTE = "routes"
    VTEP = "vteps"
    WIREGUARD = "wireguard_endpoints"
    WIREGUARD_V6 = "wireguard_endpoints_v6"


ENDPOINT_KINDS = (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT)


class PolicyKey(NamedTuple):
    name: str
    namespace: str
    kind: str

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        kind = f" ({self.kind})" if self.kind else ""
        return f"{ns}{self.name}{kind}"


class WorkloadKey(NamedTuple):
    orchestrator_id: str
    workload_id: str
    endpoint_id: str

    def __str__(self) -> str:
        return f"{self.orchestrator_id}/{self.workload_id}/{self.endpoint_id}"


def policy_key(pid: felix.PolicyID) -> PolicyKey:
    return PolicyKey(pid.name, pid.namespace, pid.kind)


def workload_key(wid: felix.WorkloadEndpointID) -> WorkloadKey:
    return WorkloadKey(wid.orchestrator_id, wid.workload_id, wid.endpoint_id)


def ip_set_ids(rule: felix.Rule) -> frozenset[str]:
    """The ids of every IP set a rule references, in any field (address, named port, ip-port)."""
    return frozenset((
        *rule.src_ip_set_ids, *rule.dst_ip_set_ids, *rule.not_src_ip_set_ids, *rule.not_dst_ip_set_ids,
        *rule.src_named_port_ip_set_ids, *rule.dst_named_port_ip_set_ids,
        *rule.not_src_named_port_ip_set_ids, *rule.not_dst_named_port_ip_set_ids, *rule.dst_ip_port_set_ids,
    ))


def endpoint_policy_keys(endpoint: felix.WorkloadEndpoint | felix.HostEndpoint) -> set[PolicyKey]:
    """The policies an endpoint names, in every tier list it has (host endpoints have four)."""
    tier_lists = [endpoint.tiers]
    if isinstance(endpoint, felix.HostEndpoint):
        tier_lists += [endpoint.untracked_tiers, endpoint.pre_dnat_tiers, endpoint.forward_tiers]
    return {policy_key(pid) for tiers in tier_lists for tier in tiers
            for pid in (*tier.ingress_policies, *tier.egress_policies)}


# The one "invalid member" of a set Felix sent a delta for before (or without) the set itself.
UNKNOWN_SET_DELTA = "<delta for unknown set>"

# Singletons (config, encapsulation, global BGP config) are stored under this key.
SINGLETON = ""

STAGED_KINDS = frozenset(
    {"StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy"}
)


@dataclass
class Change:
    """What one message did to the state: which (kind, key) it touched, if any."""

    kind: Kind | None
    key: Any = None
    in_sync: bool = False
    unknown: bool = False


@dataclass
class DataplaneState:
    """All objects, one dict per kind. `apply` folds one ToDataplane message in."""

    tables: dict[Kind, dict[Any, Any]] = field(default_factory=lambda: {k: {} for k in Kind})
    # IP sets created by this state's fold and not yet shared carry this token (see IPSet).
    token: object = field(default_factory=object, compare=False, repr=False)

    # -- typed views -------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, str]:
        cfg = self.tables[Kind.CONFIG].get(SINGLETON)
        return dict(cfg.config) if cfg is not None else {}

    @property
    def ipsets(self) -> dict[str, IPSet]:
        return self.tables[Kind.IPSET]

    @property
    def policies(self) -> dict[PolicyKey, felix.Policy]:
        return self.tables[Kind.POLICY]

    @property
    def profiles(self) -> dict[str, felix.Profile]:
        return self.tables[Kind.PROFILE]

    @property
    def workload_endpoints(self) -> dict[WorkloadKey, felix.WorkloadEndpoint]:
        return self.tables[Kind.WORKLOAD_ENDPOINT]

    @property
    def host_endpoints(self) -> dict[str, felix.HostEndpoint]:
        return self.tables[Kind.HOST_ENDPOINT]

    @property
    def routes(self) -> dict[str, felix.RouteUpdate]:
        return self.tables[Kind.ROUTE]

    @property
    def ipam_pools(self) -> dict[str, felix.IPAMPool]:
        return self.tables[Kind.IPAM_POOL]

    @property
    def host_metadata(self) -> dict[str, felix.HostMetadataUpdate]:
        """One HostMetadataUpdate per hostname (felix-shim turns v3.32's split messages into these)."""
        return self.tables[Kind.HOST_METADATA]

    @property
    def global_bgp(self) -> felix.GlobalBGPConfigUpdate | None:
        return self.tables[Kind.GLOBAL_BGP].get(SINGLETON)

    @property
    def encapsulation(self) -> felix.Encapsulation | None:
        return self.tables[Kind.ENCAPSULATION].get(SINGLETON)

    def counts(self) -> dict[str, int]:
        return {k.value: len(v) for k, v in self.tables.items()}

    def copy(self) -> DataplaneState:
        """A shallow copy per table. Both states now share every value, so neither may change
        one in place any more: the token that allowed it is retired."""
        self.token = object()
        return DataplaneState({k: dict(v) for k, v in self.tables.items()})

    # -- folding -----------------------------------------------------------------------------
    def apply(self, msg: felix.ToDataplane) -> Change:
        payload = msg.WhichOneof("payload")
        if payload is None:
            return Change(None, unknown=True)
        handler = _HANDLERS.get(payload)
        if handler is None:
            # A payload our schema knows but the dataplane has no use for: accept and ignore.
            return Change(None)
        change: Change = handler(self, getattr(msg, payload))
        return change

    def _put(self, kind: Kind, key: Any, value: Any) -> Change:
        self.tables[kind][key] = value
        return Change(kind, key)

    def _drop(self, kind: Kind, key: Any) -> Change:
        self.tables[kind].pop(key, None)
        return Change(kind, key)

    # -- replay ------------------------------------------------------------------------------
    def to_messages(self) -> Iterator[felix.ToDataplane]:
        """The whole state as a ToDataplane snapshot in Felix's dependency order (no InSync)."""
        for kind in Kind:
            for key in sorted(self.tables[kind], key=_sort_key):
                yield _ENCODERS[kind](key, self.tables[kind][key])


def _sort_key(key: Any) -> tuple[str, ...]:
    return tuple(key) if isinstance(key, tuple) else (str(key),)


# -- message handlers: payload field name -> fold function ----------------------------------


def _ipset_delta(state: DataplaneState, m: felix.IPSetDeltaUpdate) -> Change:
    current = state.ipsets.get(m.id)
    if current is None:
        # Felix never sends a delta for an unknown set. Recording it as an empty NET set with
        # the delta applied would guess the type; instead keep an explicitly invalid set so
        # every user of it is held back until a full IPSetUpdate arrives.
        current = IPSet(m.id, IPSetType.NET, set(), (UNKNOWN_SET_DELTA,))
    return state._put(Kind.IPSET, m.id, current.with_delta(m.added_members, m.removed_members, state.token))


_HANDLERS: dict[str, Any] = {
    "in_sync": lambda s, m: Change(None, in_sync=True),
    "config_update": lambda s, m: s._put(Kind.CONFIG, SINGLETON, m),
    "encapsulation": lambda s, m: s._put(Kind.ENCAPSULATION, SINGLETON, m),
    "global_bgp_config_update": lambda s, m: s._put(Kind.GLOBAL_BGP, SINGLETON, m),
    "ipset_update": lambda s, m: s._put(Kind.IPSET, m.id, IPSet.build(m.id, m.type, m.members, s.token)),
    "ipset_delta_update": _ipset_delta,
    "ipset_remove": lambda s, m: s._drop(Kind.IPSET, m.id),
    "active_policy_update": lambda s, m: s._put(Kind.POLICY, policy_key(m.id), m.policy),
    "active_policy_remove": lambda s, m: s._drop(Kind.POLICY, policy_key(m.id)),
    "active_profile_update": lambda s, m: s._put(Kind.PROFILE, m.id.name, m.profile),
    "active_profile_remove": lambda s, m: s._drop(Kind.PROFILE, m.id.name),
    "workload_endpoint_update": lambda s, m: s._put(Kind.WORKLOAD_ENDPOINT, workload_key(m.id), m.endpoint),
    "workload_endpoint_remove": lambda s, m: s._drop(Kind.WORKLOAD_ENDPOINT, workload_key(m.id)),
    "host_endpoint_update": lambda s, m: s._put(Kind.HOST_ENDPOINT, m.id.endpoint_id, m.endpoint),
    "host_endpoint_remove": lambda s, m: s._drop(Kind.HOST_ENDPOINT, m.id.endpoint_id),
    "route_update": lambda s, m: s._put(Kind.ROUTE, m.dst, m),
    "route_remove": lambda s, m: s._drop(Kind.ROUTE, m.dst),
    "ipam_pool_update": lambda s, m: s._put(Kind.IPAM_POOL, m.id, m.pool),
    "ipam_pool_remove": lambda s, m: s._drop(Kind.IPAM_POOL, m.id),
    "host_metadata_update": lambda s, m: s._put(Kind.HOST_METADATA, m.hostname, m),
    "host_metadata_remove": lambda s, m: s._drop(Kind.HOST_METADATA, m.hostname),
    "namespace_update": lambda s, m: s._put(Kind.NAMESPACE, m.id.name, m),
    "namespace_remove": lambda s, m: s._drop(Kind.NAMESPACE, m.id.name),
    "service_account_update": lambda s, m: s._put(Kind.SERVICE_ACCOUNT, (m.id.namespace, m.id.name), m),
    "service_account_remove": lambda s, m: s._drop(Kind.SERVICE_ACCOUNT, (m.id.namespace, m.id.name)),
    "service_update": lambda s, m: s._put(Kind.SERVICE, (m.namespace, m.name), m),
    "service_remove": lambda s, m: s._drop(Kind.SERVICE, (m.namespace, m.name)),
    "vtep_update": lambda s, m: s._put(Kind.VTEP, m.node, m),
    "vtep_remove": lambda s, m: s._drop(Kind.VTEP, m.node),
    "wireguard_endpoint_update": lambda s, m: s._put(Kind.WIREGUARD, m.hostname, m),
    "wireguard_endpoint_remove": lambda s, m: s._drop(Kind.WIREGUARD, m.hostname),
    "wireguard_endpoint_v6_update": lambda s, m: s._put(Kind.WIREGUARD_V6, m.hostname, m),
    "wireguard_endpoint_v6_remove": lambda s, m: s._drop(Kind.WIREGUARD_V6, m.hostname),
}


def _encode_ipset(key: str, value: IPSet) -> felix.ToDataplane:
    members = value.sorted_members() + list(value.invalid)
    return felix.ToDataplane(ipset_update=felix.IPSetUpdate(id=key, members=members, type=value.type.name))


_ENCODERS: dict[Kind, Any] = {
    Kind.CONFIG: lambda k, v: felix.ToDataplane(config_update=v),
    Kind.ENCAPSULATION: lambda k, v: felix.ToDataplane(encapsulation=v),
    Kind.GLOBAL_BGP: lambda k, v: felix.ToDataplane(global_bgp_config_update=v),
    Kind.HOST_METADATA: lambda k, v: felix.ToDataplane(host_metadata_update=v),
    Kind.IPAM_POOL: lambda k, v: felix.ToDataplane(ipam_pool_update=felix.IPAMPoolUpdate(id=k, pool=v)),
    Kind.NAMESPACE: lambda k, v: felix.ToDataplane(namespace_update=v),
    Kind.SERVICE_ACCOUNT: lambda k, v: felix.ToDataplane(service_account_update=v),
    Kind.SERVICE: lambda k, v: felix.ToDataplane(service_update=v),
    Kind.IPSET: _encode_ipset,
    Kind.POLICY: lambda k, v: felix.ToDataplane(
        active_policy_update=felix.ActivePolicyUpdate(
            id=felix.PolicyID(name=k.name, namespace=k.namespace, kind=k.kind), policy=v
        )
    ),
    Kind.PROFILE: lambda k, v: felix.ToDataplane(
        active_profile_update=felix.ActiveProfileUpdate(id=felix.ProfileID(name=k), profile=v)
    ),
    Kind.HOST_ENDPOINT: lambda k, v: felix.ToDataplane(
        host_endpoint_update=felix.HostEndpointUpdate(id=felix.HostEndpointID(endpoint_id=k), endpoint=v)
    ),
    Kind.WORKLOAD_ENDPOINT: lambda k, v: felix.ToDataplane(
        workload_endpoint_update=felix.WorkloadEndpointUpdate(
            id=felix.WorkloadEndpointID(orchestrator_id=k[0], workload_id=k[1], endpoint_id=k[2]),
            endpoint=v,
        )
    ),
    Kind.ROUTE: lambda k, v: felix.ToDataplane(route_update=v),
    Kind.VTEP: lambda k, v: felix.ToDataplane(vtep_update=v),
    Kind.WIREGUARD: lambda k, v: felix.ToDataplane(wireguard_endpoint_update=v),
    Kind.WIREGUARD_V6: lambda k, v: felix.ToDataplane(wireguard_endpoint_v6_update=v),
}
