"""VPP driver convergence, on a real VPP when one can be started here (else the emulator): cold
apply, one endpoint add, one policy change, one IP set member change, resync with nothing changed;
each against two bare loops sending the same messages in the same run: stock vpp_papi, one
request at a time (the issue's "raw vpp_papi"), and the driver's own transport and pipelining.

    python bench/vpp_converge.py [--target auto|vpp|emulator] [--policies 500 --endpoints 2000
                                 --ipsets 200 --big-set 10000] [--classifier-min-members 500]
                                 [--compare-acl-only] [--services N]

The state (the P1 snapshot: 500 policies / 2,000 endpoints / 200 IP sets): 50 namespaces with 10
policies each; 2,000 pods, 40 per namespace, in 4 apps whose pods share their tiers (ingress: two
of the namespace's policies picked by app; egress: two namespace-wide ones) and a namespace
profile. IP sets: one per namespace (its 40 pods), one per app of a namespace (10 pods) up to
--ipsets in all, the last being a large cluster-wide set (--big-set members) that one policy of
namespace 0 allows tcp/8443 from: the set whose one-member change is measured. The policies allow
service ports from their own namespace's set or one of its app sets, tcp/443 from the next
namespace's set, DNS from 10.0.0.0/8 except a /24, and ICMP echo.

Three VPPs, prepared identically (2,000 pods as tagged loopbacks: the pod interfaces' kind does not
change what the driver writes for policy): the driver programs the first; every request it sends
is recorded (and which went as one pipeline) and the same requests are then sent to the second
by a plain loop over stock `VPPApiClient` methods ("bare": one at a time, vpp_papi's own socket
transport), and to the third by a loop over a `VPPApiClient` with the driver's transport
(api/transport.py), each recorded pipeline sent as a pipeline ("bare pipe."): same messages,
same order, same VPP state, nothing else. The ratio driver/bare is the driver against raw
vpp_papi, driver/bare pipe. the driver's own cost (compiling, planning, reading back) per
scenario, with the same wire; "in req."
is the part of the driver's time spent inside its requests (vpp_papi and VPP), so driver minus
"in req." is the driver's own work, and driver / "in req." the same comparison as driver / bare
made within one pass: on a shared machine the two passes see different load (the same messages
took 6-15 s in the driver's pass and 6-10 s bare in eight runs), the one pass sees the same.
- `--target vpp` (auto when the vpp binary is installed and we are root): two real VPPs started
  with `vppagent.vpprun`, each in a network namespace of its own; the new pod is an af_packet
  interface on a veth made beforehand in both namespaces (its Linux side is not measured).
- `--target emulator`: two emulators (`python -m vppagent.vppsim`); the new pod is a tap.
On a real VPP it also prints the TupleMerge mask shapes of the lists the cold apply bound (per
list: mask types and the most rules sharing one hash entry, bench/vpp_tables.py), which is what
the per-packet cost follows (bench/vpp_packet.py measures it).
Speed is printed, never asserted. P2 target: an IP set member change costs at most 2 % of a cold apply.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository: vppagent, bench

from vpp_papi import VPPApiClient

from bench import vpp_tables
from vppagent.drivers.base import ApplyReport
from vppagent.drivers.vpp.api import transport
from vppagent.drivers.vpp.api.connection import ApiRequest, VppConnection
from vppagent.drivers.vpp.api.messages import READ_ONLY
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.pods.interfaces import PodKind
from vppagent.drivers.vpp.tags import workload_tag
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.pods.spec import PodSpec
from vppagent.services.model import Backend, Frontend, ServiceEntry, ServicePortEntry
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState, WorkloadKey
from vppagent.vpprun import VppProcess, vpp_problem

NAMESPACES = 50
APPS = 4
NEW_POD_VETH = "calinewpod"
Request = tuple[str, dict[str, Any]]
Step = Request | list[Request]  # one request, or one pipeline of them


def pod_ip(index: int) -> str:
    return f"10.{64 + index // 62500}.{index // 250 % 250}.{index % 250 + 1}"


def app_sets(ipsets: int) -> list[tuple[int, int]]:
    """(namespace, app) of each app set: what is left of `ipsets` after one set per namespace and
    the large cluster set."""
    count = max(0, min(ipsets - NAMESPACES - 1, NAMESPACES * APPS))
    return [(j % NAMESPACES, j // NAMESPACES) for j in range(count)]


def build_state(policies: int, endpoints: int, ipsets: int, big_set: int) -> DataplaneState:
    per_ns = max(1, policies // NAMESPACES)
    pods_per_ns = max(1, endpoints // NAMESPACES)
    state = DataplaneState()
    state.apply(b.config({}))
    for ns in range(NAMESPACES):
        state.apply(b.ipset(f"s:ns{ns}", [pod_ip(ns * pods_per_ns + i) for i in range(pods_per_ns)], kind="ip"))
    with_app_set = set(app_sets(ipsets))
    for ns, app in sorted(with_app_set):
        members = [pod_ip(ns * pods_per_ns + i) for i in range(pods_per_ns) if i % APPS == app]
        state.apply(b.ipset(f"s:ns{ns}.app{app}", members, kind="ip"))
    state.apply(b.ipset("s:cluster", [f"10.200.{i // 250}.{i % 250 + 1}" for i in range(big_set)], kind="ip"))
    for ns in range(NAMESPACES):
        for k in range(per_ns):
            own = f"s:ns{ns}.app{k % APPS}" if (ns, k % APPS) in with_app_set else f"s:ns{ns}"
            inbound = [
                b.rule("allow", protocol="tcp", dst_ports=[8000 + k, (9000, 9009)], src_ip_set_ids=[own]),
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
    ns, app = i // pods_per_ns % NAMESPACES, i % APPS
    ingress = [b.policy_id(f"p{app % per_ns}", f"ns{ns}"), b.policy_id(f"p{(app + 4) % per_ns}", f"ns{ns}")]
    egress = [b.policy_id(f"p{8 % per_ns}", f"ns{ns}"), b.policy_id(f"p{9 % per_ns}", f"ns{ns}")]
    tier = felix.TierInfo(name="default", default_action="Deny", ingress_policies=ingress, egress_policies=egress)
    return b.workload(f"ns{ns}/pod{i}", f"cali{i:011d}", ipv4=[f"{pod_ip(i)}/32"], tiers=[tier],
                      profiles=[f"kns.ns{ns}"])


class Target(Protocol):
    """A VPP (or emulator) the bench programs: its API socket and a bare client on it (with the
    driver's transport when made with `fast`)."""

    socket: Path
    client: VPPApiClient
    pod_kind: PodKind

    def stop(self) -> None: ...


def bare_client(socket: Path, fast: bool = False) -> VPPApiClient:
    # the same client settings as the driver's connection (no event thread); with `fast`, its transport
    client = VPPApiClient(server_address=str(socket), bootstrapapi=True, read_timeout=120, async_thread=False)
    if fast:
        transport.install(client, 120, str(socket))
    client.connect("bench-bare")
    return client


class Emulator:
    pod_kind: PodKind = "tap"

    def __init__(self, directory: Path, name: str, fast: bool = False) -> None:
        self.socket = directory / f"{name}.sock"
        self.proc = subprocess.Popen([sys.executable, "-m", "vppagent.vppsim", "--socket", str(self.socket),
                                      "--log-level", "WARNING"])
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("emulator did not start")
            time.sleep(0.02)
        self.client = bare_client(self.socket, fast)

    def stop(self) -> None:
        self.client.disconnect()
        self.proc.terminate()
        self.proc.wait(10)


class RealVpp:
    """A real VPP in a network namespace of its own, with the veth the new pod will use."""

    pod_kind: PodKind = "af_packet"

    def __init__(self, name: str, fast: bool = False) -> None:
        self.netns = name
        subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
        self.vpp = VppProcess(Path("/run/vpp") / name, netns=name, heap="2G", buffers=16384, stats="64M")
        try:
            subprocess.run(["ip", "-n", name, "link", "add", NEW_POD_VETH, "type", "veth", "peer", "name",
                            "newpodpeer"], check=True, timeout=10)
            subprocess.run(["ip", "-n", name, "link", "set", NEW_POD_VETH, "up"], check=True, timeout=10)
            self.vpp.start()
            self.vpp.wait_ready()
            self.socket = self.vpp.api_socket
            self.client = bare_client(self.socket, fast)
        except BaseException:
            self.stop()
            raise

    @property
    def version(self) -> str:
        return self.vpp.cli("show version").split()[1]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.vpp.stop(remove_dir=True)  # by pid, before its namespace goes
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True, timeout=10, check=False)


