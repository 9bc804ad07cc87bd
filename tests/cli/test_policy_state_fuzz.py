"""`policy trace` / `compile` on valid states with one value spoiled: a verdict, or one line and exit 2.

Each case is a random valid state (vppagent.policy.generate) written as the JSON a user would save,
with some string or number leaves replaced by values Felix would never send. Whatever the
spoiling hits, the command must answer (0, 1 on a disagreement) or refuse in one line with exit 2;
an exception escaping is the failure this test looks for.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from vppagent.policy.cli import main
from vppagent.policy.generate import random_case, random_packets

SPOILED_TEXT = ["10.0.0.300/32", "10.0.1.2/99", "::/129", "", "x", "-1", "65536", "10.65.0.2", "fd65::2/64",
                "\u00e9", "1e400", "Pass", "allow"]
SPOILED_NUMBER = [-1, 2**32, 65536, 0, 1e300]


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    if isinstance(node, dict):
        return [leaf for key, value in node.items() for leaf in _leaves(value, (*path, key))]
    if isinstance(node, list):
        return [leaf for i, value in enumerate(node) for leaf in _leaves(value, (*path, i))]
    return [(path, node)]


def _spoil(doc: list[Any], rng: random.Random, how_many: int) -> None:
    leaves = [(p, v) for p, v in _leaves(doc) if isinstance(v, str | int | float) and not isinstance(v, bool)]
    for path, value in rng.sample(leaves, min(how_many, len(leaves))):
        target = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = rng.choice(SPOILED_TEXT if isinstance(value, str) else SPOILED_NUMBER)


@pytest.mark.parametrize("seed", range(40))
def test_a_spoiled_state_gets_an_answer_or_one_line(seed: int, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    rng = random.Random(seed)
    case = random_case(rng)
    packets = random_packets(rng, case, 5)
    doc = [json_format.MessageToDict(m, preserving_proto_field_name=True) for m in case.messages]
    _spoil(doc, rng, 1 + seed % 4)
    state = tmp_path / "state.json"
    state.write_text(json.dumps(doc))
    common = ["--state", str(state), "--endpoint", str(case.endpoint), "--direction", case.direction]
    for argv in (["trace", *common, *(a for p in packets for a in ("--packet", str(p)))], ["compile", *common]):
        rc = main(argv)
        out, err = capsys.readouterr()
        assert rc in (0, 1, 2), (argv[0], rc, err)
        if rc == 2:
            assert err.count("\n") == 1 and out == "", (argv[0], err)
