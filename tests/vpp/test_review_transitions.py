"""Review of the in-place gate changes (commit 31f2383, issue 15): cases the transitions test
does not cover (agent restart across a gate change, refused writes in adoption and clean-up, an
interface leaving its gate while its set changes, a VPP restart with stale chains pending), each
checked after every write with the probe of test_classifier_transitions.py (allowed only where the
old or the new policy allows) and for what VPP holds afterwards. Every test here failed when written
(branch rev-transitions); one file for one review's findings, so it runs over 400 lines."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from tests.vpp.helpers import FakePlumbing, Target, make_driver, pod_spec, state_of, tables_but_guards
from tests.vpp.test_classifier import MEMBERS, established
from tests.vpp.test_classifier import PODS as GATED_PODS
from tests.vpp.test_classifier import messages as gated_messages
from tests.vpp.test_classifier_adopt import output_heads
from tests.vpp.test_classifier_transitions import (
    A_ONLY,
    B_ONLY,
    BOTH,
    MIN_MEMBERS,
    PODS,
    SET_A,
    SET_B,
    WRITES,
    Probe,
    messages,
)
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.pods.spec import PodDelete
from vppagent.policy.packet import Packet as PolicyPacket
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState

OLD = {p: "web-a" for p in PODS}  # both pods: tcp/80 from set A (one shared chain)
NEW = {p: "web-b" for p in PODS}  # both pods: tcp/443 from set B


@contextmanager
def watched(target: Target, interfaces: dict[str, int], old: DataplaneState, new: DataplaneState,
            refuse: Callable[[str, Mapping[str, Any]], bool] = lambda message, fields: False) -> Iterator[Probe]:
    """The probe before every write (and after the last); `refuse` says which writes VPP refuses."""
    probe = Probe(target.emulator, interfaces, old, new)

    def hook(message: str) -> Callable[[Mapping[str, Any]], bool]:
        check = probe.before_write(message)

        def when(fields: Mapping[str, Any]) -> bool:
            check(fields)
            return refuse(message, fields)
        return when

    for message in WRITES:
        target.emulator.faults.reject(message, -1, when=hook(message))
    try:
        yield probe
    finally:
        target.emulator.faults.clear()
    probe.check("the last write")


def gated_interfaces(target: Target) -> dict[str, int]:
    """The pods of test_classifier.py by their interfaces' tags (as test_guard.py finds them)."""
    by_tag = {i.tag: i.sw_if_index for i in target.emulator.state.interfaces.all()}
    return {p: by_tag[f"vpa1:wl:k8s/{p}/eth0"] for p in GATED_PODS if f"vpa1:wl:k8s/{p}/eth0" in by_tag}


def acl_writes(message: str, fields: Mapping[str, Any]) -> bool:
    return message.startswith("acl_")


def driver(target: Target) -> VppDriver:
    """A driver with the sets gated (threshold of test_classifier_transitions.py)."""
    return make_driver(target, classifier_min_members=MIN_MEMBERS)


def restart_converges_exactly(target: Target, interfaces: dict[str, int], old: DataplaneState,
                              new: DataplaneState) -> None:
    """A new driver (an agent restart) resyncs VPP, which holds `old`'s programming, to `new`: no
    write leaves anything more open than `old` or `new`, no endpoint fails, `new` exactly after."""
    second = driver(target)
    try:
        with watched(target, interfaces, old, new) as probe:
            report = second.resync(new)
        assert report.ok and not report.failed
        assert probe.violations == [], (len(probe.violations), probe.violations[:4])
        assert probe.exact(new) == []
    finally:
        second.close()


def test_agent_restart_after_a_gate_change_while_the_agent_was_down(sim_target: Target) -> None:
    """VPP holds gate A's chain and L_U(A); the agent restarts into a state with gate B (a policy
    change while it was down). Adoption finds A's chain stale (its gaps do not hold B's) and detaches
    it from the pods while L_U(A) is still bound: a non-member of A reaches tcp/80 until the ACL write."""
    interfaces = {p: sim_target.pod(p) for p in PODS}  # (each call makes an interface)
    old, new = state_of(messages(OLD)), state_of(messages(NEW))
    first = driver(sim_target)
    assert first.resync(old).ok
    first.close()
    restart_converges_exactly(sim_target, interfaces, old, new)


