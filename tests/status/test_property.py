"""Issue 13's property test: random mixes of valid and invalid Felix objects, fed in batches
through the agent's core into a driver; after each batch (and after a retry of what failed)
every valid endpoint is "up" and holds exactly what the policy core compiles for it, and every
other endpoint is "error" (status never says more than the dataplane holds).

Host endpoints join the mix for the dry-run and kernel drivers. Bounded in CI (a few seconds per
driver); `-m slow` runs many more seeds (about 25 minutes on two busy cores):
    .venv/bin/python -m pytest -q -m slow tests/status/test_property.py
A failure names the seed and the batch; `run_mix(driver, seed, batches)` replays it.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.status.mixes import ENDPOINTS, HOSTS, Expected, Ref, expected, first_snapshot, fold, random_batches
from tests.vpp.helpers import Target, make_driver
from vppagent.config import AgentConfig
from vppagent.drivers.base import Driver
from vppagent.drivers.dryrun import DryRunDriver
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.server.core import AgentCore
from vppagent.state.model import Kind, WorkloadKey

CI_SEEDS = {"dry-run": range(15), "vpp": range(3), "kernel": range(2)}
SLOW_SEEDS = {"dry-run": range(15, 2015), "vpp": range(3, 303), "kernel": range(2, 102)}
BATCHES = 12

# What the dataplane holds for an endpoint, compared with what the oracle says it must hold:
# None when equal, else what differs. The int numbers the check (a dataplane read may be shared
# by the endpoints of one check).
Holds = Callable[[Ref, Expected, int], str | None]
_ROUNDS = iter(range(1 << 62))


# Injects a dataplane fault for one batch, or not; returns the function that ends it, if it did.
Fault = Callable[[random.Random], Callable[[], None] | None]


def run_mix(driver: Driver, seed: int, batches: int, holds: Holds, fault: Fault | None = None,
            hosts: bool = False) -> Counter[str]:
    """Feed the first snapshot and `batches` random batches; check after each. Returns how many
    endpoint checks found each status ("up", "down", "error").

    `fault`, when given, may inject a dataplane fault for a batch: then a valid endpoint may be
    "error", but one that says "up" must hold exactly its lists, and after the retry that
    follows (the fault ended) every valid endpoint is up again."""
    rng = random.Random(seed ^ 0x5EED)
    core = AgentCore(AgentConfig(driver="dry-run"), driver, "property")
    stream = core.open_stream()
    sent: list[felix.ToDataplane] = []
    checks: Counter[str] = Counter()

    def feed(msgs: list[felix.ToDataplane]) -> None:
        for m in msgs:
            core.submit(stream.generation, m)
        sent.extend(msgs)

    try:
        feed([*first_snapshot(hosts), b.in_sync()])
        core.run_once()
        for index, batch in enumerate([[], *random_batches(seed, batches, hosts=hosts)]):
            end_fault = fault(rng) if fault is not None else None
            feed(batch)
            core.run_once()
            oracle = expected(fold(sent))
            statuses = _check(core, oracle, holds, f"seed {seed}, batch {index} {_brief(batch)}"
                              + (" (with a dataplane fault)" if end_fault else ""), lenient=end_fault is not None)
            checks.update(statuses.values())
            if end_fault is not None:
                end_fault()
                checks["error under a fault"] += len([k for k in oracle.lists
                                                      if statuses.get(k) == "error"])
            core.run_once()  # a retry of whatever failed: the faults are spent, all must be right
            checks.update(_check(core, oracle, holds, f"seed {seed}, batch {index} (after a retry)").values())
    finally:
        core.stop()
    return checks


def _check(core: AgentCore, oracle: Expected, holds: Holds, where: str,
           lenient: bool = False) -> dict[Ref, str]:
    report = core.state_report()
    rows: dict[Ref, Any] = {(Kind.WORKLOAD_ENDPOINT, WorkloadKey(r["orchestrator_id"], r["workload_id"],
                                                                r["endpoint_id"])): r
                            for r in report["workload_endpoints"]}
    rows |= {(Kind.HOST_ENDPOINT, r["endpoint_id"]): r for r in report["host_endpoints"]}
    assert set(rows) == {(k, key) for k in (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT)
                         for key in oracle.state.tables[k]}, where
    problems = []
    check_round = next(_ROUNDS)
    for key, row in rows.items():
        if key in oracle.invalid:
            if row["status"] != "error":
                problems.append(f"{key} is {row['status']} but invalid: {oracle.invalid[key]}")
            continue
        pb = oracle.state.tables[key[0]][key[1]]
        want = "down" if key[0] == Kind.WORKLOAD_ENDPOINT and pb.state != "active" else "up"
        if row["status"] == "error" and lenient:
            continue  # a dataplane fault was injected: error is the truth too, "up" must be exact
        if row["status"] != want:
            problems.append(f"{key} is {row['status']} ({row['error']}) but valid: {want}")
            continue
        wrong = holds(key, oracle, check_round)
        if wrong:
            problems.append(f"{key} is up but {wrong}")
    assert not problems, f"{where}:\n" + "\n".join(problems)
    return {key: row["status"] for key, row in rows.items()}


def _brief(batch: list[felix.ToDataplane]) -> str:
    return "[" + ", ".join(str(m).replace("\n", " ")[:160] for m in batch) + "]"


# -- dry-run -----------------------------------------------------------------------------------
def dry_run_holds(driver: DryRunDriver) -> Holds:
    def holds(ref: Ref, oracle: Expected, _: int) -> str | None:
        lists = oracle.lists[ref]
        have = driver.lists.get(ref)
        return None if have == lists else f"holds {have}, compiled {lists}"
    return holds


def test_dry_run_statuses_tell_the_truth() -> None:
    checks: Counter[str] = Counter()
    for seed in CI_SEEDS["dry-run"]:
        driver = DryRunDriver()
        checks += run_mix(driver, seed, BATCHES, dry_run_holds(driver), hosts=True)
    assert checks["up"] > 400 and checks["error"] > 300, f"too one-sided to mean much: {checks}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_dry_run_statuses_tell_the_truth_long() -> None:
    for seed in SLOW_SEEDS["dry-run"]:
        driver = DryRunDriver()
        run_mix(driver, seed, BATCHES * 3, dry_run_holds(driver), hosts=True)


# -- VPP (emulator) ----------------------------------------------------------------------------
@pytest.fixture
def vpp_pods(sim_target: Target) -> Iterator[Target]:
    for workload in ENDPOINTS:
        sim_target.pod(workload)
    yield sim_target


def vpp_holds(target: Target) -> Holds:
    from vppagent.drivers.vpp.acl.render import content_from_compiled
    from vppagent.drivers.vpp.api.calls import VppCalls
    from vppagent.drivers.vpp.api.connection import VppConnection
    from vppagent.drivers.vpp.programmed import read_programmed
    from vppagent.drivers.vpp.tags import workload_tag

    conn = VppConnection(target.socket_path, request_timeout=5)
    conn.connect()

    reads: dict[int, Any] = {}

    def holds(ref: Ref, oracle: Expected, check_round: int) -> str | None:
        lists, key = oracle.lists[ref], ref[1]
        if check_round not in reads:  # what VPP holds, read afresh, not the driver's idea
            reads.clear()
            reads[check_round] = read_programmed(VppCalls(conn))
        vpp = reads[check_round]
        ifx = vpp.pod_interfaces()[workload_tag(key)]
        acl_in, acl_out = vpp.binding(ifx)
        have = (vpp.acls.get(acl_in) if acl_in is not None else None,
                vpp.acls.get(acl_out) if acl_out is not None else None)
        want = (content_from_compiled(lists[0]), content_from_compiled(lists[1]))
        return None if have == want else f"VPP binds {have}, compiled {want}"
    holds.conn = conn  # type: ignore[attr-defined]
    return holds


def vpp_fault(target: Target) -> Fault:
    """Now and then, for one batch, VPP refuses ACL writes or bindings (as a full ACL table would)."""
    def fault(rng: random.Random) -> Callable[[], None] | None:
        if rng.random() >= 0.3:
            return None
        message = rng.choice(["acl_add_replace", "acl_interface_set_acl_list"])
        target.emulator.faults.reject(message, -7, times=None)
        return target.emulator.faults.clear
    return fault


def _vpp_run(target: Target, seeds: range, batches: int) -> Counter[str]:
    holds = vpp_holds(target)
    checks: Counter[str] = Counter()
    try:
        for seed in seeds:
            driver = make_driver(target, classifier_min_members=0)  # every list in ACLs: one place to read
            checks += run_mix(driver, seed, batches, holds, fault=vpp_fault(target))
            target.emulator.faults.clear()
    finally:
        holds.conn.close()  # type: ignore[attr-defined]
    return checks


def test_vpp_statuses_tell_the_truth(vpp_pods: Target) -> None:
    checks = _vpp_run(vpp_pods, CI_SEEDS["vpp"], BATCHES)
    assert checks["up"] > 60 and checks["error"] > 60, f"too one-sided to mean much: {checks}"
    assert checks["error under a fault"] > 0, f"the injected faults never bit: {checks}"


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_vpp_statuses_tell_the_truth_long(vpp_pods: Target) -> None:
    _vpp_run(vpp_pods, SLOW_SEEDS["vpp"], BATCHES * 3)




# -- kernel (iptables + ipset, in a network namespace) ----------------------------------------
@pytest.fixture
def kernel_ns() -> Iterator[str]:
    from tests.kernel.netlab import Lab, netns_available, sh

    unavailable = netns_available()
    if unavailable is not None:
        pytest.skip(f"kernel property test skipped: {unavailable}")
    lab = Lab(f"vps{os.getpid() % 100000}")
    try:
        ns = lab.add_ns(f"{lab.prefix}-node")
        for i, iface in enumerate([*ENDPOINTS.values(), *HOSTS.values()]):  # endpoints' interfaces
            sh("ip", "-n", ns, "link", "add", iface, "type", "veth", "peer", "name", f"peer{i}")
            for name in (iface, f"peer{i}"):
                sh("ip", "-n", ns, "link", "set", name, "up")
        yield ns
    finally:
        lab.cleanup()


def kernel_holds(driver: Any, ns: str) -> Holds:
    """The endpoint's chains, every chain they reach, and the IP sets those match, as the kernel
    holds them (iptables-save, ipset save), against a fresh render of the desired state. Rules are
    compared by their content hashes (table.py), IP sets by members."""
    import re
    import subprocess

    from vppagent.drivers.iptables.ipsets import read_ipset_save
    from vppagent.drivers.iptables.names import endpoint_chain
    from vppagent.drivers.iptables.render import StateRenderer
    from vppagent.drivers.iptables.settings import Settings
    from vppagent.drivers.iptables.table import empty_view, read_save

    compared = Counter[str]()
    match_set = re.compile(r"--match-set (\S+)")

    def run(*argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True).stdout

    reads: dict[int, tuple[Any, dict[str, Any], dict[int, str]]] = {}

    def holds(ref: Ref, oracle: Expected, check_round: int) -> str | None:
        if check_round not in reads:  # one render and one read of the kernel per check
            reads.clear()
            desired = StateRenderer().render(oracle.state, Settings.from_config(oracle.state.config))
            saves = {family: run(driver.backend.save(family)) for family in {f for f, _ in desired.chains}}
            reads[check_round] = (desired, read_ipset_save(run("ipset", "save").splitlines()), saves)
        desired, sets, saves = reads[check_round]
        iface = oracle.state.tables[ref[0]][ref[1]].name
        heads = ("tw-", "fw-") if ref[0] == Kind.WORKLOAD_ENDPOINT else ("fh-", "th-", "fhfw-", "thfw-")
        for (family, table), chains in desired.chains.items():
            by_name = {c.name: c for c in chains}
            live = _reachable(by_name, [r.target for rules in desired.hooks[(family, table)].values()
                                        for r in rules if r.target is not None])
            kernel = (read_save(saves[family].splitlines()).get(table) or empty_view()).ours
            todo = [n for n in (endpoint_chain(head, iface) for head in heads) if n in live]
            seen: set[str] = set()
            while todo:
                chain = by_name[todo.pop()]
                if chain.name in seen:
                    continue
                seen.add(chain.name)
                if kernel.get(chain.name) != chain.hashes:
                    return f"IPv{family} {table} chain {chain.name} differs from the render"
                compared["chains"] += 1
                for rule in chain.rules:
                    for name in match_set.findall(rule.text):
                        want = desired.ipsets.get(name)
                        if want is None or sets.get(name) != want:
                            return f"IP set {name} holds {sets.get(name)}, render {want}"
                        compared["ipsets"] += 1
                todo += [t for t in chain.targets() if t in by_name]
        return None
    holds.compared = compared  # type: ignore[attr-defined]
    return holds


def _reachable(by_name: dict[str, Any], roots: list[str]) -> set[str]:
    """The chains the kernel programs: those reachable from a hook (table.py)."""
    seen: set[str] = set()
    todo = [r for r in roots if r in by_name]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [t for t in by_name[name].targets() if t in by_name]
    return seen


def _kernel_run(ns: str, seeds: range, batches: int) -> Counter[str]:
    from vppagent.drivers.iptables import IptablesDriver

    checks: Counter[str] = Counter()
    for seed in seeds:  # each seed's driver starts from what the last one left (its resync adopts it)
        driver = IptablesDriver(netns=ns, refresh=False)
        holds = kernel_holds(driver, ns)
        checks += run_mix(driver, seed, batches, holds, hosts=True)  # closes the driver
        checks.update({f"compared {k}": v for k, v in holds.compared.items()})  # type: ignore[attr-defined]
    return checks


@pytest.mark.root
def test_kernel_statuses_tell_the_truth(kernel_ns: str) -> None:
    checks = _kernel_run(kernel_ns, CI_SEEDS["kernel"], BATCHES)
    assert checks["up"] > 40 and checks["error"] > 40, f"too one-sided to mean much: {checks}"
    assert checks["compared chains"] > 200 and checks["compared ipsets"] >= 10, checks


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_kernel_statuses_tell_the_truth_long(kernel_ns: str) -> None:
    _kernel_run(kernel_ns, SLOW_SEEDS["kernel"], BATCHES * 3)