def mask_shapes(vpp: RealVpp) -> str:
    """TupleMerge mask shapes of the driver's lists as VPP built them (bench/vpp_tables.py)."""
    api = vpp.client.api

    def cli(command: str) -> str:
        return str(api.cli_inband(cmd=command).reply)

    ours = [a.acl_index for a in api.acl_dump(acl_index=0xFFFFFFFF) if a.tag.startswith("vpa1:acl:") and a.count]
    shapes = vpp_tables.shapes_per_acl(cli, ours)
    return f"{vpp_tables.summary(shapes.values())}; mask types held over all ACLs {vpp_tables.global_mask_types(cli)}"


def add_pods(target: Target, workload_ids: list[str]) -> None:
    api = target.client.api
    for workload_id in workload_ids:
        index = api.create_loopback().sw_if_index
        api.sw_interface_tag_add_del(is_add=True, sw_if_index=index,
                                     tag=workload_tag(WorkloadKey("k8s", workload_id, "eth0")))


def replay(target: Target, steps: list[Step]) -> float:
    """Stock vpp_papi, one request at a time (pipelines too)."""
    api = target.client.api
    flat = [r for step in steps for r in (step if isinstance(step, list) else [step])]
    start = time.perf_counter()
    for message, fields in flat:
        getattr(api, message)(**fields)
    return time.perf_counter() - start


