"""The kernel driver's caches and dirty tracking, without a kernel: what an apply re-renders,
compares and writes after each kind of change, and that a cache lets go when it must."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from vppagent.drivers.iptables.backend import Backend
from vppagent.drivers.iptables.ipsets import kernel_members
from vppagent.drivers.iptables.names import policy_chain
from vppagent.drivers.iptables.render import Desired, StateRenderer
from vppagent.drivers.iptables.runner import CommandError, CommandResult, Input, input_text
from vppagent.drivers.iptables.settings import Settings
from vppagent.drivers.iptables.table import Chain, Rule, Table, jump, rule_hashes
from vppagent.lab import builders as b
from vppagent.state.ipset import IPSet, IPSetType
from vppagent.state.model import DataplaneState

T = TypeVar("T")


class FakeRunner:
    """Records commands; iptables-save shows `kernel` (default: an empty table)."""

    def __init__(self, fail_stderr: str | None = None) -> None:
        self.commands: list[tuple[str, str | None]] = []
        self.kernel = ""
        self.fail_stderr = fail_stderr

    def run(self, argv: Sequence[str], stdin: Input | None = None, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        self.commands.append((argv[0], input_text(stdin)))
        if argv[0].endswith("-restore") and self.fail_stderr is not None:
            raise CommandError(f"{argv[0]} exited 1", self.fail_stderr, 1)
        return CommandResult(self.kernel if argv[0].endswith("-save") else "", "", 0.0)

    def stream(self, argv: Sequence[str], consume: Callable[[Iterator[str]], T], timeout: float | None = None) -> T:
        return consume(iter(self.run(argv, timeout=timeout).stdout.splitlines(keepends=True)))

    def restores(self) -> list[str]:
        return [stdin or "" for name, stdin in self.commands if name.endswith("-restore")]


def state_with(ipv6: bool = True) -> DataplaneState:
    state = DataplaneState()
    state.apply(b.config({} if ipv6 else {"Ipv6Support": "false"}))
    state.apply(b.ipset("s:a", ["10.1.0.0/16", "10.2.0.1/32"]))
    state.apply(b.policy("p1", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:a"])]))
    state.apply(b.policy("p2", inbound=[b.rule("deny", protocol="udp")]))
    state.apply(b.profile("kns.default", inbound=[b.rule("allow")], outbound=[b.rule("allow")]))
    for i, pols in enumerate((["p1"], ["p1", "p2"])):
        state.apply(b.workload(f"default/pod{i}", f"cali{i}", ipv4=[f"10.65.0.{i + 2}/32"], profiles=["kns.default"],
                               tiers=[b.tier("default", ingress=pols)]))
    return state


def render(renderer: StateRenderer, state: DataplaneState) -> Desired:
    return renderer.render(state, Settings.from_config(state.config))


def test_member_change_hands_back_the_same_chain_lists() -> None:
    state, renderer = state_with(), StateRenderer()
    first = render(renderer, state)
    state.apply(b.ipset_delta("s:a", added=["10.9.9.9"]))
    second = render(renderer, state)
    assert set(first.chains) == set(second.chains)
    assert all(second.chains[k] is first.chains[k] for k in first.chains)
    changed = [n for n, s in second.ipsets.items() if first.ipsets.get(n) != s]
    assert len(changed) == 1 and "10.9.9.9/32" in second.ipsets[changed[0]].members
    # The driver extends Desired.routes in place: a reused assembly must not accumulate them.
    second.routes.append(second.routes[0])
    third = render(renderer, state)
    assert len(third.routes) == len(first.routes)
    assert third.ipsets == second.ipsets  # the sets of the latest render, not of the last assembly


def test_policy_change_rerenders_only_that_policy() -> None:
    state, renderer = state_with(), StateRenderer()
    first = {k: {c.name: c for c in v} for k, v in render(renderer, state).chains.items()}
    state.apply(b.policy("p2", inbound=[b.rule("deny", protocol="tcp", dst_ports=[22])]))
    second = {k: {c.name: c for c in v} for k, v in render(renderer, state).chains.items()}
    key = next(k for k in state.policies if k.name == "p2")
    p2 = {policy_chain(key, True), policy_chain(key, False)}
    per_object = ("vpa-pi-", "vpa-po-", "vpa-pri-", "vpa-pro-", "vpa-tw-", "vpa-fw-")
    for table in first:
        assert [n for n, c in second[table].items() if first[table].get(n) != c] == [policy_chain(key, True)]
        # Every other per-object chain is the cached object itself (hashes and text kept).
        others = [n for n in first[table] if n.startswith(per_object) and n not in p2]
        assert others and all(second[table][n] is first[table][n] for n in others)
    new_chain = second[(4, "filter")][policy_chain(key, True)]
    assert second[(6, "filter")][new_chain.name] is new_chain  # rendered once for both families


def test_set_type_change_rerenders_policies() -> None:
    state, renderer = state_with(), StateRenderer()
    before = render(renderer, state)
    state.apply(b.ipset("s:a", ["10.1.0.1"], kind="ip"))
    after = render(renderer, state)
    assert after.chains[(4, "filter")] is not before.chains[(4, "filter")]
    text = "".join(c.restore_text() for c in after.chains[(4, "filter")])
    assert "vpa4i-" in text and "vpa4n-" not in text


def test_families_share_equal_chains() -> None:
    desired = render(StateRenderer(), state_with(ipv6=True))
    v4 = {c.name: c for c in desired.chains[(4, "filter")]}
    v6 = {c.name: c for c in desired.chains[(6, "filter")]}
    shared = [n for n in v4 if v6.get(n) is v4[n]]
    assert any(n.startswith("vpa-tw-") for n in shared) and any(n.startswith("vpa-pi-") for n in shared)
    assert v6["vpa-wl-to-host"] is not v4["vpa-wl-to-host"]  # IPv6 lets NDP through first


def test_workload_chains_are_the_same_in_both_families() -> None:
    """What lets the renderer render an endpoint's chains once (chains.WORKLOAD_CHAINS_PER_FAMILY)."""
    from vppagent.drivers.iptables.chains import WORKLOAD_CHAINS_PER_FAMILY, ChainRenderer
    from vppagent.policy.model import WorkloadEndpoint
    from vppagent.state.model import workload_key

    assert not WORKLOAD_CHAINS_PER_FAMILY
    tiers = [b.tier("default", ingress=["p1", "p2"], egress=["p2"]),
             b.tier("staged", ingress=["p3"], default_action="Pass")]
    endpoints = [b.workload("ns/a", "cali1", ipv4=["10.65.0.2/32"], ipv6=["fd65::2/128"], tiers=tiers,
                            profiles=["kns.ns", "ksa.ns.default"]),
                 b.workload("ns/b", "cali2", ipv6=["fd65::3/128"], state="down", tiers=tiers),
                 b.workload("ns/c", "cali3", ipv4=["10.65.0.4/32"])]
    for config in ({}, {"AllowVXLANPacketsFromWorkloads": "true", "AllowIPIPPacketsFromWorkloads": "true",
                        "DropActionOverride": "LogAndDrop", "DisableConntrackInvalidCheck": "true"}):
        settings = Settings.from_config(config)
        for msg in endpoints:
            update = msg.workload_endpoint_update
            wep = WorkloadEndpoint.from_proto(workload_key(update.id), update.endpoint)
            assert ChainRenderer(settings, 4).workload_chains(wep) == ChainRenderer(settings, 6).workload_chains(wep)


