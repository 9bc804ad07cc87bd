"""Throughput of Felix's pipe → felix-shim → gRPC → agent (dry-run driver), against raw decoding.

    python bench/shim_throughput.py [--messages N]

Builds a realistic mix (a snapshot of IP sets, policies, profiles and endpoints, InSync, then
deltas: mostly IP set member changes, some policy and endpoint updates), writes it into a real
felix-shim on fd 3 as Felix would, and times until the agent has folded every message. In the
same run it times plain `ToDataplane.FromString` over the same frames: the baseline no pipeline
can beat. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn, frame
from vppagent.server.client import get_state


def workload_mix(total: int, rng: random.Random) -> list[felix.ToDataplane]:
    msgs = [b.config({"ReportingIntervalSecs": "30"})]
    n_sets, n_pols, n_eps = 200, 500, 1000
    msgs += [b.ipset(f"s:{i}", [f"10.{i // 250}.{i % 250}.{j}/32" for j in range(20)]) for i in range(n_sets)]
    msgs += [b.policy(f"pol-{i}", namespace=f"ns{i % 20}", inbound=[
        b.rule("allow", protocol="tcp", dst_ports=[80 + i % 10], src_ip_set_ids=[f"s:{i % n_sets}"]),
        b.rule("deny", protocol="udp", src_net=["192.168.0.0/16"])]) for i in range(n_pols)]
    msgs += [b.profile(f"kns.ns{i}", inbound=[b.rule("allow")], outbound=[b.rule("allow")]) for i in range(20)]
    msgs += [b.workload(f"ns{i % 20}/pod{i}", f"cali{i:08x}", ipv4=[f"10.200.{i // 250}.{i % 250}/32"],
                        tiers=[b.tier("default", ingress=[f"pol-{i % n_pols}"], namespace=f"ns{i % 20}")],
                        profiles=[f"kns.ns{i % 20}"]) for i in range(n_eps)]
    msgs.append(b.in_sync())
    while len(msgs) < total:
        roll = rng.random()
        i = rng.randrange(n_sets)
        if roll < 0.7:
            msgs.append(b.ipset_delta(f"s:{i}", added=[f"10.99.{rng.randrange(250)}.{rng.randrange(250)}"]))
        elif roll < 0.85:
            p = rng.randrange(n_pols)
            msgs.append(b.policy(f"pol-{p}", namespace=f"ns{p % 20}", inbound=[
                b.rule("allow", protocol="tcp", dst_ports=[rng.randrange(1, 65535)], src_ip_set_ids=[f"s:{i}"])]))
        else:
            e = rng.randrange(n_eps)
            p = rng.randrange(n_pols // 20) * 20 + e % 20  # a policy of the endpoint's own namespace
            msgs.append(b.workload(f"ns{e % 20}/pod{e}", f"cali{e:08x}", ipv4=[f"10.200.{e // 250}.{e % 250}/32"],
                                   tiers=[b.tier("default", ingress=[f"pol-{p}"], namespace=f"ns{e % 20}")],
                                   profiles=[f"kns.ns{e % 20}"]))
    return msgs[:total]


def agent_messages(sock: Path) -> int:
    return int(get_state(sock)["counters"]["messages"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    msgs = workload_mix(args.messages, random.Random(args.seed))
    frames = [frame(m) for m in msgs]
    total_bytes = sum(map(len, frames))

    start = time.perf_counter()
    for f in frames:
        felix.ToDataplane.FromString(f[8:])
    raw_rate = len(frames) / (time.perf_counter() - start)

    with tempfile.TemporaryDirectory(prefix="vppagent-bench-") as tmp:
        sock = Path(tmp) / "agent.sock"
        agent = subprocess.Popen([sys.executable, "-m", "vppagent.cli", "run", "--driver", "dry-run",
                                  "--socket", str(sock), "--cni-socket", str(Path(tmp) / "cni.sock"),
                                  "--log-level", "warning"])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    agent_messages(sock)
                    break
                except grpc.RpcError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            shim = FelixStandIn(sock, log_path=Path(tmp) / "shim.log")
            time.sleep(0.3)  # let the shim connect, so connection setup is not timed
            start = time.perf_counter()
            writer = threading.Thread(target=shim.send_raw, args=(b"".join(frames),))
            writer.start()
            while agent_messages(sock) < len(frames):
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
            held = get_state(sock)["held_back"]
            assert not held, f"the mix must be valid, but the agent held back {held[:3]}"
            writer.join()
            shim.close()
        finally:
            agent.terminate()
            agent.wait(10)
    e2e_rate = len(frames) / elapsed
    print(f"messages            {len(frames):>12,}  ({total_bytes / 1e6:.1f} MB of frames)")
    print(f"raw protobuf decode {raw_rate:>12,.0f} msgs/s")
    print(f"felix-shim → agent  {e2e_rate:>12,.0f} msgs/s  ({elapsed:.2f} s end to end, agent folded all)")
    print(f"ratio e2e/raw       {e2e_rate / raw_rate:>12.3f}")
    print(f"target ≥ 50,000 msgs/s end to end: {'met' if e2e_rate >= 50_000 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
