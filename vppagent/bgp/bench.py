"""Render + validate timings for large clusters: `python -m vppagent.bgp.bench`.

Scenarios (from node0's point of view, states built by folding Felix messages):
- mesh500: 500 nodes in a full mesh, one /26 block each;
- blocks5000: 100 nodes, 5,000 blocks across the cluster (50 of them this node's);
- local5000: 100 nodes, 5,000 blocks all affine to this node (worst case for the static protocol).
"""

from __future__ import annotations

import argparse
import ipaddress
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from vppagent.bgp.config import BgpConfig
from vppagent.bgp.model import build_bgp_inputs
from vppagent.bgp.render import render_bird_config
from vppagent.command_line import OneLineParser, positive_int
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

POOL = ipaddress.IPv4Network("10.0.0.0/8")


def _node_ip(n: int) -> str:
    return str(ipaddress.IPv4Address("172.16.0.1") + n)


def _messages(nodes: int, blocks: int, local_share: str) -> Iterator[felix.ToDataplane]:
    yield felix.ToDataplane(config_update=felix.ConfigUpdate(config={"FelixHostname": "node0"}))
    yield felix.ToDataplane(
        ipam_pool_update=felix.IPAMPoolUpdate(id="pool", pool=felix.IPAMPool(cidr=str(POOL), ipip_mode="Never"))
    )
    for n in range(nodes):
        yield felix.ToDataplane(
            host_metadata_update=felix.HostMetadataUpdate(hostname=f"node{n}", ipv4_addr=_node_ip(n))
        )
    subnets = POOL.subnets(new_prefix=26)
    for b in range(blocks):
        owner = 0 if local_share == "all" else b % nodes
        yield felix.ToDataplane(
            route_update=felix.RouteUpdate(
                types=felix.LOCAL_WORKLOAD if owner == 0 else felix.REMOTE_WORKLOAD,
                dst=str(next(subnets)),
                dst_node_name=f"node{owner}",
                dst_node_ip=_node_ip(owner),
            )
        )


SCENARIOS = {
    "mesh500": (500, 500, "spread"),
    "blocks5000": (100, 5000, "spread"),
    "local5000": (100, 5000, "all"),
}


def run(name: str, bird: str | None, repeat: int) -> str:
    nodes, blocks, share = SCENARIOS[name]
    started = time.perf_counter()
    state = DataplaneState()
    for msg in _messages(nodes, blocks, share):
        state.apply(msg)
    fold_s = time.perf_counter() - started
    config = BgpConfig()
    best_inputs = best_render = float("inf")
    text = ""
    for _ in range(repeat):
        t0 = time.perf_counter()
        inputs = build_bgp_inputs(state, config)
        t1 = time.perf_counter()
        text = render_bird_config(inputs)
        t2 = time.perf_counter()
        best_inputs, best_render = min(best_inputs, t1 - t0), min(best_render, t2 - t1)
    line = (
        f"{name:11s} nodes={nodes:4d} blocks={blocks:5d} local={len(inputs.local_blocks):5d} "
        f"sessions={len(inputs.peers):4d} bytes={len(text.encode()):8d} fold={fold_s * 1000:7.1f} ms "
        f"inputs={best_inputs * 1000:7.1f} ms render={best_render * 1000:7.1f} ms"
    )
    if bird is not None:
        with tempfile.TemporaryDirectory() as tmp:
            conf = Path(tmp) / "bird.conf"
            conf.write_text(text)
            best_validate = float("inf")
            for _ in range(repeat):
                t0 = time.perf_counter()
                proc = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=60)
                best_validate = min(best_validate, time.perf_counter() - t0)
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: bird rejected the config: {proc.stderr.strip()}")
        line += f" validate={best_validate * 1000:7.1f} ms"
    return line


def main(argv: list[str] | None = None) -> None:
    parser = OneLineParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bird", default=shutil.which("bird"), help="bird binary for `bird -p` (default: PATH)")
    parser.add_argument("--repeat", type=positive_int, default=3, help="best of N runs")
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.bird is None:
        print("bird not found: validation times skipped")
    for name in args.scenarios or SCENARIOS:
        print(run(name, args.bird, args.repeat), flush=True)


if __name__ == "__main__":
    main()