def test_agent_restart_with_a_narrowed_chain_and_the_old_acl_bound(sim_target: Target) -> None:
    """A gate change A -> B whose ACL writes VPP refused leaves the chain narrowed (below A and B)
    with L_U(A) bound; the agent restarts. Adoption takes the narrowed chain for B (its gaps hold
    B's) but, the pods' ACLs not being B's yet, records no attachment; prepare then finds the chain
    with no user and widens it to B before the ACLs move: L_U(A) with B's chain admits anyone on tcp/80."""
    interfaces = {p: sim_target.pod(p) for p in PODS}  # (each call makes an interface)
    old, new = state_of(messages(OLD)), state_of(messages(NEW))
    first = driver(sim_target)
    assert first.resync(old).ok
    with watched(sim_target, interfaces, old, new, refuse=acl_writes) as probe:
        report = first.apply(diff_states(old, new), new)
    assert report.failed and probe.violations == [], "the refused change itself is not more open"
    first.close()
    restart_converges_exactly(sim_target, interfaces, old, new)


def web_b_with(members: list[str]) -> DataplaneState:
    """Both pods on web-b (tcp/443 from set B), set B of `members` (prefixes allowed)."""
    out = messages(NEW)
    for i, m in enumerate(out):
        if m.HasField("ipset_update") and m.ipset_update.id == "s:b":
            out[i] = b.ipset("s:b", members, kind="net")
    return state_of(out)


def chain_writes(message: str, fields: Mapping[str, Any]) -> bool:
    """VPP refuses to change or delete an existing classifier table (a new one is made)."""
    return message == "classify_add_del_table" and fields["table_index"] != NO_INDEX


def test_a_new_admit_table_left_unlinked_does_not_hide_the_chain_from_the_next_agent(sim_target: Target) -> None:
    """A member of another prefix length needs a new admit table: made and filled, then linked
    behind the head by re-pointing the head. VPP refuses the re-point (and the clean-up's delete),
    the agent restarts. The unlinked table points where the head points, so read.py sees two heads
    sharing the rest of the chain and adopts neither ("not provably ours"): the chain stays attached
    to the pods, the new agent's attach of its own chain is a no-op in VPP (one output table per
    family) and it reports "up" while VPP holds the old chain; a member removed later stays admitted."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    hosts = [f"10.66.2.{i}" for i in range(1, 21)]
    before, grown = web_b_with(hosts), web_b_with([*hosts, "10.66.7.0/24"])
    shrunk = web_b_with([*hosts[1:], "10.66.7.0/24"])
    probe = Probe(sim_target.emulator, interfaces, shrunk, shrunk)
    first = driver(sim_target)
    assert first.resync(before).ok
    sim_target.emulator.faults.reject("classify_add_del_table", -1,
                                      when=lambda f: chain_writes("classify_add_del_table", f))
    report = first.apply(diff_states(before, grown), grown)
    sim_target.emulator.faults.clear()
    assert report.failed, "the member could not be added: the endpoints fail"
    first.close()
    second = driver(sim_target)
    try:
        assert second.resync(grown).ok
        report = second.apply(diff_states(grown, shrunk), shrunk)
        assert report.ok and not report.failed
        removed = PolicyPacket(6, ipaddress.ip_address(hosts[0]), ipaddress.ip_address(PODS["ns/web0"]), 40000, 443)
        added = PolicyPacket(6, ipaddress.ip_address("10.66.7.9"), ipaddress.ip_address(PODS["ns/web0"]), 40000, 443)
        assert (probe.allowed("ns/web0", removed), probe.allowed("ns/web0", added)) == (False, True), \
            "the removed member is dropped and the /24 admitted, as the agent reports"
        ours = tables_but_guards(sim_target)
        assert len(ours) == len(second.classifier.chains[next(iter(second.classifier.chains))].tables), \
            "no table left behind"
    finally:
        second.close()


def leaving_messages(policies: Mapping[str, str], set_b: list[str]) -> list[Any]:
    """`messages` of test_classifier_transitions.py with set B of `set_b` and one more policy,
    "small": tcp/443 from a set below the gating threshold (an ungated list)."""
    out = [m for m in messages(policies) if not (m.HasField("ipset_update") and m.ipset_update.id == "s:b")]
    return [*out[:1], b.ipset("s:b", set_b, kind="ip"), b.ipset("s:small", [A_ONLY[0], B_ONLY[0]], kind="ip"),
            b.policy("small", namespace="ns", inbound=[
                b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=["s:small"])]), *out[1:]]


def test_an_interface_leaving_its_gate_is_not_widened_with_the_gates_new_members(sim_target: Target) -> None:
    """web0 and web1 share gate B's chain; in one pass web0 leaves the gate (its policy becomes
    "small", ungated) and set B gains a member. The chain is kept current for web1 (widened with
    the new member in prepare, web0 still counting as "at target" since its bound ACL is L_U(B)),
    before web0's ACL leaves L_U(B): the new member reaches web0 on tcp/443, which neither the old
    policy (not a member then) nor the new one ("small") allows. The same with web0 alone on its
    chain (no user wants the gate any more, it is still widened)."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    newcomer = "10.66.2.99"
    old = state_of(leaving_messages(NEW, SET_B))
    new = state_of(leaving_messages({"ns/web0": "small", "ns/web1": "web-b"}, [*SET_B, newcomer]))
    first = driver(sim_target)
    try:
        assert first.resync(old).ok
        seen: list[str] = []

        def check(message: str, fields: Mapping[str, Any]) -> bool:
            pkt = PolicyPacket(6, ipaddress.ip_address(newcomer), ipaddress.ip_address(PODS["ns/web0"]), 40000, 443)
            probe = Probe(sim_target.emulator, interfaces, old, new)
            if probe.allowed("ns/web0", pkt):
                seen.append(message)
            return False

        with watched(sim_target, interfaces, old, new, refuse=check) as probe:
            report = first.apply(diff_states(old, new), new)
        assert report.ok and not report.failed
        assert seen == [], f"the newcomer reached web0 on tcp/443 before {len(seen)} write(s): {seen}"
        assert probe.violations == [] and probe.exact(new) == []
    finally:
        first.close()


