"""Kernel driver convergence: cold apply of a big state, then one member change, one policy change.

    python bench/kernel_converge.py [--policies 500 --endpoints 2000 --ipsets 200]   (root)

Cold apply: IptablesDriver.resync() into a fresh network namespace, against `ipset restore` +
`iptables-restore` of the very output the driver produced (read back with ipset save and
iptables-save), replayed into a second fresh namespace in the same run. Routes are left out of
both (the namespace has no 2,000 interfaces). Then one IP set member change and one policy change,
with the number of restore and ipset processes each needed. Prints the figures.

Apples to apples: the agent must write with `iptables-restore --noflush` (a flushing restore
would wipe other software's rules in the same tables), so the raw side replays with --noflush
too; the ratio is against that. A flushing replay of the same dump is printed for information
only: with iptables-nft it is much faster for big inputs (without --noflush it skips building a
per-chain cache request, which iptables-nft 1.8.x keeps as a sorted linked list, quadratic in
the number of chains), but no agent sharing the tables with others can use it.
A third figure replays the agent's own inputs (the very stdin of its ipset and iptables-restore
processes, same flags) into a fresh namespace: agent time over that is the agent's own overhead
(reading back, rendering, process handling), whatever the shape of its input.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from vppagent.drivers.iptables import IptablesDriver
from vppagent.drivers.iptables.runner import CommandResult
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState

TABLES = ("filter", "raw", "mangle")


def sh(*argv: str, stdin: str | None = None) -> str:
    return subprocess.run(list(argv), input=stdin, capture_output=True, text=True, check=True, timeout=300).stdout


def build_state(policies: int, endpoints: int, ipsets: int, rng: random.Random) -> DataplaneState:
    state = DataplaneState()
    state.apply(b.config({}))
    for i in range(ipsets):
        members = [f"10.{i % 250}.{j // 250}.{j % 250}/32" for j in range(50)]
        state.apply(b.ipset(f"s:set{i}", members))
    for i in range(policies):
        sets = [f"s:set{rng.randrange(ipsets)}" for _ in range(2)]
        state.apply(b.policy(f"pol{i}", namespace=f"ns{i % 20}", inbound=[
            b.rule("allow", protocol="tcp", dst_ports=[80, 443, (8000, 8100)], src_ip_set_ids=[sets[0]]),
            b.rule("deny", protocol="udp", src_net=["10.0.0.0/8", "192.168.0.0/16"]),
            b.rule("allow", protocol="tcp", dst_ports=[5432], src_ip_set_ids=[sets[1]]),
        ], outbound=[b.rule("allow", dst_ip_set_ids=[sets[1]]), b.rule("pass", protocol="udp", dst_ports=[53])]))
    state.apply(b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]))
    for i in range(endpoints):
        chosen = [rng.randrange(policies) for _ in range(2)]
        ids = [b.policy_id(f"pol{p}", f"ns{p % 20}") for p in chosen]
        tier = felix.TierInfo(name="default", default_action="Deny", ingress_policies=ids, egress_policies=ids[:1])
        state.apply(b.workload(f"ns/pod{i}", f"cali{i:07x}", ipv4=[f"10.65.{i // 250}.{i % 250}/32"],
                               profiles=["kns.default"], tiers=[tier]))
    return state


def netns(name: str) -> str:
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    sh("ip", "netns", "add", name)
    return name


def raw_replay(source: str, target: str, backend: str, noflush: bool) -> float:
    """Time one `ipset restore` of `ipset save` + one `iptables-restore` of `iptables-save -t T`
    per (family, table) -- `source`'s final output -- into the fresh namespace `target`."""
    ipset_dump = sh("ip", "netns", "exec", source, "ipset", "save")
    dumps = {(fam, t): sh("ip", "netns", "exec", source, f"{'ip6' if fam == 6 else 'ip'}tables-{backend}-save", "-t", t)
             for fam in (4, 6) for t in TABLES}
    mode = ["--noflush"] if noflush else []
    start = time.monotonic()
    sh("ip", "netns", "exec", target, "ipset", "restore", stdin=ipset_dump)
    for (fam, _t), dump in dumps.items():
        sh("ip", "netns", "exec", target, f"{'ip6' if fam == 6 else 'ip'}tables-{backend}-restore", *mode, stdin=dump)
    return time.monotonic() - start


