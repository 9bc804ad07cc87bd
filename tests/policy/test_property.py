"""first_match(compile_endpoint(...)) == verdict(...) for random states and boundary packets.

CI runs ~3,000 states x 12 packets; `-m slow` runs 100k+ states. A failure prints the seed:
`vppagent.policy.generate.case_from_seed(seed)` rebuilds the case.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings

from vppagent.policy.catalog import Catalog
from vppagent.policy.compile import compile_endpoint, first_match
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import Case, case_and_packets, case_from_seed, random_case, random_packets
from vppagent.policy.packet import Packet


def _disagreements(case: Case, packets: list[Packet]) -> list[str]:
    cat = Catalog(case.state)
    compiled = compile_endpoint(cat, case.endpoint, case.direction)
    out = []
    for pkt in packets:
        v = verdict(cat, case.endpoint, case.direction, pkt)
        fm = first_match(compiled, pkt)
        if v.action != fm.action:
            rule = compiled.rules[fm.index] if fm.index is not None else "default"
            out.append(f"{case.direction} {pkt}: evaluator {v.describe()}, compiled {fm.action} via {rule}")
    return out


@settings(max_examples=3000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case_and_packets(12))
def test_compiled_list_agrees_with_evaluator(drawn: tuple[int, Case, list[Packet]]) -> None:
    seed, case, packets = drawn
    assert _disagreements(case, packets) == [], f"seed {seed}"


def test_generator_exercises_every_outcome() -> None:
    """Guard against a generator that only produces trivial cases (which would always agree)."""
    reasons: Counter[str] = Counter()
    for seed in range(400):
        case, packets = case_from_seed(seed, 5)
        cat = Catalog(case.state)
        for pkt in packets:
            v = verdict(cat, case.endpoint, case.direction, pkt)
            reasons[f"{v.action}/{v.reason}" + ("/profile" if v.profile else "")] += 1
    total = sum(reasons.values())
    assert reasons["allow/rule"] > total * 0.1, reasons
    assert reasons["deny/rule"] > total * 0.05, reasons
    assert reasons["deny/end of tier"] > total * 0.05, reasons
    assert reasons["allow/rule/profile"] > total * 0.02, reasons
    assert reasons["deny/no profile matched"] > total * 0.02, reasons


def test_ipv6_cases_agree() -> None:
    rng = random.Random(6)
    for _ in range(150):
        case = random_case(rng, v6=True)
        assert _disagreements(case, random_packets(rng, case, 10)) == []


def test_new_only_packets_are_new() -> None:
    from vppagent.policy.evaluate import first_packet_ct_state

    rng = random.Random(1)
    case = random_case(rng)
    assert all(first_packet_ct_state(p) == "new" for p in random_packets(rng, case, 200, new_only=True))


@pytest.mark.slow
@pytest.mark.timeout(7200)  # 100k states take 15-30 minutes; the suite's 120 s cap is for CI tests
def test_compiled_list_agrees_with_evaluator_100k() -> None:
    bad = []
    for seed in range(100_000):
        case, packets = case_from_seed(seed + 10**6, 8)
        bad += [f"seed {seed + 10**6}: {d}" for d in _disagreements(case, packets)]
    assert bad == []
