"""Install a rendered bird.conf safely and make BIRD use it.

apply(text): unchanged bytes -> nothing; else temp file next to the target -> `bird -p -c temp`
(parse only) -> atomic rename -> `birdc -s SOCKET configure`. A config BIRD rejects never replaces
the last good file, so a running or restarting BIRD always reads something it accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vppagent.bgp.supervisor import BirdSupervisor

log = logging.getLogger(__name__)

# birdc -v prefixes replies with 4-digit codes; these mean the new config was taken.
_RECONFIGURED_CODES = {"0003", "0004", "0019", "0025"}
_ERROR_CODE_RE = re.compile(r"^[89]\d{3}[ -]")
_CODE_RE = re.compile(r"^(\d{4})[ -]")


@dataclass(frozen=True)
class BgpApplyResult:
    ok: bool
    changed: bool
    error: str | None = None
    reloaded: bool = False
    render_seconds: float | None = None
    validate_seconds: float | None = None
    reload_seconds: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)


def _first_lines(text: str, limit: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[:limit] if line.strip())


class BirdApplier:
    """Owns one bird.conf path and one BIRD control socket; optionally the bird process too."""

    def __init__(
        self,
        config_path: Path | str,
        socket_path: Path | str,
        bird_binary: str = "bird",
        birdc_binary: str = "birdc",
        run: bool = False,
        *,
        command_prefix: Sequence[str] = (),
        log_path: Path | str | None = None,
        timeout: float = 10.0,
        restart_backoff: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self.config_path = Path(config_path).absolute()
        self.socket_path = Path(socket_path).absolute()
        self.bird_binary = bird_binary
        self.birdc_binary = birdc_binary
        self.run = run
        # Prepended to the supervised bird's argv only (e.g. `ip netns exec NS`): validation and
        # birdc work from anywhere since they only touch files and the unix socket.
        self.command_prefix = list(command_prefix)
        self.log_path = Path(log_path) if log_path is not None else self.config_path.with_suffix(".log")
        self.timeout = timeout
        self.restart_backoff = restart_backoff
        self.supervisor: BirdSupervisor | None = None
        self.last_result: BgpApplyResult | None = None
        self.last_apply_at: float | None = None
        self._reload_pending = False

    # -- applying ----------------------------------------------------------------------------
    def apply(self, text: str) -> BgpApplyResult:
        result = self._apply(text.encode())
        self.last_result = result
        self.last_apply_at = time.time()
        if not result.ok:
            log.warning("bird config not applied: %s", result.error)
        return result

    def _apply(self, data: bytes) -> BgpApplyResult:
        if self._current_bytes() == data:
            if not self._reload_pending and self._bird_started():
                return BgpApplyResult(ok=True, changed=False)
            reloaded, error, reload_s = self._reload()
            return BgpApplyResult(ok=error is None, changed=False, error=error, reloaded=reloaded,
                                  reload_seconds=reload_s)
        try:
            return self._write_and_reload(data)
        except OSError as exc:
            # A --bird-config path that cannot hold the file: BIRD keeps what it has, and the
            # error is in the BGP status (and the log) instead of ending the agent's apply loop.
            return BgpApplyResult(ok=False, changed=False,
                                  error=f"cannot write {self.config_path}: {exc.strerror or exc}")

    def _write_and_reload(self, data: bytes) -> BgpApplyResult:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        # Same directory, so the rename is atomic; 0600 because the file may carry passwords.
        fd, tmp_name = tempfile.mkstemp(prefix=f".{self.config_path.name}.", suffix=".tmp",
                                        dir=self.config_path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as tmp_file:
                tmp_file.write(data)
                tmp_file.flush()
                os.fsync(tmp_file.fileno())
            started = time.monotonic()
            error = self.validate(tmp)
            validate_s = time.monotonic() - started
            if error is not None:
                return BgpApplyResult(ok=False, changed=False, error=error, validate_seconds=validate_s)
            os.replace(tmp, self.config_path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self._reload_pending = True
        reloaded, error, reload_s = self._reload()
        return BgpApplyResult(ok=error is None, changed=True, error=error, reloaded=reloaded,
                              validate_seconds=validate_s, reload_seconds=reload_s)

    def _current_bytes(self) -> bytes | None:
        try:
            return self.config_path.read_bytes()
        except OSError:
            return None

    def validate(self, path: Path) -> str | None:
        """None if `bird -p` accepts the file, else BIRD's message (with the temp name replaced)."""
        try:
            proc = _run([self.bird_binary, "-p", "-c", str(path)], self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot validate with {self.bird_binary}: {exc}"
        if proc.returncode == 0:
            return None
        message = _first_lines(proc.stderr + proc.stdout) or f"exit code {proc.returncode}"
        return "bird rejected the new config: " + message.replace(str(path), "<new bird.conf>")

    def _bird_started(self) -> bool:
        return not self.run or (self.supervisor is not None and self.supervisor.running)

    def _reload(self) -> tuple[bool, str | None, float]:
        started = time.monotonic()
        if self.run and self.supervisor is None:
            error = self._start_bird()
            if error is None:
                self._reload_pending = False
            return error is None, error, time.monotonic() - started
        error = self.configure()
        if error is None:
            self._reload_pending = False
        return error is None, error, time.monotonic() - started

    def configure(self) -> str | None:
        """`birdc configure`: None on success, else why it failed."""
        reply, error = self._birdc("configure")
        if error is not None:
            return f"reload failed: {error}"
        codes = {m.group(1) for line in reply.splitlines() if (m := _CODE_RE.match(line))}
        if any(_ERROR_CODE_RE.match(line) for line in reply.splitlines()) or not codes & _RECONFIGURED_CODES:
            return "reload failed: " + _first_lines(reply)
        return None

    def _birdc(self, *command: str, timeout: float | None = None) -> tuple[str, str | None]:
        if not self.socket_path.exists():
            return "", f"no BIRD control socket at {self.socket_path}"
        argv = [self.birdc_binary, "-v", "-s", str(self.socket_path), *command]
        try:
            proc = _run(argv, timeout or self.timeout)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return "", f"{self.birdc_binary} {' '.join(command)}: {exc}"
        if proc.returncode != 0:
            return proc.stdout, _first_lines(proc.stderr + proc.stdout) or f"exit code {proc.returncode}"
        return proc.stdout, None

    # -- the supervised bird (run=True) --------------------------------------------------------
    def _start_bird(self) -> str | None:
        if self._birdc("show", "status", timeout=2.0)[1] is None:
            # Someone else's bird already owns this socket; two daemons would fight over the
            # sessions, so reuse it instead of starting ours.
            log.warning("bird already running on %s: reloading it instead of starting one", self.socket_path)
            return self.configure()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        base = [*self.command_prefix, self.bird_binary, "-f", "-c", str(self.config_path),
                "-s", str(self.socket_path)]
        self.supervisor = BirdSupervisor(
            base,
            # After a crash, keep the kernel routes until the sessions have converged again.
            restart_argv=[*base, "-R"],
            log_path=self.log_path,
            backoff_initial=self.restart_backoff[0],
            backoff_max=self.restart_backoff[1],
        )
        self.supervisor.start()
        return self.supervisor.last_error if not self.supervisor.running else None

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """True once BIRD answers on the control socket."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._birdc("show", "status", timeout=1.0)[1] is None:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None

    # -- reporting -----------------------------------------------------------------------------
    def protocols(self) -> tuple[list[dict[str, str]], str | None]:
        """BGP sessions from `birdc show protocols`: name, state, since, info (e.g. Established)."""
        reply, error = self._birdc("show", "protocols", timeout=2.0)
        if error is not None:
            return [], error
        sessions = []
        for line in reply.splitlines():
            # birdc -v rows: "1002-name Proto table state since info" or the same after 5 spaces.
            fields = line[5:].split()
            # Rendered configs set `timeformat protocol iso long`, so "since" is a date and a time.
            if len(fields) >= 6 and fields[1] == "BGP":
                sessions.append({"name": fields[0], "state": fields[3], "since": " ".join(fields[4:6]),
                                 "info": " ".join(fields[6:])})
        return sessions, None

    def status(self) -> dict[str, Any]:
        """For `vppagent state`, under its `bgp` key."""
        current = self._current_bytes()
        report: dict[str, Any] = {
            "config_path": str(self.config_path),
            "socket_path": str(self.socket_path),
            "config_sha256": hashlib.sha256(current).hexdigest() if current is not None else None,
            "last_apply": self.last_result.to_dict() if self.last_result else None,
            "last_apply_at": self.last_apply_at,
            "reload_pending": self._reload_pending,
        }
        if self.supervisor is not None:
            report["bird_process"] = self.supervisor.status()
        if self.socket_path.exists():
            sessions, error = self.protocols()
            report["peers"] = sessions
            if error is not None:
                report["peers_error"] = error
        return report
