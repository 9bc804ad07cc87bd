"""Kubernetes Services through a real VPP 26.06, programmed by the agent as cnat translations.

The agent (`--driver vpp --pod-interface af_packet`, `--services kubernetes` against the API server
stand-in of tests/services) attaches three pods through CNI Add: a client and two backends, each
backend running a small TCP/UDP server that answers with its own name and the source it saw. Real
connections then go from the client pod and from the node-side peer (the node's uplink, 192.0.2.1
being the node's address that Felix's HostMetadata gives) to:
- the ClusterIP, backed by both pods: both get new flows;
- the NodePort on the node's address, from the peer;
- a backend removed from the EndpointSlice mid-run: no new flow reaches it (a flow cnat already holds
  a session for keeps its backend until the session expires: drained, not cut);
- a policy denying the client on the backends' ingress: denied through the Service too, and the
  backends' servers saw the client's own address (cnat rewrites the destination only);
- the client's egress policy allowing only the backends' addresses: the Service works (egress
  policy sees the translated flow, as in Calico);
- hairpin: a backend reaching the Service lands on itself too, with the source-NAT address;
- a NodePort whose only backend is on another node (a namespace behind the peer, reached through
  the uplink), IPv4 and IPv6: the backend sees the configured source-NAT address
  (`VPPAGENT_SERVICE_SNAT_IPV4`/`_IPV6`, an address on the uplink's subnet that VPP alone answers
  for: proxy ARP / ND proxy, set by the driver, nothing by the test), the answer reaches the client,
  and the node's own address still answers ping.
"""

from __future__ import annotations

import ipaddress
import shutil
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import wait_for
from tests.realvpp import PrivateVpp, RealVpp, pods_unavailable_reason
from tests.realvpp.podlab import (
    PEER_ADDRESS,
    PEER_VPP_ADDRESS,
    PEER_VPP_ADDRESS6,
    PodLab,
    VppAgentProcess,
    attach_pods,
    sh,
)
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.services.settings import ServiceSettings
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.apiserver import ENDPOINTSLICES, SERVICES, StandInApiServer
from vppagent.netns import call_in_netns
from vppagent.services.model import SERVICE_NAME_LABEL, Backend, Frontend, ServiceEntry, ServicePortEntry

pytestmark = [pytest.mark.realvpp, pytest.mark.root]

CLIENT, B1, B2 = "default/client", "default/b1", "default/b2"
PODS = {CLIENT: ("10.65.0.2", "fd65::2"), B1: ("10.65.0.3", "fd65::3"), B2: ("10.65.0.4", "fd65::4")}
CLUSTER_IP, PORT, TARGET_PORT, NODE_PORT = "10.96.0.10", 80, 8080, 30080
NODE = "node1"
# Source NAT: addresses VPP alone answers for on the uplink (not the node's, not any kernel's).
SNAT_V4, SNAT_V6 = "192.0.2.5", "2001:db8::5"
# Another node behind the peer (VPP routes 10.64.0.0/10 and fd64::/15 to the peer), with the only
# backend of the Service "remote".
OTHER_NODE_BACKEND, OTHER_NODE_BACKEND6 = "10.70.0.2", "fd64:70::2"
REMOTE_CLUSTER_IPS, REMOTE_NODE_PORT = ["10.96.0.11", "fd96::11"], 30081

# Each backend: TCP and UDP on TARGET_PORT, answering "<name> <source ip>:<source port>".
SERVER = """
import socket, sys, threading
name, port = sys.argv[1], int(sys.argv[2])
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(64)
    while True:
        c, a = s.accept(); c.sendall(f"{name} {a[0]}:{a[1]}".encode()); c.close()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", port))
    while True:
        d, a = s.recvfrom(2048); s.sendto(f"{name} {a[0]}:{a[1]}".encode(), a)
threading.Thread(target=udp, daemon=True).start()
tcp()
"""

# The same on IPv6 sockets bound to "::": IPv4 clients show as ::ffff:A.B.C.D.
DUAL_STACK_SERVER = (SERVER.replace("socket.socket()", "socket.socket(socket.AF_INET6)")
                     .replace("socket.AF_INET,", "socket.AF_INET6,").replace('"0.0.0.0"', '"::"'))


