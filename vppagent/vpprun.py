"""Start and stop a private VPP: its own runtime directory, sockets and log, no DPDK, no hugepages.

Used by the lab (one VPP per node, inside the node's network namespace), the VPP benchmark and the
tests' private VPP (tests/realvpp). Each instance keeps everything under `runtime_dir` (API, CLI and stats
sockets, pid file, log, the startup.conf written here), so several run side by side. It runs in its
own session, so a signal to the caller's process group does not reach it, and is stopped by its
pid: SIGTERM, then SIGKILL if it lingers.

Cost when idle: only the main thread (no workers), and interfaces VPP would poll (af_packet) should
be put in interrupt mode (`interrupt_mode`): with nothing to poll the main loop sleeps until
something happens, so three instances fit on two cores (`poll-sleep-usec` would make it wake every
interval instead, which costs more).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 10.0

_STARTUP_CONF = """\
unix {{ nodaemon log {dir}/vpp.log cli-listen {dir}/cli.sock pidfile {dir}/vpp.pid runtime-dir {dir} }}
socksvr {{ socket-name {dir}/api.sock }}
statseg {{ socket-name {dir}/stats.sock size {stats} }}
memory {{ main-heap-size {heap} main-heap-page-size 4k }}
buffers {{ buffers-per-numa {buffers} page-size 4k }}
plugins {{ plugin default {{ enable }} plugin dpdk_plugin.so {{ disable }} }}
"""


class VppStartError(RuntimeError):
    """VPP could not be started (the message says why and quotes its log)."""


def vpp_problem() -> str | None:
    """None when a private VPP can be started here, else why not."""
    if shutil.which("vpp") is None:
        return "the vpp binary is not installed (FD.io's packages: vpp and vpp-plugin-core)"
    if shutil.which("vppctl") is None:
        return "vppctl is not installed (it comes with FD.io's vpp package)"
    if os.geteuid() != 0:
        return "starting VPP needs root"
    return None


class VppProcess:
    """One VPP: `start()`, `wait_ready()`, `cli()`, `stop()`; `netns` runs it in that namespace."""

    def __init__(self, runtime_dir: Path, netns: str | None = None, heap: str = "512M",
                 buffers: int = 16384, stats: str = "8M", extra_config: str = "") -> None:
        """`stats`: the statistics segment, a few KB per interface (8M ran out near 1,870 loopbacks);
        `extra_config`: more startup.conf sections (e.g. ``api-trace { on }``)."""
        self.dir = runtime_dir
        self.extra_config = extra_config
        self.stats = stats
        self.netns = netns
        self.heap = heap
        self.buffers = buffers
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_socket(self) -> Path:
        return self.dir / "api.sock"

    @property
    def cli_socket(self) -> Path:
        return self.dir / "cli.sock"

    @property
    def log(self) -> Path:
        return self.dir / "vpp.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> int:
        """Start VPP without waiting for it (several start in parallel); returns its pid. Again
        after `crash()`, on the same sockets (a crashed VPP leaves them behind)."""
        reason = vpp_problem()
        if reason is not None:
            raise VppStartError(reason)
        if self.proc is not None and self.proc.poll() is None:
            raise VppStartError(f"vpp in {self.dir} is still running (pid {self.proc.pid})")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        for stale in (self.api_socket, self.cli_socket):
            stale.unlink(missing_ok=True)
        conf = self.dir / "startup.conf"
        conf.write_text(_STARTUP_CONF.format(dir=self.dir, heap=self.heap, buffers=self.buffers, stats=self.stats)
                        + self.extra_config)
        # `ip netns exec` execs vpp in place, so the pid is VPP's own.
        argv = [*(["ip", "netns", "exec", self.netns] if self.netns else []), "vpp", "-c", str(conf)]
        with open(self.dir / "stdout.log", "ab") as out:  # appended across restarts
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self.proc.pid

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until the API socket exists and the CLI answers `show version`."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise VppStartError(f"vpp exited with {self.proc.returncode}: {self.log_tail()}")
            if self.api_socket.exists() and self.cli_socket.exists():
                answer = subprocess.run(["vppctl", "-s", str(self.cli_socket), "show version"],
                                        capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False)
                if answer.returncode == 0 and answer.stdout.startswith("vpp v"):
                    return
            time.sleep(0.05)
        raise VppStartError(f"vpp did not answer on {self.cli_socket} within {timeout:.0f} s: {self.log_tail()}")

    def cli(self, command: str) -> str:
        """One CLI command. VPP's CLI answers errors as text with exit status 0 (`unknown input …`,
        or the command's own words then `: reason`), so such an answer raises."""
        proc = subprocess.run(["vppctl", "-s", str(self.cli_socket), command], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, check=False)
        text = proc.stdout.strip()
        first = text.splitlines()[0] if text else ""
        head = first.split(":", 1)[0]
        if proc.returncode != 0 or first.startswith("unknown input") or (":" in first and command.startswith(head)):
            raise VppStartError(f"vppctl {command!r}: {text or proc.stderr.strip() or proc.returncode}")
        return text

    def interrupt_mode(self, interface: str) -> None:
        """Stop VPP polling `interface` (af_packet): it then sleeps when idle."""
        self.cli(f"set interface rx-mode {interface} interrupt")

    def log_tail(self, lines: int = 10) -> str:
        out: list[str] = []
        for path in (self.dir / "stdout.log", self.log):
            with contextlib.suppress(OSError):
                out += path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(out) or "(no log)"

    def crash(self) -> None:
        """SIGKILL by pid, as a crash: VPP cleans nothing up (its sockets stay until the next start)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)

    def stop(self, remove_dir: bool = False) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; the runtime directory goes if asked."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT)
        if remove_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> VppProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop(remove_dir=True)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop(remove_dir=True)
