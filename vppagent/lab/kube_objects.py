"""The scenario's Services as the Kubernetes API serves them: a Service and one EndpointSlice each.

Pure: the lab's API server publishes what `kube_objects` gives for a snapshot, and `expected_rows`
says what each agent's state report shows once it has taken them in (the rows are made by the
agent's own model from those same objects, so they only tell when the agent is done, never what
the dataplane does: the probes and the oracle judge that).
"""

from __future__ import annotations

from typing import Any

from vppagent.lab.apiserver import ENDPOINTSLICES, SERVICES
from vppagent.lab.scenario import ClusterObjects, Scenario
from vppagent.lab.scenario_objects import Service
from vppagent.services.model import SERVICE_NAME_LABEL, parse_endpoint_slice, parse_service, service_entry

SLICE_SUFFIX = "-lab"  # EndpointSlice NAME-lab, as the EndpointSlice controller would name NAME-xxxxx


def service_object(service: Service) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "type": service.type,
        "clusterIP": str(service.cluster_ip),
        "clusterIPs": [str(service.cluster_ip)],
        "ipFamilies": ["IPv4"],
        "ports": [{**({"name": p.name} if p.name else {}), "protocol": p.protocol.upper(), "port": p.port,
                   "targetPort": p.target.number, **({"nodePort": p.node_port} if p.node_port else {})}
                  for p in service.ports],
        "sessionAffinity": service.session_affinity,
    }
    if service.type == "NodePort":
        spec["externalTrafficPolicy"] = service.external_traffic_policy
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": service.namespace, "name": service.name},
            "spec": spec}


def endpoint_slice(scenario: Scenario, service: Service) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
        "metadata": {"namespace": service.namespace, "name": service.name + SLICE_SUFFIX,
                     "labels": {SERVICE_NAME_LABEL: service.name}},
        "ports": [{**({"name": p.name} if p.name else {}), "protocol": p.protocol.upper(), "port": p.target.number}
                  for p in service.ports],
        "endpoints": [{"addresses": [str(scenario.pod_address(pod))], "conditions": {"ready": True},
                       "nodeName": scenario.node_of(pod).name,
                       "targetRef": {"kind": "Pod", "namespace": scenario.pod(pod).namespace, "name": pod}}
                      for pod in service.backends],
    }


def kube_objects(scenario: Scenario, objects: ClusterObjects) -> dict[str, dict[str, dict[str, Any]]]:
    """API path -> NAMESPACE/NAME -> object, for every Service in force."""
    services = {key: service_object(s) for key, s in objects.services.items()}
    slices = {f"{s.namespace}/{s.name}{SLICE_SUFFIX}": endpoint_slice(scenario, s) for s in objects.services.values()}
    return {SERVICES: services, ENDPOINTSLICES: slices}


def expected_rows(scenario: Scenario, objects: ClusterObjects, node: str) -> list[dict[str, Any]]:
    """The `services` rows of `node`'s state report once its agent has everything in force."""
    rows = []
    for key in sorted(objects.services):
        service = objects.services[key]
        spec = parse_service(service_object(service))
        slice_spec = parse_endpoint_slice(endpoint_slice(scenario, service))
        assert spec is not None and slice_spec is not None, key  # never headless, always IPv4
        rows.append(service_entry(spec, [slice_spec], [str(scenario.node_address(node))], node).report())
    return rows
