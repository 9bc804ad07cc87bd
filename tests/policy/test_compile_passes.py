"""The compiler's pass handling (issue 15): passes by first-match order, exceptions that copy
only the rest of the tier. Judged by the evaluator on pass-heavy random states, beside the
previous compiler (bench/previous_compiler.py), plus the size effect the change exists for."""

from __future__ import annotations

import random

from google.protobuf import json_format

from bench import previous_compiler as baseline
from tests.policy.helpers import EP, build_state, tcp, tier
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import Case, random_case, random_packets
from vppagent.policy.packet import Packet


def _pass_heavy(rng: random.Random) -> Case:
    """A random case whose policy rules are turned into passes about half the time, so tiers
    hold several passes (negated ones too) in front of rules of their own and of later tiers."""
    case = random_case(rng)
    messages = []
    for m in case.messages:
        m = json_format.ParseDict(json_format.MessageToDict(m), felix.ToDataplane())
        if m.HasField("active_policy_update"):
            policy = m.active_policy_update.policy
            for rule in (*policy.inbound_rules, *policy.outbound_rules):
                if rng.random() < 0.5:
                    rule.action = "pass"
        messages.append(m)
    return Case(messages, case.endpoint, case.direction, case.family)


def test_pass_heavy_states_agree_with_evaluator_and_previous_compiler() -> None:
    rng = random.Random(15)
    passes = 0
    for _ in range(600):
        case = _pass_heavy(rng)
        cat = Catalog(case.state)
        new = compile_endpoint(cat, case.endpoint, case.direction)
        old = baseline.compile_endpoint(cat, case.endpoint, case.direction)
        passes += sum("pass" in r.origin for r in new.rules)
        for pkt in random_packets(rng, case, 12):
            expected = verdict(cat, case.endpoint, case.direction, pkt).action
            assert first_match(new, pkt).action == expected, f"{case.direction} {pkt}\n{new.render()}"
            assert first_match(old, pkt).action == expected, f"{case.direction} {pkt}\n{old.render()}"
    assert passes > 100  # the states really exercised passes (rules that a pass shaped)


def test_negated_pass_in_front_of_member_rules_copies_nothing() -> None:
    """A pass for sources outside the cluster, in front of allows from members inside it, in a
    tier that ends in Pass: the pass is cut out of the tier's rules (none of which it meets)
    instead of copying what follows (the previous compiler copied the member rules)."""
    members = [f"10.65.{i // 256}.{i % 256}/32" for i in range(1, 400, 3)]
    rules = [{"action": "pass", "protocol": {"name": "tcp"}, "not_src_net": ["10.64.0.0/10"]}]
    rules += [tcp(80 + i, action="allow", src_ip_set_ids=["members"]) for i in range(3)]
    state = build_state(policies={"sec": (rules, []), "app": ([tcp(443, action="allow")], [])},
                        ipsets={"members": ("NET", members)},
                        tiers=[tier("security", ingress=["sec"], default="Pass"), tier("app", ingress=["app"])])
    new = compile_endpoint(state, EP, "ingress")
    old = baseline.compile_endpoint(state, EP, "ingress")
    v4 = [r for r in new.rules if r.family == 4]
    # 3 ports x 133 members, then tier app (an allow; the deny is the default).
    assert len(v4) == 3 * len(members) + 1, new.render()
    assert len(new.rules) < len(old.rules)
    cat = Catalog(state)
    for text, expected in (("tcp 10.65.0.4:9 > 10.65.0.2:80", "allow"), ("tcp 10.65.0.5:9 > 10.65.0.2:80", "deny"),
                           ("tcp 1.2.3.4:9 > 10.65.0.2:443", "allow"), ("tcp 1.2.3.4:9 > 10.65.0.2:80", "deny"),
                           ("tcp 10.65.0.5:9 > 10.65.0.2:443", "allow"), ("udp 1.2.3.4:9 > 10.65.0.2:443", "deny")):
        pkt = Packet.parse(text)
        assert verdict(cat, EP, "ingress", pkt).action == expected, text
        assert first_match(new, pkt).action == expected, f"{text}\n{new.render()}"