def table_with(runner: FakeRunner, chains: list[Chain]) -> Table:
    table = Table("filter", 4, runner, Backend("nft"))  # type: ignore[arg-type]
    table.replace_chains(chains)
    table.set_hooks("FORWARD", [jump(chains[0].name)])
    return table


def test_settled_table_neither_reads_nor_writes_until_something_changes() -> None:
    runner = FakeRunner()
    chains = [Chain("vpa-a", (jump("vpa-b", "-i cali0"),)), Chain("vpa-b", (Rule("-p tcp", "-j ACCEPT"),))]
    table = table_with(runner, chains)
    assert table.apply().restores == 1
    runner.commands.clear()
    table.replace_chains(chains)  # the same list again: nothing to compare
    table.set_hooks("FORWARD", [jump("vpa-a")])
    assert table.apply().restores == 0 and runner.commands == []
    table.replace_chains([*chains, Chain("vpa-c", (Rule("", "-j DROP"),))])  # unreachable: not written
    assert table.apply().restores == 0
    changed = [chains[0], Chain("vpa-b", (Rule("-p udp", "-j ACCEPT"),))]
    table.replace_chains(changed)
    result = table.apply()
    assert result.restores == 1 and result.chains_written == 1
    assert "-A vpa-b " in runner.restores()[-1] and "-A vpa-a " not in runner.restores()[-1]
    runner.commands.clear()
    table.invalidate()  # the kernel (empty, here) is read again and everything rewritten
    result = table.apply()
    assert runner.commands[0][0].endswith("-save") and result.chains_written == 2


