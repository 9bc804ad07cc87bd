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

import os
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


# -- npol behind cnat's session path (VPP master after 26.06) -------------------------------------
PLUGIN_PATH_ENV = "VPPAGENT_TEST_NPOL_PLUGIN_PATH"


@pytest.fixture(scope="module")
def npol_with_hook() -> Iterator[npol_probe.Npol]:
    """A VPP whose npol filters packets: the installed one once a release has the cnat hook, or one
    loading master's cnat and npol plugins from $VPPAGENT_TEST_NPOL_PLUGIN_PATH."""
    problem = vpp_problem()
    if problem is not None:
        pytest.skip(f"no private VPP for the npol facts: {problem}")
    plugin_path = os.environ.get(PLUGIN_PATH_ENV) or None
    with npol_probe.Npol(f"npol-hook-{os.getpid()}", plugin_path=plugin_path) as client:
        if "unknown input" in client.cli("show cnat feature-hooks"):
            pytest.skip("this VPP's cnat has no slow-path hooks, so npol filters no packets (VPP 26.06); set "
                        f"{PLUGIN_PATH_ENV} to a plugin directory with master's cnat and npol (docs/npol.md)")
        yield client


def test_npol_behind_cnat_sessions(npol_with_hook: npol_probe.Npol) -> None:
    facts = [*npol_probe.hook_facts(npol_with_hook), *npol_probe.hook_update_window(npol_with_hook, seconds=2)]
    wrong = [f"{f.name}: {f.claim}\n  seen: {f.evidence}" for f in facts if not f.holds]
    assert not wrong, "\n".join(wrong)


def test_mapping_agrees_with_the_evaluator_on_real_packets(npol_with_hook: npol_probe.Npol) -> None:
    result = npol_probe.hook_differential(npol_with_hook, cases=8, seed=4)
    figures = result["figures"]
    assert figures.get("packets", 0) >= 40 and figures.get("arrived", 0) >= 2, figures
    assert not result["disagreements"], "\n".join(result["disagreements"])
