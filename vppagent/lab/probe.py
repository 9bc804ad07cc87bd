"""Real connections from pod to pod, many at once.

The network namespace is a per-thread attribute on Linux, so each probe runs on a worker thread
that first enters the source pod's namespace with setns(2); sockets made there stay in it. A probe
binds an ephemeral source port first, so the verdict can be asked about the exact packet sent.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from vppagent.netns import enter_netns


@dataclass(frozen=True)
class Probe:
    source: str  # pod names
    target: str
    source_netns: Path
    target_address: str
    protocol: str  # tcp or udp
    port: int


@dataclass(frozen=True)
class ProbeResult:
    probe: Probe
    connected: bool
    source_port: int
    detail: str  # "ok", "refused", "timeout", "wrong answer: …"
    seconds: float


def _tcp(probe: Probe, sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    sock.connect((probe.target_address, probe.port))
    answer = b""
    while not answer.endswith(b"\n") and len(answer) < 200:
        chunk = sock.recv(200)
        if not chunk:
            break
        answer += chunk
    return answer.decode(errors="replace").strip()


def _udp(probe: Probe, sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    sock.connect((probe.target_address, probe.port))
    sock.send(b"probe\n")
    return sock.recv(200).decode(errors="replace").strip()


def run_probe(probe: Probe, timeout: float) -> ProbeResult:
    started = time.monotonic()
    enter_netns(probe.source_netns)
    kind = socket.SOCK_STREAM if probe.protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("0.0.0.0", 0))
        source_port = sock.getsockname()[1]
        try:
            answer = (_tcp if probe.protocol == "tcp" else _udp)(probe, sock, timeout)
        except TimeoutError:
            detail = "timeout"
        except ConnectionRefusedError:
            detail = "refused"  # a REJECT (ICMP unreachable or TCP reset): every port listens
        except OSError as exc:
            detail = errno.errorcode.get(exc.errno or 0, str(exc)).lower()
        else:
            expected = f"{probe.target} {probe.protocol}/{probe.port}"
            detail = "ok" if answer == expected else f"wrong answer: {answer!r}"
    return ProbeResult(probe, detail == "ok", source_port, detail, time.monotonic() - started)


def run_probes(probes: Iterable[Probe], timeout: float = 1.0, workers: int = 48,
               progress: Callable[[int, int], None] | None = None) -> list[ProbeResult]:
    """All probes in parallel; results in the order given. Threads exit inside pod namespaces,
    which is harmless: each is discarded with the pool."""
    todo = list(probes)
    results: list[ProbeResult | None] = [None] * len(todo)
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(todo))), thread_name_prefix="probe") as pool:
        futures = {pool.submit(run_probe, probe, timeout): i for i, probe in enumerate(todo)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress is not None:
                with contextlib.suppress(Exception):  # a broken terminal must not stop probing
                    progress(done, len(todo))
    return [r for r in results if r is not None]