def web_service() -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "NodePort", "clusterIPs": [CLUSTER_IP],
                     "ports": [{"name": "http", "protocol": "TCP", "port": PORT, "nodePort": NODE_PORT,
                                "targetPort": TARGET_PORT},
                               {"name": "udp", "protocol": "UDP", "port": PORT, "targetPort": TARGET_PORT}]}}


def web_slice(*workloads: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "web-1", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "protocol": "TCP", "port": TARGET_PORT},
                      {"name": "udp", "protocol": "UDP", "port": TARGET_PORT}],
            "endpoints": [{"addresses": [PODS[w][0]], "conditions": {"ready": True}, "nodeName": NODE}
                          for w in workloads]}


def remote_service() -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "remote"},
            "spec": {"type": "NodePort", "clusterIPs": REMOTE_CLUSTER_IPS, "ipFamilies": ["IPv4", "IPv6"],
                     "ports": [{"name": "http", "protocol": "TCP", "port": PORT, "nodePort": REMOTE_NODE_PORT,
                                "targetPort": TARGET_PORT}]}}


def remote_slices() -> list[dict[str, Any]]:
    return [{"metadata": {"namespace": "default", "name": f"remote-{family.lower()}",
                          "labels": {SERVICE_NAME_LABEL: "remote"}},
             "addressType": family, "ports": [{"name": "http", "protocol": "TCP", "port": TARGET_PORT}],
             "endpoints": [{"addresses": [address], "conditions": {"ready": True}, "nodeName": "node2"}]}
            for family, address in (("IPv4", OTHER_NODE_BACKEND), ("IPv6", OTHER_NODE_BACKEND6))]


