"""A typed, cached view of a DataplaneState for the evaluator and the compiler.

Objects are converted from protobufs (and validated) on first use. A dangling reference, or an
object that fails validation, raises PolicyError: Felix's calc graph never sends a reference
before its target, so either is a bug upstream, and guessing could open the dataplane.
Build a new Catalog for each state version; it does not watch the state.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.model import (
    PROTOCOL_NUMBERS,
    HostEndpoint,
    IPNetwork,
    ParsedIPSet,
    Policy,
    PolicyError,
    Profile,
    Rule,
    WorkloadEndpoint,
    build_policy,
    build_profile,
)
from vppagent.state.model import DataplaneState, PolicyKey, WorkloadKey

EndpointToHostAction = Literal["DROP", "ACCEPT", "RETURN"]


@dataclass(frozen=True)
class Failsafe:
    """One FailsafeInbound/OutboundHostPorts entry: protocol, port and optional remote net."""

    proto: int
    port: int
    net: IPNetwork | None = None


DEFAULT_FAILSAFE_IN = "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
DEFAULT_FAILSAFE_OUT = "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"


def parse_failsafes(text: str) -> tuple[Failsafe, ...]:
    """Felix's syntax: `port`, `proto:port` or `proto:cidr:port` (IPv6 CIDR in brackets), comma
    separated; `none` or empty means no failsafes."""
    if text.strip().lower() in ("", "none"):
        return ()
    out = []
    for entry in text.split(","):
        entry = entry.strip()
        net: IPNetwork | None = None
        if "[" in entry:
            head, _, rest = entry.partition("[")
            cidr, _, tail = rest.partition("]")
            net = ipaddress.ip_network(cidr, strict=False)
            entry = head + "X" + tail
        parts = entry.split(":")
        if len(parts) == 1:
            parts = ["tcp", *parts]
        if len(parts) == 3:
            if net is None:
                net = ipaddress.ip_network(parts[1], strict=False)
            parts = [parts[0], parts[2]]
        if len(parts) != 2 or parts[0].lower() not in PROTOCOL_NUMBERS or not parts[1].isdigit():
            raise ValueError(f"bad failsafe port entry {entry!r}")
        out.append(Failsafe(PROTOCOL_NUMBERS[parts[0].lower()], int(parts[1]), net))
    return tuple(out)


class Catalog:
    def __init__(self, state: DataplaneState) -> None:
        self.state = state
        self._config = {k.lower(): v for k, v in state.config.items()}
        self._policies: dict[PolicyKey, Policy] = {}
        self._profiles: dict[str, Profile] = {}
        self._ipsets: dict[str, ParsedIPSet] = {}
        self._parent: Catalog | None = None  # (derived: parsed IP sets the parent holds are asked of it)

    def derived(self, state: DataplaneState, policies: Iterable[PolicyKey] = (),
                profiles: Iterable[str] = ()) -> Catalog:
        """A catalog of `state`, a copy of this catalog's state with some objects replaced (the
        classifier gate's rewrites of a list's rules): of the named policies and profiles, one
        already built here is taken over when its protobuf and every IP set it names are the
        same objects in `state` (so it would be built and validated the same), instead of being
        built again; so is a parsed IP set that is the same object, also one parsed later (it
        is asked of this catalog and remembered here: the gate derives a catalog per list, and
        each parsed the named-port sets its ragged-port check reads again)."""
        out = Catalog(state)
        out._parent = self
        for key in policies:
            policy = self._policies.get(key)
            if policy is not None and state.policies.get(key) is self.state.policies.get(key) and \
                    self._same_sets(state, policy.inbound_rules + policy.outbound_rules):
                out._policies[key] = policy
        for name in profiles:
            profile = self._profiles.get(name)
            if profile is not None and state.profiles.get(name) is self.state.profiles.get(name) and \
                    self._same_sets(state, profile.inbound_rules + profile.outbound_rules):
                out._profiles[name] = profile
        out._ipsets = {k: v for k, v in self._ipsets.items() if state.ipsets.get(k) is self.state.ipsets.get(k)}
        return out

    def _same_sets(self, state: DataplaneState, rules: Iterable[Rule]) -> bool:
        return all(state.ipsets.get(s) is self.state.ipsets.get(s)
                   for r in rules for s in (*r.address_set_ids(), *r.ip_port_set_ids()))

    # -- objects -------------------------------------------------------------------------------
    def policy(self, key: PolicyKey) -> Policy:
        found = self._policies.get(key)
        if found is None:
            pb = self.state.policies.get(key)
            if pb is None:
                raise PolicyError(f"policy {key} is referenced but not in the state")
            found = self._policies[key] = build_policy(key, pb, self.state.ipsets)
        return found

    def profile(self, name: str) -> Profile:
        found = self._profiles.get(name)
        if found is None:
            pb = self.state.profiles.get(name)
            if pb is None:
                raise PolicyError(f"profile {name} is referenced but not in the state")
            found = self._profiles[name] = build_profile(name, pb, self.state.ipsets)
        return found

    def ipset(self, set_id: str) -> ParsedIPSet:
        found = self._ipsets.get(set_id)
        if found is None:
            raw = self.state.ipsets.get(set_id)
            if raw is None:
                raise PolicyError(f"IP set {set_id} is referenced but not in the state")
            parent = self._parent
            if parent is not None and parent.state.ipsets.get(set_id) is raw:
                found = parent.ipset(set_id)
            else:
                found = ParsedIPSet.from_ipset(raw)
            self._ipsets[set_id] = found
        return found

    def workload(self, ref: WorkloadKey | str | felix.WorkloadEndpoint | WorkloadEndpoint) -> WorkloadEndpoint:
        if isinstance(ref, WorkloadEndpoint):
            return ref
        if isinstance(ref, felix.WorkloadEndpoint):
            return WorkloadEndpoint.from_proto(WorkloadKey("", "", ref.name), ref)
        key = parse_workload_key(ref) if isinstance(ref, str) else ref
        pb = self.state.workload_endpoints.get(key)
        if pb is None:
            raise PolicyError(f"workload endpoint {key} is not in the state")
        return WorkloadEndpoint.from_proto(key, pb)

    def host_endpoint(self, ref: str | HostEndpoint) -> HostEndpoint:
        if isinstance(ref, HostEndpoint):
            return ref
        pb = self.state.host_endpoints.get(ref)
        if pb is None:
            raise PolicyError(f"host endpoint {ref} is not in the state")
        return HostEndpoint.from_proto(ref, pb)

    # -- configuration (Felix parameter names, case-insensitive) -------------------------------
    def config(self, name: str, default: str) -> str:
        return self._config.get(name.lower(), default).strip()

    def config_bool(self, name: str) -> bool:
        return self.config(name, "false").lower() in ("true", "1", "yes", "on")

    @property
    def vxlan_port(self) -> int:
        return int(self.config("VXLANPort", "4789"))

    @property
    def endpoint_to_host_action(self) -> EndpointToHostAction:
        value = self.config("DefaultEndpointToHostAction", "DROP").upper()
        if value == "ACCEPT":
            return "ACCEPT"
        return "RETURN" if value == "RETURN" else "DROP"

    @property
    def failsafe_inbound(self) -> tuple[Failsafe, ...]:
        return parse_failsafes(self.config("FailsafeInboundHostPorts", DEFAULT_FAILSAFE_IN))

    @property
    def failsafe_outbound(self) -> tuple[Failsafe, ...]:
        return parse_failsafes(self.config("FailsafeOutboundHostPorts", DEFAULT_FAILSAFE_OUT))


def parse_workload_key(text: str) -> WorkloadKey:
    """`ORCH/WORKLOAD/ENDPOINT`; the workload id itself may contain '/' (k8s: `ns/pod`)."""
    parts = text.split("/")
    if len(parts) < 3 or not all(parts):
        raise PolicyError(f"workload endpoint {text!r}: expected ORCHESTRATOR/WORKLOAD/ENDPOINT")
    return WorkloadKey(parts[0], "/".join(parts[1:-1]), parts[-1])


def as_catalog(state: DataplaneState | Catalog) -> Catalog:
    return state if isinstance(state, Catalog) else Catalog(state)
