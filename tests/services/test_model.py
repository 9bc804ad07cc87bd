"""The services model: Services + EndpointSlices (API JSON) -> frontends -> ready backends."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from vppagent.services.index import desired_services
from vppagent.services.model import (
    DEFAULT_AFFINITY_TIMEOUT,
    SERVICE_NAME_LABEL,
    ServiceEntry,
    diff_services,
)

NODE = "node-a"
NODE_ADDRESSES = ("192.168.1.10", "fd00::10")


def service(ns: str, name: str, **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", {})
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec, "status": status}


def endpoint_slice(ns: str, name: str, svc: str, ports: list[dict[str, Any]], endpoints: list[dict[str, Any]],
                   address_type: str = "IPv4") -> dict[str, Any]:
    return {"metadata": {"namespace": ns, "name": name, "labels": {SERVICE_NAME_LABEL: svc}},
            "addressType": address_type, "ports": ports, "endpoints": endpoints}


def keyed(*objs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o for o in objs}


def test_cluster_ip_with_two_ready_backends_and_one_not_ready() -> None:
    services = keyed(service("kube-system", "dns", clusterIP="10.96.0.10", clusterIPs=["10.96.0.10"],
                             ports=[{"name": "dns", "protocol": "UDP", "port": 53}]))
    slices = keyed(endpoint_slice("kube-system", "dns-x", "dns", [{"name": "dns", "protocol": "UDP", "port": 5353}], [
        {"addresses": ["10.65.0.2"], "conditions": {"ready": True}},
        {"addresses": ["10.65.0.3"]},  # ready unset counts as ready
        {"addresses": ["10.65.0.4"], "conditions": {"ready": False}},
    ]))
    entry = desired_services(services, slices)["kube-system/dns"]
    assert entry.report() == {
        "name": "kube-system/dns", "frontends": ["10.96.0.10:53/udp"],
        "backends": ["10.65.0.2:5353", "10.65.0.3:5353"], "status": "up", "error": None,
    }


def test_node_port_on_node_addresses_of_the_services_family_only() -> None:
    services = keyed(service("default", "web", type="NodePort", clusterIPs=["10.96.0.20"],
                             ports=[{"port": 80, "nodePort": 30080}]))
    entry = desired_services(services, {}, NODE_ADDRESSES, NODE)["default/web"]
    assert [f.text() for f in entry.frontends()] == ["10.96.0.20:80/tcp", "192.168.1.10:30080/tcp"]


def test_external_and_load_balancer_ips_and_local_policy() -> None:
    services = keyed(service(
        "default", "lb", type="LoadBalancer", clusterIPs=["10.96.0.30"], externalIPs=["203.0.113.5"],
        externalTrafficPolicy="Local", ports=[{"name": "http", "port": 80, "nodePort": 30081}],
        status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}, {"hostname": "lb.example"}]}},
    ))
    slices = keyed(endpoint_slice("default", "lb-1", "lb", [{"name": "http", "port": 8080}], [
        {"addresses": ["10.65.0.2"], "nodeName": NODE},
        {"addresses": ["10.65.1.2"], "nodeName": "node-b"},
    ]))
    entry = desired_services(services, slices, NODE_ADDRESSES, NODE)["default/lb"]
    (port,) = entry.ports
    served = {f.text(): sorted(b.text() for b in entry.backends_for(port, f)) for f in port.frontends}
    assert served == {
        "10.96.0.30:80/tcp": ["10.65.0.2:8080", "10.65.1.2:8080"],  # cluster IP: every backend
        "192.168.1.10:30081/tcp": ["10.65.0.2:8080"],
        "203.0.113.5:80/tcp": ["10.65.0.2:8080"],
        "198.51.100.7:80/tcp": ["10.65.0.2:8080"],
    }


def test_session_affinity_carried_with_default_timeout() -> None:
    services = keyed(
        service("a", "x", clusterIPs=["10.96.0.1"], ports=[{"port": 1}], sessionAffinity="ClientIP"),
        service("a", "y", clusterIPs=["10.96.0.2"], ports=[{"port": 1}], sessionAffinity="ClientIP",
                sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}}),
        service("a", "z", clusterIPs=["10.96.0.3"], ports=[{"port": 1}], sessionAffinity="None"),
    )
    entries = desired_services(services, {})
    assert [entries[k].affinity_timeout for k in ("a/x", "a/y", "a/z")] == [DEFAULT_AFFINITY_TIMEOUT, 60, None]


def test_headless_and_external_name_services_have_no_entry() -> None:
    services = keyed(service("a", "headless", clusterIP="None", ports=[{"port": 80}]),
                     service("a", "ext", type="ExternalName", externalName="example.org"))
    assert desired_services(services, {}) == {}


def test_unreadable_service_is_an_error_entry_naming_it() -> None:
    services = keyed(service("a", "bad", clusterIPs=["10.96.0.300"], ports=[{"port": 80}]),
                     service("a", "badport", clusterIPs=["10.96.0.4"], ports=[{"port": 70000}]))
    entries = desired_services(services, {})
    assert entries["a/bad"].report()["status"] == "error"
    assert "service a/bad" in str(entries["a/bad"].error) and "10.96.0.300" in str(entries["a/bad"].error)
    assert entries["a/bad"].frontends() == []
    assert "service a/badport" in str(entries["a/badport"].error)


def test_unreadable_slice_puts_an_error_on_its_service() -> None:
    services = keyed(service("a", "s", clusterIPs=["10.96.0.5"], ports=[{"port": 80}]))
    slices = keyed(endpoint_slice("a", "s-1", "s", [{"port": 80}], [{"addresses": ["not-an-ip"]}]))
    entry = desired_services(services, slices)["a/s"]
    assert entry.error is not None and "endpointslice a/s-1" in entry.error
    assert entry.frontends() == []


def test_diff_finds_changed_new_and_removed_entries() -> None:
    old = {"a/x": ServiceEntry("a/x"), "a/y": ServiceEntry("a/y"), "a/z": ServiceEntry("a/z")}
    new = {"a/x": ServiceEntry("a/x"), "a/y": ServiceEntry("a/y", affinity_timeout=5), "a/w": ServiceEntry("a/w")}
    diff = diff_services(old, new)
    assert set(diff.upserts) == {"a/y", "a/w"} and diff.removes == {"a/z"}
    assert diff_services(new, new).is_empty()


# --- property: the model agrees with a direct reading of the objects ---------------------------------

V4 = [f"10.0.0.{i}" for i in range(1, 6)]
V6 = [f"fd00::{i}" for i in range(1, 6)]
NAMESPACES = ["a", "b"]
NAMES = ["s1", "s2", "s3"]
PORT_NAMES = ["", "http", "dns"]
PROTOCOLS = ["TCP", "UDP", None]


@st.composite
def service_objects(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer", "ExternalName", None]))
    headless = draw(st.booleans()) and draw(st.booleans())
    first, second = draw(st.sampled_from([(V4, V6), (V6, V4)]))
    extra = draw(st.lists(st.sampled_from(second), max_size=1))  # dual stack
    cluster_ips = ["None"] if headless else [draw(st.sampled_from(first)), *extra]
    ports = [
        {"name": name, "protocol": draw(st.sampled_from(PROTOCOLS)), "port": draw(st.integers(1, 3)),
         "nodePort": draw(st.sampled_from([None, 30000, 30001]))}
        for name in draw(st.lists(st.sampled_from(PORT_NAMES), unique=True, max_size=3))
    ]
    spec: dict[str, Any] = {"clusterIPs": cluster_ips, "ports": ports,
                            "externalIPs": draw(st.lists(st.sampled_from(V4 + V6), max_size=2, unique=True)),
                            "externalTrafficPolicy": draw(st.sampled_from(["Local", "Cluster"]))}
    if kind is not None:
        spec["type"] = kind
    ingress = [{"ip": ip} for ip in draw(st.lists(st.sampled_from(V4 + V6), max_size=2, unique=True))]
    return {"metadata": {"namespace": draw(st.sampled_from(NAMESPACES)), "name": draw(st.sampled_from(NAMES))},
            "spec": spec, "status": {"loadBalancer": {"ingress": ingress}}}


@st.composite
def slice_objects(draw: st.DrawFn) -> dict[str, Any]:
    family = draw(st.sampled_from(["IPv4", "IPv6"]))
    pool = [f"10.65.0.{i}" for i in range(1, 6)] if family == "IPv4" else [f"fd10::{i}" for i in range(1, 6)]
    endpoints = [
        {"addresses": [draw(st.sampled_from(pool))],
         "conditions": draw(st.sampled_from([{}, {"ready": True}, {"ready": False}])),
         "nodeName": draw(st.sampled_from([NODE, "node-b"]))}
        for _ in range(draw(st.integers(0, 3)))
    ]
    ports = [{"name": draw(st.sampled_from(PORT_NAMES)), "protocol": draw(st.sampled_from(PROTOCOLS)),
              "port": draw(st.integers(8000, 8002))} for _ in range(draw(st.integers(0, 2)))]
    return {"metadata": {"namespace": draw(st.sampled_from(NAMESPACES)), "name": f"sl{draw(st.integers(0, 99))}",
                         "labels": {SERVICE_NAME_LABEL: draw(st.sampled_from(NAMES))}},
            "addressType": family, "endpoints": endpoints, "ports": ports}


def _bracket(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def direct_reading(
    services: list[dict[str, Any]], slices: list[dict[str, Any]]
) -> tuple[set[tuple[str, str]], set[tuple[str, str, str]]]:
    """(service, frontend) pairs and (service, frontend, backend) triples, read straight off the objects
    as the model's docstring states the rules."""
    pairs = set()
    triples = set()
    for svc in services:
        spec, ns, name = svc["spec"], svc["metadata"]["namespace"], svc["metadata"]["name"]
        kind = spec.get("type") or "ClusterIP"
        if kind == "ExternalName" or spec["clusterIPs"][0] == "None":
            continue
        families = {ipaddress.ip_address(ip).version for ip in spec["clusterIPs"]}
        outside_local = spec["externalTrafficPolicy"] == "Local" and kind != "ClusterIP"
        for port in spec["ports"]:
            proto = (port["protocol"] or "TCP").lower()
            fronts = [(ip, port["port"], False) for ip in spec["clusterIPs"]]
            if kind != "ClusterIP" and port["nodePort"]:
                fronts += [(ip, port["nodePort"], True) for ip in NODE_ADDRESSES
                           if ipaddress.ip_address(ip).version in families]
            fronts += [(ip, port["port"], True) for ip in spec["externalIPs"]]
            fronts += [(i["ip"], port["port"], True) for i in svc["status"]["loadBalancer"]["ingress"]]
            pairs |= {(f"{ns}/{name}", f"{_bracket(ip)}:{number}/{proto}") for ip, number, _ in fronts}
            for sl in slices:
                if sl["metadata"]["namespace"] != ns or sl["metadata"]["labels"][SERVICE_NAME_LABEL] != name:
                    continue
                for sport in sl["ports"]:
                    if sport["name"] != port["name"] or (sport["protocol"] or "TCP").lower() != proto:
                        continue
                    for ep in sl["endpoints"]:
                        if ep["conditions"].get("ready") is False:
                            continue
                        ip = ep["addresses"][0]
                        for front_ip, front_port, outside in fronts:
                            if ipaddress.ip_address(front_ip).version != ipaddress.ip_address(ip).version:
                                continue
                            if outside and outside_local and ep["nodeName"] != NODE:
                                continue
                            triples.add((f"{ns}/{name}", f"{_bracket(front_ip)}:{front_port}/{proto}",
                                         f"{_bracket(ip)}:{sport['port']}"))
    return pairs, triples


@settings(max_examples=300, deadline=None)
@given(st.lists(service_objects(), max_size=4), st.lists(slice_objects(), max_size=5))
def test_frontends_and_backends_equal_a_direct_reading(
    services: list[dict[str, Any]], slices: list[dict[str, Any]]
) -> None:
    services = list(keyed(*services).values())  # one object per NAMESPACE/NAME, as the API has it
    slices = list(keyed(*slices).values())
    entries = desired_services(keyed(*services), keyed(*slices), NODE_ADDRESSES, NODE)
    got = {
        (entry.name, front.text(), back.text())
        for entry in entries.values()
        for port in entry.ports
        for front in port.frontends
        for back in entry.backends_for(port, front)
    }
    fronts = {(entry.name, front.text()) for entry in entries.values() for front in entry.frontends()}
    assert (fronts, got) == direct_reading(services, slices)
    assert all(e.error is None for e in entries.values())
