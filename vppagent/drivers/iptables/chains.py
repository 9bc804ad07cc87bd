"""Felix's chain layout (felix/rules: static.go, endpoints.go, dispatch.go), for one family.

Kernel hooks jump to our top-level chains; dispatch chains pick the endpoint chain by interface;
an endpoint chain runs conntrack, then the tiers (each policy is its own chain, entered while the
pass bit is clear), then the profiles, then drops. Policy chains only set the accept or pass bit
(or drop); the endpoint chain acts on the bits. Marks, as Felix: accept and pass, plus two
scratch bits for OR blocks (rules.py).

Intended semantics where Felix's layout has bugs: OR blocks (rules.py, S4.9), and the pass bit is
cleared before every profile (S4.10), so a pass out of the last tier cannot make a profile's pass
rule return early.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from vppagent.drivers.iptables.names import (
    clear_mark,
    endpoint_chain,
    mark_clear,
    mark_set,
    policy_chain,
    profile_chain,
    set_mark,
)
from vppagent.drivers.iptables.rules import SetName, port_chunks, render_rule
from vppagent.drivers.iptables.settings import Settings
from vppagent.drivers.iptables.table import CHAIN_PREFIX, Chain, Rule, goto, jump
from vppagent.policy.catalog import Failsafe
from vppagent.policy.model import (
    PROTOCOL_NAMES,
    Direction,
    HostEndpoint,
    Policy,
    PortRange,
    Profile,
    Tier,
    WorkloadEndpoint,
)
from vppagent.state.model import STAGED_KINDS

FROM_WL_DISPATCH = CHAIN_PREFIX + "from-wl-dispatch"
TO_WL_DISPATCH = CHAIN_PREFIX + "to-wl-dispatch"
WL_TO_HOST = CHAIN_PREFIX + "wl-to-host"
FROM_HEP_DISPATCH = CHAIN_PREFIX + "from-host-endpoint"
TO_HEP_DISPATCH = CHAIN_PREFIX + "to-host-endpoint"
FROM_HEP_FORWARD_DISPATCH = CHAIN_PREFIX + "from-hep-forward"
TO_HEP_FORWARD_DISPATCH = CHAIN_PREFIX + "to-hep-forward"
FAILSAFE_IN = CHAIN_PREFIX + "failsafe-in"
FAILSAFE_OUT = CHAIN_PREFIX + "failsafe-out"
# Felix's cali-rpf-skip: (interface, source) pairs a workload may send from although no route
# leads back to it through that interface (allow_spoofed_source_prefixes).
RPF_SKIP = CHAIN_PREFIX + "rpf-skip"
TOP = {name: CHAIN_PREFIX + name for name in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING")}
CT_ESTABLISHED = "-m conntrack --ctstate RELATED,ESTABLISHED"
CT_INVALID = "-m conntrack --ctstate INVALID"
# ICMPv6 a workload needs to reach its host before any policy (Felix's ICMPv6Filter): MLD and NDP.
ICMPV6_TO_HOST = (130, 131, 132, 133, 135, 136)
# Whether workload_chains differs between families; False lets render.py render them once.
WORKLOAD_CHAINS_PER_FAMILY = False
DISPATCH_SPLIT = 32  # more endpoints than this: a second dispatch level by interface name


@dataclass(frozen=True)
class Flavour:
    """How a chain kind treats tiers (felix-semantics S8.1)."""

    end_of_tier_drop: bool = True
    profiles: bool = True


NORMAL = Flavour()
NO_DECISION = Flavour(end_of_tier_drop=False, profiles=False)  # untracked, pre-DNAT
FORWARD = Flavour(profiles=False)


class ChainRenderer:
    def __init__(self, settings: Settings, family: int) -> None:
        self.s = settings
        self.family = family
        self.m = settings.marks
        # Endpoints mostly share their tiers and profiles (a namespace's pods select the same
        # policies): the policy part of an endpoint chain is rendered once per distinct value.
        self._tier_memo: dict[tuple[object, ...], tuple[Rule, ...]] = {}
        # One object per distinct rule of endpoint chains (conntrack, marks, jumps to a policy):
        # thousands of endpoint chains repeat them, and each copy would cost memory.
        self._shared: dict[Rule, Rule] = {}

    def _one(self, rule: Rule) -> Rule:
        return self._shared.setdefault(rule, rule)

    # -- policies and profiles -----------------------------------------------------------------
    def _rule_chain(self, name: str, owner: str, rules: Iterable[Rule]) -> Chain:
        return Chain(name, tuple(rules), owner)

    def policy_chains(self, policy: Policy, set_name: SetName) -> list[Chain]:
        out = []
        for inbound, rules in ((True, policy.inbound_rules), (False, policy.outbound_rules)):
            body = [r for rule in rules for r in render_rule(rule, self.family, set_name, self.m,
                                                              self.s.deny_action)]
            out.append(self._rule_chain(policy_chain(policy.key, inbound), f"policy {policy.key}", body))
        return out

    def profile_chains(self, profile: Profile, set_name: SetName) -> list[Chain]:
        out = []
        for inbound, rules in ((True, profile.inbound_rules), (False, profile.outbound_rules)):
            body = [r for rule in rules for r in render_rule(rule, self.family, set_name, self.m,
                                                              self.s.deny_action)]
            out.append(self._rule_chain(profile_chain(profile.name, inbound), f"profile {profile.name}", body))
        return out

    # -- the policy part of an endpoint chain --------------------------------------------------
    def tier_rules(self, tiers: Sequence[Tier], direction: Direction, profiles: Sequence[str],
                   flavour: Flavour) -> list[Rule]:
        key = (tuple(tiers), direction, tuple(profiles), flavour)
        hit = self._tier_memo.get(key)
        if hit is None:
            if len(self._tier_memo) > 65536:  # bound it; a full clear is rare and only costs time
                self._tier_memo.clear()
                self._shared.clear()
            hit = self._tier_memo[key] = tuple(self._tier_rules(tiers, direction, profiles, flavour))
        return list(hit)

    def _tier_rules(self, tiers: Sequence[Tier], direction: Direction, profiles: Sequence[str],
                    flavour: Flavour) -> list[Rule]:
        inbound = direction is Direction.INGRESS
        one = self._one
        accepted = one(Rule(mark_set(self.m.accept), "-j RETURN"))
        start_of_tier = one(Rule("", clear_mark(self.m.passed)))
        out: list[Rule] = []
        for tier in tiers:
            listed = tier.policies(direction)
            if not listed:
                continue  # a tier with no policies in this direction is skipped
            live = [k for k in listed if k.kind not in STAGED_KINDS]
            out.append(start_of_tier)
            for key in live:
                out.append(one(jump(policy_chain(key, inbound), mark_clear(self.m.passed))))
                out.append(accepted)
            if live and flavour.end_of_tier_drop and not tier.ends_with_pass:
                out.append(one(Rule(mark_clear(self.m.passed), self.s.deny_action)))
        if flavour.profiles:
            for name in profiles:
                # A pass in a profile (or out of the last tier) must not carry into this profile.
                out.append(start_of_tier)
                out.append(one(jump(profile_chain(name, inbound))))
                out.append(accepted)
            out.append(one(Rule("", self.s.deny_action)))
        return out

    def _conntrack(self) -> list[Rule]:
        out = [self._one(Rule(CT_ESTABLISHED, "-j ACCEPT"))]
        if self.s.conntrack_invalid_drop:
            out.append(self._one(Rule(CT_INVALID, "-j DROP")))
        return out

    # -- workload endpoints --------------------------------------------------------------------
    def workload_chains(self, wep: WorkloadEndpoint) -> list[Chain]:
        """The endpoint's two chains. They do not depend on the family (no addresses, no ICMP:
        only marks, conntrack and jumps), so the renderer renders them once for all families
        (`WORKLOAD_CHAINS_PER_FAMILY`; tests/kernel/test_caching.py checks the claim)."""
        owner = f"workload endpoint {wep.key}"
        out = []
        for prefix, direction in (("tw-", Direction.INGRESS), ("fw-", Direction.EGRESS)):
            name = endpoint_chain(prefix, wep.name)
            if not wep.active:
                out.append(Chain(name, (self._one(Rule("", "-j DROP")),), owner))  # admin down: before conntrack
                continue
            rules = self._conntrack()
            rules.append(self._one(Rule("", clear_mark(self.m.accept | self.m.passed))))
            if direction is Direction.EGRESS:
                if not self.s.allow_vxlan_from_workloads:
                    rules.append(self._one(Rule(f"-p udp -m multiport --dports {self.s.vxlan_port}", "-j DROP")))
                if not self.s.allow_ipip_from_workloads:
                    rules.append(self._one(Rule("-p 4", "-j DROP")))
            rules += self.tier_rules(wep.tiers, direction, wep.profile_ids, NORMAL)
            out.append(Chain(name, tuple(rules), owner))
        return out

    def _dispatch(self, name: str, flag: str, prefix: str, ifaces: Sequence[str], final: Rule | None
                  ) -> list[Chain]:
        """Interface → endpoint chain, by goto; split by the first character after the workload
        prefix when there are many, so a packet scans tens of rules, not thousands."""
        def leaf_rules(names: Iterable[str]) -> list[Rule]:
            return [goto(endpoint_chain(prefix, i), f"{flag} {i}") for i in names]

        tail = [final] if final else []
        if len(ifaces) <= DISPATCH_SPLIT:
            return [Chain(name, tuple(leaf_rules(ifaces) + tail), "dispatch")]
        groups: dict[str, list[str]] = {}
        for iface in ifaces:
            wl_prefix = next((p for p in self.s.interface_prefixes if iface.startswith(p)), "")
            groups.setdefault(iface[: len(wl_prefix) + 1], []).append(iface)
        top: list[Rule] = []
        chains: list[Chain] = []
        for stem, members in sorted(groups.items()):
            sub = f"{name}-{stem[-1].encode().hex()}"
            chains.append(Chain(sub, tuple(leaf_rules(members) + tail), "dispatch"))
            top.append(goto(sub, f"{flag} {stem}+"))
        return [Chain(name, tuple(top + tail), "dispatch"), *chains]

    def workload_dispatch(self, ifaces: Sequence[str]) -> list[Chain]:
        unknown = Rule("", "-j DROP")  # a workload-prefixed interface with no endpoint
        names = sorted(ifaces)
        return (self._dispatch(FROM_WL_DISPATCH, "-i", "fw-", names, unknown)
                + self._dispatch(TO_WL_DISPATCH, "-o", "tw-", names, unknown))

    # -- static chains (filter) ------------------------------------------------------------------
    def _failsafe(self, name: str, entries: Sequence[Failsafe], port_flag: str, net_flag: str,
                  extra: Sequence[tuple[Failsafe, str, str]] = ()) -> Chain:
        rules = []
        for entry, pflag, nflag in [*((e, port_flag, net_flag) for e in entries), *extra]:
            if entry.net is not None and entry.net.version != self.family:
                continue
            net = f" {nflag} {entry.net}" if entry.net is not None else ""
            ports = port_chunks([PortRange(entry.port, entry.port)])[0]
            rules.append(Rule(f"-p {PROTOCOL_NAMES[entry.proto]} -m multiport {pflag} {ports}{net}", "-j ACCEPT"))
        return Chain(name, tuple(rules), "failsafe ports")

    def filter_static(self, has_heps: bool, has_forward_heps: bool) -> tuple[list[Chain], dict[str, list[Rule]]]:
        acc, both = self.m.accept, self.m.accept | self.m.passed
        prefixes = self.s.interface_prefixes
        forward: list[Rule] = []
        if has_forward_heps:
            forward.append(jump(FROM_HEP_FORWARD_DISPATCH, mark_clear(acc)))
        forward += [jump(FROM_WL_DISPATCH, f"-i {p}+") for p in prefixes]
        forward += [jump(TO_WL_DISPATCH, f"-o {p}+") for p in prefixes]
        if has_forward_heps:
            forward.append(jump(TO_HEP_FORWARD_DISPATCH))
        forward.append(Rule(mark_set(acc), "-j ACCEPT"))
        inp = [Rule(mark_set(acc), "-j ACCEPT")]
        inp += [goto(WL_TO_HOST, f"-i {p}+") for p in prefixes]
        out = [Rule(mark_set(acc), "-j ACCEPT")]
        out += [Rule(f"-o {p}+", "-j RETURN") for p in prefixes]  # host → workload is not policed
        if has_heps:
            inp += [Rule("", clear_mark(both)), jump(FROM_HEP_DISPATCH), Rule(mark_set(acc), "-j ACCEPT")]
            out += [Rule("", clear_mark(both)), jump(TO_HEP_DISPATCH), Rule(mark_set(acc), "-j ACCEPT")]
        to_host: list[Rule] = []
        if self.family == 6:
            to_host += [Rule(f"-p ipv6-icmp -m icmp6 --icmpv6-type {t}", "-j ACCEPT") for t in ICMPV6_TO_HOST]
        to_host.append(jump(FROM_WL_DISPATCH))
        to_host.append(Rule("", f"-j {self.s.endpoint_to_host_action}"))
        chains = [
            Chain(TOP["FORWARD"], tuple(forward), "static"),
            Chain(TOP["INPUT"], tuple(inp), "static"),
            Chain(TOP["OUTPUT"], tuple(out), "static"),
            Chain(WL_TO_HOST, tuple(to_host), "static"),
            self._failsafe(FAILSAFE_IN, self.s.failsafe_in, "--dports", "-s"),
            self._failsafe(FAILSAFE_OUT, self.s.failsafe_out, "--dports", "-d"),
        ]
        hooks = {k: [jump(TOP[k])] for k in ("INPUT", "FORWARD", "OUTPUT")}
        return chains, hooks

    def raw_static(self, untracked_in: bool, untracked_out: bool, rpf_skip: bool = False
                   ) -> tuple[list[Chain], dict[str, list[Rule]]]:
        """`rpf_skip`: some workload may send from sources besides its own (`rpf_skip_chain`)."""
        acc = self.m.accept
        pre = [Rule("", clear_mark(self.m.all))]
        if rpf_skip:
            # Before the check: an allowed (interface, source) pair is accepted in this table only,
            # as Felix does; filter's policy still decides. Jumped to only when it has rules.
            pre += [jump(RPF_SKIP, f"-i {p}+") for p in self.s.interface_prefixes]
        # Strict reverse-path check: a workload may only send from addresses routed to it.
        pre += [Rule(f"-i {p}+ -m rpfilter --invert --validmark", "-j DROP") for p in self.s.interface_prefixes]
        out = [Rule("", clear_mark(self.m.all))]
        for rules, wanted, dispatch in ((pre, untracked_in, FROM_HEP_DISPATCH), (out, untracked_out, TO_HEP_DISPATCH)):
            if wanted:
                rules += [jump(dispatch), Rule(mark_set(acc), "-j NOTRACK"), Rule(mark_set(acc), "-j ACCEPT")]
        raw_failsafe_in = self._failsafe(FAILSAFE_IN, self.s.failsafe_in, "--dports", "-s",
                                         [(e, "--sports", "-s") for e in self.s.failsafe_out])
        raw_failsafe_out = self._failsafe(FAILSAFE_OUT, self.s.failsafe_out, "--dports", "-d",
                                          [(e, "--sports", "-d") for e in self.s.failsafe_in])
        chains = [Chain(TOP["PREROUTING"], tuple(pre), "static"), Chain(TOP["OUTPUT"], tuple(out), "static"),
                  raw_failsafe_in, raw_failsafe_out]
        return chains, {"PREROUTING": [jump(TOP["PREROUTING"])], "OUTPUT": [jump(TOP["OUTPUT"])]}

    def rpf_skip_chain(self, weps: Iterable[WorkloadEndpoint]) -> Chain | None:
        """The sources each workload may send from besides the addresses routed to it (its
        allowed spoofed source prefixes of this family), by interface; None when there are none.
        Interface names are checked Linux names and prefixes are parsed networks, so both go
        into the rule as they are (the renderer refuses an endpoint with a bad name)."""
        rules = [Rule(f"-i {wep.name} -s {net}", "-j ACCEPT")
                 for wep in sorted(weps, key=lambda w: w.name)
                 for net in wep.allowed_spoofed_sources if net.version == self.family]
        return Chain(RPF_SKIP, tuple(rules), "allowed spoofed sources") if rules else None

    def mangle_static(self, pre_dnat: bool) -> tuple[list[Chain], dict[str, list[Rule]]]:
        acc = self.m.accept
        pre = [Rule(CT_ESTABLISHED, "-j ACCEPT"), Rule(mark_set(acc), "-j ACCEPT")]
        if pre_dnat:
            pre += [jump(FROM_HEP_DISPATCH), Rule(mark_set(acc), "-j ACCEPT")]
        chains = [Chain(TOP["PREROUTING"], tuple(pre), "static"),
                  self._failsafe(FAILSAFE_IN, self.s.failsafe_in, "--dports", "-s")]
        return chains, {"PREROUTING": [jump(TOP["PREROUTING"])]}

    # -- host endpoints --------------------------------------------------------------------------
    def _hep_chain(self, name: str, owner: str, tiers: Sequence[Tier], direction: Direction,
                   profiles: Sequence[str], flavour: Flavour, failsafe: str | None, conntrack: bool) -> Chain:
        rules = self._conntrack() if conntrack else []
        if failsafe:
            rules.append(jump(failsafe))
        rules.append(Rule("", clear_mark(self.m.accept | self.m.passed)))
        if flavour is FORWARD and not tiers:
            rules.append(Rule("", set_mark(self.m.accept)))  # no forward policy: allow forwarding
        else:
            rules += self.tier_rules(tiers, direction, profiles, flavour)
        return Chain(name, tuple(rules), owner)

    def host_endpoint_chains(self, hep: HostEndpoint) -> dict[str, list[Chain]]:
        """Chains per table for one host endpoint (interface `hep.name`)."""
        owner, iface, ing, egr = f"host endpoint {hep.id}", hep.name, Direction.INGRESS, Direction.EGRESS
        filt = [
            self._hep_chain(endpoint_chain("fh-", iface), owner, hep.tiers, ing, hep.profile_ids, NORMAL,
                            FAILSAFE_IN, True),
            self._hep_chain(endpoint_chain("th-", iface), owner, hep.tiers, egr, hep.profile_ids, NORMAL,
                            FAILSAFE_OUT, True),
            self._hep_chain(endpoint_chain("fhfw-", iface), owner, hep.forward_tiers, ing, (), FORWARD, None, True),
            self._hep_chain(endpoint_chain("thfw-", iface), owner, hep.forward_tiers, egr, (), FORWARD, None, True),
        ]
        raw = [
            self._hep_chain(endpoint_chain("fh-", iface), owner, hep.untracked_tiers, ing, (), NO_DECISION,
                            FAILSAFE_IN, False),
            self._hep_chain(endpoint_chain("th-", iface), owner, hep.untracked_tiers, egr, (), NO_DECISION,
                            FAILSAFE_OUT, False),
        ]
        mangle = [self._hep_chain(endpoint_chain("fh-", iface), owner, hep.pre_dnat_tiers, ing, (), NO_DECISION,
                                  FAILSAFE_IN, True)]
        return {"filter": filt, "raw": raw, "mangle": mangle}

    def host_dispatch(self, heps: Sequence[HostEndpoint]) -> dict[str, list[Chain]]:
        def chain(name: str, flag: str, prefix: str, selected: Iterable[HostEndpoint]) -> Chain:
            return Chain(name, tuple(goto(endpoint_chain(prefix, h.name), f"{flag} {h.name}")
                                     for h in sorted(selected, key=lambda h: h.name)), "dispatch")

        untracked = [h for h in heps if h.untracked_tiers]
        pre_dnat = [h for h in heps if h.pre_dnat_tiers]
        return {
            "filter": [chain(FROM_HEP_DISPATCH, "-i", "fh-", heps), chain(TO_HEP_DISPATCH, "-o", "th-", heps),
                       chain(FROM_HEP_FORWARD_DISPATCH, "-i", "fhfw-", heps),
                       chain(TO_HEP_FORWARD_DISPATCH, "-o", "thfw-", heps)],
            "raw": [chain(FROM_HEP_DISPATCH, "-i", "fh-", untracked), chain(TO_HEP_DISPATCH, "-o", "th-", untracked)],
            "mangle": [chain(FROM_HEP_DISPATCH, "-i", "fh-", pre_dnat)],
        }
