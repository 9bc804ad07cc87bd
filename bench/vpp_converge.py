"""VPP driver convergence against the emulator: cold apply, one endpoint add, one policy change,
one IP set member change; each against a bare vpp_papi loop sending the same messages.

    python bench/vpp_converge.py [--policies 500 --endpoints 2000 --big-set 10000]
                                 [--classifier-min-members 500] [--compare-acl-only]

The state: 50 namespaces with 10 policies each (500); 2,000 pods, 40 per namespace, in 4 apps
whose pods share their tiers (ingress: two of the namespace's policies picked by app; egress: two
namespace-wide ones) and a namespace profile. Each namespace has an IP set of its pods (40
members); the policies allow service ports from their own namespace's set, from the next
namespace's, DNS from 10.0.0.0/8 except a /24, and ICMP echo. One policy of namespace 0 also
allows tcp/8443 from a large cluster-wide set (--big-set members): the set whose one-member
change is measured.

Two emulators run as separate processes (`python -m vppagent.vppsim`), prepared identically
(2,000 pods as tagged interfaces). The driver programs the first; every request it sends is
recorded and the same requests are then sent to the second by a plain loop over
`VPPApiClient` methods: same messages, same order, same VPP state, nothing else. The ratio
driver/bare is the driver's own cost (compiling, planning, reading back) per scenario.
P2 target: an IP set member change costs at most 2 % of a cold apply.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vpp_papi import VPPApiClient

from vppagent.drivers.base import ApplyReport
from vppagent.drivers.vpp.api.connection import VppConnection
from vppagent.drivers.vpp.api.messages import READ_ONLY
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.pods.spec import PodSpec
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState, WorkloadKey

NAMESPACES = 50
Request = tuple[str, dict[str, Any]]


def pod_ip(index: int) -> str:
    return f"10.{64 + index // 62500}.{index // 250 % 250}.{index % 250 + 1}"


def build_state(policies: int, endpoints: int, big_set: int) -> DataplaneState:
    per_ns = max(1, policies // NAMESPACES)
    state = DataplaneState()
    state.apply(b.config({}))
    pods_per_ns = max(1, endpoints // NAMESPACES)
    for ns in range(NAMESPACES):
        members = [pod_ip(ns * pods_per_ns + i) for i in range(pods_per_ns)]
        state.apply(b.ipset(f"s:ns{ns}", members, kind="ip"))
    state.apply(b.ipset("s:cluster", [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(big_set)], kind="ip"))
    for ns in range(NAMESPACES):
        for k in range(per_ns):
            inbound = [
                b.rule("allow", protocol="tcp", dst_ports=[8000 + k, (9000, 9009)], src_ip_set_ids=[f"s:ns{ns}"]),
                b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=[f"s:ns{(ns + 1) % NAMESPACES}"]),
                b.rule("allow", protocol="udp", dst_ports=[53], src_net=["10.0.0.0/8"], not_src_net=["10.99.0.0/24"]),
                b.rule("allow", protocol="icmp", icmp_type=8),
            ]
            if ns == 0 and k == 0:
                inbound.append(b.rule("allow", protocol="tcp", dst_ports=[8443], src_ip_set_ids=["s:cluster"]))
            state.apply(b.policy(f"p{k}", namespace=f"ns{ns}", inbound=inbound,
                                 outbound=[b.rule("deny", protocol="tcp", dst_ports=[25]), b.rule("allow")]))
        state.apply(b.profile(f"kns.ns{ns}", inbound=[b.rule("allow", src_ip_set_ids=[f"s:ns{ns}"])],
                              outbound=[b.rule("allow")]))
    for i in range(endpoints):
        state.apply(endpoint(i, pods_per_ns, per_ns))
    return state


def endpoint(i: int, pods_per_ns: int, per_ns: int) -> felix.ToDataplane:
    ns, app = i // pods_per_ns % NAMESPACES, i % 4
    ingress = [b.policy_id(f"p{app % per_ns}", f"ns{ns}"), b.policy_id(f"p{(app + 4) % per_ns}", f"ns{ns}")]
    egress = [b.policy_id(f"p{8 % per_ns}", f"ns{ns}"), b.policy_id(f"p{9 % per_ns}", f"ns{ns}")]
    tier = felix.TierInfo(name="default", default_action="Deny", ingress_policies=ingress, egress_policies=egress)
    return b.workload(f"ns{ns}/pod{i}", f"cali{i:011d}", ipv4=[f"{pod_ip(i)}/32"], tiers=[tier],
                      profiles=[f"kns.ns{ns}"])


class Emulator:
    def __init__(self, directory: Path, name: str) -> None:
        self.socket = directory / f"{name}.sock"
        self.proc = subprocess.Popen([sys.executable, "-m", "vppagent.vppsim", "--socket", str(self.socket),
                                      "--log-level", "WARNING"])
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.02)
        # the same client settings as the driver's connection (no event thread)
        self.client = VPPApiClient(server_address=str(self.socket), bootstrapapi=True, read_timeout=60,
                                   async_thread=False)
        self.client.connect("bench-bare")

    def add_pod(self, workload_id: str) -> None:
        index = self.client.api.create_loopback().sw_if_index
        self.client.api.sw_interface_tag_add_del(is_add=True, sw_if_index=index,
                                                 tag=workload_tag(WorkloadKey("k8s", workload_id, "eth0")))

    def replay(self, requests: list[Request]) -> float:
        api = self.client.api
        start = time.perf_counter()
        for message, fields in requests:
            getattr(api, message)(**fields)
        return time.perf_counter() - start

    def stop(self) -> None:
        self.client.disconnect()
        self.proc.terminate()
        self.proc.wait(10)


class RecordingConnection(VppConnection):
    """The driver's connection, keeping every request for the bare replay."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[Request] = []

    def _request(self, message: str, fields: dict[str, Any]) -> Any:
        self.recorded.append((message, dict(fields)))
        return super()._request(message, fields)


