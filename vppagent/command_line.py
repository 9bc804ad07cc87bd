"""What every command-line entry point (`vppagent`, its subcommands, `felix-shim`) does at its edge.

- A bad input is one line on stderr naming the input (flag, environment variable or file), exit 2;
  never a traceback, never the whole usage text.
- Output cut short by its reader (`vppagent state | head -3`) ends the command quietly, with the
  status a shell reports for a process killed by SIGPIPE.
- Ctrl-C before a command installs its own handling ends it quietly with 130.

No imports from the rest of vppagent: configuration, scenario loading and felix-shim use it too.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what `cat`, `yes`, ... end with in the same place
# sockaddr_un.sun_path is 108 bytes including the terminating NUL.
UNIX_SOCKET_PATH_MAX_BYTES = 107


class UsageError(ValueError):
    """Bad input from the user; the message is one line naming the input."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: `PROG: MESSAGE (PROG --help)`, exit 2.

    Subparsers made through `add_subparsers` are of the same class, so every subcommand inherits it.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def read_text_file(path: str | Path, what: str) -> str:
    """The UTF-8 text of a file the user named; UsageError naming `what` and the path otherwise."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except IsADirectoryError:
        raise UsageError(f"{what} {path}: is a directory, not a file") from None
    except OSError as exc:
        raise UsageError(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start})") from None


def socket_path_problem(path: str | Path) -> str | None:
    """Why `path` cannot be a unix socket's address (one phrase), or None."""
    if not str(path):
        return "is empty"
    if len(os.fsencode(path)) > UNIX_SOCKET_PATH_MAX_BYTES:
        return f"is longer than the {UNIX_SOCKET_PATH_MAX_BYTES} bytes a unix socket path may have"
    return None


def describe_yaml_error(exc: Exception) -> str:
    """PyYAML's error as one phrase with its positions, e.g. `while parsing a flow sequence at line 2
    column 3: expected ',' or ']', but got '<stream end>' at line 4 column 1`."""

    def at(text: object, mark: Any) -> str:
        return f"{text} at line {mark.line + 1} column {mark.column + 1}" if mark is not None else str(text)

    problem, context = getattr(exc, "problem", None), getattr(exc, "context", None)
    if problem is None:
        lines = str(exc).strip().splitlines()
        return lines[0] if lines else type(exc).__name__
    described = at(problem, getattr(exc, "problem_mark", None))
    if context is not None:
        described = f"{at(context, getattr(exc, 'context_mark', None))}: {described}"
    return described


def positive_int(text: str) -> int:
    """argparse type: an integer greater than 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number greater than 0 (seconds, mostly)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, got {value}")
    return value


def run_quietly(command: Callable[[], int]) -> int:
    """Run an entry point's body; a broken stdout pipe or an early Ctrl-C ends it without a traceback.

    argparse's `--help` and usage errors leave by SystemExit with the text still buffered, so the
    flush happens here for every way out, not at interpreter exit where it cannot be caught.
    """
    try:
        try:
            return command()
        finally:
            sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def flush_stdout() -> bool:
    """Flush stdout; False (and stdout discarded) when its reader has gone."""
    try:
        sys.stdout.flush()
        return True
    except BrokenPipeError:
        discard_stdout()
        return False


def discard_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit has nowhere left to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)