def build_other_node(lab: PodLab, vpp: RealVpp) -> str:
    """A namespace behind the peer (which forwards) holding the remote backend; the peer reaches the
    source-NAT addresses on its uplink, where VPP answers ARP / ND for them as the driver sets up."""
    other = f"{lab.prefix}-n2"
    sh("ip", "netns", "add", other)
    sh("ip", "-n", other, "link", "set", "lo", "up")
    sh("ip", "-n", lab.peer, "link", "add", "ton2", "type", "veth", "peer", "name", "eth0", "netns", other)
    sh("ip", "-n", lab.peer, "addr", "add", "10.70.0.1/30", "dev", "ton2")
    sh("ip", "-n", lab.peer, "addr", "add", "fd64:70::1/64", "dev", "ton2", "nodad")
    sh("ip", "-n", lab.peer, "link", "set", "ton2", "up")
    sh("ip", "-n", other, "addr", "add", f"{OTHER_NODE_BACKEND}/30", "dev", "eth0")
    sh("ip", "-n", other, "addr", "add", f"{OTHER_NODE_BACKEND6}/64", "dev", "eth0", "nodad")
    sh("ip", "-n", other, "link", "set", "eth0", "up")
    sh("ip", "-n", other, "route", "add", "default", "via", "10.70.0.1")
    sh("ip", "-n", other, "-6", "route", "add", "default", "via", "fd64:70::1")
    sh("ip", "netns", "exec", lab.peer, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
    # SNAT_V4 on the uplink's subnet, as on a node's network: VPP's side a /29 (the lab's is a /30),
    # and the peer sees SNAT_V4 on-link. Who answers ARP / ND for the addresses is the driver's business.
    sh("ip", "-n", lab.peer, "route", "add", f"{SNAT_V4}/32", "dev", "eth0")
    uplink = f"host-{lab.peer_ifname}"
    for command in (f"set interface ip address del {uplink} {PEER_VPP_ADDRESS}/30",
                    f"set interface ip address {uplink} {PEER_VPP_ADDRESS}/29"):
        out = vpp.cli(command)
        assert not out.strip(), f"{command}: {out}"
    return other


def tcp_ask(ip: str, port: int, source: str | None = None, timeout: float = 2.0) -> str | None:
    """One TCP connection: the server's answer, or None when it did not connect."""
    try:
        with socket.create_connection((ip, port), timeout=timeout,  # IPv4 or IPv6 by `ip`
                                      source_address=(source, 0) if source else None) as sock:
            return sock.recv(200).decode()
    except OSError:
        return None


def udp_ask(ip: str, port: int, source_port: int, timeout: float = 2.0) -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", source_port))
        sock.settimeout(timeout)
        sock.sendto(b"?", (ip, port))
        try:
            return sock.recv(200).decode()
        except OSError:
            return None


def asks(netns: str, count: int, ip: str = CLUSTER_IP, port: int = PORT) -> list[str | None]:
    return call_in_netns(netns, lambda: [tcp_ask(ip, port) for _ in range(count)])


class ServiceLab:
    def __init__(self, lab: PodLab, vpp: RealVpp, agent: VppAgentProcess, api: StandInApiServer) -> None:
        self.lab, self.vpp, self.agent, self.api = lab, vpp, agent, api

    def netns(self, workload: str) -> str:
        return self.lab.pods[workload].netns

    def felix(self, deny_client: bool = False, client_egress_to_backends: bool = False) -> list[felix.ToDataplane]:
        """Open profiles; with `deny_client`, a policy on the backends' ingress denying the client;
        with `client_egress_to_backends`, the client's egress allows the backends' addresses alone."""
        objects = [b.profile("open", inbound=[b.rule("allow")], outbound=[b.rule("allow")])]
        tiers, client_tiers = [], []
        if deny_client:
            objects.append(b.policy("deny-client", inbound=[b.rule("deny", src_net=[f"{PODS[CLIENT][0]}/32"]),
                                                            b.rule("allow")]))
            tiers = [b.tier("default", ingress=["deny-client"])]
        if client_egress_to_backends:
            objects.append(b.policy("to-backends", outbound=[
                b.rule("allow", dst_net=[f"{PODS[B1][0]}/32", f"{PODS[B2][0]}/32"])]))
            client_tiers = [b.tier("default", egress=["to-backends"])]
        for workload, (ip, ip6) in PODS.items():
            objects.append(b.workload(workload, self.lab.pods[workload].host_ifname, ipv4=[f"{ip}/32"],
                                      ipv6=[f"{ip6}/128"], profiles=["open"],
                                      tiers=tiers if workload != CLIENT else client_tiers))
        return objects

    def service_row(self, name: str = "default/web") -> dict[str, Any] | None:
        state = self.agent.try_state()
        rows = [] if state is None else [r for r in state.get("services", []) if r["name"] == name]
        return rows[0] if rows else None

    def wait_backends(self, *workloads: str) -> dict[str, Any]:
        want = sorted(f"{PODS[w][0]}:{TARGET_PORT}" for w in workloads)
        return wait_for(lambda: (r := self.service_row()) is not None and r["status"] == "up"
                        and r["backends"] == want and r, timeout=30, what=f"web up with backends {want}")


@pytest.fixture(scope="module")
def services_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceLab]:
    reason = pods_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private VPP with pods: {reason}")
    workdir = tmp_path_factory.mktemp("services")
    api = StandInApiServer().start()
    api.put(SERVICES, web_service())
    api.put(ENDPOINTSLICES, web_slice(B1, B2))
    api.put(SERVICES, remote_service())
    for item in remote_slices():
        api.put(ENDPOINTSLICES, item)
    process = PrivateVpp(f"vppagent-services-{uuid.uuid4().hex[:6]}")
    vpp = process.start()
    run_dir = Path(f"/tmp/vps-{uuid.uuid4().hex[:8]}")  # unix socket paths must stay short
    run_dir.mkdir(mode=0o700)
    lab = PodLab(f"vs{uuid.uuid4().hex[:4]}", PODS, workdir)
    agent = VppAgentProcess(lab, vpp, run_dir, env={
        "VPPAGENT_SERVICES": "kubernetes", "VPPAGENT_KUBECONFIG": str(api.write_kubeconfig(workdir / "kubeconfig")),
        "VPPAGENT_SERVICE_SNAT_IPV4": SNAT_V4, "VPPAGENT_SERVICE_SNAT_IPV6": SNAT_V6,
        "VPPAGENT_SERVICE_CIDRS": "10.96.0.0/12,fd96::/108"})
    other: str | None = None
    try:
        lab.build()
        lab.attach_peer(vpp)
        other = build_other_node(lab, vpp)
        agent.start()
        attach_pods(agent, vpp)
        agent.start_felix()
        env = ServiceLab(lab, vpp, agent, api)
        objects = env.felix()
        agent.send([b.config({"FelixHostname": NODE}),
                    felix.ToDataplane(host_metadata_update=felix.HostMetadataUpdate(
                        hostname=NODE, ipv4_addr=f"{PEER_VPP_ADDRESS}/30", ipv6_addr=f"{PEER_VPP_ADDRESS6}/64")),
                    *objects, b.in_sync()])
        agent.objects = objects
        for workload in (B1, B2):
            lab.spawn(["ip", "netns", "exec", lab.pods[workload].netns, sys.executable, "-c", SERVER,
                       workload, str(TARGET_PORT)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        lab.spawn(["ip", "netns", "exec", other, sys.executable, "-c", DUAL_STACK_SERVER, "remote", str(TARGET_PORT)],
                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for workload in (B1, B2):  # the servers listen
            wait_for(lambda w=workload: call_in_netns(env.netns(CLIENT), lambda: tcp_ask(PODS[w][0], TARGET_PORT)),
                     what=f"{workload}'s server")
        yield env
    finally:
        agent.stop()
        lab.cleanup()
        if other is not None:
            sh("ip", "netns", "del", other, check=False)
        process.stop()
        api.stop()
        shutil.rmtree(run_dir, ignore_errors=True)


def answered_by(answers: list[str | None]) -> Counter[str]:
    return Counter(a.split()[0] if a else "no answer" for a in answers)


def test_a_pod_reaches_a_cluster_ip_backed_by_two_pods(services_lab: ServiceLab) -> None:
    row = services_lab.wait_backends(B1, B2)
    assert row["frontends"] == [f"{CLUSTER_IP}:{PORT}/tcp", f"{CLUSTER_IP}:{PORT}/udp",
                                f"{PEER_VPP_ADDRESS}:{NODE_PORT}/tcp"]
    state = services_lab.agent.state()
    assert state["services_source"]["programmed"] is True
    answers = asks(services_lab.netns(CLIENT), 24)
    by = answered_by(answers)
    assert set(by) == {B1, B2}, by  # both backends get new flows, nothing goes unanswered
    # the backends saw the client's own address: cnat rewrote the destination only
    assert {a.split()[1].split(":")[0] for a in answers if a} == {PODS[CLIENT][0]}
    udp = call_in_netns(services_lab.netns(CLIENT), lambda: [udp_ask(CLUSTER_IP, PORT, 41000 + i) for i in range(12)])
    assert set(answered_by(udp)) <= {B1, B2} and "no answer" not in answered_by(udp), udp


def test_a_node_port_from_a_node_side_client(services_lab: ServiceLab) -> None:
    services_lab.wait_backends(B1, B2)
    answers = asks(services_lab.lab.peer, 16, PEER_VPP_ADDRESS, NODE_PORT)
    by = answered_by(answers)
    assert "no answer" not in by and set(by) <= {B1, B2}, by
    assert {a.split()[1].split(":")[0] for a in answers if a} == {PEER_ADDRESS}
    # the node's own address still answers as before (the translation is a "real IP" one)
    ping = subprocess.run(["ip", "netns", "exec", services_lab.lab.peer, "ping", "-c", "1", "-W", "2",
                           PEER_VPP_ADDRESS], capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout


def test_a_removed_backend_gets_no_new_flows(services_lab: ServiceLab) -> None:
    services_lab.wait_backends(B1, B2)
    client = services_lab.netns(CLIENT)
    # a UDP flow cnat already holds a session for, to B1
    before = call_in_netns(client, lambda: {p: udp_ask(CLUSTER_IP, PORT, p) for p in range(42000, 42016)})
    held = [p for p, answer in before.items() if answer and answer.startswith(B1)]
    assert held, before
    try:
        services_lab.api.put(ENDPOINTSLICES, web_slice(B2))
        services_lab.wait_backends(B2)
        by = answered_by(asks(client, 24))
        assert by == Counter({B2: 24}), by
        new_udp = call_in_netns(client, lambda: [udp_ask(CLUSTER_IP, PORT, 43000 + i) for i in range(12)])
        assert answered_by(new_udp) == Counter({B2: 12}), new_udp
        # what cnat does with the flow it already held: it keeps its backend until the session
        # expires (drained, not cut); docs/services.md
        again = call_in_netns(client, lambda: udp_ask(CLUSTER_IP, PORT, held[0]))
        assert again is not None and again.startswith(B1), again
    finally:
        services_lab.api.put(ENDPOINTSLICES, web_slice(B1, B2))
        services_lab.wait_backends(B1, B2)


def test_a_policy_denying_the_client_denies_it_through_the_service(services_lab: ServiceLab) -> None:
    services_lab.wait_backends(B1, B2)
    agent = services_lab.agent
    agent.move_to(services_lab.felix(deny_client=True))
    try:
        client = services_lab.netns(CLIENT)
        assert answered_by(asks(client, 8)) == Counter({"no answer": 8})
        assert call_in_netns(client, lambda: tcp_ask(PODS[B1][0], TARGET_PORT)) is None  # as directly
        # the peer is not denied: the same Service still answers it (the policy saw each client as itself)
        by = answered_by(asks(services_lab.lab.peer, 8, PEER_VPP_ADDRESS, NODE_PORT))
        assert "no answer" not in by, by
    finally:
        agent.move_to(services_lab.felix())
    assert "no answer" not in answered_by(asks(services_lab.netns(CLIENT), 4))


def test_the_clients_egress_policy_sees_the_backend(services_lab: ServiceLab) -> None:
    if not services_lab.agent.state()["driver_status"]["cnat_features"]:
        pytest.skip("this VPP has no cnat feature mode (before 26.06): egress policy sees the VIP")
    services_lab.wait_backends(B1, B2)
    agent = services_lab.agent
    agent.move_to(services_lab.felix(client_egress_to_backends=True))
    try:
        client = services_lab.netns(CLIENT)
        by = answered_by(asks(client, 12))
        assert "no answer" not in by and set(by) <= {B1, B2}, by
        ping = subprocess.run(["ip", "netns", "exec", client, "ping", "-c", "1", "-W", "1", PEER_ADDRESS],
                              capture_output=True, text=True, check=False)
        assert ping.returncode != 0, "the egress policy is not in force: the client still reaches the peer"
    finally:
        agent.move_to(services_lab.felix())


def test_hairpin_a_backend_reaches_itself_through_the_service(services_lab: ServiceLab) -> None:
    if not services_lab.agent.state()["driver_status"]["cnat_features"]:
        pytest.skip("this VPP has no cnat feature mode (before 26.06): no hairpin (docs/services.md)")
    services_lab.wait_backends(B1, B2)
    answers = asks(services_lab.netns(B1), 16)
    by = answered_by(answers)
    assert "no answer" not in by and by[B1] > 0, by  # some land on B1 itself, all are answered
    sources = {(a.split()[0], a.split()[1].split(":")[0]) for a in answers if a}
    # on itself the flow comes from the source-NAT address; on the other backend, from B1 itself
    assert sources <= {(B1, SNAT_V4), (B2, PODS[B1][0])}, sources


def source_of(answer: str) -> str:
    """The source the server saw, from "<name> <ip>:<port>" (IPv6 addresses have colons too)."""
    return answer.split()[1].rsplit(":", 1)[0].removeprefix("::ffff:")


@pytest.mark.parametrize(("node_address", "snat"), [(PEER_VPP_ADDRESS, SNAT_V4), (PEER_VPP_ADDRESS6, SNAT_V6)])
def test_a_node_port_whose_backend_is_on_another_node_is_source_natted(services_lab: ServiceLab, node_address: str,
                                                                       snat: str) -> None:
    if not services_lab.agent.state()["driver_status"]["cnat_features"]:
        pytest.skip("this VPP has no cnat feature mode (before 26.06): no source NAT (docs/services.md)")
    row = wait_for(lambda: (r := services_lab.service_row("default/remote")) is not None and r["status"] == "up"
                   and r, timeout=30, what="remote up")
    shown = f"[{node_address}]" if ":" in node_address else node_address
    assert f"{shown}:{REMOTE_NODE_PORT}/tcp" in row["frontends"], row
    # the driver announces the address on the uplink (the test set no proxy ARP / ND itself)
    notes = services_lab.agent.state()["driver_status"]["snat_proxy"]["notes"]
    uplink = f"host-{services_lab.lab.peer_ifname}"
    assert f"{snat}: {'ND proxy' if ':' in snat else 'proxy ARP'} on {uplink}" in notes, notes
    peer = services_lab.lab.peer
    answers = asks(peer, 12, node_address, REMOTE_NODE_PORT)
    assert answered_by(answers) == Counter({"remote": 12}), answers  # every answer came back to the client
    # the backend on the other node saw the source-NAT address, never the client's
    assert {source_of(a) for a in answers if a} == {snat}, answers
    # the node's own address still answers, from the peer's side (VPP did not take it over for cnat)
    ping = subprocess.run(["ip", "netns", "exec", peer, "ping", "-c", "2", "-W", "2", node_address],
                          capture_output=True, text=True, check=False)
    assert ping.returncode == 0, ping.stdout
    # the local NodePort is unchanged: backends here see the client's own address
    if node_address == PEER_VPP_ADDRESS:
        local = asks(peer, 4, PEER_VPP_ADDRESS, NODE_PORT)
        assert {source_of(a) for a in local if a} == {PEER_ADDRESS} and None not in local, local


def test_a_changed_source_nat_address_releases_the_old_one(tmp_path: Path) -> None:
    """An agent restarted with another source-NAT address: cnat's old addresses leave VPP's FIB (the
    driver releases cnat's entry before setting the new ones; `cnat_set_snat_addresses` alone keeps
    the old one's FIB entry) and the old proxy ARP / ND entries go, the others' stay."""
    reason = pods_unavailable_reason()
    if reason is not None:
        pytest.skip(f"no private VPP: {reason}")
    remote = ServiceEntry("default/remote", (ServicePortEntry("http", "tcp", (
        Frontend("192.0.2.1", REMOTE_NODE_PORT, "tcp", "nodeport"),), (Backend(OTHER_NODE_BACKEND, TARGET_PORT),)),))
    with PrivateVpp(f"vppagent-snatchg-{uuid.uuid4().hex[:6]}") as vpp:
        vpp.cli("create loopback interface")
        for command in ("set interface ip address loop0 192.0.2.1/29", "set interface ip address loop0 2001:db8::1/64",
                        "set interface state loop0 up", "set arp proxy start 192.0.2.100 end 192.0.2.100"):
            vpp.cli(command)

        def run(v4: str, v6: str) -> dict[str, Any]:
            conn = VppConnection(vpp.socket_path, api_dir=vpp.api_dir)
            conn.connect()
            driver = VppDriver(conn, service_settings=ServiceSettings(
                snat_ipv4=ipaddress.IPv4Address(v4), snat_ipv6=ipaddress.IPv6Address(v6)))
            try:
                if not conn.cnat_features:
                    pytest.skip("this VPP has no cnat feature mode (before 26.06): no source NAT (docs/services.md)")
                driver.set_services({remote.name: remote})
                assert driver.service_errors() == {}
                return driver.status()
            finally:
                driver.close()

        run("192.0.2.5", "2001:db8::5")
        clients = vpp.cli("show cnat client")
        assert "192.0.2.5" in clients and "2001:db8::5" in clients, clients
        status = run("192.0.2.6", "2001:db8::6")
        assert status["snat_proxy"]["retired"] == ["192.0.2.5", "2001:db8::5"], status["snat_proxy"]
        clients = vpp.cli("show cnat client")
        assert "192.0.2.6" in clients and "2001:db8::6" in clients, clients
        assert "192.0.2.5" not in clients and "2001:db8::5" not in clients, clients  # released
        proxies = vpp.cli("show arp proxy")
        assert "192.0.2.6 - 192.0.2.6" in proxies and "192.0.2.100 - 192.0.2.100" in proxies, proxies
        assert "192.0.2.5 " not in proxies, proxies
        assert "IPv6-proxy-nd" in vpp.cli("show ip6 fib 2001:db8::6/128")
        assert "IPv6-proxy-nd" not in vpp.cli("show ip6 fib 2001:db8::5/128")
