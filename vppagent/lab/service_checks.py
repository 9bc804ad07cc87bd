"""What the lab probes of a scenario's Services and what it expects, flow by flow (pure).

A flow to a Service frontend may be translated to any backend the Service gives that frontend
(`Outcomes.candidates`); which one the load balancer picks is not for the oracle to know. So each
candidate is judged as if the client had reached it directly, with the reference evaluator and
Calico's semantics (the backend's ingress policy sees the source the backend sees, the client's own
address, or a node's source-NAT address below, never the Service's address; the client's egress
policy sees the backend): the flow may be answered by a candidate the
policy lets in, or go unanswered if it picks one the policy keeps out. An answer from any other
pod, a removed backend included, is wrong, and so is one from a backend that saw another source than
the oracle's (the listener says which address it saw).

- Cluster IP, from a pod: every backend is a candidate, judged like a pod-to-pod flow to the
  backend's target port. A pod is not probed against a Service it backs itself (hairpin, proven
  by tests/realvpp/test_services.py: its source becomes the hairpin address, which a scenario's
  policy cannot name).
- NodePort of node N, from the host on the nodes' network (`OUTSIDE`): the candidates are every
  backend, or with `externalTrafficPolicy: Local` those on N. A backend on N sees the client's own
  address (cnat source-NATs no flow that leaves to a pod of the node); judged as a flow arriving on
  N's uplink. A backend on another node M sees N's source-NAT address (`Scenario.snat_address`: cnat's
  Kubernetes policy source-NATs outside-to-outside flows, docs/services.md "Source NAT"), as Calico
  does for such a flow: judged on N as a flow forwarded from N's uplink back out of it (client ->
  backend), then on M as a flow from N's source-NAT address arriving on M's uplink for the backend.
- No candidate (no backends, or the Service removed in this step): no answer.

Across flows (`step_problems`): flows to a Service without affinity are spread (every candidate
that may answer got some, once enough flows were answered to tell); with ClientIP affinity every
answered flow of one client went to the same backend.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from vppagent.lab import oracle
from vppagent.lab.felix_feed import workload_key
from vppagent.lab.listener import read_banner
from vppagent.lab.scenario import OUTSIDE_ADDRESS, ClusterObjects, Scenario
from vppagent.lab.scenario_objects import Service, ServicePort
from vppagent.policy.evaluate import forward_verdict
from vppagent.policy.model import PROTOCOL_NUMBERS
from vppagent.policy.packet import Packet
from vppagent.state.model import DataplaneState

OUTSIDE = "outside"  # the source name of the host on the nodes' network
FLOWS_PER_PROBE = 8  # new flows per client and frontend, each from its own source port
SPREAD_MIN_FLOWS = 8  # answered flows per candidate before "every candidate got some" is checked


@dataclass(frozen=True)
class Frontend:
    """One address and port of a Service: its cluster IP, or the NodePort of one node."""

    service: str  # NAMESPACE/NAME
    port_name: str  # the Service port's name, or protocol/port when it has none
    protocol: str
    address: str
    port: int
    node: str | None = None  # NodePort: the node whose address this is

    def label(self) -> str:
        where = f"@{self.node}" if self.node else ""
        return f"{self.service.removeprefix('default/')}{where}:{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Outcomes:
    """The backends a flow may reach and what each does with it."""

    answering: frozenset[str]  # candidates whose answer is right
    silent: tuple[tuple[str, str], ...]  # (candidate, why its flow gets no answer)
    reason: str  # why there is no candidate at all ("" when there are)
    sees: tuple[tuple[str, str], ...] = ()  # (answering candidate, the source address it must see)

    @property
    def expect(self) -> str:
        if not self.silent:
            return "answer" if self.answering else "no answer"
        return "either" if self.answering else "no answer"

    def describe(self) -> str:
        sees = dict(self.sees)
        parts = [f"{b} answers" + (f" (sees {sees[b]})" if b in sees else "") for b in sorted(self.answering)]
        parts += [f"{b} silent: {why}" for b, why in self.silent]
        return "; ".join(parts) or self.reason


def frontends(scenario: Scenario, service: Service) -> list[Frontend]:
    out = []
    for port in service.ports:
        out.append(Frontend(service.key, port.label(), port.protocol, str(service.cluster_ip), port.port))
        if port.node_port is not None:
            out += [Frontend(service.key, port.label(), port.protocol, str(scenario.node_address(node.name)),
                             port.node_port, node.name) for node in scenario.nodes]
    return out


def clients(scenario: Scenario, service: Service, frontend: Frontend) -> list[str]:
    if frontend.node is not None:
        return [OUTSIDE]
    return [pod.name for _, pod in scenario.pods() if pod.name not in service.backends]


def _port_of(service: Service, frontend: Frontend) -> ServicePort:
    return next(p for p in service.ports if p.label() == frontend.port_name)


def outcomes(scenario: Scenario, objects: ClusterObjects, states: Mapping[str, DataplaneState],
             frontend: Frontend, source: str, source_port: int) -> Outcomes:
    """What may happen to one flow from `source` (a pod, or OUTSIDE) to `frontend` while `objects`
    are in force (the Service missing from them: removed)."""
    service = objects.services.get(frontend.service)
    if service is None:
        return Outcomes(frozenset(), (), f"service {frontend.service} removed: nothing translates "
                                         f"{frontend.address}:{frontend.port}")
    port = _port_of(service, frontend)
    candidates = list(service.backends)
    if frontend.node is not None and service.external_traffic_policy == "Local":
        candidates = [b for b in candidates if scenario.node_of(b).name == frontend.node]
    if not candidates:
        local = f" on {frontend.node} (externalTrafficPolicy Local)" if service.backends else ""
        return Outcomes(frozenset(), (), f"service {service.key} has no backend{local}: no translation")
    answering, silent, sees = set(), [], []
    for backend in candidates:
        seen = seen_source(scenario, frontend, source, backend)
        why = _why_silent(scenario, objects, states, frontend, source, backend, port, source_port)
        if why is None:
            answering.add(backend)
            sees.append((backend, str(seen)))
        else:
            silent.append((backend, why))
    return Outcomes(frozenset(answering), tuple(silent), "", tuple(sees))


def seen_source(scenario: Scenario, frontend: Frontend, source: str, backend: str) -> ipaddress.IPv4Address:
    """The source address `backend` sees on a flow from `source` to `frontend` that the Service sent
    it: the client's own, but N's source-NAT address for a NodePort of N sent to another node."""
    if source != OUTSIDE:
        return scenario.pod_address(source)
    if frontend.node is not None and scenario.node_of(backend).name != frontend.node:
        return scenario.snat_address(frontend.node)
    return OUTSIDE_ADDRESS


def _why_silent(scenario: Scenario, objects: ClusterObjects, states: Mapping[str, DataplaneState],
                frontend: Frontend, source: str, backend: str, port: ServicePort, source_port: int) -> str | None:
    """None when `backend` answers a flow from `source` that the Service sent it, else why not."""
    if frontend.node is None:
        verdict = oracle.expected(scenario, objects, states, source, backend, port.target, source_port)
        return None if verdict.allowed else f"policy [{verdict.reason}]"
    node, backend_node = frontend.node, scenario.node_of(backend).name
    uplinks = oracle.uplink_endpoints(objects)
    to_backend = ipaddress.ip_address(scenario.pod_address(backend))
    packet = Packet(PROTOCOL_NUMBERS[port.protocol], ipaddress.ip_address(OUTSIDE_ADDRESS), to_backend,
                    source_port, port.target.number)
    if backend_node != node:
        # N forwards the translated flow out of the uplink it came in on; cnat source-NATs it on
        # output, after the ACLs, so N's policy sees the client.
        leaving = forward_verdict(states[node], uplinks.get(node), uplinks.get(node), packet)
        if not oracle.leg_allows(leaving):
            return f"policy [{node}: {leaving.describe()}]"
        # Judged with the client's source port: cnat may pick another one, which only a rule naming
        # source ports could tell.
        packet = replace(packet, src=scenario.snat_address(node))
    arriving = forward_verdict(states[backend_node], uplinks.get(backend_node), workload_key(scenario, backend),
                               packet)
    if oracle.leg_allows(arriving):
        return None
    nat = f", from {node}'s source-NAT address {packet.src}" if backend_node != node else ""
    return f"policy [{backend_node}: {arriving.describe()}{nat}]"


def answered_by(answer: str | None, frontend: Frontend, service: Service | None) -> str | None:
    """The pod that answered a flow (listeners answer `NAME PROTO/PORT from ADDRESS`), or None for no
    answer. An answer on another port than the Service's target port is returned whole, to be reported."""
    if answer is None:
        return None
    name, _, port = read_banner(answer)[0].partition(" ")
    if service is not None and port != str(_port_of(service, frontend).target):
        return f"{answer!r}"
    return name


