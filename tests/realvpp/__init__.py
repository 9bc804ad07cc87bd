"""A private, real VPP for the tests marked ``realvpp``.

Each instance has its own runtime directory under ``/run/vpp`` (VPP keeps its sockets, pid file and
log there), its own API and CLI sockets, no DPDK and no hugepages (4k pages), so several fit on a
small machine beside whatever else runs VPP.  It is started in its own session (``setsid``) so a
signal to the test run's process group does not reach it, and stopped by its pid: SIGTERM, then
SIGKILL if it has not gone; its directory is removed afterwards.

``VPPAGENT_TEST_VPP_SOCKET`` names an outside VPP instead; then nothing is started (see
``tests/conftest.py``).  Interfaces VPP would poll (af_packet, memif) are put in interrupt mode with
:meth:`RealVpp.interrupt_mode`; with nothing to poll an idle instance takes ~3 % of a core here
(with ``poll-sleep-usec 100`` it took ~10 %: the main loop then wakes every 100 µs).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

RUNTIME_ROOT = Path("/run/vpp")
API_DIR = Path("/usr/share/vpp/api")
REAL_VPP_SOCKET_ENV = "VPPAGENT_TEST_VPP_SOCKET"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_STARTUP_CONF = """\
unix {{ nodaemon log {dir}/vpp.log cli-listen {dir}/cli.sock pidfile {dir}/vpp.pid }}
socksvr {{ socket-name {dir}/api.sock }}
statseg {{ socket-name {dir}/stats.sock size 8M }}
memory {{ main-heap-size 512M main-heap-page-size 4k }}
buffers {{ buffers-per-numa 16384 page-size 4k }}
plugins {{ plugin default {{ enable }} plugin dpdk_plugin.so {{ disable }} }}
"""

_instances = itertools.count()


def unavailable_reason() -> str | None:
    """Why no private VPP can be started here, or None when one can."""
    if shutil.which("vpp") is None:
        return ("the vpp binary is not installed (install FD.io's vpp and vpp-plugin-core, "
                "or set VPPAGENT_TEST_VPP_SOCKET to a running VPP's API socket)")
    if shutil.which("vppctl") is None:
        return "vppctl is not installed (it comes with FD.io's vpp package)"
    if os.geteuid() != 0:
        return "starting a private VPP needs root (or set VPPAGENT_TEST_VPP_SOCKET to a running VPP)"
    return None


@dataclass
class RealVpp:
    """A real VPP the tests talk to: its API socket and, when we started it, its CLI socket."""

    socket_path: str
    api_dir: str | None
    cli_socket: str | None = None
    started: bool = False

    def cli(self, command: str) -> str:
        """One CLI command through vppctl (only for an instance we started)."""
        if self.cli_socket is None:
            raise RuntimeError("no CLI socket for an outside VPP")
        proc = subprocess.run(["vppctl", "-s", self.cli_socket, command], capture_output=True, text=True,
                              timeout=10, check=True)
        return proc.stdout

    def interrupt_mode(self, interface_name: str) -> None:
        """Stop VPP from polling ``interface_name`` (af_packet, memif): it then sleeps when idle."""
        self.cli(f"set interface rx-mode {interface_name} interrupt")


class PrivateVpp:
    """One VPP process started for the tests; :meth:`start` then :meth:`stop` (also a context manager)."""

    def __init__(self, name: str | None = None, extra_config: str = "") -> None:
        """`extra_config`: more startup.conf sections (e.g. ``api-trace { on }``)."""
        self.name = name or f"vppagent-test-{os.getpid()}-{next(_instances)}"
        self.extra_config = extra_config
        self.dir = RUNTIME_ROOT / self.name
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_socket(self) -> Path:
        return self.dir / "api.sock"

    @property
    def cli_socket(self) -> Path:
        return self.dir / "cli.sock"

    def start(self) -> RealVpp:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        conf = self.dir / "startup.conf"
        conf.write_text(_STARTUP_CONF.format(dir=self.dir) + self.extra_config)
        return self._launch()

    def crash(self) -> None:
        """SIGKILL by pid, as a crash: VPP cleans nothing up; the runtime directory stays for :meth:`restart`."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)

    def restart(self) -> RealVpp:
        """Start again after :meth:`crash`, on the same sockets (the stale ones are removed first)."""
        if self.proc is not None:
            raise RuntimeError(f"vpp {self.name} is still running (pid {self.proc.pid})")
        for stale in (self.api_socket, self.cli_socket):
            stale.unlink(missing_ok=True)
        return self._launch()

    def _launch(self) -> RealVpp:
        conf = self.dir / "startup.conf"
        with open(self.dir / "stdout.log", "ab") as out:  # appended across restarts
            self.proc = subprocess.Popen(["vpp", "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return RealVpp(str(self.api_socket), str(API_DIR) if API_DIR.is_dir() else None,
                       str(self.cli_socket), started=True)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vpp exited with {self.proc.returncode}: {self._log_tail()}")
            if self.api_socket.exists() and self.cli_socket.exists():
                answer = subprocess.run(["vppctl", "-s", str(self.cli_socket), "show version"],
                                        capture_output=True, text=True, timeout=10, check=False)
                if answer.returncode == 0 and answer.stdout.startswith("vpp v"):
                    return
            time.sleep(0.05)
        raise RuntimeError(f"vpp did not answer on {self.cli_socket} within {START_TIMEOUT} s: {self._log_tail()}")

    def _log_tail(self) -> str:
        lines: list[str] = []
        for log in (self.dir / "stdout.log", self.dir / "vpp.log"):
            with contextlib.suppress(OSError):
                lines += log.read_text(errors="replace").splitlines()[-10:]
        return " | ".join(lines) or "(no log)"

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; then the runtime directory goes."""
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
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RealVpp:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def outside_vpp() -> RealVpp | None:
    """The VPP named by ``VPPAGENT_TEST_VPP_SOCKET``, if set; raises if it names nothing."""
    socket_path = os.environ.get(REAL_VPP_SOCKET_ENV)
    if not socket_path:
        return None
    if not Path(socket_path).exists():
        raise FileNotFoundError(f"{REAL_VPP_SOCKET_ENV}={socket_path} does not exist")
    api_dir = os.environ.get("VPPAGENT_TEST_VPP_API_DIR", str(API_DIR))
    return RealVpp(socket_path, api_dir if Path(api_dir).is_dir() else None)
