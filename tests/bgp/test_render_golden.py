"""Rendered bird.conf against reviewed golden files; every golden file must also pass `bird -p`.

Regenerate after an intended change with VPPAGENT_UPDATE_GOLDEN=1 and review the diff.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.bgp import states as m
from tests.bgp.scenarios import SCENARIOS
from vppagent.bgp.model import build_bgp_inputs
from vppagent.bgp.render import render_bird_config

GOLDEN = Path(__file__).parent / "golden"


def render(name: str) -> str:
    scenario = SCENARIOS[name]()
    return render_bird_config(build_bgp_inputs(scenario.state(), scenario.bgp_config()))


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_matches_golden(name: str) -> None:
    text = render(name)
    path = GOLDEN / f"{name}.conf"
    if os.environ.get("VPPAGENT_UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing {path}; run with VPPAGENT_UPDATE_GOLDEN=1 and review it"
    assert text == path.read_text()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_is_valid_bird(name: str, bird_binary: str, tmp_path: Path) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(render(name))
    proc = subprocess.run([bird_binary, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_message_order_does_not_change_bytes(name: str) -> None:
    """Felix's order within a batch is not ours to rely on: same state, same bytes."""
    scenario = SCENARIOS[name]()
    # The config message must stay first only so FelixHostname is there; the rest is shuffled.
    head, rest = scenario.messages[:1], list(scenario.messages[1:])
    random.Random(7).shuffle(rest)
    shuffled = m.state_of(head + rest)
    assert render_bird_config(build_bgp_inputs(shuffled, scenario.bgp_config())) == render(name)


def test_mesh_golden_has_one_session_per_other_node() -> None:
    text = render("mesh3")
    assert "protocol bgp Mesh_198_18_0_1 " in text and "protocol bgp Mesh_198_18_0_3 " in text
    assert "Mesh_198_18_0_2" not in text  # not with itself
