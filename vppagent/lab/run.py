"""A lab run: build the cluster, feed each node's agent through its Felix, probe every step.

Order: namespaces → (Services: the outside host, the API server in every node) → (driver vpp: one
VPP per node, eth0 its uplink) → agents and pod listeners (all in parallel) → pods by CNI Add →
felix-shims → Felix snapshots → endpoints reported up and BGP routes learnt (→ Services programmed)
→ for each step: deltas (and the Services in force), wait until applied, probes and flows to
Services, compare with the reference evaluator (service_checks for Services).
Teardown (unless kept) runs whatever happened, from the state file's list. About 400 lines: the
run's order stays in one place; what Services add lives in service_run.py.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vppagent.lab import oracle
from vppagent.lab.agents import LabError, NodeAgent, wait_until
from vppagent.lab.felix_feed import NodeFeed, workload_key
from vppagent.lab.probe import FlowResult, Probe, ProbeResult, run_parallel, run_probe
from vppagent.lab.record import LabRecord, all_records, teardown
from vppagent.lab.report import Cell, LabResult, StepResult
from vppagent.lab.scenario import NODE_SUBNET, ClusterObjects, Scenario, Snapshot
from vppagent.lab.service_run import LabServices
from vppagent.lab.topology import Topology, new_prefix
from vppagent.lab.vpp_nodes import NodeVpp, vpp_problem

DRIVERS = ("iptables", "vpp", "dry-run")
CHOICES = ("auto", *DRIVERS)
CNI_ATTEMPTS = 3
LOGS_ROOT = Path("/tmp/vppagent-lab-logs")  # where a failed run's logs survive its teardown


def services_problem(scenario: Scenario, driver: str) -> str | None:
    """Why `scenario` cannot run on `driver`, when it has Services and the driver serves none."""
    if driver == "vpp" or not scenario.has_services():
        return None
    return (f"scenario {scenario.name} has Services, which the lab probes on VPP only (--driver vpp): the "
            f"{driver} driver programs no Services (a kernel node leaves them to kube-proxy, and the lab "
            "runs no kube-proxy)")


def resolve_driver(choice: str) -> tuple[str, str | None]:
    """`auto`: the product itself (VPP) when a VPP can be started here, else the kernel.
    Returns the driver and, for auto, a note saying which and why."""
    if choice != "auto":
        return choice, None
    problem = vpp_problem()
    if problem is None:
        return "vpp", "driver auto: VPP (one per node)"
    return "iptables", f"driver auto: iptables, the kernel ({problem})"


@dataclass
class LabOptions:
    driver: str = "iptables"
    # Outside VPPs instead of the lab's own ("{node}" is replaced by the node's name); each must
    # already have its uplink.
    vpp_api_socket: str | None = None
    keep: bool = False
    probe_timeout: float = 1.0
    metrics_port: int | None = None
    # Progress callbacks: a one-line status, and probes done out of total.
    status: Callable[[str], None] = field(default=lambda _text: None)
    progress: Callable[[int, int], None] | None = None
    step_done: Callable[[StepResult], None] = field(default=lambda _step: None)


def save_files(workdir: Path, target: Path) -> Path | None:
    """Copy a lab's logs and generated configs (not its sockets) to `target`."""
    patterns = ("*.log", "*/*.log", "*/*.yaml", "*/bird.conf", "*/vpp/*.log", "*/vpp/startup.conf")
    files = [p for pattern in patterns for p in workdir.glob(pattern)]
    if not files:
        return None
    for path in files:
        dest = target / path.relative_to(workdir)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
    return target


def remove_stale_labs() -> list[str]:
    """Tear down labs whose run died without cleaning up (kept labs stay until `lab down`)."""
    removed = []
    for record in all_records():
        if not record.keep and not record.owner_alive():
            problems = teardown(record)
            removed.append(f"removed the leftovers of crashed lab {record.prefix}"
                           + (f" (not all: {'; '.join(problems)})" if problems else ""))
    return removed