RULES = {  # policy name -> its tcp rules (every policy also allows udp/53 from anywhere)
    "web-a": [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:a"])],
    "web-a8": [b.rule("allow", protocol="tcp", dst_ports=[80, 8080], src_ip_set_ids=["s:a"])],
    "web-c": [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:b"])],
    "small": [b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=["s:small"])],
    "web-deny": [b.rule("deny", protocol="tcp", dst_ports=[80], src_net=["10.66.1.0/30"]),
                 b.rule("allow", protocol="tcp", dst_ports=[80, 443], src_ip_set_ids=["s:a"])],
    "web-ba": [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:b"]),
               b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=["s:a"])],
    "web-0a": [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:0"]),  # web-ba, its gate
               b.rule("allow", protocol="tcp", dst_ports=[443], src_ip_set_ids=["s:a"])],  # before web-deny's
    "any80": [b.rule("allow", protocol="tcp", dst_ports=[80])],
    "any443": [b.rule("allow", protocol="tcp", dst_ports=[443])],
    "any8080": [b.rule("allow", protocol="tcp", dst_ports=[8080])],
}


def built(policies: Mapping[str, str], set_a: list[str] = SET_A) -> DataplaneState:
    """Sets A (`set_a`) and B of test_classifier_transitions.py (gated; "s:0" is B again), "s:small"
    (too small to be), the policies of RULES, and the pods on the policies `policies` names."""
    return state_of([
        b.config({}), b.ipset("s:a", set_a, kind="ip"), b.ipset("s:b", SET_B, kind="ip"),
        b.ipset("s:0", SET_B, kind="ip"),
        b.ipset("s:small", [A_ONLY[0], B_ONLY[0]], kind="ip"),
        *[b.policy(name, namespace="ns", inbound=[*rules, b.rule("allow", protocol="udp", dst_ports=[53])])
          for name, rules in RULES.items()],
        *[b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"],
                     tiers=[b.tier("default", ingress=[policies[pod]], namespace="ns")])
          for i, (pod, ip) in enumerate(PODS.items())]])


