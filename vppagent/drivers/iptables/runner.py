"""How the kernel driver runs its work: the `Runner` protocol and its real implementation.

`Runner` is what every part of the kernel driver is given (tables, IP sets, routes, backend
detection): run a command, or run a callable, where the dataplane is. `NetnsRunner` is the real
one: a single worker thread, inside a named network namespace when one is given; tests pass a
recording fake to `IptablesDriver(runner=...)` instead.

Commands run without a shell, with a timeout, and are counted by name for the state report and
the benchmark. A command whose output can be big (`iptables-save`: tens of MB at 10,000
endpoints, docs/kernel-driver.md) is read with `stream`, a line at a time as it comes, so its
whole text never exists in memory.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
# A command's input: one text, or its pieces in order (the child reads them joined). Pieces let a
# big input be written to the child as it is produced, never held whole (docs/kernel-driver.md).
Input = str | Iterable[str]
NETNS_DIR = Path("/run/netns")
DEFAULT_TIMEOUT = 60.0
# Inputs bigger than this go to the child as a memory file, not through a pipe: subprocess feeds
# a pipe in PIPE_BUF pieces with a poll() each (~0.3 s of CPU for a 13 MB restore input).
BIG_INPUT = 1 << 16
STREAM_BUFFER = 1 << 16  # read size of a streamed command's output


def input_text(stdin: Input | None) -> str | None:
    """The whole text of a command's input (for runners that record it: tests, benchmarks)."""
    return stdin if stdin is None or isinstance(stdin, str) else "".join(stdin)


