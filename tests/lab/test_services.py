"""Services in lab scenarios: the `services:` format and its errors, the objects the lab's API
server publishes, the oracle for flows to Services, and the refusal on drivers without Services.
(The real run on VPP is in test_lab_run.py.)"""

from __future__ import annotations

import ipaddress
import textwrap
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from vppagent.lab.apiserver import ENDPOINTSLICES, SERVICES
from vppagent.lab.cli import EXIT_SKIPPED, EXIT_USAGE, main, services_refusal
from vppagent.lab.felix_feed import NodeFeed
from vppagent.lab.kube_objects import endpoint_slice, expected_rows, kube_objects, service_object
from vppagent.lab.report import LabResult, ServiceCell, StepResult, format_step
from vppagent.lab.scenario import (
    MAX_SERVICE_NODES,
    NODE_GATEWAY,
    NODE_SUBNET,
    OUTSIDE_ADDRESS,
    ClusterObjects,
    Scenario,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from vppagent.lab.scenario_objects import Port
from vppagent.lab.service_checks import (
    OUTSIDE,
    Frontend,
    JudgedFlow,
    Outcomes,
    answered_by,
    clients,
    frontends,
    judge,
    outcomes,
    source_seen,
    step_problems,
)
from vppagent.services.model import parse_endpoint_slice, parse_service, service_entry
from vppagent.state.model import DataplaneState

# Two nodes; web-1 and web-2 back `web`; only `friend` may reach them (policy on the backends).
SMALL = """
name: svc
pod_profiles: [allow-all]
nodes:
  - name: n1
    pods:
      - {name: web-1, ports: [8080, udp/53]}
      - {name: friend}
  - name: n2
    pods:
      - {name: web-2, ports: [8080, udp/53]}
      - {name: stranger}
profiles:
  - {name: allow-all, ingress: [{action: allow}], egress: [{action: allow}]}
policies:
  - name: web
    applies_to: [web-1, web-2]
    ingress: [{action: allow, source: {pods: [friend]}}]
services:
  - name: web
    type: NodePort
    cluster_ip: 10.96.0.10
    ports:
      - {name: http, port: 80, target_port: 8080, node_port: 30080}
      - {name: dns, protocol: udp, port: 53, node_port: 30053}
    backends: [web-1, web-2]
steps:
  - name: web-2 out
    change:
      services:
        web: {remove: [web-2]}
  - name: web gone
    remove:
      services: [default/web]
"""


def first_snapshot(text: str = SMALL) -> tuple[Scenario, ClusterObjects]:
    """A scenario parsed from `text` and the objects of its first snapshot."""
    sc = parse_scenario(text)
    return sc, next(iter(sc.snapshots())).objects


def web_backed_by(objects: ClusterObjects, backends: list[str]) -> ClusterObjects:
    """`objects` with default/web's backends replaced."""
    web = objects.services["default/web"].model_copy(update={"backends": backends})
    return replace(objects, services={"default/web": web})


def states_of(scenario: Scenario, objects: ClusterObjects) -> dict[str, DataplaneState]:
    """What each node's agent was told, as the lab's Felix feed tells it."""
    interfaces = {pod.name: f"cali{i}" for i, (_, pod) in enumerate(scenario.pods())}
    states = {}
    for node in scenario.nodes:
        feed = NodeFeed(scenario, node.name, interfaces)
        feed.snapshot(objects)
        states[node.name] = feed.state
    return states


def frontend(scenario: Scenario, objects: ClusterObjects, label: str) -> Frontend:
    service = objects.services["default/web"]
    return next(f for f in frontends(scenario, service) if f.label() == label)


# -- the format -------------------------------------------------------------------------------------

def test_services_and_their_steps_replay() -> None:
    sc = parse_scenario(SMALL)
    assert sc.has_services() and not load_scenario().has_services()
    snapshots = list(sc.snapshots())
    web = snapshots[0].objects.services["default/web"]
    assert web.ports[0].target == Port("tcp", 8080) and web.ports[1].target == Port("udp", 53)
    assert [s.objects.services["default/web"].backends for s in snapshots[:2]] == [["web-1", "web-2"], ["web-1"]]
    assert snapshots[2].objects.services == {}


def test_kubernetes_spellings_are_accepted() -> None:
    camel = SMALL.replace("cluster_ip:", "clusterIP:").replace("target_port:", "targetPort:").replace(
        "node_port:", "nodePort:").replace("type: NodePort", "type: NodePort\n    externalTrafficPolicy: Local")
    web = next(iter(parse_scenario(camel).snapshots())).objects.services["default/web"]
    assert web.external_traffic_policy == "Local" and web.ports[0].node_port == 30080
    assert web.ports[0].target == Port("tcp", 8080)


def test_the_bundled_services_scenario_loads_by_name() -> None:
    sc = load_scenario(Path("services"))
    assert sc.name == "services" and sc.has_services()
    kinds = {(s.type, s.external_traffic_policy, s.session_affinity) for s in sc.services}
    assert ("NodePort", "Local", "None") in kinds and ("ClusterIP", "Cluster", "ClientIP") in kinds
    assert any(step.change.services for step in sc.steps) and any(step.remove.services for step in sc.steps)


@pytest.mark.parametrize(("original", "broken", "message"), [
    ("backends: [web-1, web-2]", "backends: [web-1, ghost]", r"service default/web: unknown backend pod 'ghost'"),
    ("backends: [web-1, web-2]", "backends: [web-1, friend]",
     r"service default/web: backend friend does not listen on tcp/8080 \(port http\)"),
    ("cluster_ip: 10.96.0.10", "cluster_ip: 10.65.1.9", r"service default/web: cluster IP 10.65.1.9 is inside"),
    ("cluster_ip: 10.96.0.10", "cluster_ip: fd00::1", r"services\.0\.cluster_ip"),
    ("node_port: 30080", "node_port: 80", r"service default/web: port http: a NodePort Service needs node_port"),
    ("type: NodePort", "type: ClusterIP", r"service default/web: port http: node_port needs type NodePort"),
    ("{name: http, port", "{port", r"service default/web: every port needs a name"),
    ("protocol: udp, port: 53", "protocol: sctp, port: 53", r"services\.0\.ports\.1\.protocol"),
    ("backends: [web-1, web-2]", "backends: [web-1, web-1]", r"service default/web: a backend is listed twice"),
    ("web: {remove: [web-2]}", "api: {remove: [web-2]}",
     r"step 1 \(web-2 out\): change of unknown service default/api"),
    ("services: [default/web]", "services: [other/web]", r"step 2 \(web gone\): remove of unknown service other/web"),
    ("web: {remove: [web-2]}", "web: {add: [nobody]}", r"step 1 \(web-2 out\): service default/web: unknown backend"),
    ("    backends: [web-1, web-2]\n", "    backends: [web-1, web-2]\n    selector: {app: web}\n", r"selector"),
])
def test_a_broken_service_fails_at_load_time_naming_it(original: str, broken: str, message: str) -> None:
    text = SMALL.replace(original, broken, 1)
    assert text != SMALL
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "t.yaml")