def measure(name: str, conn: RecordingConnection, bare: Emulator, action: Callable[[], Any]) -> dict[str, Any]:
    conn.recorded.clear()
    start = time.perf_counter()
    report = action()
    driver_seconds = time.perf_counter() - start
    assert report.ok and not report.failed, f"{name}: {report}"
    requests = list(conn.recorded)
    bare_seconds = bare.replay(requests)
    kinds = Counter("read" if m in READ_ONLY else "write" for m, _ in requests)
    return {"scenario": name, "writes": kinds["write"], "reads": kinds["read"], "driver_s": driver_seconds,
            "bare_s": bare_seconds, "ratio": driver_seconds / bare_seconds if bare_seconds else float("nan"),
            "top": Counter(m for m, _ in requests).most_common(3)}


def run(policies: int, endpoints: int, big_set: int, min_members: int) -> list[dict[str, Any]]:
    state = build_state(policies, endpoints, big_set)
    with tempfile.TemporaryDirectory(prefix="vpa-bench-", dir="/tmp") as directory:
        driven, bare = Emulator(Path(directory), "driven"), Emulator(Path(directory), "bare")
        try:
            for key in state.workload_endpoints:
                driven.add_pod(key.workload_id)
                bare.add_pod(key.workload_id)
            conn = RecordingConnection(driven.socket, request_timeout=120)
            conn.connect()
            driver = VppDriver(conn, classifier_min_members=min_members, monitor=False, pod_interface="tap",
                               plumbing=NoPlumbing())
            rows = [measure("cold apply", conn, bare, lambda: driver.resync(state))]

            # a pod as it comes: CNI Add (a tap; its Linux side is not part of the measurement),
            # then Felix's endpoint for it
            spec = PodSpec(WorkloadKey("k8s", "ns3/newpod", "eth0"), Path("/proc/self/ns/net"), "eth0",
                           "calinewpod", (ipaddress.ip_interface("10.99.9.9/32"),), ())
            rows.append(measure("CNI Add (tap)", conn, bare, lambda: _ok(driver.attach_pod(spec))))
            sibling = next(k for k in state.workload_endpoints if k.workload_id.startswith("ns3/"))
            rows.append(change(driver, conn, bare, state, "endpoint add (Felix)", [
                b.workload("ns3/newpod", "calinewpod", ipv4=["10.99.9.9/32"],
                           tiers=list(state.workload_endpoints[sibling].tiers), profiles=["kns.ns3"])]))
            rows.append(change(driver, conn, bare, state, "policy change", [
                b.policy("p1", namespace="ns5", inbound=[b.rule("allow", protocol="tcp", dst_ports=[8101],
                                                                src_ip_set_ids=["s:ns5"])])]))
            rows.append(change(driver, conn, bare, state, "ipset member change", [
                b.ipset_delta("s:cluster", added=["10.201.0.1"])]))
            rows.append(measure("resync, VPP unchanged", conn, bare, lambda: driver.resync(state)))
            driver.close()
        finally:
            driven.stop()
            bare.stop()
    return rows


class NoPlumbing:
    """The pod's Linux side is out of scope here (and no tap appears from an emulator)."""

    def create_veth(self, spec: PodSpec) -> None: ...

    def remove_veth(self, host_ifname: str) -> None: ...

    def host_link_exists(self, host_ifname: str) -> bool:
        return False

    def host_veth_of(self, request: Any) -> str | None:
        return None

    def configure_container(self, spec: PodSpec) -> str:
        return "02:00:00:00:00:01"


def _ok(_: Any) -> ApplyReport:
    return ApplyReport()


def change(driver: VppDriver, conn: RecordingConnection, bare: Emulator, state: DataplaneState, name: str,
           messages: list[felix.ToDataplane]) -> dict[str, Any]:
    old = state.copy()
    for m in messages:
        state.apply(m)
    return measure(name, conn, bare, lambda: driver.apply(diff_states(old, state), state))


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'scenario':<24}{'writes':>8}{'reads':>8}{'driver s':>11}{'bare s':>10}{'ratio':>8}   top messages")
    for r in rows:
        top = ", ".join(f"{m} x{n}" for m, n in r["top"])
        print(f"{r['scenario']:<24}{r['writes']:>8}{r['reads']:>8}{r['driver_s']:>11.3f}{r['bare_s']:>10.3f}"
              f"{r['ratio']:>8.2f}   {top}")
    cold = rows[0]["driver_s"]
    member = next(r for r in rows if r["scenario"] == "ipset member change")["driver_s"]
    verdict = "meets" if member <= 0.02 * cold else "misses"
    print(f"P2: one member change = {100 * member / cold:.2f} % of a cold apply ({verdict} the 2 % target)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--big-set", type=int, default=10_000)
    parser.add_argument("--classifier-min-members", type=int, default=500)
    parser.add_argument("--compare-acl-only", action="store_true",
                        help="also run with every IP set in ACLs (classifier off) for the comparison")
    args = parser.parse_args()
    print(f"{args.policies} policies, {args.endpoints} endpoints, a {args.big_set}-member set; "
          "emulators in separate processes")
    if args.compare_acl_only:
        print_rows("IP sets in ACLs only (classifier off):", run(args.policies, args.endpoints, args.big_set, 0))
    print_rows(f"Large sets in the classifier (>= {args.classifier_min_members} members):",
               run(args.policies, args.endpoints, args.big_set, args.classifier_min_members))


if __name__ == "__main__":
    main()
