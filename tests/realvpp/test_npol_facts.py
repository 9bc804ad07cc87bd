"""Facts about VPP's npol plugin that a future npol driver would rely on, checked on a real VPP.

Each fact is a probe from bench/npol_probe.py (docs/npol.md explains them): its claim and the
evidence seen are in the failure message, so a VPP upgrade that changes one fails loudly here and
says what changed. The most important one today is that VPP 26.06's npol has no packet path at
all (real UDP through a pod interface with deny-all npol policies still arrives); the semantic
facts therefore use VPP's own matcher through the `npol match` CLI. A short differential run maps
random policy states (vppagent.policy.generate) to npol objects with bench/npol_mapping.py and
compares VPP's matcher with the reference evaluator on every packet.

Needs root and the vpp binary (skips with the reason otherwise); starts its own VPP under /run/vpp.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench import npol_probe
from vppagent.vpprun import vpp_problem

pytestmark = [pytest.mark.realvpp, pytest.mark.root]
PROBES = {probe.__name__: probe for probe in npol_probe.fact_probes()}


@pytest.fixture(scope="module")
def npol() -> Iterator[npol_probe.Npol]:
    problem = vpp_problem()
    if problem is not None:
        pytest.skip(f"no private VPP for the npol facts: {problem}")
    with npol_probe.Npol() as client:
        yield client


@pytest.mark.parametrize("name", sorted(PROBES))
def test_npol_fact(npol: npol_probe.Npol, name: str) -> None:
    fact = PROBES[name](npol)
    assert fact.holds, f"npol fact '{fact.name}' no longer holds.\nclaim: {fact.claim}\nseen: {fact.evidence}"


def test_npol_filters_no_real_packets(npol: npol_probe.Npol) -> None:
    fact = npol_probe.real_packets(npol)
    assert fact.holds, f"{fact.claim}\nseen: {fact.evidence}"


def test_mapping_agrees_with_the_evaluator_through_vpps_matcher(npol: npol_probe.Npol) -> None:
    result = npol_probe.differential(npol, cases=25, seed=11)
    figures = result["figures"]
    assert figures.get("cases", 0) >= 20 and figures.get("evaluator_allow", 0) >= 10, figures
    assert not result["disagreements"], "\n".join(result["disagreements"])