def test_two_services_cannot_share_a_cluster_ip_or_node_port() -> None:
    second = textwrap.indent(textwrap.dedent("""\
        - name: other
          type: NodePort
          cluster_ip: 10.96.0.11
          ports: [{port: 81, target_port: 8080, node_port: 30080}]
          backends: [web-1]
        """), "  ")
    text = SMALL.replace("steps:", second + "steps:")
    with pytest.raises(ScenarioError, match=r"service default/other: node port tcp/30080 is service default/web's"):
        parse_scenario(text, "t.yaml")
    with pytest.raises(ScenarioError, match=r"service default/other: cluster IP 10.96.0.10 is service default/web's"):
        parse_scenario(text.replace("10.96.0.11", "10.96.0.10").replace("node_port: 30080}", "node_port: 30081}"))


# -- what the API server publishes --------------------------------------------------------------------

def test_the_published_objects_read_back_as_the_scenario_says() -> None:
    sc, objects = first_snapshot()
    web = objects.services["default/web"]
    spec, slice_spec = parse_service(service_object(web)), parse_endpoint_slice(endpoint_slice(sc, web))
    assert spec is not None and slice_spec is not None
    entry = service_entry(spec, [slice_spec], ["198.18.0.2"], "n2")
    assert [f.text() for f in entry.frontends()] == ["10.96.0.10:53/udp", "10.96.0.10:80/tcp", "198.18.0.2:30053/udp",
                                                    "198.18.0.2:30080/tcp"]
    assert [b.text() for b in entry.backends()] == ["10.65.1.2:53", "10.65.1.2:8080", "10.65.2.2:53", "10.65.2.2:8080"]
    assert {b.node for b in entry.backends()} == {"n1", "n2"}
    assert expected_rows(sc, objects, "n2") == [entry.report()]
    assert kube_objects(sc, objects)[SERVICES] == {"default/web": service_object(web)}
    assert kube_objects(sc, ClusterObjects()) == {SERVICES: {}, ENDPOINTSLICES: {}}


# -- the oracle -------------------------------------------------------------------------------------