def replay_inputs(inputs: list[tuple[list[str], str]], target: str) -> float:
    """Time the agent's own commands (argv, stdin) again, one after another, in fresh `target`."""
    start = time.monotonic()
    for argv, stdin in inputs:
        sh("ip", "netns", "exec", target, *argv, stdin=stdin)
    return time.monotonic() - start


def record_inputs(driver: IptablesDriver) -> list[tuple[list[str], str]]:
    """From now on, keep every writing command the driver runs (those with input)."""
    inputs: list[tuple[list[str], str]] = []
    run_here = driver.runner.run_here

    def recording(argv: Sequence[str], stdin: str | None = None, timeout: float | None = None,
                  check: bool = True) -> CommandResult:
        if stdin is not None:
            inputs.append((list(argv), stdin))
        return run_here(argv, stdin, timeout, check)

    driver.runner.run_here = recording  # type: ignore[method-assign]
    return inputs


def rules_in(ns: str, backend: str) -> int:
    return sum(sh("ip", "netns", "exec", ns, f"{v}tables-{backend}-save").count("\n-A ") for v in ("ip", "ip6"))


def delta(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if after[k] != before[k]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=500)
    parser.add_argument("--endpoints", type=int, default=2000)
    parser.add_argument("--ipsets", type=int, default=200)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("kernel_converge: needs root (network namespaces)", file=sys.stderr)
        return 2
    rng = random.Random(4)
    state = build_state(args.policies, args.endpoints, args.ipsets, rng)
    prefix = f"vpbench{os.getpid()}"
    spaces = [netns(f"{prefix}-{x}") for x in "arfi"]
    agent_ns, raw_ns, flush_ns, inputs_ns = spaces
    driver = IptablesDriver(netns=agent_ns, refresh=False, program_routes=False)
    try:
        inputs = record_inputs(driver)
        start = time.monotonic()
        report = driver.resync(state)
        agent_s = time.monotonic() - start
        cold_inputs = list(inputs)
        assert report.ok, report.error
        backend = driver.backend.name if driver.backend else "nft"
        raw_s = raw_replay(agent_ns, raw_ns, backend, noflush=True)
        flush_s = raw_replay(agent_ns, flush_ns, backend, noflush=False)
        own_s = replay_inputs(cold_inputs, inputs_ns)
        print(f"state: {args.policies} policies, {args.endpoints} endpoints, {args.ipsets} IP sets; backend {backend}; "
              f"{rules_in(agent_ns, backend)} rules (v4+v6)")
        print(f"cold apply: agent {agent_s:.2f} s (read back, render, 1 ipset restore, 1 iptables-restore "
              f"--noflush per table); raw {raw_s:.2f} s (ipset restore + iptables-restore --noflush of the "
              f"saved final output, per table); ratio {agent_s / raw_s:.2f} (target <= 1.3)")
        print(f"  for information: the same raw replay without --noflush (flushing the tables) {flush_s:.2f} s, "
              f"ratio {agent_s / flush_s:.2f}")
        print(f"  the agent's own {len(cold_inputs)} inputs replayed (same commands, same stdin) {own_s:.2f} s: "
              f"agent overhead ratio {agent_s / own_s:.2f}")

        def timed_change(msg: felix.ToDataplane) -> tuple[float, dict[str, int], int]:
            """Apply one Felix message; (seconds, commands run, chains written)."""
            calls, written = Counter(driver.runner.calls), driver.counters["chains_written"]
            state.apply(msg)
            start = time.monotonic()
            report = driver.apply(StateDiff(), state)
            seconds = time.monotonic() - start
            assert report.ok, report.error  # figures of a failed apply would mean nothing
            return seconds, delta(calls, Counter(driver.runner.calls)), driver.counters["chains_written"] - written

        def restores(used: dict[str, int]) -> int:
            return sum(n for k, n in used.items() if k.endswith("-restore"))

        member_s, used, _ = timed_change(b.ipset_delta("s:set7", added=["10.99.99.99"]))
        print(f"member change: {member_s * 1000:.1f} ms, ipset calls {used.get('ipset', 0)}, "
              f"iptables restores {restores(used)} (target: 1 ipset op, 0 restores)")
        policy_s, used, written = timed_change(
            b.policy("pol3", namespace="ns3", inbound=[b.rule("allow", protocol="tcp", dst_ports=[8443])]))
        print(f"policy change: {policy_s * 1000:.1f} ms, iptables restores {restores(used)}, chains written "
              f"{written} (the policy's 2 chains x 2 families, where used)")
    finally:
        driver.close()
        for ns in spaces:
            subprocess.run(["ip", "netns", "del", ns], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
