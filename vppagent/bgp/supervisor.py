"""Run one `bird` in the foreground and restart it with backoff when it exits unexpectedly.

A thread per supervised process: it blocks in `wait()` and only wakes to restart or to exit.
The process is always addressed by the pid we spawned (never by name), and stop() escalates from
SIGTERM to SIGKILL so a wedged daemon cannot outlive the agent.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger(__name__)


class BirdSupervisor:
    def __init__(
        self,
        argv: Sequence[str],
        *,
        restart_argv: Sequence[str] | None = None,
        log_path: Path | None = None,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stable_after: float = 30.0,
    ) -> None:
        self.argv = list(argv)
        # Restarts after a crash may need other flags (graceful-restart recovery, `-R`).
        self.restart_argv = list(restart_argv) if restart_argv is not None else list(argv)
        self.log_path = log_path
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        # A process that ran this long counts as healthy: the next crash restarts it quickly again.
        self.stable_after = stable_after
        self.restarts = 0
        self.last_exit_code: int | None = None
        self.last_error: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._started = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        with self._lock:
            proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, wait: float = 5.0) -> None:
        """Start supervising; returns once the first process was spawned (or failed to spawn)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="bird-supervisor", daemon=True)
        self._thread.start()
        self._started.wait(wait)

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes] | None:
        try:
            if self.log_path is not None:
                with open(self.log_path, "ab") as logfile:
                    return subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as exc:
            self.last_error = f"cannot start {argv[0]}: {exc}"
            log.error("%s", self.last_error)
            return None

    def _loop(self) -> None:
        backoff = self.backoff_initial
        argv = self.argv
        while not self._stopping.is_set():
            proc = self._spawn(argv)
            started_at = time.monotonic()
            with self._lock:
                self._proc = proc
                stopped_meanwhile = self._stopping.is_set()
            self._started.set()
            if stopped_meanwhile:
                # stop() ran between spawn and publishing the process: it could not see it.
                if proc is not None:
                    proc.kill()
                    proc.wait()
                break
            if proc is not None:
                exit_code = proc.wait()
                if self._stopping.is_set():
                    break  # our own SIGTERM: not a crash worth reporting
                self.last_exit_code = exit_code
                self.last_error = f"bird exited with code {self.last_exit_code}"
                log.warning("%s; restarting in %.1f s", self.last_error, backoff)
            if time.monotonic() - started_at >= self.stable_after:
                backoff = self.backoff_initial
            if self._stopping.wait(backoff):
                break
            backoff = min(backoff * 2, self.backoff_max)
            self.restarts += 1
            argv = self.restart_argv

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the process we started (SIGTERM, then SIGKILL) and the supervising thread."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def status(self) -> dict[str, object]:
        return {
            "running": self.running,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_error": self.last_error,
        }