def replay_pipelined(target: Target, steps: list[Step]) -> float:
    """The driver's transport: one request at a time, and each recorded pipeline as a pipeline."""
    client = target.client
    api = client.api
    start = time.perf_counter()
    for step in steps:
        if isinstance(step, list):
            transport.pipelined(client, step)
        else:
            getattr(api, step[0])(**step[1])
    return time.perf_counter() - start


class RecordingConnection(VppConnection):
    """The driver's connection, keeping every request (and which went as one pipeline) for the
    bare replays."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: list[Step] = []
        self.wire_seconds = 0.0  # inside requests: the part of the driver's time VPP and vpp_papi take

    def _request(self, message: str, fields: dict[str, Any]) -> Any:
        self.recorded.append((message, dict(fields)))
        start = time.perf_counter()
        try:
            return super()._request(message, fields)
        finally:
            self.wire_seconds += time.perf_counter() - start

    def pipeline(self, requests: Sequence[ApiRequest]) -> list[Any]:
        self.recorded.append([(r.message, dict(r.fields)) for r in requests])
        start = time.perf_counter()
        try:
            return super().pipeline(requests)
        finally:
            self.wire_seconds += time.perf_counter() - start


def measure(name: str, conn: RecordingConnection, bare: Target, fast: Target,
            action: Callable[[], Any]) -> dict[str, Any]:
    conn.recorded.clear()
    conn.wire_seconds = 0.0
    start = time.perf_counter()
    report = action()
    driver_seconds = time.perf_counter() - start
    assert report.ok and not report.failed, f"{name}: {report}"
    steps = list(conn.recorded)
    bare_seconds = replay(bare, steps)
    fast_seconds = replay_pipelined(fast, steps)
    requests = [r for step in steps for r in (step if isinstance(step, list) else [step])]
    kinds = Counter("read" if m in READ_ONLY else "write" for m, _ in requests)
    pipelined = sum(len(step) for step in steps if isinstance(step, list))
    return {"scenario": name, "writes": kinds["write"], "reads": kinds["read"], "pipelined": pipelined,
            "driver_s": driver_seconds, "wire_s": conn.wire_seconds, "bare_s": bare_seconds, "fast_s": fast_seconds,
            "ratio": driver_seconds / bare_seconds if requests else None,
            "fast_ratio": driver_seconds / fast_seconds if requests else None,
            "top": Counter(m for m, _ in requests).most_common(3)}


def new_driver(target: Target, min_members: int) -> tuple[VppDriver, RecordingConnection]:
    conn = RecordingConnection(target.socket, request_timeout=120)
    conn.connect()
    driver = VppDriver(conn, classifier_min_members=min_members, pod_interface=target.pod_kind,
                       plumbing=NoPlumbing())
    return driver, conn


def run(make_target: Callable[[str, bool], Target], policies: int, endpoints: int, ipsets: int, big_set: int,
        min_members: int, services: int = 0) -> list[dict[str, Any]]:
    state = build_state(policies, endpoints, ipsets, big_set)
    tag = f"vpa-bench-{os.getpid()}"
    targets: list[Target] = []
    try:
        for name, fast in (("driven", False), ("bare", False), ("fast", True)):
            targets.append(make_target(f"{tag}-{name}", fast))
        driven, bare, fast_bare = targets
        pods = [key.workload_id for key in state.workload_endpoints]
        for target in targets:
            add_pods(target, pods)
        driver, conn = new_driver(driven, min_members)

        def measured(name: str, action: Callable[[], Any]) -> dict[str, Any]:
            return measure(name, conn, bare, fast_bare, action)

        def changed(name: str, messages: list[felix.ToDataplane]) -> dict[str, Any]:
            old = state.copy()
            for m in messages:
                state.apply(m)
            return measured(name, lambda: driver.apply(diff_states(old, state), state))

        rows = [measured("cold apply", lambda: driver.resync(state))]
        if isinstance(driven, RealVpp):
            rows[0]["mask_shapes"] = mask_shapes(driven)

        # a pod as it comes: CNI Add (its Linux side is not part of the measurement), then
        # Felix's endpoint for it
        spec = PodSpec(WorkloadKey("k8s", "ns3/newpod", "eth0"), Path("/proc/self/ns/net"), "eth0",
                       NEW_POD_VETH, (ipaddress.ip_interface("10.99.9.9/32"),), ())
        rows.append(measured(f"CNI Add ({driven.pod_kind})", lambda: _ok(driver.attach_pod(spec))))
        sibling = next(k for k in state.workload_endpoints if k.workload_id.startswith("ns3/"))
        rows.append(changed("endpoint add (Felix)", [
            b.workload("ns3/newpod", NEW_POD_VETH, ipv4=["10.99.9.9/32"],
                       tiers=list(state.workload_endpoints[sibling].tiers), profiles=["kns.ns3"])]))
        rows.append(changed("policy change", [
            b.policy("p1", namespace="ns5", inbound=[b.rule("allow", protocol="tcp", dst_ports=[8101],
                                                            src_ip_set_ids=["s:ns5"])])]))
        rows.append(changed("ipset member change", [b.ipset_delta("s:cluster", added=["10.201.0.1"])]))
        rows.append(measured("resync, VPP unchanged", lambda: driver.resync(state)))
        if services:  # --services: cnat translations, written (then one rewritten) after the policy
            rows.append(measured(f"services ({services})", lambda: services_set(driver, service_entries(services))))
            rows.append(measured("one service changed", lambda: services_set(driver, service_entries(services, 1))))
        driver.close()
        driver, conn = new_driver(driven, min_members)  # an agent restart: nothing in memory
        rows.append(measured("resync, new driver", lambda: driver.resync(state)))
        driver.close()
    finally:
        for target in targets:
            target.stop()
    return rows


def service_entries(count: int, changed: int = 0) -> dict[str, ServiceEntry]:
    """`count` ClusterIP Services (10.96.x.y:80/tcp), each to two pods; the first `changed` of them
    with their second backend replaced."""
    out = {}
    for i in range(count):
        backends = (pod_ip(i), pod_ip(i + (count if i < changed else 1)))
        frontend = Frontend(f"10.96.{i // 250}.{i % 250 + 1}", 80, "tcp", "cluster")
        out[f"ns{i % 50}/svc{i}"] = ServiceEntry(f"ns{i % 50}/svc{i}", (ServicePortEntry(
            "http", "tcp", (frontend,), tuple(Backend(ip, 8080) for ip in backends)),))
    return out


def services_set(driver: VppDriver, entries: dict[str, ServiceEntry]) -> ApplyReport:
    driver.set_services(entries)
    errors = driver.service_errors()
    assert not errors, errors
    return ApplyReport()


class NoPlumbing:
    """The pod's Linux side is out of scope here: the veth exists already (real VPP), or no tap
    appears from an emulator."""

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


def print_rows(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    print(f"{'scenario':<24}{'writes':>8}{'reads':>8}{'piped':>7}{'driver s':>10}{'in req. s':>10}{'bare s':>9}"
          f"{'pipe. s':>9}{'/bare':>9}{'/pipe.':>9}{'/in req.':>9}   top messages")
    for r in rows:
        top = ", ".join(f"{m} x{n}" for m, n in r["top"])
        ratios = ["-" if r[k] is None else f"{r[k]:.2f}" for k in ("ratio", "fast_ratio")]  # nothing sent: "-"
        own = f"{r['driver_s'] / r['wire_s']:.2f}" if r["wire_s"] else "-"
        print(f"{r['scenario']:<24}{r['writes']:>8}{r['reads']:>8}{r['pipelined']:>7}{r['driver_s']:>10.3f}"
              f"{r['wire_s']:>10.3f}{r['bare_s']:>9.3f}{r['fast_s']:>9.3f}{ratios[0]:>9}{ratios[1]:>9}{own:>9}   {top}")
    if "mask_shapes" in rows[0]:
        print(f"lists after the cold apply: {rows[0]['mask_shapes']}")
    cold = rows[0]["driver_s"]
    member = next(r for r in rows if r["scenario"] == "ipset member change")["driver_s"]
    verdict = "meets" if member <= 0.02 * cold else "misses"
    print(f"P2: one member change = {100 * member / cold:.2f} % of a cold apply ({verdict} the 2 % target)")
    unchanged = [r for r in rows if r["scenario"].startswith("resync")]
    print("resync with nothing changed: " + ", ".join(f"{r['scenario'].split(', ')[1]} {r['writes']} writes"
                                                      for r in unchanged))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--target", choices=["auto", "vpp", "emulator"], default="auto",
                        help="auto: a real VPP when one can be started here (root, vpp installed)")
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--ipsets", type=int, default=200, help="IP sets in all, the large one included")
    parser.add_argument("--big-set", type=int, default=10_000)
    parser.add_argument("--classifier-min-members", type=int, default=500)
    parser.add_argument("--compare-acl-only", action="store_true",
                        help="also run with every IP set in ACLs (classifier off) for the comparison")
    parser.add_argument("--services", type=int, default=0,
                        help="also write this many ClusterIP Services (cnat translations), then change one")
    args = parser.parse_args()
    problem = vpp_problem()
    real = args.target == "vpp" or (args.target == "auto" and problem is None)
    if real and problem is not None:
        parser.error(f"--target vpp: {problem}")
    state = build_state(args.policies, args.endpoints, args.ipsets, args.big_set)
    what = f"{len(state.policies)} policies, {len(state.workload_endpoints)} endpoints, {len(state.ipsets)} IP sets"
    if real:
        print(f"{what} (the largest {args.big_set} members); three real VPPs ({shutil.which('vpp')}), "
              "pods as tagged loopbacks, each VPP main thread only")
        make: Callable[[str, bool], Target] = RealVpp
    else:
        scratch = Path(tempfile.mkdtemp(prefix="vpa-bench-", dir="/tmp"))
        print(f"{what} (the largest {args.big_set} members); three emulators in separate processes")

        def make(name: str, fast: bool) -> Target:
            return Emulator(scratch, name, fast)

    if args.compare_acl_only:
        print_rows("IP sets in ACLs only (classifier off):",
                   run(make, args.policies, args.endpoints, args.ipsets, args.big_set, 0))
    print_rows(f"Large sets in the classifier (>= {args.classifier_min_members} members):",
               run(make, args.policies, args.endpoints, args.ipsets, args.big_set, args.classifier_min_members,
                   args.services))


if __name__ == "__main__":
    main()