def test_cluster_ip_flows_are_judged_against_the_backend_with_the_client_as_source() -> None:
    sc, objects = first_snapshot()
    states = states_of(sc, objects)
    http = frontend(sc, objects, "web:80/tcp")
    assert clients(sc, objects.services["default/web"], http) == ["friend", "stranger"]  # not its backends
    friend = outcomes(sc, objects, states, http, "friend", 20000)
    assert friend.answering == {"web-1", "web-2"} and friend.expect == "answer"
    stranger = outcomes(sc, objects, states, http, "stranger", 20001)
    assert not stranger.answering and stranger.expect == "no answer"
    assert {b for b, _ in stranger.silent} == {"web-1", "web-2"}
    assert all(why.startswith("policy") for _, why in stranger.silent)


def test_a_policy_naming_the_cluster_ip_does_not_let_clients_in() -> None:
    """Calico: the backend's ingress policy sees the client, never the Service's address."""
    sc, objects = first_snapshot(SMALL.replace("source: {pods: [friend]}", "source: {nets: [10.96.0.0/24]}"))
    result = outcomes(sc, objects, states_of(sc, objects), frontend(sc, objects, "web:80/tcp"), "friend", 20000)
    assert result.expect == "no answer", result.describe()


def test_each_node_has_its_own_source_nat_address_on_the_nodes_network() -> None:
    sc = parse_scenario(SMALL)
    assert [str(sc.snat_address(n.name)) for n in sc.nodes] == ["198.18.0.201", "198.18.0.202"]
    taken = {sc.node_address(n.name) for n in sc.nodes} | {OUTSIDE_ADDRESS, ipaddress.IPv4Address(NODE_GATEWAY)}
    assert all(sc.snat_address(n.name) in NODE_SUBNET and sc.snat_address(n.name) not in taken for n in sc.nodes)


def test_a_services_scenario_has_no_more_nodes_than_source_nat_addresses() -> None:
    many = "\n".join(f"  - {{name: x{i}}}" for i in range(MAX_SERVICE_NODES - 2))  # SMALL has 2
    sc = parse_scenario(SMALL.replace("\nprofiles:", "\n" + many + "\nprofiles:", 1))
    last = sc.nodes[-1].name
    assert len(sc.nodes) == MAX_SERVICE_NODES and str(sc.snat_address(last)) == "198.18.0.249"
    with pytest.raises(ScenarioError, match=r"at most 49 nodes with Services"):
        parse_scenario(SMALL.replace("\nprofiles:", "\n" + many + "\n  - {name: one-more}\nprofiles:", 1))


def test_node_ports_reach_other_nodes_backends_from_the_nodes_source_nat_address() -> None:
    sc, objects = first_snapshot(SMALL.replace("source: {pods: [friend]}", "source: {nets: [198.18.0.0/24]}"))
    states = states_of(sc, objects)
    at_n1 = frontend(sc, objects, "web@n1:30080/tcp")
    assert clients(sc, objects.services["default/web"], at_n1) == [OUTSIDE]
    result = outcomes(sc, objects, states, at_n1, OUTSIDE, 20000)
    # web-1 is n1's own: it sees the client; web-2 is reached source-NATed to n1's address
    assert result.answering == {"web-1", "web-2"} and not result.silent and result.expect == "answer"
    assert dict(result.sees) == {"web-1": "198.18.0.250", "web-2": "198.18.0.201"}
    assert "web-2 answers (sees 198.18.0.201)" in result.describe()
    # externalTrafficPolicy Local: web-2 is no candidate at n1, web-1 sees the client
    web = objects.services["default/web"].model_copy(update={"external_traffic_policy": "Local"})
    result = outcomes(sc, replace(objects, services={"default/web": web}), states, at_n1, OUTSIDE, 20001)
    assert result.answering == {"web-1"} and not result.silent and result.expect == "answer"
    assert dict(result.sees) == {"web-1": "198.18.0.250"}
    only_remote = web.model_copy(update={"backends": ["web-2"]})
    result = outcomes(sc, ClusterObjects(services={"default/web": only_remote}), states, at_n1, OUTSIDE, 20002)
    assert result.expect == "no answer" and "no backend on n1" in result.reason


