"""The iptables driver driven through a recording Runner: the commands and restore input it
writes for a small state, in the order it writes them. No kernel, no root."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from vppagent.drivers.iptables.driver import IptablesDriver
from vppagent.drivers.iptables.names import ipset_name, policy_chain
from vppagent.drivers.iptables.render import StateRenderer
from vppagent.drivers.iptables.routes import workload_sysctls
from vppagent.drivers.iptables.runner import CommandError, CommandResult, Input, Runner, input_text
from vppagent.drivers.iptables.settings import Settings
from vppagent.lab import builders as b
from vppagent.state.diff import diff_states
from vppagent.state.ipset import IPSetType
from vppagent.state.model import DataplaneState, Kind, PolicyKey

T = TypeVar("T")
WEB = ipset_name("s:web", IPSetType.IP, 4)
ALLOW_WEB = policy_chain(PolicyKey("allow-web", "", ""), inbound=True)


class RecordingRunner:
    """An empty kernel: every save prints nothing; records each command with its input."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.commands: list[tuple[list[str], str | None]] = []
        self.fail_restores = False

    def call(self, fn: Callable[[], T]) -> T:
        raise AssertionError("routes are off in these tests: nothing may call into the kernel")

    def run(self, argv: Sequence[str], stdin: Input | None = None, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        self.calls[argv[0]] += 1
        self.commands.append((list(argv), input_text(stdin)))
        if self.fail_restores and argv[0].endswith("tables-nft-restore"):
            raise CommandError(f"{argv[0]} exited 1: line 2 failed", "line 2 failed", 1)
        return CommandResult("", "", 0.0)

    def stream(self, argv: Sequence[str], consume: Callable[[Iterator[str]], T], timeout: float | None = None) -> T:
        return consume(iter(self.run(argv, timeout=timeout).stdout.splitlines(keepends=True)))

    def close(self) -> None:
        pass

    def names(self) -> list[str]:
        return [" ".join(argv[:2]) for argv, _ in self.commands]

    def take(self) -> list[tuple[list[str], str | None]]:
        out, self.commands = self.commands, []
        return out


def small_state() -> DataplaneState:
    state = DataplaneState()
    state.apply(b.config({"Ipv6Support": "false"}))
    state.apply(b.ipset("s:web", ["10.65.0.9"], "ip"))
    state.apply(b.policy("allow-web", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:web"])]))
    state.apply(b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"], tiers=[b.tier("default", ingress=["allow-web"])]))
    return state


def driver_with(runner: RecordingRunner) -> IptablesDriver:
    typed: Runner = runner  # the fake satisfies the protocol (checked here, not only at run time)
    return IptablesDriver(backend="nft", refresh=False, program_routes=False, runner=typed)


def test_resync_reads_back_creates_sets_then_writes_each_table() -> None:
    runner = RecordingRunner()
    report = driver_with(runner).resync(small_state().copy())
    assert report.ok, report.error
    assert runner.names() == ["iptables-nft-save", "ipset save", "ipset -exist",
                              "iptables-nft-restore --noflush", "iptables-nft-restore --noflush",
                              "iptables-nft-restore --noflush"]
    commands = runner.take()
    assert commands[2][1] == f"create {WEB} hash:ip family inet maxelem 1048576\nadd {WEB} 10.65.0.9\n"
    tables = {stdin.splitlines()[0]: stdin for _, stdin in commands[3:] if stdin}
    assert set(tables) == {"*filter", "*raw", "*mangle"}
    filt = tables["*filter"].splitlines()
    assert filt[-1] == "COMMIT"
    # the policy: its set and port, accepting by mark; the pod's interface dispatched to its chain
    assert any(line.startswith(f"-A {ALLOW_WEB} ") and f"--match-set {WEB} src" in line and "--dports 80" in line
               for line in filt)
    assert any(line.startswith("-A vpa-to-wl-dispatch ") and "-o cali1 -g vpa-tw-cali1" in line for line in filt)
    assert any(line.startswith("-I FORWARD 1 ") and line.endswith("-j vpa-FORWARD") for line in filt)


def test_an_unchanged_state_writes_nothing_and_a_member_change_only_the_set() -> None:
    runner = RecordingRunner()
    driver, state = driver_with(runner), small_state()
    driver.resync(state.copy())
    runner.take()
    before = state.copy()
    assert driver.apply(diff_states(before, before), before).writes == 0
    assert runner.take() == []
    state.apply(b.ipset_delta("s:web", added=["10.65.0.10"]))
    after = state.copy()
    assert driver.apply(diff_states(before, after), after).ok
    assert runner.take() == [(["ipset", "-exist", "restore"], f"add {WEB} 10.65.0.10\n")]


def test_removal_writes_iptables_before_destroying_the_set() -> None:
    runner = RecordingRunner()
    driver, state = driver_with(runner), small_state()
    driver.resync(state.copy())
    runner.take()
    for kind in (Kind.WORKLOAD_ENDPOINT, Kind.POLICY, Kind.IPSET):
        state.tables[kind].clear()
    assert driver.apply(diff_states(small_state(), state), state.copy()).ok
    commands = runner.take()
    assert [argv[0] for argv, _ in commands] == ["iptables-nft-restore", "ipset"]
    filt = commands[0][1] or ""
    assert f"-X {ALLOW_WEB}" in filt and "-X vpa-tw-cali1" in filt
    assert commands[1][1] == f"flush {WEB}\ndestroy {WEB}\n"


def test_a_failed_restore_fails_the_apply_and_keeps_the_sets() -> None:
    runner = RecordingRunner()
    driver, state = driver_with(runner), small_state()
    driver.resync(state.copy())
    runner.take()
    for kind in (Kind.WORKLOAD_ENDPOINT, Kind.POLICY, Kind.IPSET):
        state.tables[kind].clear()
    runner.fail_restores = True
    report = driver.apply(diff_states(small_state(), state), state.copy())
    assert not report.ok and "iptables-nft-restore" in (report.error or "")
    # the old rules may still use the set: it is not destroyed
    assert not any(argv[0] == "ipset" and "destroy" in (stdin or "") for argv, stdin in runner.take())


def spoofing_state(v4: tuple[str, ...], v6: tuple[str, ...]) -> DataplaneState:
    """pod1 (cali1) with these allowed spoofed source prefixes; pod2 (cali2) with none."""
    state = DataplaneState()
    state.apply(b.config({}))
    state.apply(b.profile("p", inbound=[b.rule("allow")], outbound=[b.rule("allow")]))
    pod1 = b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"], ipv6=["fd65::2/128"], profiles=["p"])
    pod1.workload_endpoint_update.endpoint.allow_spoofed_source_prefixes.extend([*v4, *v6])
    state.apply(pod1)
    state.apply(b.workload("ns/pod2", "cali2", ipv4=["10.65.0.3/32"], ipv6=["fd65::3/128"], profiles=["p"]))
    return state


def raw_inputs(runner: RecordingRunner) -> dict[str, list[str]]:
    """The raw table's restore input per command (iptables-nft-restore, ip6tables-nft-restore)."""
    return {argv[0]: (stdin or "").splitlines() for argv, stdin in runner.take()
            if argv[0].endswith("-restore") and (stdin or "").startswith("*raw")}


def test_allowed_spoofed_sources_skip_the_reverse_path_drop_on_their_interface_only() -> None:
    runner = RecordingRunner()
    assert driver_with(runner).resync(spoofing_state(("10.66.0.0/24",), ("fd66::/64",))).ok
    raw = raw_inputs(runner)
    for tool, allowed in (("iptables-nft-restore", "10.66.0.0/24"), ("ip6tables-nft-restore", "fd66::/64")):
        lines = raw[tool]
        skip = [line for line in lines if line.startswith("-A vpa-rpf-skip ")]
        assert len(skip) == 1 and skip[0].endswith(f"-i cali1 -s {allowed} -j ACCEPT"), skip
        pre = [line for line in lines if line.startswith("-A vpa-PREROUTING ")]
        jumps = [i for i, line in enumerate(pre) if line.endswith("-i cali+ -j vpa-rpf-skip")]
        drops = [i for i, line in enumerate(pre) if "-m rpfilter --invert --validmark -j DROP" in line]
        assert len(jumps) == 1 and len(drops) == 1 and jumps[0] < drops[0], pre


def test_without_allowed_spoofed_sources_there_is_no_skip() -> None:
    runner = RecordingRunner()
    assert driver_with(runner).resync(spoofing_state((), ())).ok
    raw = raw_inputs(runner)
    assert set(raw) == {"iptables-nft-restore", "ip6tables-nft-restore"}
    for lines in raw.values():
        assert not any("vpa-rpf-skip" in line for line in lines), lines
        assert any("-i cali+ -m rpfilter --invert --validmark -j DROP" in line for line in lines), lines


def test_an_ipv4_allowed_prefix_turns_the_kernels_rp_filter_off_for_that_interface_only() -> None:
    rp_filter = {iface: dict(workload_sysctls(iface, (4, 6), spoofing))["net/ipv4/conf/" + iface + "/rp_filter"]
                 for iface, spoofing in (("cali1", True), ("cali2", False))}
    assert rp_filter == {"cali1": "0", "cali2": "1"}
    renderer = StateRenderer()
    desired = renderer.render(spoofing_state(("10.66.0.0/24",), ()), Settings())
    assert desired.spoofing_ifaces == {"cali1"}
    # an IPv6 prefix alone leaves IPv4's rp_filter strict
    assert StateRenderer().render(spoofing_state((), ("fd66::/64",)), Settings()).spoofing_ifaces == frozenset()


def test_an_allowed_prefix_that_does_not_parse_fails_its_endpoint_closed() -> None:
    # pod1 may first send from 10.66.0.0/24; then Felix adds a prefix that is no network. The
    # endpoint fails, named with the bad prefix, and nothing stays more permissive: its allowance
    # goes with it (no skip chain, no jump), its chains go (the dispatch drops its interface),
    # pod2 is programmed as before.
    runner = RecordingRunner()
    driver, before = driver_with(runner), spoofing_state(("10.66.0.0/24",), ())
    assert driver.resync(before.copy()).ok
    runner.take()
    after = spoofing_state(("10.66.0.0/24", "10.66.0.0/33"), ())
    report = driver.apply(diff_states(before, after), after.copy())
    failed = {str(key): why for (kind, key), why in report.failed.items() if kind is Kind.WORKLOAD_ENDPOINT}
    assert set(failed) == {"k8s/ns/pod1/eth0"} and "10.66.0.0/33" in failed["k8s/ns/pod1/eth0"], failed
    assert "ns/pod1" in failed["k8s/ns/pod1/eth0"], failed
    written = {argv[0] + " " + (stdin or "").split("\n", 1)[0]: (stdin or "").splitlines()
               for argv, stdin in runner.take() if argv[0].endswith("-restore")}
    raw = written["iptables-nft-restore *raw"]
    assert "-X vpa-rpf-skip" in raw and not any(line.startswith("-A vpa-rpf-skip ") for line in raw), raw
    assert not any(line.startswith("-A vpa-PREROUTING ") and "vpa-rpf-skip" in line for line in raw), raw
    filt = written["iptables-nft-restore *filter"]
    assert "-X vpa-fw-cali1" in filt and "-X vpa-tw-cali1" in filt, filt
    assert not any("cali1" in line for line in filt if line.startswith("-A ")), filt
