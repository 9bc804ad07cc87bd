"""Random messages of each release, through felix-shim's decoder, equal their v3.33 meaning.

Bounded in CI (ROUNDS per release); `-m slow` runs SLOW_ROUNDS per release. Each message is
generated from the release's own schema (every payload type in turn, every field, repeated and
nested), encoded with it, decoded by `FelixDecoder`, and compared with `expected_newest`, the
test's own statement of the same content in v3.33 form; the dataplane state folded from both must
be equal too. A detecting decoder must never rule out the release that actually wrote a message.
"""

from __future__ import annotations

import logging
import random
import time

import pytest

from felix_shim.releases.decoder import FelixDecoder
from felix_shim.releases.differences import RELEASES
from tests.felixver.generate import expected_newest, payload_fields, random_message
from vppagent.state.model import DataplaneState

ROUNDS = 300
SLOW_ROUNDS = 10_000


def fold(msg: object) -> tuple[str, object]:
    state = DataplaneState()
    try:
        state.apply(msg)  # type: ignore[arg-type]
    except Exception as exc:  # the fold judges values; both sides must be judged alike
        return "error", type(exc).__name__
    return "ok", state.tables


def run(release: str, rounds: int, seed: int) -> dict[str, int]:
    rng = random.Random(f"{release}-{seed}")
    seen: dict[str, int] = {}
    for i in range(rounds):
        msg = random_message(release, rng, i)
        raw = msg.SerializeToString()
        expected = expected_newest(release, msg)
        forced = FelixDecoder(release)
        _, got = forced.decode(raw)
        assert got == expected, f"{release} message {i} ({msg.WhichOneof('payload')}): {msg}"
        assert forced.unknown == {}, forced.unknown
        assert fold(got) == fold(expected)
        detecting = FelixDecoder()
        detecting.decode(raw)
        assert release in detecting.candidates or detecting.settled_by, (release, i, detecting.candidates)
        payload = msg.WhichOneof("payload")
        seen[payload] = seen.get(payload, 0) + 1
    return seen


@pytest.mark.parametrize("release", RELEASES)
def test_random_messages_of_each_release_mean_the_same_in_v333(release: str) -> None:
    seen = run(release, ROUNDS, seed=1)
    assert set(seen) == {f.name for f in payload_fields(release)}, "every payload type was generated"


@pytest.mark.slow
@pytest.mark.parametrize("release", RELEASES)
def test_random_messages_long_run(release: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    start = time.monotonic()
    seen = run(release, SLOW_ROUNDS, seed=2)
    print(f"{release}: {sum(seen.values())} messages, {len(seen)} payload types, "
          f"{time.monotonic() - start:.1f} s")
