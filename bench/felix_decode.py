"""Cost of reading Felix's frames per release: felix-shim's decoder against a bare v3.33 parse.

    python bench/felix_decode.py [--rounds N]

For each release, its hand-written stream (tests/felixver/streams.py) is decoded once to settle
detection, then its workload-endpoint and IP-set frames are decoded `rounds` times each. Prints
microseconds per frame and the candidates the stream left (two candidates read changed payloads
twice). The v3.33 bare parse is the floor.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the hand-written streams live in tests/

from felix_shim.releases.decoder import FelixDecoder
from felix_shim.releases.differences import RELEASES
from tests.felixver.streams import stream
from vppagent.gen.felix import felixbackend_pb2 as felix


def per_frame(fn: object, data: bytes, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        fn(data)  # type: ignore[operator]
    return (time.perf_counter() - start) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5000)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    print(f"{'release':<8} {'candidates':<12} {'endpoint µs':>12} {'ip set µs':>10}")
    for release in RELEASES:
        messages = stream(release, release, calico_version=False)
        frames = {m.WhichOneof("payload"): m.SerializeToString() for m in messages}
        decoder = FelixDecoder()
        for m in messages:
            decoder.decode(m.SerializeToString())
        wep = per_frame(decoder.decode, frames["workload_endpoint_update"], args.rounds)
        ipset = per_frame(decoder.decode, frames["ipset_update"], args.rounds)
        print(f"{release:<8} {','.join(decoder.candidates):<12} {wep:>12.1f} {ipset:>10.1f}")
    newest = stream("3.33", "3.33")
    frames = {m.WhichOneof("payload"): m.SerializeToString() for m in newest}
    wep = per_frame(felix.ToDataplane.FromString, frames["workload_endpoint_update"], args.rounds)
    ipset = per_frame(felix.ToDataplane.FromString, frames["ipset_update"], args.rounds)
    print(f"{'parse':<8} {'3.33 only':<12} {wep:>12.1f} {ipset:>10.1f}")


if __name__ == "__main__":
    main()
