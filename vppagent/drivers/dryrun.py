"""The dry-run driver: programs nothing; compiles what it would program and keeps it.

Each endpoint's lists are compiled as the policy core compiles them (`policy.compile`), per
endpoint: an endpoint whose data or policies cannot be parsed or compiled is that endpoint's
failure (it keeps the lists it had: fail closed) and the others go on. So the dry run reports
statuses as a real driver would, and `lists` is what a real dataplane would hold.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from vppagent.drivers.base import ApplyReport, Driver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import Attachment
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import DEFAULT_RULE_LIMIT, compile_endpoint, compile_host_endpoint
from vppagent.policy.flat import CompiledList
from vppagent.policy.model import Direction, PolicyError, WorkloadEndpoint
from vppagent.state.diff import StateDiff, diff_states
from vppagent.state.model import ENDPOINT_KINDS, DataplaneState, Kind, endpoint_policy_keys, ip_set_ids

log = logging.getLogger(__name__)
Ref = tuple[Kind, Any]
Lists = tuple[CompiledList, CompiledList]  # (egress, ingress), as the endpoint would hold them


@dataclass
class DryRunDriver(Driver):
    """Keeps the state it was given and every endpoint's compiled lists."""

    name: str = "dry-run"
    programs_dataplane: bool = False
    rule_limit: int = DEFAULT_RULE_LIMIT
    held: DataplaneState = field(default_factory=DataplaneState)
    lists: dict[Ref, Lists] = field(default_factory=dict)
    failed: dict[Ref, str] = field(default_factory=dict)
    applies: int = 0
    resyncs: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    history_limit: int = 100
    pods: dict[str, PodSpec] = field(default_factory=dict)

    def resync(self, state: DataplaneState) -> ApplyReport:
        self.resyncs += 1
        return self._record("resync", diff_states(self.held, state), state, everything=True)

    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        self.applies += 1
        return self._record("apply", diff, state, everything=False)

    def poll(self) -> ApplyReport:
        return ApplyReport(failed=dict(self.failed))

    def _record(self, what: str, diff: StateDiff, state: DataplaneState, *, everything: bool) -> ApplyReport:
        self.held = state.copy()
        log.info("dry-run %s: %d changes %s", what, diff.count(), sorted(k.value for k in diff.kinds()))
        self.history.append({"what": what, **diff.summary()})
        del self.history[: -self.history_limit]
        self._compile(self._affected(diff, state, everything), state)
        return ApplyReport(ok=True, writes=diff.count(), failed=dict(self.failed))

    def _affected(self, diff: StateDiff, state: DataplaneState, everything: bool) -> set[Ref]:
        """Endpoints whose lists may differ: changed ones, those using a changed policy, profile
        or IP set, and those still failing (a retry tries them again)."""
        endpoints = {(k, key) for k in ENDPOINT_KINDS for key in state.tables[k]}
        kinds = diff.kinds()
        if everything or Kind.CONFIG in kinds or Kind.ENCAPSULATION in kinds:
            return endpoints
        out = {(k, key) for k in ENDPOINT_KINDS for key in diff.upserts.get(k, {})} | set(self.failed)
        sets = set(diff.upserts.get(Kind.IPSET, {})) | diff.removes.get(Kind.IPSET, set())
        policies = set(diff.upserts.get(Kind.POLICY, {})) | diff.removes.get(Kind.POLICY, set())
        profiles = set(diff.upserts.get(Kind.PROFILE, {})) | diff.removes.get(Kind.PROFILE, set())
        if sets:
            policies |= {k for k, pb in state.policies.items() if _uses(pb, sets)}
            profiles |= {k for k, pb in state.profiles.items() if _uses(pb, sets)}
        if policies or profiles:
            for kind, key in endpoints:
                pb = state.tables[kind][key]
                if set(pb.profile_ids) & profiles or endpoint_policy_keys(pb) & policies:
                    out.add((kind, key))
        return out & endpoints | {ref for ref in self.lists.keys() | self.failed.keys() if ref not in endpoints}

    def _compile(self, refs: set[Ref], state: DataplaneState) -> None:
        catalog = Catalog(state)
        for ref in refs:
            kind, key = ref
            pb = state.tables[kind].get(key)
            if pb is None:  # removed
                self.lists.pop(ref, None)
                self.failed.pop(ref, None)
                continue
            try:
                if kind == Kind.WORKLOAD_ENDPOINT:
                    ep = WorkloadEndpoint.from_proto(key, pb)
                    lists = (compile_endpoint(catalog, ep, Direction.EGRESS, rule_limit=self.rule_limit),
                             compile_endpoint(catalog, ep, Direction.INGRESS, rule_limit=self.rule_limit))
                else:
                    lists = (compile_host_endpoint(catalog, key, Direction.EGRESS, rule_limit=self.rule_limit),
                             compile_host_endpoint(catalog, key, Direction.INGRESS, rule_limit=self.rule_limit))
            except PolicyError as exc:  # this endpoint's fault (named in the message); it keeps what it had
                self.failed[ref] = str(exc)
                continue
            except ValueError as exc:  # Felix's data did not parse (an address, say)
                self.failed[ref] = f"{kind.value[:-1].replace('_', ' ')} {key}: {exc}"
                continue
            self.lists[ref] = lists
            self.failed.pop(ref, None)

    def attach_pod(self, spec: PodSpec) -> Attachment:
        """Record only: the dry-run driver changes nothing on the host."""
        log.info("dry-run CNI Add %s as %s", spec.workload, spec.host_ifname)
        self.pods[spec.host_ifname] = spec
        return Attachment(spec.host_ifname, "00:00:00:00:00:00")

    def detach_pod(self, request: PodDelete) -> str | None:
        for name, spec in list(self.pods.items()):
            if str(spec.netns) == request.netns and spec.container_ifname == request.container_ifname:
                del self.pods[name]
                return name
        return None

    def status(self) -> dict[str, Any]:
        return {"applies": self.applies, "resyncs": self.resyncs, "objects": self.held.counts(),
                "endpoints_compiled": len(self.lists), "failed": len(self.failed)}


def _uses(pb: felix.Policy | felix.Profile, sets: set[str]) -> bool:
    return any(not sets.isdisjoint(ip_set_ids(r)) for r in (*pb.inbound_rules, *pb.outbound_rules))
