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

import itertools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vppagent.vpprun import START_TIMEOUT, VppProcess, vpp_problem

RUNTIME_ROOT = Path("/run/vpp")
API_DIR = Path("/usr/share/vpp/api")
REAL_VPP_SOCKET_ENV = "VPPAGENT_TEST_VPP_SOCKET"

_instances = itertools.count()


def unavailable_reason() -> str | None:
    """Why no private VPP can be started here, or None when one can."""
    reason = vpp_problem()
    return None if reason is None else f"{reason} (or set {REAL_VPP_SOCKET_ENV} to a running VPP's API socket)"


def pods_unavailable_reason() -> str | None:
    """Why no private VPP with pods around it (namespaces and veths made with `ip`) can be set up
    here, or None when it can: what the real-packet tests need before anything else."""
    reason = unavailable_reason()
    if reason is not None:
        return reason
    if shutil.which("ip") is None:
        return "iproute2 (ip) is not installed"
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
    """One VPP process started for the tests (the package's launcher, vppagent.vpprun, in a directory
    of its own under /run/vpp); :meth:`start` then :meth:`stop` (also a context manager)."""

    def __init__(self, name: str | None = None, extra_config: str = "") -> None:
        """`extra_config`: more startup.conf sections (e.g. ``api-trace { on }``)."""
        self.name = name or f"vppagent-test-{os.getpid()}-{next(_instances)}"
        self.dir = RUNTIME_ROOT / self.name
        self.vpp = VppProcess(self.dir, extra_config=extra_config)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.vpp.proc

    @property
    def api_socket(self) -> Path:
        return self.vpp.api_socket

    @property
    def cli_socket(self) -> Path:
        return self.vpp.cli_socket

    def start(self) -> RealVpp:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=False, mode=0o700)
        return self._launch()

    def crash(self) -> None:
        """SIGKILL by pid, as a crash; the runtime directory stays for :meth:`restart`."""
        self.vpp.crash()

    def restart(self) -> RealVpp:
        """Start again after :meth:`crash`, on the same sockets."""
        return self._launch()

    def _launch(self) -> RealVpp:
        self.vpp.start()
        try:
            self.vpp.wait_ready(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise
        return RealVpp(str(self.api_socket), str(API_DIR) if API_DIR.is_dir() else None,
                       str(self.cli_socket), started=True)

    def stop(self) -> None:
        """SIGTERM by pid, SIGKILL if it lingers; then the runtime directory goes."""
        self.vpp.stop(remove_dir=True)

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