def test_a_remote_backends_policy_judges_the_source_nat_address_not_the_client() -> None:
    """Calico: a source-NATed flow is judged by the address the backend sees. web's policy lets the
    outside host in and nothing else of the nodes' network: web-2 answers at n2 (its own node, the
    client's address) and stays silent at n1 (n1's source-NAT address); a policy naming n1's address
    and not the client's the other way round."""
    sc, objects = first_snapshot(SMALL.replace("source: {pods: [friend]}", "source: {nets: [198.18.0.250/32]}"))
    objects = web_backed_by(objects, ["web-2"])
    states = states_of(sc, objects)
    at_n1, at_n2 = (frontend(sc, objects, f"web@{n}:30080/tcp") for n in ("n1", "n2"))
    local = outcomes(sc, objects, states, at_n2, OUTSIDE, 20000)
    assert local.expect == "answer" and dict(local.sees) == {"web-2": "198.18.0.250"}
    remote = outcomes(sc, objects, states, at_n1, OUTSIDE, 20001)
    assert remote.expect == "no answer" and [b for b, _ in remote.silent] == ["web-2"]
    assert "from n1's source-NAT address 198.18.0.201" in remote.silent[0][1]
    sc, objects = first_snapshot(SMALL.replace("source: {pods: [friend]}", "source: {nets: [198.18.0.201/32]}"))
    objects = web_backed_by(objects, ["web-2"])
    states = states_of(sc, objects)
    assert outcomes(sc, objects, states, at_n2, OUTSIDE, 20002).expect == "no answer"
    assert outcomes(sc, objects, states, at_n1, OUTSIDE, 20003).answering == {"web-2"}


def test_the_uplinks_forward_policy_on_the_ingress_node_judges_a_remote_node_port_flow() -> None:
    """n1 forwards the translated flow out of the uplink it came in on: an applyOnForward host
    endpoint there that denies the client keeps web-2 silent, though web-2's policy would let n1's
    source-NAT address in."""
    hep = textwrap.dedent("""\
        host_endpoints:
          - {name: n1-eth0, node: n1, interface: eth0, profiles: [allow-all]}
        policies:
          - name: no-outside
            applies_to: [n1-eth0]
            apply_on_forward: true
            ingress: [{action: deny, source: {nets: [198.18.0.250/32]}}]
        """)
    text = SMALL.replace("source: {pods: [friend]}", "source: {nets: [198.18.0.0/24]}").replace("policies:\n", hep, 1)
    sc, objects = first_snapshot(text)
    objects = web_backed_by(objects, ["web-2"])
    states = states_of(sc, objects)
    remote = outcomes(sc, objects, states, frontend(sc, objects, "web@n1:30080/tcp"), OUTSIDE, 20000)
    assert remote.expect == "no answer" and remote.silent[0][1].startswith("policy [n1: ")
    assert outcomes(sc, objects, states, frontend(sc, objects, "web@n2:30080/tcp"), OUTSIDE, 20001).expect == "answer"


def test_removed_backends_and_services_may_not_answer() -> None:
    sc = parse_scenario(SMALL)
    initial, web2_out, gone = (s.objects for s in sc.snapshots())
    http = frontend(sc, initial, "web:80/tcp")
    after = outcomes(sc, web2_out, states_of(sc, web2_out), http, "friend", 20000)
    assert after.answering == {"web-1"}
    problem = judge(after, "web-2", "answered")
    assert problem is not None and "web-2, which is no backend this flow may reach" in problem
    assert judge(after, "web-1", "answered", "10.65.1.3") is None  # friend, seen as itself
    assert judge(after, None, "timeout") == "no answer (timeout), expected one from web-1"
    removed = outcomes(sc, gone, states_of(sc, gone), http, "friend", 20001)
    assert removed.expect == "no answer" and "removed" in removed.reason
    assert judge(removed, None, "timeout") is None and judge(removed, "web-1", "answered") is not None


def test_an_answer_must_come_from_the_target_port() -> None:
    sc, objects = first_snapshot()
    http = frontend(sc, objects, "web:80/tcp")
    service = objects.services["default/web"]
    assert answered_by("web-1 tcp/8080 from 10.65.1.3", http, service) == "web-1"
    assert answered_by(None, http, service) is None
    wrong = answered_by("web-1 udp/53 from 10.65.1.3", http, service)
    assert wrong == "'web-1 udp/53 from 10.65.1.3'" and judge(Outcomes(frozenset({"web-1"}), (), ""), wrong, "answered")


