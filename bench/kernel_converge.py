"""Kernel driver convergence as the user waits for it: Felix's snapshot through felix-shim to a real agent.

    python bench/kernel_converge.py [--policies 500 --endpoints 2000 --ipsets 200 --members 100]
                                    [--runs 2] [--rss-endpoints 10000 --rss-policies 1000] [--restart]
                                    [--profile-out DIR]                                      (root)

Span: a real `vppagent run --driver iptables` runs inside a fresh network namespace that holds
one veth interface per workload (so its routes and sysctls are real too). A Felix stand-in starts
felix-shim exactly as Felix does (pipes on fd 3 and 4, length-prefixed frames) and writes the
snapshot; once the agent has folded all of it, the InSync frame is written and the clock runs
until the shim has handed Felix an "up" status for every endpoint (the agent sends those only
after the driver's report says the endpoint is programmed: server/status.py). The agent's own
figures (its resync time, the endpoint summary of `vppagent state`) are checked against that.
The time from the first snapshot frame until the agent has folded the last one is printed too.

For the breakdown, also in each run: the same snapshot through IptablesDriver.resync() in this
process (no shim, gRPC, store, routes or statuses), and the very inputs of its ipset and
iptables-restore processes replayed into a fresh namespace (the cost of the shape of its input).
The load average is printed with each run: on a shared 2-CPU machine it moves every figure.

Baseline, in the same run: `ipset save` and `iptables-save` of what the agent wrote, replayed
with `ipset restore` + `iptables-restore --noflush` (one per family and table, as the agent
writes) into a second fresh namespace. --noflush because an agent sharing the tables with other
software cannot flush them. The ratio span / baseline is the figure of issue 15 (goal <= 1.5).

RSS: VmRSS and VmHWM of the agent process after the snapshot is programmed, for the P1 state and
for a 10,000-endpoint / 1,000-policy variant (goal: <= 250 MB there). --restart: then a second
agent starts in that programmed namespace (as after an agent restart: its resync reads back
everything the first one wrote with iptables-save and ipset save) and gets the same snapshot; its
VmHWM is the restart's peak.

--profile-out DIR: run py-spy (when installed) on the agent during the span; one raw
(collapsed-stack) file per run, for the profile summary in docs/kernel-driver.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn
from vppagent.server.client import try_get_state

TABLES = ("filter", "raw", "mangle")


def sh(*argv: str, stdin: str | None = None, timeout: float = 600) -> str:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True,
                          timeout=timeout).stdout


def iface(i: int) -> str:
    return f"cali{i:07x}"


def snapshot(policies: int, endpoints: int, ipsets: int, members: int, rng: random.Random) -> list[felix.ToDataplane]:
    """Felix's snapshot (without InSync): IP sets, policies (5 rules each, two sets), one
    profile, endpoints with two ingress policies and one egress policy each."""
    msgs = [b.config({})]
    for i in range(ipsets):
        msgs.append(b.ipset(f"s:set{i}", [f"10.{i % 250}.{j // 250}.{j % 250}/32" for j in range(members)]))
    for i in range(policies):
        sets = [f"s:set{rng.randrange(ipsets)}" for _ in range(2)]
        msgs.append(b.policy(f"pol{i}", namespace=f"ns{i % 20}", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80, 443, (8000, 8100)], src_ip_set_ids=[sets[0]]),
            b.rule("deny", protocol="udp", src_net=["10.0.0.0/8", "192.168.0.0/16"]),
            b.rule("allow", protocol="tcp", dst_ports=[5432], src_ip_set_ids=[sets[1]]),
        ], outbound=[b.rule("allow", dst_ip_set_ids=[sets[1]]), b.rule("pass", protocol="udp", dst_ports=[53])]))
    msgs.append(b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]))
    for i in range(endpoints):
        chosen = [rng.randrange(policies) for _ in range(2)]
        ids = [b.policy_id(f"pol{p}", f"ns{p % 20}") for p in chosen]
        tier = felix.TierInfo(name="default", default_action="Deny", ingress_policies=ids, egress_policies=ids[:1])
        msgs.append(b.workload(f"ns/pod{i}", iface(i), ipv4=[f"10.65.{i // 250}.{i % 250}/32"],
                               profiles=["kns.default"], tiers=[tier]))
    return msgs


def netns(name: str, interfaces: int = 0) -> str:
    """A fresh namespace with `interfaces` workload interfaces, up: veth pairs whose other end
    stays in the namespace too (this kernel has no dummy interfaces)."""
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    sh("ip", "netns", "add", name)
    # No IPv6 on the new interfaces (the workloads here are IPv4 only): thousands of link-local
    # addresses would keep the kernel busy with DAD and MLD during the measurement.
    sh("ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    lines = ["link set lo up"]
    lines += [f"link add {iface(i)} type veth peer name p{i:07x}" for i in range(interfaces)]
    lines += [f"link set {name} up" for i in range(interfaces) for name in (iface(i), f"p{i:07x}")]
    sh("ip", "-n", name, "-batch", "-", stdin="\n".join(lines) + "\n")
    return name


def wait(predicate: Any, timeout: float, what: str, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of `pid` in MB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


@dataclass
class AgentRun:
    fold_s: float  # first snapshot frame written -> agent folded the whole snapshot
    span_s: float  # InSync written -> Felix holds "up" for every endpoint
    resync_s: float  # the agent's own figure: the driver's resync
    rss_mb: float
    hwm_mb: float
    fold_hwm_mb: float  # VmHWM once the snapshot is folded, before InSync: the peak of the fold
    rules: int
    set_entries: int
    backend: str

    def memory_and_span(self, goal: str = "") -> str:
        """The agent's memory and the InSync span, as the RSS variant and its restart print them."""
        return (f"agent VmRSS {self.rss_mb:.0f} MB, VmHWM {self.hwm_mb:.0f} MB ({goal}VmHWM once the snapshot "
                f"was folded, before InSync: {self.fold_hwm_mb:.0f} MB); InSync -> all up {self.span_s:.2f} s "
                f"(the agent's driver resync {self.resync_s:.2f} s)")


