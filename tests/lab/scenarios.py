"""Small scenarios for the lab tests (the default one is bundled with the package)."""

from __future__ import annotations

# Two nodes, three pods: a web pod open on tcp/80 except to what n1's uplink forwards in, a db
# pod open to web-pods only, a client that joins web-pods in step 1.
SMALL = """
name: small
pod_profiles: [allow-all]
nodes:
  - name: n1
    pods:
      - {name: web, ports: [80]}
      - {name: client}
  - name: n2
    pods:
      - {name: db, ports: [5432, udp/53]}
ipsets:
  web-pods: [web]
profiles:
  - {name: allow-all, ingress: [{action: allow}], egress: [{action: allow}]}
host_endpoints:
  - {name: n1-uplink, node: n1, interface: eth0}
tiers:
  - {name: edge, order: 10}
policies:
  - name: edge.forward
    tier: edge
    applies_to: [n1-uplink]
    apply_on_forward: true
    ingress:
      - {action: deny, protocol: tcp, destination: {ports: [80]}}
      - {action: allow}
    egress: [{action: allow}]
  - name: db
    applies_to: [db]
    ingress:
      - {action: allow, protocol: tcp, source: {ipsets: [web-pods]}, destination: {ports: [5432]}}
expect:
  - {from: db, to: web, port: 80, allowed: false}   # forwarded in through n1-uplink
  - {from: client, to: web, port: 80, allowed: true}
  - {from: web, to: db, port: 5432, allowed: true}
  - {from: client, to: db, port: 5432, allowed: false}
steps:
  - name: client joins web-pods
    change:
      ipsets:
        web-pods: {add: [client]}
    expect:
      - {from: client, to: db, port: 5432, allowed: true}
"""

# Three nodes, one pod each, everything allowed: the BGP acceptance cluster.
BGP_MESH = """
name: bgp-mesh
pod_profiles: [allow-all]
bgp: {node_mesh_password: lab-secret}
nodes:
  - {name: node1, pods: [{name: pod1, ports: [80]}]}
  - {name: node2, pods: [{name: pod2, ports: [80]}]}
  - {name: node3, pods: [{name: pod3, ports: [80]}]}
profiles:
  - {name: allow-all, ingress: [{action: allow}], egress: [{action: allow}]}
"""