def test_restore_text_carries_hash_comments_and_a_failure_names_its_chain() -> None:
    chains = [Chain("vpa-a", (jump("vpa-b"),), "dispatch"),
              Chain("vpa-b", (Rule("-p tcp", "-j ACCEPT"), Rule("-p udp", "-j DROP")), "policy x")]
    runner = FakeRunner()
    table_with(runner, chains).apply()
    lines = runner.restores()[0].splitlines()
    hashes = rule_hashes("vpa-b", chains[1].rules)
    assert f'-A vpa-b -m comment --comment "vpa:{hashes[1]}" -p udp -j DROP' in lines
    failing = lines.index(f'-A vpa-b -m comment --comment "vpa:{hashes[1]}" -p udp -j DROP') + 1
    error = table_with(FakeRunner(f"iptables-restore: line {failing} failed"), chains).apply().error
    assert error is not None and "chain vpa-b (policy x)" in error
    hook = lines.index(next(line for line in lines if line.startswith("-I FORWARD"))) + 1
    error = table_with(FakeRunner(f"line {hook} failed"), chains).apply().error
    assert error is not None and "hook in FORWARD" in error


def test_kernel_members_split_families_and_zero_prefixes() -> None:
    nets = IPSet("s", IPSetType.NET, {"10.0.0.0/8", "0.0.0.0/0", "fd00::/64", "::/0"})
    assert kernel_members(nets, 4) == {"10.0.0.0/8", "0.0.0.0/1", "128.0.0.0/1"}
    assert kernel_members(nets, 6) == {"fd00::/64", "::/1", "8000::/1"}
    ports = IPSet("p", IPSetType.IP_AND_PORT, {"10.0.0.1,tcp:80", "fd00::1,udp:53"})
    assert kernel_members(ports, 4) == {"10.0.0.1,tcp:80"} and kernel_members(ports, 6) == {"fd00::1,udp:53"}


def test_restore_input_declares_targets_first_in_descending_order() -> None:
    # Descending order keeps iptables-nft's sorted cache-request list short (see _restore_input);
    # a jump must still find its target declared, or the whole restore fails.
    desired = render(StateRenderer(), state_with())
    runner = FakeRunner()
    table = Table("filter", 4, runner, Backend("nft"))  # type: ignore[arg-type]
    table.replace_chains(desired.chains[(4, "filter")])
    for kernel_chain, hooks in desired.hooks[(4, "filter")].items():
        table.set_hooks(kernel_chain, hooks)
    assert table.apply().restores == 1
    declared: list[str] = []
    appended: list[str] = []
    for line in runner.restores()[0].splitlines():
        if line.startswith("-N "):
            declared.append(line[3:])
        elif line.startswith("-A "):
            chain, _, rest = line[3:].partition(" ")
            assert chain in declared
            target = rest.rsplit(" ", 1)[-1]
            assert not target.startswith("vpa-") or target in declared, line
            if not appended or appended[-1] != chain:
                appended.append(chain)
    assert appended == sorted(appended, reverse=True) and len(set(declared)) == len(declared)
    assert set(declared) == set(table.reachable())