class Agent:
    """`vppagent run --driver iptables` inside `ns`, fed by felix-shim on fd 3/4."""

    def __init__(self, ns: str, workdir: Path) -> None:
        self.ns, self.workdir = ns, workdir
        self.sock = workdir / "agent.sock"
        self.log = open(workdir / "agent.log", "ab")  # noqa: SIM115 - closed in stop()
        # `ip netns exec` execs the program, so the pid is the agent's own.
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "vppagent.cli", "run", "--driver", "iptables",
             "--socket", str(self.sock), "--cni-socket", str(workdir / "cni.sock"), "--log-level", "warning"],
            stdout=self.log, stderr=self.log, cwd=os.path.join(os.path.dirname(__file__), ".."))
        wait(lambda: self.proc.poll() is not None or try_get_state(self.sock, 2) is not None, 60, "agent up")
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited {self.proc.returncode}: see {workdir / 'agent.log'}")
        self.felix = FelixStandIn(self.sock, log_path=workdir / "shim.log")
        self._seen = 0
        self.up: set[str] = set()

    def state(self) -> dict[str, Any]:
        report = try_get_state(self.sock, 30)
        if report is None:
            raise RuntimeError(f"agent not answering: see {self.workdir / 'agent.log'}")
        return report

    def statuses_up(self) -> int:
        """Endpoints Felix now holds as "up" (reads only what arrived since the last call)."""
        received = self.felix.received
        for msg in received[self._seen:len(received)]:
            if msg.HasField("workload_endpoint_status_update"):
                update = msg.workload_endpoint_status_update
                if update.status.status == "up":
                    self.up.add(update.id.workload_id)
                else:
                    self.up.discard(update.id.workload_id)
        self._seen = len(received)
        return len(self.up)

    def stop(self) -> None:
        self.felix.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def run_agent(ns: str, msgs: list[felix.ToDataplane], endpoints: int, workdir: Path,
              profile_out: Path | None) -> AgentRun:
    agent = Agent(ns, workdir)
    spy: subprocess.Popen[bytes] | None = None
    try:
        time.sleep(0.5)  # let the shim connect, so connection set-up is not timed
        start = time.perf_counter()
        agent.felix.send(msgs)
        wait(lambda: agent.state()["counters"]["messages"] >= len(msgs), 600, "snapshot folded", every=0.02)
        fold_s = time.perf_counter() - start
        fold_hwm = memory(agent.proc.pid)["VmHWM"]
        spy_path = shutil.which("py-spy", path=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
        if profile_out is not None and spy_path:
            spy = subprocess.Popen([spy_path, "record", "--pid", str(agent.proc.pid), "--rate", "250",
                                    "--format", "raw", "--output", str(profile_out), "--nonblocking"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # py-spy attaches
        start = time.perf_counter()
        agent.felix.send([b.in_sync()])
        wait(lambda: agent.statuses_up() >= endpoints, 900, f"{endpoints} endpoints up", every=0.005)
        span_s = time.perf_counter() - start
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
        mem = memory(agent.proc.pid)
        report = agent.state()
        summary = report["endpoints"]
        if summary.get("up") != endpoints or report["held_back"] or not report["last_apply"]["ok"]:
            raise RuntimeError(f"agent does not report everything programmed: {summary} "
                               f"{report['held_back'][:3]} {report['last_apply']}")
        backend = report["driver_status"]["backend"]
        rules = sum(sh("ip", "netns", "exec", ns, f"{v}tables-{backend}-save").count("\n-A ") for v in ("ip", "ip6"))
        entries = sh("ip", "netns", "exec", ns, "ipset", "save").count("\nadd ")
        resync = report["last_resync"] or {}
        return AgentRun(fold_s, span_s, float(resync.get("seconds") or 0), mem["VmRSS"], mem["VmHWM"],
                        fold_hwm, rules, entries, backend)
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        agent.stop()


def raw_replay(source: str, target: str, backend: str) -> float:
    """Time one `ipset restore` of `ipset save` + one `iptables-restore --noflush` of
    `iptables-save -t T` per (family, table) -- `source`'s final output -- into fresh `target`."""
    ipset_dump = sh("ip", "netns", "exec", source, "ipset", "save")
    dumps = [(fam, sh("ip", "netns", "exec", source, f"{'ip6' if fam == 6 else 'ip'}tables-{backend}-save", "-t", t))
             for fam in (4, 6) for t in TABLES]
    start = time.perf_counter()
    sh("ip", "netns", "exec", target, "ipset", "restore", stdin=ipset_dump)
    for fam, dump in dumps:
        sh("ip", "netns", "exec", target, f"{'ip6' if fam == 6 else 'ip'}tables-{backend}-restore", "--noflush",
           stdin=dump)
    return time.perf_counter() - start


def driver_alone(msgs: list[felix.ToDataplane], driver_ns: str, replay_ns: str) -> tuple[float, float]:
    """The same snapshot through IptablesDriver.resync() in this process (no shim, gRPC, store,
    routes or statuses), recording the very input of each ipset and iptables-restore it runs;
    then those inputs replayed one after another into fresh `replay_ns`. (driver s, replay s):
    tells the agent's Python from the cost of the shape of its restore input."""
    from vppagent.drivers.iptables import IptablesDriver
    from vppagent.drivers.iptables.runner import CommandResult, Input, input_text
    from vppagent.state.model import DataplaneState

    state = DataplaneState()
    for msg in msgs:
        state.apply(msg)
    driver = IptablesDriver(netns=driver_ns, refresh=False, program_routes=False)
    inputs: list[tuple[list[str], Input]] = []
    run_here = driver.runner.run_here  # type: ignore[attr-defined]

    def recording(argv: Any, stdin: Input | None = None, timeout: float | None = None,
                  check: bool = True) -> CommandResult:
        pieces = stdin if stdin is None or isinstance(stdin, str) else list(stdin)  # consumed once
        if pieces is not None:
            inputs.append((list(argv), pieces))
        result: CommandResult = run_here(argv, pieces, timeout, check)
        return result

    driver.runner.run_here = recording  # type: ignore[attr-defined]
    try:
        start = time.perf_counter()
        report = driver.resync(state.copy())
        driver_s = time.perf_counter() - start
        assert report.ok, report.error
    finally:
        driver.close()
    start = time.perf_counter()
    for argv, stdin in inputs:
        sh("ip", "netns", "exec", replay_ns, *argv, stdin=input_text(stdin))
    return driver_s, time.perf_counter() - start


def spread(values: list[float], unit: str = "s", digits: int = 2) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f} {unit}"
    return f"{min(values):.{digits}f}-{max(values):.{digits}f} {unit} (median {statistics.median(values):.{digits}f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--ipsets", type=int, default=200)
    parser.add_argument("--members", type=int, default=100)
    parser.add_argument("--runs", type=int, default=2, help="span + baseline pairs (each in fresh namespaces)")
    parser.add_argument("--rss-endpoints", type=int, default=10000, help="0 skips the RSS variant")
    parser.add_argument("--rss-policies", type=int, default=1000)
    parser.add_argument("--profile-out", type=Path, help="directory for py-spy raw profiles of the span")
    parser.add_argument("--restart", action="store_true",
                        help="RSS variant: restart the agent on the programmed namespace, report its peak")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("kernel_converge: skipped: needs root (network namespaces, iptables, ipset)", file=sys.stderr)
        return 2
    for tool in ("ipset", "iptables-save", "ip"):
        if shutil.which(tool) is None:
            print(f"kernel_converge: skipped: {tool} is not installed", file=sys.stderr)
            return 2
    if args.profile_out is not None:
        args.profile_out.mkdir(parents=True, exist_ok=True)
    msgs = snapshot(args.policies, args.endpoints, args.ipsets, args.members, random.Random(4))
    prefix = f"vpkc{os.getpid()}"
    spans, raws, ratios, folds, resyncs, rss, alone, replays = [], [], [], [], [], [], [], []
    run: AgentRun | None = None
    with tempfile.TemporaryDirectory(prefix="vppagent-kconv-") as tmp:
        for n in range(args.runs):
            agent_ns, raw_ns, driver_ns, replay_ns = (f"{prefix}-{x}{n}" for x in "ardp")
            load = os.getloadavg()[0]
            try:
                netns(agent_ns, args.endpoints)
                for ns in (raw_ns, driver_ns, replay_ns):
                    netns(ns)
                workdir = Path(tmp) / f"run{n}"
                workdir.mkdir()
                profile = args.profile_out / f"span-{n}.txt" if args.profile_out else None
                run = run_agent(agent_ns, [m.__deepcopy__() for m in msgs], args.endpoints, workdir, profile)
                raw_s = raw_replay(agent_ns, raw_ns, run.backend)
                driver_s, replay_s = driver_alone(msgs, driver_ns, replay_ns)
            finally:
                for ns in (agent_ns, raw_ns, driver_ns, replay_ns):
                    subprocess.run(["ip", "netns", "del", ns], check=False)
            spans.append(run.span_s)
            raws.append(raw_s)
            ratios.append(run.span_s / raw_s)
            folds.append(run.fold_s)
            resyncs.append(run.resync_s)
            rss.append(run.rss_mb)
            alone.append(driver_s)
            replays.append(replay_s)
            print(f"run {n + 1} (load average {load:.1f} on {os.cpu_count()} CPUs): InSync -> all up "
                  f"{run.span_s:.2f} s (the agent's driver resync {run.resync_s:.2f} s); raw {raw_s:.2f} s; "
                  f"ratio {run.span_s / raw_s:.2f}; "
                  f"snapshot folded in {run.fold_s:.2f} s; agent VmRSS {run.rss_mb:.0f} MB, VmHWM {run.hwm_mb:.0f} MB; "
                  f"driver alone {driver_s:.2f} s, its own inputs replayed {replay_s:.2f} s", flush=True)
        if run is not None:
            print(f"state: {args.policies} policies, {args.endpoints} endpoints, {args.ipsets} IP sets of "
                  f"{args.members} members; {len(msgs)} messages; backend {run.backend}; {run.rules} rules (v4+v6), "
                  f"{run.set_entries} set entries")
            print(f"InSync -> programmed (all endpoints up at Felix): {spread(spans)}")
            print(f"raw ipset restore + iptables-restore --noflush of the same output: {spread(raws)}")
            print(f"ratio: {spread(ratios, unit='x')} (goal <= 1.5)")
            print(f"snapshot frames -> folded by the agent (decode, gRPC, fold): {spread(folds)}")
            print(f"for the breakdown: the agent's driver resync {spread(resyncs)}; the driver alone in-process "
                  f"(no routes, sysctls, store or statuses) {spread(alone)}; the driver's own ipset/iptables-restore "
                  f"inputs replayed {spread(replays)}")
            print(f"agent VmRSS after the snapshot: {spread(rss, unit='MB', digits=0)}")
        if args.rss_endpoints:
            big = snapshot(args.rss_policies, args.rss_endpoints, args.ipsets, args.members, random.Random(5))
            ns = f"{prefix}-big"
            try:
                netns(ns, args.rss_endpoints)
                workdir = Path(tmp) / "big"
                workdir.mkdir()
                run = run_agent(ns, big, args.rss_endpoints, workdir, None)
                print(f"RSS variant: {args.rss_policies} policies, {args.rss_endpoints} endpoints, {run.rules} rules: "
                      f"{run.memory_and_span('goal <= 250 MB; ')}, snapshot folded in {run.fold_s:.2f} s", flush=True)
                if args.restart:
                    save_mb = sum(len(sh("ip", "netns", "exec", ns, f"{v}tables-{run.backend}-save"))
                                  for v in ("ip", "ip6")) / 2**20
                    restart_dir = Path(tmp) / "restart"
                    restart_dir.mkdir()
                    again = run_agent(ns, big, args.rss_endpoints, restart_dir, None)
                    print(f"restart on the programmed namespace (iptables-save of both families: {save_mb:.0f} MB): "
                          f"{again.memory_and_span()}")
            finally:
                subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
