"""A Felix stand-in: runs felix-shim exactly as Felix runs its external dataplane driver.

Felix creates two pipes and starts the driver with the read end of Felix→driver as fd 3 and the
write end of driver→Felix as fd 4; each message is a uint64 little-endian length, then the
protobuf bytes. This class does the same, so tests, benchmarks and the lab exercise the real path.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from vppagent.gen.felix import felixbackend_pb2 as felix

LENGTH = struct.Struct("<Q")

# Run as `python -c AS_FELIX_CHILD READ_FD WRITE_FD PROGRAM ARGS...`: moves the two pipe ends to
# fd 3 and fd 4 (as Felix's cmd.ExtraFiles does) and execs PROGRAM. Both ends are first copied
# above 4, since either may itself be fd 3 or 4; dup2 clears close-on-exec, so 3 and 4 survive.
AS_FELIX_CHILD = """
import fcntl, os, shutil, sys
read_end, write_end = int(sys.argv[1]), int(sys.argv[2])
high_read = fcntl.fcntl(read_end, fcntl.F_DUPFD, 10)
high_write = fcntl.fcntl(write_end, fcntl.F_DUPFD, 10)
os.dup2(high_read, 3)
os.dup2(high_write, 4)
for fd in {read_end, write_end, high_read, high_write} - {3, 4}:
    os.close(fd)
program = sys.argv[3] if os.sep in sys.argv[3] else shutil.which(sys.argv[3]) or sys.argv[3]
os.execv(program, sys.argv[3:])
"""


def frame(msg: felix.ToDataplane) -> bytes:
    data = msg.SerializeToString()
    return LENGTH.pack(len(data)) + data


class FelixStandIn:
    """Start felix-shim on fd 3/4, write ToDataplane frames, collect FromDataplane frames."""

    def __init__(self, agent_socket: Path, shim_command: Sequence[str] | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        to_driver_r, self._to_driver_w = os.pipe()
        self._from_driver_r, from_driver_w = os.pipe()
        command = list(shim_command or [sys.executable, "-m", "felix_shim"])
        child_env = dict(os.environ if env is None else env)
        child_env["VPPAGENT_SOCKET"] = str(agent_socket)
        self._log = open(log_path, "ab") if log_path else None  # noqa: SIM115 - closed in close()

        # A wrapper execs the shim with the pipe ends on fd 3 and 4. Not preexec_fn: the parent
        # runs gRPC and reader threads, and a fork that runs Python code in the child can block on
        # a lock another thread held at fork time (seen: a CI run hung here for 15 minutes).
        self.process = subprocess.Popen(
            [sys.executable, "-c", AS_FELIX_CHILD, str(to_driver_r), str(from_driver_w), *command],
            env=child_env, pass_fds=(to_driver_r, from_driver_w),
            stdout=self._log or subprocess.DEVNULL, stderr=self._log or subprocess.DEVNULL,
        )
        os.close(to_driver_r)
        os.close(from_driver_w)
        self._pipe: BinaryIO | None = os.fdopen(self._to_driver_w, "wb", buffering=1 << 20)
        self._seq = 0
        self.received: list[felix.FromDataplane] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def send(self, msgs: Iterable[felix.ToDataplane]) -> int:
        """Write frames (with Felix's incrementing sequence numbers); returns how many."""
        assert self._pipe is not None, "pipe already closed"
        count = 0
        for msg in msgs:
            self._seq += 1
            msg.sequence_number = self._seq
            self._pipe.write(frame(msg))
            count += 1
        self._pipe.flush()
        return count

    def send_raw(self, data: bytes) -> None:
        assert self._pipe is not None, "pipe already closed"
        self._pipe.write(data)
        self._pipe.flush()

    def _read(self) -> None:
        with os.fdopen(self._from_driver_r, "rb", buffering=0) as pipe:
            while True:
                header = _read_exactly(pipe, LENGTH.size)
                if header is None:
                    return
                body = _read_exactly(pipe, LENGTH.unpack(header)[0])
                if body is None:
                    return
                self.received.append(felix.FromDataplane.FromString(body))

    def statuses(self) -> dict[str, str]:
        """Latest workload endpoint status per workload id, as Felix would record it."""
        out: dict[str, str] = {}
        for msg in list(self.received):
            if msg.HasField("workload_endpoint_status_update"):
                update = msg.workload_endpoint_status_update
                out[update.id.workload_id] = update.status.status
            elif msg.HasField("workload_endpoint_status_remove"):
                out.pop(msg.workload_endpoint_status_remove.id.workload_id, None)
        return out

    def close_pipe(self) -> None:
        """What Felix's death looks like to the driver: EOF on fd 3."""
        if self._pipe is not None:
            with contextlib.suppress(BrokenPipeError):  # the shim may have exited already
                self._pipe.close()
            self._pipe = None

    def close(self, timeout: float = 5.0) -> int | None:
        self.close_pipe()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            return None
        finally:
            if self._log:
                self._log.close()


def _read_exactly(pipe: object, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = pipe.read(n - len(buf))  # type: ignore[attr-defined]
        if not chunk:
            return None
        buf += chunk
    return buf