class CommandError(RuntimeError):
    """A command failed or timed out; the message has its name, exit status and stderr."""

    def __init__(self, message: str, stderr: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.stderr = stderr
        self.returncode = returncode


@dataclass(frozen=True)
class CommandResult:
    stdout: str
    stderr: str
    seconds: float
    returncode: int = 0  # not 0 only with check=False


def _netns_inode(path: str) -> int:
    return os.stat(path).st_ino


class Runner(Protocol):
    """Where the kernel driver's commands and kernel calls run."""

    calls: Counter[str]  # command name -> how many times it ran (state report, benchmark)

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` where the dataplane is (netlink sockets, /proc/sys) and return its result."""
        ...

    def run(self, argv: Sequence[str], stdin: Input | None = None, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        """Run a command (no shell); CommandError when it fails (`check`) or times out. An
        input given as pieces is consumed once, before the command starts."""
        ...

    def stream(self, argv: Sequence[str], consume: Callable[[Iterator[str]], T], timeout: float | None = None) -> T:
        """Run a command (no shell) and hand its standard output to `consume` a line at a time
        (newline included) as the command writes it; consume's result. CommandError when the
        command fails or times out: then a result consume made from part of the output is lost.
        When consume returns before the output ends, the command is killed (only for commands
        that change nothing, such as a save) and its exit status is not looked at."""
        ...

    def close(self) -> None:
        ...


class NetnsRunner:
    """The real Runner: one worker thread, which first enters network namespace `netns` (when
    given) with setns() and checks that it did; every call and command then runs on it."""

    def __init__(self, netns: str | None = None, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.netns = netns
        self.timeout = timeout
        self.calls: Counter[str] = Counter()  # command name -> how many times it ran
        self._lock = threading.Lock()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kernel-dataplane", initializer=self._enter)
        self._entered = threading.Event()
        self._enter_error: BaseException | None = None
        # Fail now (not at the first apply) when the namespace is unusable.
        self.call(lambda: None)

    def _enter(self) -> None:
        if self.netns is None:
            return
        target = NETNS_DIR / self.netns
        try:
            from pyroute2 import netns as pyroute2_netns

            own = _netns_inode("/proc/thread-self/ns/net")
            # flags=0: pyroute2 creates a missing namespace by default (O_CREAT); a namespace
            # that vanished must fail here, not become an empty one that the agent then "programs".
            pyroute2_netns.setns(self.netns, flags=0)
            now = _netns_inode("/proc/thread-self/ns/net")
            if now == own or now != _netns_inode(str(target)):
                raise RuntimeError(f"setns into {target} did not take effect")
        except BaseException as exc:  # reported by call(); the thread must not touch anything
            self._enter_error = exc

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the dataplane thread and return its result (exceptions propagate)."""

        def guarded() -> T:
            if self._enter_error is not None:
                raise RuntimeError(f"cannot enter network namespace {self.netns!r}: {self._enter_error}")
            return fn()

        return self._executor.submit(guarded).result()

    def run(self, argv: Sequence[str], stdin: Input | None = None, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        """Run a command (no shell) on the dataplane thread; CommandError on failure or timeout."""
        return self.call(lambda: self.run_here(argv, stdin, timeout, check))

    def run_here(self, argv: Sequence[str], stdin: Input | None = None, timeout: float | None = None,
                 check: bool = True) -> CommandResult:
        """Like run(), for code that is already on the dataplane thread."""
        name = Path(argv[0]).name
        with self._lock:
            self.calls[name] += 1
        start = time.monotonic()
        limit = self.timeout if timeout is None else timeout
        try:
            if stdin is not None and (not isinstance(stdin, str) or len(stdin) > BIG_INPUT):
                proc = _run_with_file_input(argv, [stdin] if isinstance(stdin, str) else stdin, limit)
            else:
                proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                                      timeout=limit, check=False)
        except subprocess.TimeoutExpired:
            raise CommandError(f"{name} timed out after {limit:.0f} s") from None
        except OSError as exc:
            raise CommandError(f"{name} could not run: {exc}") from None
        seconds = time.monotonic() - start
        if check and proc.returncode != 0:
            detail = proc.stderr.strip().splitlines()
            raise CommandError(f"{name} exited {proc.returncode}: {' | '.join(detail[-5:])}",
                               proc.stderr, proc.returncode)
        return CommandResult(proc.stdout, proc.stderr, seconds, proc.returncode)

    def stream(self, argv: Sequence[str], consume: Callable[[Iterator[str]], T], timeout: float | None = None) -> T:
        """Runner.stream, on the dataplane thread (consume runs there too)."""
        return self.call(lambda: self._stream_here(argv, consume, timeout))

    def _stream_here(self, argv: Sequence[str], consume: Callable[[Iterator[str]], T], timeout: float | None) -> T:
        name = Path(argv[0]).name
        with self._lock:
            self.calls[name] += 1
        limit = self.timeout if timeout is None else timeout
        # stderr to a file: a pipe nobody reads while stdout is consumed could fill and stall it.
        with tempfile.TemporaryFile() as errors:
            try:
                # Decoding errors replaced: a foreign rule's comment may hold any bytes, and only
                # our own (ASCII) lines are parsed.
                proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors,
                                        encoding="utf-8", errors="replace", bufsize=STREAM_BUFFER)
            except OSError as exc:
                raise CommandError(f"{name} could not run: {exc}") from None
            expired = threading.Event()

            def expire() -> None:
                expired.set()
                proc.kill()

            timer = threading.Timer(limit, expire)
            timer.start()
            try:
                assert proc.stdout is not None
                with proc.stdout:
                    result = consume(iter(proc.stdout))
                    if proc.stdout.read(1):  # consume stopped early: it has what it wanted
                        proc.kill()
                        proc.wait()
                        return result
                returncode = proc.wait()
            except BaseException:
                proc.kill()
                proc.wait()
                raise
            finally:
                timer.cancel()
            # Only a command the timer stopped timed out: one that ended well just as the timer
            # fired (the kill reached a process already finished) gave its whole output.
            if expired.is_set() and returncode != 0:
                raise CommandError(f"{name} timed out after {limit:.0f} s")
            if returncode != 0:
                errors.seek(0)
                stderr = errors.read().decode("utf-8", "replace")
                detail = stderr.strip().splitlines()
                raise CommandError(f"{name} exited {returncode}: {' | '.join(detail[-5:])}", stderr, returncode)
            return result

    def close(self) -> None:
        self._executor.shutdown(wait=True)


def _run_with_file_input(argv: Sequence[str], pieces: Iterable[str], timeout: float
                         ) -> subprocess.CompletedProcess[str]:
    """subprocess.run(argv, input="".join(pieces), capture_output=True, text=True), the input
    read from a memory file the child gets as its stdin. The pieces are encoded and written as
    they come through a 1 MB buffer, so neither the joined text nor its bytes exist at once (a
    10,000-endpoint restore input is ~30 MB, and glibc keeps such freed blocks in the heap)."""
    fd = os.memfd_create("vpa-input")
    try:
        with open(fd, "w", encoding="utf-8", newline="", buffering=1 << 20, closefd=False) as memfile:
            for piece in pieces:
                memfile.write(piece)
        os.lseek(fd, 0, os.SEEK_SET)
        return subprocess.run(list(argv), stdin=fd, capture_output=True, text=True, timeout=timeout, check=False)
    finally:
        os.close(fd)
