"""review8's differential runner: a sequence of states (review8_cases) through the driver (gating
every set that qualifies: threshold 1) and the emulator, two endpoints of one spec, each packet's
first-packet verdict against the evaluator's. Returns the disagreements as text (empty: none)."""

from __future__ import annotations

import random

from tests.vpp.helpers import Target, first_packet_allowed
from tests.vpp.review8_cases import POD_A, POD_B, World, mutate, packets, world
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.policy.compile import CompileError, compile_endpoint
from vppagent.policy.evaluate import verdict
from vppagent.state.diff import diff_states
from vppagent.state.model import DataplaneState


def states(seed: int, steps: int, negated_gated: bool = True) -> list[World]:
    rng = random.Random(seed)
    out = [world(rng, negated_gated)]
    for _ in range(steps):
        out.append(mutate(rng, out[-1]))
    return out


def check(target: Target, driver: VppDriver, pods: dict, seed: int, steps: int = 3,  # type: ignore[type-arg]
          n: int = 24, previous: DataplaneState | None = None,
          negated_gated: bool = True) -> tuple[list[str], DataplaneState, int]:
    """(disagreements, the last state, states checked)."""
    rng = random.Random(seed ^ 0x5EED)
    previous = previous or DataplaneState()
    wrong: list[str] = []
    checked = 0
    for step, w in enumerate(states(seed, steps, negated_gated)):
        state = DataplaneState()
        for m in w.messages():
            state.apply(m)
        try:
            for key in (POD_A, POD_B):
                compile_endpoint(state, key, "ingress")
        except CompileError:
            continue
        # (a resync now and then: the lists compiled again from what it reads)
        report = driver.resync(state) if (seed + step) % 5 == 0 else \
            driver.apply(diff_states(previous, state), state)
        assert report.ok and not report.failed, f"seed {seed} step {step}: {report}"
        previous = state
        checked += 1
        for key in (POD_A, POD_B):
            for pkt in packets(rng, w, key, n):
                expected = verdict(state, key, "ingress", pkt)
                actual = first_packet_allowed(target.emulator, pods[key], "ingress", pkt)
                if actual != expected.allowed:
                    wrong.append(f"seed {seed} step {step} {key.workload_id} {pkt}: VPP "
                                 f"{'allows' if actual else 'drops'}, evaluator {expected.describe()}")
    return wrong, previous, checked