def source_seen(answer: str | None) -> str | None:
    """The source address the answering listener saw (None: no answer, or a line without one)."""
    return None if answer is None else read_banner(answer)[1]


def judge(expected: Outcomes, answered: str | None, detail: str, seen: str | None = None) -> str | None:
    """None when a flow's result is one `expected` allows, else what is wrong. `seen`: the source
    address the answering backend saw (source_seen)."""
    if answered is None:
        if expected.answering and not expected.silent:
            return f"no answer ({detail}), expected one from {', '.join(sorted(expected.answering))}"
        return None
    if answered in expected.answering:
        want = dict(expected.sees).get(answered)
        if want is not None and seen != want:
            return f"answered by {answered}, which saw the flow from {seen}, not from {want}"
        return None
    why = dict(expected.silent).get(answered)
    if why is not None:
        return f"answered by {answered}, which should not answer: {why}"
    return f"answered by {answered}, which is no backend this flow may reach ({expected.describe()})"


@dataclass(frozen=True)
class JudgedFlow:
    frontend: Frontend
    source: str
    expected: Outcomes
    answered: str | None


def step_problems(flows: Iterable[JudgedFlow], services: Mapping[str, Service]) -> list[str]:
    """Spread (no affinity) and stickiness (ClientIP) over all the step's flows, per frontend."""
    by_frontend: dict[Frontend, list[JudgedFlow]] = {}
    for flow in flows:
        by_frontend.setdefault(flow.frontend, []).append(flow)
    problems = []
    for frontend, judged in by_frontend.items():
        service = services.get(frontend.service)
        if service is None:
            continue
        answered = Counter(f.answered for f in judged if f.answered is not None)
        if service.session_affinity == "ClientIP":
            for source in sorted({f.source for f in judged}):
                got = sorted({f.answered for f in judged if f.source == source and f.answered is not None})
                if len(got) > 1:
                    problems.append(f"{frontend.label()}: session affinity ClientIP, yet {source}'s flows were "
                                    f"answered by {', '.join(got)}")
            continue
        # Only flows every candidate of which answers say how the load balancer spreads.
        fair = [f for f in judged if not f.expected.silent and len(f.expected.answering) > 1]
        candidates = set().union(*(f.expected.answering for f in fair)) if fair else set()
        fair_answered = Counter(f.answered for f in fair if f.answered is not None)
        if candidates and sum(fair_answered.values()) >= SPREAD_MIN_FLOWS * len(candidates):
            missing = sorted(candidates - set(fair_answered))
            if missing:
                problems.append(f"{frontend.label()}: {sum(fair_answered.values())} flows answered "
                                f"({dict(sorted(answered.items()))}), none by {', '.join(missing)}: not spread")
    return problems
