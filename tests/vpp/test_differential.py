"""The policy core's randomized differential, through the real driver and the emulator.

For each random Felix state (vppagent.policy.generate: tiers, pass, negations, IP sets, named
ports, ICMP, profiles, staged policies), the driver programs the emulator — by apply (a diff from
the previous case) or by resync — and every random packet's first-packet verdict at the pod's
interface must equal the reference evaluator's. Every few cases a resync must find nothing to
write: what the driver believes it programmed is what VPP holds.
"""

from __future__ import annotations

import random

import pytest

from tests.vpp.helpers import Target, first_packet_allowed, make_driver
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.policy.generate import ENDPOINT, random_case, random_packets
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState


def run_differential(target: Target, driver: VppDriver, seeds: range, packets_per_case: int) -> int:
    sw_if_index = target.pod(ENDPOINT.workload_id)
    previous = DataplaneState()
    checked = 0
    for seed in seeds:
        rng = random.Random(seed)
        case = random_case(rng)
        try:  # a state VPP's ACLs cannot express (compile refuses) is not a differential case
            compile_endpoint(case.state, case.endpoint, case.direction)
        except CompileError:
            continue
        if seed % 7 == 0:
            report = driver.resync(case.state)
        else:
            report = driver.apply(diff_states(previous, case.state), case.state)
        assert report.ok and not report.failed, f"seed {seed}: {report}"
        previous = case.state
        for pkt in random_packets(rng, case, packets_per_case):
            expected = verdict(case.state, case.endpoint, case.direction, pkt)
            actual = first_packet_allowed(target.emulator, sw_if_index, case.direction, pkt)
            assert actual == expected.allowed, (f"seed {seed} {case.direction} {pkt}: VPP "
                                                f"{'allows' if actual else 'drops'}, Felix {expected.describe()}")
        checked += 1
        if seed % 25 == 0:
            assert driver.resync(case.state).writes == 0, f"seed {seed}: VPP drifted from what the driver knows"
    return checked


def test_differential_random_policies_through_driver_and_emulator(sim_target: Target) -> None:
    driver = make_driver(sim_target)
    try:
        checked = run_differential(sim_target, driver, range(240), packets_per_case=12)
    finally:
        driver.close()
    assert checked >= 200


@pytest.mark.slow
def test_differential_long(sim_target: Target) -> None:
    driver = make_driver(sim_target)
    try:
        assert run_differential(sim_target, driver, range(1000, 4000), packets_per_case=25) >= 2500
    finally:
        driver.close()