class LabRun:
    def __init__(self, scenario: Scenario, options: LabOptions) -> None:
        if options.driver not in DRIVERS:
            raise LabError(f"unknown driver {options.driver!r} (choose {', '.join(DRIVERS)})")
        problem = services_problem(scenario, options.driver)
        if problem is not None:
            raise LabError(problem)
        self.scenario = scenario
        self.options = options
        self.record: LabRecord | None = None
        self.topology: Topology | None = None
        self.agents: dict[str, NodeAgent] = {}
        self.vpps: dict[str, NodeVpp] = {}  # the lab's own VPPs (driver vpp)
        self.feeds: dict[str, NodeFeed] = {}
        self.interfaces: dict[str, str] = {}
        self.listeners: list[subprocess.Popen[bytes]] = []
        self.cni_retries: list[str] = []
        self.notes: list[str] = []
        self.saved_logs: Path | None = None
        self.listeners_pending: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.services: LabServices | None = None  # scenarios with Services
        self.previous: ClusterObjects | None = None  # the objects the last step probed

    # -- the whole run -----------------------------------------------------------------------
    def run(self) -> LabResult:
        started = time.monotonic()
        failed = True
        try:
            self.start()
            result = LabResult(self.scenario.name, self.options.driver, self.prefix, notes=list(self.notes),
                               setup_seconds=time.monotonic() - started)
            for snapshot in self.scenario.snapshots():
                step = self.run_step(snapshot)
                result.steps.append(step)
                self.options.step_done(step)
            failed = not result.ok
        finally:
            if not self.options.keep:
                self.down(save_logs=failed)
        if self.options.keep:
            result.notes.append(f"kept lab {self.prefix}: files in {self.workdir}; namespaces {self.prefix}-*; "
                                "remove it with `vppagent lab down`")
            if self.options.metrics_port is not None:
                result.notes.append(f"metrics: ip netns exec {self.prefix}-{self.scenario.nodes[0].name} "
                                    f"curl -s localhost:{self.options.metrics_port}/metrics")
        if self.saved_logs is not None:
            result.notes.append(f"agent, shim, BIRD and listener logs kept in {self.saved_logs}")
        result.seconds = time.monotonic() - started
        return result

    def start(self) -> None:
        """Build the cluster and bring it to the scenario's initial state (without probing).
        On failure everything made so far is removed, unless the lab is to be kept."""
        self.notes.extend(remove_stale_labs())
        self.record = LabRecord.create(new_prefix(), keep=self.options.keep)
        try:
            self.set_up()
        except BaseException:
            if not self.options.keep:
                self.down(save_logs=True)
            raise
        finally:
            self.notes.extend(self.cni_retries)

    @property
    def prefix(self) -> str:
        assert self.record is not None, "start() first"
        return self.record.prefix

    @property
    def workdir(self) -> Path:
        assert self.record is not None, "start() first"
        return Path(self.record.workdir)

    def __enter__(self) -> LabRun:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.options.keep:
            self.down()

    def down(self, save_logs: bool = False) -> list[str]:
        """Remove everything this run made; returns what could not be removed. Idempotent.
        With `save_logs`, the logs and generated configs are copied out first (for a failed run)."""
        if save_logs and self.record is not None and self.saved_logs is None:
            self.saved_logs = save_files(Path(self.record.workdir), LOGS_ROOT / self.record.prefix)
        for agent in self.agents.values():
            if agent.felix is not None:
                agent.felix.close(timeout=2.0)  # Felix goes first, as in the state file's order
                agent.felix = None
        if self.services is not None:
            self.services.stop()
        problems = teardown(self.record) if self.record is not None else []
        vpps = [v.process.proc for v in self.vpps.values() if v.process.proc is not None]
        for proc in [*self.listeners, *(a.proc for a in self.agents.values() if a.proc is not None), *vpps]:
            if proc.poll() is None:
                proc.wait(5)  # reap our children; teardown already signalled them
        return problems

    # -- set-up ------------------------------------------------------------------------------------
    def set_up(self) -> None:
        assert self.record is not None
        sc, workdir = self.scenario, Path(self.record.workdir)
        self.options.status(f"building namespaces ({self.record.prefix})")
        self.topology = topo = Topology(sc, self.record)
        topo.build(kernel_forwarding=self.options.driver != "vpp")
        first = next(iter(sc.snapshots()))
        if sc.has_services():
            self.services = LabServices(sc, topo, workdir)
            self.services.start(first.objects)
            self.services.quiet_node_kernels()
        if self.options.driver == "vpp" and not self.options.vpp_api_socket:
            self._start_vpps()
        self.options.status(f"starting {len(sc.nodes)} agents (driver {self.options.driver})")
        for node in sc.nodes:
            self.agents[node.name] = NodeAgent(node.name, topo.node_ns(node.name), workdir, self.record,
                                               self.options.driver, bgp=sc.bgp_of(node),
                                               extra_args=self._agent_args(node.name))
            self.agents[node.name].start()
        self._start_listeners()  # while the agents start
        for agent in self.agents.values():
            agent.wait_ready()
        self.options.status("creating pods through each agent's CNI Add")
        for node, pod in sc.pods():
            self.interfaces[pod.name] = self._add_pod(node.name, pod.name)
        if self.options.driver == "dry-run":
            self._wire_pods_ourselves()
        self.options.status("streaming each node's Felix snapshot through felix-shim")
        for agent in self.agents.values():
            agent.start_felix(wait=False)
        for agent in self.agents.values():
            agent.wait_felix_connected()
        self._wait_listeners()
        for node in sc.nodes:
            self.feeds[node.name] = NodeFeed(sc, node.name, self.interfaces)
            self.agents[node.name].send(self.feeds[node.name].snapshot(first.objects))
        for agent in self.agents.values():
            agent.wait_applied()
        self._wait_endpoints_up()
        self.options.status("waiting for BGP to learn every node's block")
        self._wait_routes()
        if self.services is not None:
            self.options.status("waiting for every agent to program the Services")
            self.services.wait_programmed(self.agents, first.objects)

    def _start_vpps(self) -> None:
        """One VPP per node, started together; then each node's eth0 becomes its uplink."""
        assert self.topology is not None and self.record is not None
        self.options.status(f"starting {len(self.scenario.nodes)} VPPs")
        for node in self.scenario.nodes:
            self.vpps[node.name] = NodeVpp(node.name, self.topology.node_ns(node.name),
                                           Path(self.record.workdir) / node.name, self.record,
                                           services=self.scenario.has_services())
            self.vpps[node.name].start()
        for node in self.scenario.nodes:
            vpp = self.vpps[node.name]
            vpp.wait_ready()
            vpp.configure_uplink(ipaddress.IPv4Interface(f"{self.scenario.node_address(node.name)}/"
                                                         f"{NODE_SUBNET.prefixlen}"))

    def _agent_args(self, node: str) -> list[str]:
        args = self.services.agent_args(node) if self.services is not None else []
        if node in self.vpps:
            args += ["--vpp-api-socket", str(self.vpps[node].api_socket), "--pod-interface", "af_packet"]
        elif self.options.vpp_api_socket:
            args += ["--vpp-api-socket", self.options.vpp_api_socket.replace("{node}", node)]
        if self.options.metrics_port is not None:
            args += ["--metrics-port", str(self.options.metrics_port)]
        return args

    def _add_pod(self, node: str, pod_name: str) -> str:
        assert self.topology is not None
        pod = self.scenario.pod(pod_name)
        netns = self.topology.pod_netns_path(pod_name)
        address = f"{self.scenario.pod_address(pod_name)}/32"
        for attempt in range(1, CNI_ATTEMPTS + 1):
            try:
                reply = self.agents[node].cni_add(pod_name, pod.namespace, netns, address)
                break
            except LabError as exc:
                # pyroute2's NetNS forks inside the agent's multi-threaded gRPC process and the child
                # sometimes dies (SIGSEGV); an Add is safe to repeat (it replaces a half-made veth).
                if "child process is dead" not in str(exc) or attempt == CNI_ATTEMPTS:
                    raise
                self.cni_retries.append(f"CNI Add of {pod_name} on {node} retried: {exc}")
        return str(reply.host_interface_name)

    def _wire_pods_ourselves(self) -> None:
        """The dry-run driver only records an Add: wire the pods as the kernel driver would, so
        the probes show what a dataplane that enforces nothing lets through."""
        assert self.topology is not None
        for node in self.scenario.nodes:
            pods = [{"name": pod.name, "namespace": pod.namespace, "host_interface": self.interfaces[pod.name],
                     "netns": str(self.topology.pod_netns_path(pod.name)),
                     "address": f"{self.scenario.pod_address(pod.name)}/32"} for pod in node.pods]
            if pods:
                argv = ["ip", "netns", "exec", self.topology.node_ns(node.name), sys.executable, "-m",
                        "vppagent.lab.wire_pods", json.dumps(pods)]
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
                if proc.returncode != 0:
                    raise LabError(f"wiring the pods of {node.name}: {proc.stderr.strip()[-800:]}")

    def _start_listeners(self) -> None:
        """Servers bind 0.0.0.0, so they can start before the pod has its interface."""
        assert self.topology is not None and self.record is not None
        for _, pod in self.scenario.pods():
            if not pod.ports:
                continue
            argv = ["ip", "netns", "exec", self.topology.pod_ns(pod.name), sys.executable, "-m",
                    "vppagent.lab.listener", pod.name, *(str(p) for p in pod.ports)]
            with open(Path(self.record.workdir) / f"listener-{pod.name}.log", "ab") as log:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                                        start_new_session=True)
            self.listeners.append(proc)
            self.record.add_process(proc.pid, "listener", f"listener {pod.name}")
            self.listeners_pending.append((pod.name, proc))

    def _wait_listeners(self) -> None:
        assert self.record is not None
        deadline = time.monotonic() + 15.0
        for name, proc in self.listeners_pending:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            line = proc.stdout.readline() if ready else b""
            if line.strip() != b"ready":
                raise LabError(f"the listener in pod {name} did not start (exit {proc.poll()}); "
                               f"see {self.record.workdir}/listener-{name}.log")

    def _wait_endpoints_up(self) -> None:
        """Each agent reports its workloads' status back to Felix, through the shim."""
        for node in self.scenario.nodes:
            felix = self.agents[node.name].felix
            assert felix is not None
            wanted = {workload_key(self.scenario, p.name).workload_id for p in node.pods}

            def all_up(felix: object = felix, wanted: set[str] = wanted) -> bool:
                statuses = felix.statuses()  # type: ignore[attr-defined]
                return all(statuses.get(w) == "up" for w in wanted)

            wait_until(all_up, 15.0, f"the workloads of {node.name} to be reported up to Felix "
                       f"(seen: {felix.statuses()})")

    def _wait_routes(self, timeout: float = 30.0) -> None:
        sc = self.scenario
        if len(sc.nodes) < 2:
            return

        def learnt() -> bool:
            return all(f"via {sc.node_address(other.name)} " in self.agents[node.name].kernel_route(
                str(sc.node_block(other.name))) + " " for node in sc.nodes for other in sc.nodes if other != node)

        try:
            wait_until(learnt, timeout, "BGP routes", interval=0.1)
        except LabError:
            sessions = {n: a.bgp_sessions() for n, a in self.agents.items()}
            raise LabError(f"BGP did not learn every block within {timeout:.0f} s; sessions: {sessions}") from None

    # -- steps -----------------------------------------------------------------------------------
    def run_step(self, snapshot: Snapshot) -> StepResult:
        started = time.monotonic()
        label = f"step {snapshot.index + 1}/{len(self.scenario.steps) + 1}"
        if snapshot.index > 0:
            self.options.status(f"{label}: {snapshot.name}: sending deltas")
            if self.services is not None:
                self.services.publish(snapshot.objects)
            for node, feed in self.feeds.items():
                self.agents[node].send(feed.advance(snapshot.objects))
            for agent in self.agents.values():
                agent.wait_applied()
            if self.services is not None:
                self.services.wait_programmed(self.agents, snapshot.objects)
        programmed = time.monotonic()
        self.options.status(f"{label}: {snapshot.name}: probing")
        probes = self._probes()
        timeout = self.options.probe_timeout
        states = {node: feed.state for node, feed in self.feeds.items()}
        flows = self.services.plan(snapshot.objects, self.previous, states) if self.services is not None else []
        jobs: list[Callable[[], ProbeResult | FlowResult]] = [functools.partial(run_probe, p, timeout) for p in probes]
        if self.services is not None:
            jobs += self.services.jobs(flows, timeout)
        done = run_parallel(jobs, progress=self.options.progress)
        results = [r for r in done if isinstance(r, ProbeResult)]
        flow_results = [r for r in done if isinstance(r, FlowResult)]
        self.previous = snapshot.objects
        written = {(e.source, e.target, e.port): e.allowed for e in snapshot.expectations}
        cells = []
        for res in results:
            p = res.probe
            port = next(port for port in self.scenario.pod(p.target).ports
                        if port.protocol == p.protocol and port.number == p.port)
            want = oracle.expected(self.scenario, snapshot.objects, states, p.source, p.target, port, res.source_port)
            cells.append(Cell(p.source, p.target, port, want.allowed, res.connected,
                              written.get((p.source, p.target, port)), want.reason, res.detail, res.source_port,
                              res.seconds))
        step = StepResult(snapshot.index, snapshot.name, cells, programmed - started, time.monotonic() - programmed)
        if self.services is not None:
            step.services, step.service_problems = self.services.judge(flows, flow_results, snapshot.objects)
        return step

    def _probes(self) -> list[Probe]:
        assert self.topology is not None
        pods = [pod for _, pod in self.scenario.pods()]
        return [Probe(src.name, dst.name, self.topology.pod_netns_path(src.name),
                      str(self.scenario.pod_address(dst.name)), port.protocol, port.number)
                for src in pods for dst in pods if src.name != dst.name for port in dst.ports]