def test_an_answer_must_come_from_the_source_the_backend_should_see() -> None:
    sc, objects = first_snapshot(SMALL.replace("source: {pods: [friend]}", "source: {nets: [198.18.0.0/24]}"))
    expected = outcomes(sc, objects, states_of(sc, objects), frontend(sc, objects, "web@n1:30080/tcp"), OUTSIDE, 20000)
    assert source_seen("web-2 tcp/8080 from 198.18.0.201") == "198.18.0.201" and source_seen(None) is None
    assert judge(expected, "web-2", "answered", "198.18.0.201") is None
    assert judge(expected, "web-1", "answered", "198.18.0.250") is None
    # not source-NATed to a remote backend, or source-NATed to a local one: both wrong
    assert judge(expected, "web-2", "answered", "198.18.0.250") == (
        "answered by web-2, which saw the flow from 198.18.0.250, not from 198.18.0.201")
    assert judge(expected, "web-1", "answered", "198.18.0.201") is not None
    assert judge(expected, "web-1", "answered", None) is not None  # a listener line without its source
    sc, objects = first_snapshot()  # friend may reach the backends: they see it as itself
    friend = outcomes(sc, objects, states_of(sc, objects), frontend(sc, objects, "web:80/tcp"), "friend", 20001)
    assert dict(friend.sees) == {"web-1": "10.65.1.3", "web-2": "10.65.1.3"}


def _flows(fe: Frontend, source: str, answering: set[str], answers: Sequence[str | None]) -> list[JudgedFlow]:
    expected = Outcomes(frozenset(answering), (), "")
    return [JudgedFlow(fe, source, expected, a) for a in answers]


def test_flows_must_spread_over_backends_once_there_are_enough() -> None:
    sc, objects = first_snapshot()
    http = frontend(sc, objects, "web:80/tcp")
    both = {"web-1", "web-2"}
    lopsided = _flows(http, "friend", both, ["web-1"] * 16)
    problems = step_problems(lopsided, objects.services)
    assert len(problems) == 1 and "none by web-2: not spread" in problems[0]
    assert step_problems(lopsided[:15], objects.services) == []  # too few flows to tell
    assert step_problems(_flows(http, "friend", both, ["web-1"] * 15 + ["web-2"]), objects.services) == []


def test_client_ip_affinity_keeps_each_client_on_one_backend() -> None:
    sc, objects = first_snapshot(SMALL.replace("    backends: [web-1, web-2]", "    backends: [web-1, web-2]\n"
                                               "    session_affinity: ClientIP"))
    http = frontend(sc, objects, "web:80/tcp")
    both = {"web-1", "web-2"}
    sticky = _flows(http, "friend", both, ["web-1"] * 16) + _flows(http, "stranger", both, ["web-2"] * 4)
    assert step_problems(sticky, objects.services) == []  # one backend each, no spread asked for
    broken = sticky + _flows(http, "friend", both, ["web-2"])
    assert step_problems(broken, objects.services) == [
        "web:80/tcp: session affinity ClientIP, yet friend's flows were answered by web-1, web-2"]


# -- report and command line --------------------------------------------------------------------------

def test_service_cells_are_shown_and_counted() -> None:
    good = ServiceCell("friend", "web:80/tcp", "default/web", "answer", "web-1 answers",
                       (("web-1", 5), ("web-2", 3)), ())
    bad = ServiceCell("stranger", "web:80/tcp", "default/web", "no answer", "web-1 silent: policy",
                      (("web-1", 1), ("no answer", 7)), ("answered by web-1, which should not answer: policy",))
    step = StepResult(0, "initial", [], 0.1, 0.2, services=[good, bad], service_problems=["web:80/tcp: not spread"])
    text = format_step(step, 1, [], {}, color=False)
    assert "web:80/tcp  friend ✓ (web-1 x5, web-2 x3)  stranger ✓! (web-1 x1)" in text
    assert "MISMATCH stranger -> web:80/tcp: expected no answer" in text and "MISMATCH web:80/tcp: not spread" in text
    result = LabResult("svc", "vpp", "vplx", [step])
    assert result.mismatches == 2 and result.probes == 2 and result.service_flows == 16 and not result.ok
    assert "2 probes (16 flows to Services), 2 mismatches" in result.summary()


def test_services_scenarios_are_refused_or_skipped_without_vpp(capsys: pytest.CaptureFixture[str]) -> None:
    sc = parse_scenario(SMALL)
    assert services_refusal(sc, "vpp", "vpp") is None
    assert services_refusal(load_scenario(), "iptables", "iptables") is None
    status, message = services_refusal(sc, "iptables", "iptables") or (0, "")
    assert status == EXIT_USAGE and "scenario svc has Services" in message and "kube-proxy" in message
    status, message = services_refusal(sc, "auto", "iptables", "driver auto: iptables, the kernel (no vpp)") or (0, "")
    assert status == EXIT_SKIPPED and message.startswith("SKIP svc: ") and message.endswith("(no vpp))")
    # an explicit kernel driver is refused before anything is built (no root needed)
    assert main(["run", "services", "--driver", "iptables"]) == EXIT_USAGE
    assert "scenario services has Services" in capsys.readouterr().err