def test_adoption_keeps_the_chain_a_settled_interface_is_on(sim_target: Target) -> None:
    """web0 on gate "web-a" (gap tcp/80), web1 on "web-a8" (gaps tcp/80 and tcp/8080): two chains.
    One pass moves web1 to "web-c" (tcp/80 from B: the same gap as web-a's) and web0 to an ungated
    list; VPP refuses the session writes after the ACL writes, so web1's chain keeps its tcp/8080 gap
    and web0's old chain is not deleted yet. The agent restarts: adoption takes web0's old chain for
    gate web-c (its gaps are exactly web-c's), infers that web1 (its bound ACL is L_U(web-c)) is on
    it, and detaches web1's real chain as stale: L_U(web-c) without a chain lets a non-member reach
    tcp/80 until the adopted chain is rebuilt and attached, 40-odd writes later."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old = built({"ns/web0": "web-a", "ns/web1": "web-a8"})
    new = built({"ns/web0": "small", "ns/web1": "web-c"})
    first = driver(sim_target)
    assert first.resync(old).ok
    acl_written = [False]

    def after_the_acls(message: str, fields: Mapping[str, Any]) -> bool:
        acl_written[0] = acl_written[0] or message == "acl_add_replace"
        return acl_written[0] and message == "classify_add_del_session"

    with watched(sim_target, interfaces, old, new, refuse=after_the_acls) as probe:
        report = first.apply(diff_states(old, new), new)
    assert report.failed and probe.violations == [], "the refused change itself is not more open"
    first.close()
    restart_converges_exactly(sim_target, interfaces, old, new)


def test_a_pinned_gated_interface_keeps_its_chain_across_an_agent_restart(sim_target: Target) -> None:
    """Both pods on gate A (L_U(A) bound, A's chain attached). While the agent is down their policy
    stops compiling (a rule names a named-port set Felix has not sent): the lists are pinned, they
    keep what they have. The restarted agent knows no gate for them (`gate_of` is empty after a
    read-back, and a pinned list has no gate of its own), so A's chain is adopted by nobody, detached
    as stale and deleted: L_U(A) is left alone and anyone reaches tcp/80, for as long as the policy
    stays broken (the endpoints report "error" for the compile, not for the hole)."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old = state_of(messages(OLD))
    broken = state_of(messages(OLD))
    web_a = next(k for k in broken.policies if k.name == "web-a")
    broken.policies[web_a].inbound_rules[0].dst_named_port_ip_set_ids.append("n:missing")
    first = driver(sim_target)
    assert first.resync(old).ok
    first.close()
    second = driver(sim_target)
    try:
        with watched(sim_target, interfaces, old, old) as probe:
            report = second.resync(broken)
        assert report.ok and report.failed, "the endpoints whose list does not compile fail"
        assert probe.exact(old) == [], "pinned: the old verdicts stay, after the pass too"
        assert probe.violations == [], (len(probe.violations), probe.violations[:4])
    finally:
        second.close()


def test_agent_restart_after_the_gate_went_while_the_agent_was_down(sim_target: Target) -> None:
    """As the first test, for a gate that went (both pods now on "small", ungated): adoption detaches
    gate A's chain, stale, before the pods' ACLs leave L_U(A): anyone reaches tcp/80 until the ACL
    write (and for good if VPP refuses it: the endpoints fail, the hole stays)."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old, new = built({p: "web-a" for p in PODS}), built({p: "small" for p in PODS})
    first = driver(sim_target)
    assert first.resync(old).ok
    first.close()
    second = driver(sim_target)
    try:
        with watched(sim_target, interfaces, old, new, refuse=acl_writes) as probe:
            report = second.resync(new)
        assert report.failed, "VPP refused the ACL writes"
        left_open = [v for v in probe.violations if v.endswith("after the last write")]
        assert left_open == [], left_open
        assert probe.violations == [], (len(probe.violations), probe.violations[:4])
    finally:
        second.close()


def test_an_adopted_chain_on_an_unsettled_interface_is_not_deleted_under_it(sim_target: Target) -> None:
    """A gate change A -> B whose ACL writes VPP refused leaves the narrowed chain on both pods with
    L_U(A) bound; the agent restarts. Adoption takes the chain for B but records no attachment (the
    pods' ACLs are not B's yet); prepare's first write to it is refused, so nobody is attached to it
    in the driver's books and finish deletes it, while VPP still has it on both pods' output (VPP
    deletes a table without checking). The emulator then passes everything there ("classifier table
    gone"); and as an output attach is a no-op while one is attached, the next resync's new chain is
    never attached: the pods stay open with status "up"."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old, new = state_of(messages(OLD)), state_of(messages(NEW))
    first = driver(sim_target)
    assert first.resync(old).ok
    with watched(sim_target, interfaces, old, new, refuse=acl_writes) as probe:
        assert first.apply(diff_states(old, new), new).failed
    first.close()
    second = driver(sim_target)
    try:
        writes = [0]

        def first_write(message: str, fields: Mapping[str, Any]) -> bool:
            writes[0] += 1
            return writes[0] == 1

        with watched(sim_target, interfaces, old, new, refuse=first_write) as probe:
            assert second.resync(new).failed
        left_open = [v for v in probe.violations if v.endswith("after the last write")]
        report = second.resync(new)
        assert report.ok and not report.failed
        assert (left_open, probe.exact(new)) == ([], []), "never more open; status up: VPP holds the new verdicts"
    finally:
        second.close()


@pytest.mark.parametrize("moved_to", ["web-0a", "web-ba"])
def test_adoption_does_not_give_a_settled_interfaces_chain_to_another_gate(sim_target: Target, moved_to: str) -> None:
    """Both pods share gate "web-deny"'s chain (gaps tcp/80 and tcp/443). web1 moves to "web-0a"
    (the same gaps, other admits): its exact list is bound first, then VPP refuses the new chain's
    first table, so web1 stays on the shared chain with its exact list. The agent restarts.
    Adoption goes through the gates in `gate_order` (web-0a's first) and gave the shared chain to
    web-0a (its gaps hold web-0a's), not to web-deny, whose settled user web0 is on it: web0 got a
    new chain whose attach VPP ignores (one output table per family), and the shared chain, still on
    web0 under L_U(web-deny), was widened to web-0a: set B's members reached web0 on tcp/80.
    "web-ba" is the same policy with its gate after web-deny's."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old = built({p: "web-deny" for p in PODS})
    new = built({"ns/web0": "web-deny", "ns/web1": moved_to})
    first = driver(sim_target)
    assert first.resync(old).ok

    def new_tables(message: str, fields: Mapping[str, Any]) -> bool:
        return message == "classify_add_del_table" and fields["is_add"] and fields["table_index"] == NO_INDEX

    with watched(sim_target, interfaces, old, new, refuse=new_tables) as probe:
        assert first.apply(diff_states(old, new), new).failed
    assert probe.violations == []
    first.close()
    restart_converges_exactly(sim_target, interfaces, old, new)


def test_a_refused_chain_detach_keeps_the_pod_interface_until_it_is_done(sim_target: Target) -> None:
    """CNI Del of a gated pod: VPP refuses the output detach of its chain. interface_gone logs it,
    forgets the attachment and the interface is deleted anyway; VPP keeps the record at that index,
    so the next pod given it inherits the record with ip4-outacl off and an attach that does
    nothing (test_guard.py, the same case without the fault): L_U with no chain, anyone reaches
    the gated port, and the driver reports "up"."""
    driver = make_driver(sim_target, pod_interface="tap", plumbing=FakePlumbing())
    try:
        state = state_of(gated_messages(MEMBERS))
        driver.resync(state)
        for i, (pod, ip) in enumerate(GATED_PODS.items()):
            driver.attach_pod(pod_spec(pod, [f"{ip}/32"], host_ifname=f"cali{i}"))
        assert driver.resync(state).ok
        before = gated_interfaces(sim_target)
        sim_target.emulator.faults.reject("output_acl_set_interface", -1, when=lambda f: not f["is_add"])
        with contextlib.suppress(Exception):  # an error is an honest answer: what VPP holds after is checked
            driver.detach_pod(PodDelete("/proc/self/ns/net", "eth0"))  # ns/web0's
        sim_target.emulator.faults.clear()
        if gated_interfaces(sim_target).get("ns/web0") is None:  # it went: a new pod takes its place
            driver.attach_pod(pod_spec("ns/web0", [f"{GATED_PODS['ns/web0']}/32"], host_ifname="cali0"))
        report = driver.resync(state)
        after = gated_interfaces(sim_target)
        assert established(sim_target, after, "ns/client", "ns/web0", "tcp", 80) or report.failed
        assert not established(sim_target, after, "ns/other", "ns/web0", "tcp", 80), \
            f"a non-member reaches the gated port (index {before['ns/web0']} -> {after['ns/web0']}, {report})"
    finally:
        driver.close()


def test_a_refused_table_delete_leaks_no_table(sim_target: Target) -> None:
    """Both pods leave their gates (web0 on "web-a", web1 on "web-c": two chains, five tables each:
    an admit table per block length of sets A's and B's members, /29 to /32 (classifier/aggregate.py),
    and a gap table).
    finish pops every unused chain from the books and then deletes their tables; VPP refuses the
    first delete: the exception leaves the other tables in no list (not `chains`, `stale` or
    `loose`), so no later pass deletes them."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old, new = built({"ns/web0": "web-a", "ns/web1": "web-c"}), built({p: "small" for p in PODS})
    first = driver(sim_target)
    try:
        assert first.resync(old).ok
        assert len(tables_but_guards(sim_target)) == 10
        deletes = [0]

        def first_delete(message: str, fields: Mapping[str, Any]) -> bool:
            if message == "classify_add_del_table" and not fields["is_add"]:
                deletes[0] += 1
                return deletes[0] == 1
            return False

        with watched(sim_target, interfaces, old, new, refuse=first_delete) as probe:
            first.apply(diff_states(old, new), new)
        assert probe.violations == [] and deletes[0] == 1
        assert first.resync(new).ok and first.resync(new).ok
        assert tables_but_guards(sim_target) == set(), "every chain table deleted once VPP accepts"
    finally:
        first.close()


def test_a_refused_stale_detach_does_not_delete_the_chain_under_an_interface(sim_target: Target) -> None:
    """The agent restarts into a gate change (A -> B) made while it was down: gate A's chain is stale
    and adoption detaches it from every pod interface. VPP refuses web1's detach: adopt raises with
    the chain already in `stale`, and finish deletes its tables although VPP still has them on
    web1's output (VPP deletes a table without checking). Whatever the verdict of a deleted table
    (the emulator passes), web1's output then names a table index that no longer exists, and the
    next attach there is a no-op: after a clean resync web1 still does not hold gate B's chain."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old, new = state_of(messages(OLD)), state_of(messages(NEW))
    first = driver(sim_target)
    assert first.resync(old).ok
    first.close()
    second = driver(sim_target)
    try:
        web1 = interfaces["ns/web1"]

        def web1_detach(message: str, fields: Mapping[str, Any]) -> bool:
            return message == "output_acl_set_interface" and fields["sw_if_index"] == web1 and not fields["is_add"]

        with watched(sim_target, interfaces, old, new, refuse=web1_detach) as probe:
            assert second.resync(new).failed
        heads = output_heads(sim_target)
        assert all(head in tables_but_guards(sim_target) for head, _ in heads.values()), \
            f"an output classifier names a deleted table: {heads}; {len(probe.violations)} violations"
        report = second.resync(new)
        assert report.ok and not report.failed
        assert probe.exact(new) == []
    finally:
        second.close()


def test_stale_chains_of_a_vpp_that_restarted_are_not_deleted_by_index_in_the_new_one(sim_target: Target) -> None:
    """Adoption found gate A's chain stale (the agent restarted into gate B) and VPP refused its
    tables' delete: `stale` keeps them for the next finish. VPP then restarts; `reread` clears what
    the driver knew of the old VPP (chains, attachments, loose tables) but not `stale`, so the next
    finish deletes those table indices in the new VPP, where they now belong to the tables just
    made (a chain of ours, or a source guard's)."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old, new = state_of(messages(OLD)), state_of(messages(NEW))
    first = driver(sim_target)
    assert first.resync(old).ok
    first.close()
    second = driver(sim_target)
    try:
        sim_target.emulator.faults.reject("classify_add_del_table", -1, when=lambda f: not f["is_add"])
        second.resync(new)
        sim_target.emulator.faults.clear()
        assert second.classifier.stale, "the stale chain waits for its delete"
        sim_target.emulator.restart()
        interfaces = {p: sim_target.pod(p) for p in PODS}  # the pods come back (CNI Add again)
        report = second.resync(new)
        heads = output_heads(sim_target)
        present = {int(t) for t in sim_target.raw.api.classify_table_ids().ids}
        assert all(head in present for head, _ in heads.values()), \
            f"an output classifier names a deleted table: {heads} (report: ok={report.ok}, failed={report.failed})"
        assert sim_target.guard_tables() <= present
        assert report.ok and not report.failed
        assert Probe(sim_target.emulator, interfaces, old, new).exact(new) == []
    finally:
        second.close()


def test_a_shared_acl_is_not_replaced_under_a_user_that_could_not_leave(sim_target: Target) -> None:
    """Not the classifier (acl/apply.py), found by the same probe. web0 and web1 share one ACL
    ("any80", ungated); web0 moves to "any443", web1 to "any8080". The plan keeps the ACL for one
    class (replaced in place) and creates one for the other; VPP refuses the create, so the mover's
    bind is skipped, but the in-place replace goes on while the mover is still bound to the ACL:
    the mover gets the other pod's list, which neither its old nor its new policy is."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old = built({p: "any80" for p in PODS})
    new = built({"ns/web0": "any443", "ns/web1": "any8080"})
    first = driver(sim_target)
    try:
        assert first.resync(old).ok
        outputs = {tuple(sim_target.bindings()[ifx][1]) for ifx in interfaces.values()}
        assert len(outputs) == 1, "one output ACL shared by both pods"

        def creates(message: str, fields: Mapping[str, Any]) -> bool:
            return message == "acl_add_replace" and fields["acl_index"] == NO_INDEX

        with watched(sim_target, interfaces, old, new, refuse=creates) as probe:
            report = first.apply(diff_states(old, new), new)
        assert report.failed, "the mover fails"
        assert probe.violations == [], (len(probe.violations), probe.violations[:4])
    finally:
        first.close()



def explored(policies: Mapping[str, str], set_a: list[str], set_b: list[str]) -> DataplaneState:
    """`built` with sets A and B as given and "web-a-net" (web-a to the pods' /24 only)."""
    rules = {**RULES, "web-a-net": [b.rule("allow", protocol="tcp", dst_ports=[80], src_ip_set_ids=["s:a"],
                                           dst_net=["10.65.0.0/24"])]}
    return state_of([
        b.config({}), b.ipset("s:a", set_a, kind="ip"), b.ipset("s:b", set_b, kind="ip"),
        *[b.policy(name, namespace="ns", inbound=[*r, b.rule("allow", protocol="udp", dst_ports=[53])])
          for name, r in rules.items()],
        *[b.workload(pod, f"cali{i}", ipv4=[f"{ip}/32"],
                     tiers=[b.tier("default", ingress=[policies[pod]], namespace="ns")])
          for i, (pod, ip) in enumerate(PODS.items())]])


def test_an_adopted_chain_is_not_widened_under_an_interface_not_known_to_be_off_it(sim_target: Target) -> None:
    """Found after the review by its random explorer with agent restarts (seed 11). web0 on
    "web-a-net", web1 on "web-deny", set A without A_ONLY[0]. One pass moves web0 to "web-deny",
    web1 to an ungated list, and set A gains A_ONLY[0]; VPP refuses its 4th and 5th writes (a new
    table's linking, the first ACL write), so web1 keeps L_U(web-deny) and its chain. The agent
    restarts: web-deny's chain is adopted for web0; web1 is on it but not known to be (its desired
    list is not bound). web0 joins it, and the chain, with no user recorded, was widened to the new
    member while web1's L_U(web-deny) was bound: A_ONLY[0] reached web1 tcp/443, which neither
    policy allows."""
    interfaces = {p: sim_target.pod(p) for p in PODS}
    old = explored({"ns/web0": "web-a-net", "ns/web1": "web-deny"}, [*A_ONLY[1:], *BOTH, "10.66.4.4"],
                   [*B_ONLY, *BOTH[1:], "10.66.4.4"])
    new = explored({"ns/web0": "web-deny", "ns/web1": "any80"}, SET_A, SET_B)
    first = driver(sim_target)
    assert first.resync(old).ok
    writes = [0]

    def fourth_and_fifth(message: str, fields: Mapping[str, Any]) -> bool:
        writes[0] += 1
        return writes[0] in (4, 5)

    with watched(sim_target, interfaces, old, new, refuse=fourth_and_fifth) as probe:
        report = first.apply(diff_states(old, new), new)
    assert report.failed and probe.violations == [] and writes[0] >= 5
    first.close()
    restart_converges_exactly(sim_target, interfaces, old, new)
