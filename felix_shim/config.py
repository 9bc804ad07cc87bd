"""Command line and environment for felix-shim. Flags beat environment beats defaults.

A bad value, from a flag or from the environment, is one line naming the flag or the variable,
exit 2 (Felix logs the shim's stderr, so that line is what an operator sees).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from felix_shim.framing import DEFAULT_MAX_FRAME_BYTES
from felix_shim.link import StreamMode
from felix_shim.releases.differences import RELEASES
from vppagent.command_line import OneLineParser, positive_float, positive_int, socket_path_problem

DEFAULT_SOCKET = "/run/vppagent/agent.sock"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
AUTO_RELEASE = "auto"


@dataclass(frozen=True)
class ShimConfig:
    socket_path: str
    in_fd: int
    out_fd: int
    max_frame_bytes: int
    stream_mode: StreamMode
    reconnect_max_seconds: float
    log_level: str
    felix_version: str = AUTO_RELEASE  # or the release to decode as, e.g. "3.31"

    @property
    def forced_release(self) -> str | None:
        """None: detect Felix's release from the stream."""
        return None if self.felix_version == AUTO_RELEASE else self.felix_version


def _fd(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file descriptor number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a file descriptor number")
    return value


def _stream_mode(text: str) -> StreamMode:
    try:
        return StreamMode(text.lower())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not one of {', '.join(m.value for m in StreamMode)}") from None


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def _felix_version(text: str) -> str:
    """"auto" (detect it from what Felix sends) or a supported release, as "3.31" or "v3.31"."""
    release = text.strip().lower().removeprefix("v")
    if release != AUTO_RELEASE and release not in RELEASES:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {AUTO_RELEASE}, {', '.join(RELEASES)}")
    return release


def _socket_path(text: str) -> str:
    problem = socket_path_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} {problem}")
    return text


# dest, flag, environment variable, conversion, default (as text, converted the same way)
_SETTINGS: list[tuple[str, str, str | None, Callable[[str], Any], str]] = [
    ("socket_path", "--socket", "VPPAGENT_SOCKET", _socket_path, DEFAULT_SOCKET),
    ("in_fd", "--in-fd", None, _fd, "3"),
    ("out_fd", "--out-fd", None, _fd, "4"),
    ("max_frame_bytes", "--max-frame-bytes", "VPPAGENT_SHIM_MAX_FRAME_BYTES", positive_int,
     str(DEFAULT_MAX_FRAME_BYTES)),
    ("stream_mode", "--stream-mode", "VPPAGENT_SHIM_STREAM_MODE", _stream_mode, StreamMode.AUTO.value),
    ("reconnect_max_seconds", "--reconnect-max-seconds", "VPPAGENT_SHIM_RECONNECT_MAX_SECONDS",
     positive_float, "2.0"),
    ("log_level", "--log-level", "VPPAGENT_SHIM_LOG_LEVEL", _log_level, "INFO"),
    ("felix_version", "--felix-version", "VPPAGENT_FELIX_VERSION", _felix_version, AUTO_RELEASE),
]

_METAVAR = {
    "socket_path": "PATH", "in_fd": "FD", "out_fd": "FD", "max_frame_bytes": "BYTES",
    "stream_mode": "{" + ",".join(m.value for m in StreamMode) + "}", "reconnect_max_seconds": "SECONDS",
    "log_level": "LEVEL", "felix_version": "RELEASE",
}
_HELP = {
    "socket_path": "agent unix socket",
    "in_fd": "fd carrying Felix's ToDataplane frames",
    "out_fd": "fd for FromDataplane frames to Felix",
    "max_frame_bytes": "largest accepted frame",
    "stream_mode": "batch: SyncBatch RPC; single: per-message Sync; auto: SyncBatch, falling back to Sync",
    "reconnect_max_seconds": "cap of the reconnect backoff",
    "log_level": "|".join(LOG_LEVELS),
    "felix_version": "Felix's Calico release; auto detects it from what Felix sends",
}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="felix-shim",
        description="Felix's external dataplane driver: forwards Felix's fd 3/fd 4 pipes to vppagent over gRPC.",
    )
    for dest, flag, var, convert, default in _SETTINGS:
        where = f"env {var}, default {default}" if var else f"default {default}"
        # default None: an unset flag falls back to the environment, checked in parse_config.
        parser.add_argument(flag, dest=dest, type=convert, default=None, metavar=_METAVAR[dest],
                            help=f"{_HELP[dest]} ({where})")
    return parser


def parse_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ShimConfig:
    """Parses flags over environment; a bad value exits 2 with one line naming the flag or variable."""
    env = os.environ if env is None else env
    parser = build_parser()
    args = parser.parse_args(argv)
    values: dict[str, Any] = {}
    for dest, _flag, var, convert, default in _SETTINGS:
        value = getattr(args, dest)
        if value is None and var is not None and env.get(var):  # an empty variable counts as unset
            try:
                value = convert(env[var])
            except argparse.ArgumentTypeError as exc:
                parser.error(f"environment variable {var}: {exc}")
        values[dest] = convert(default) if value is None else value
    return ShimConfig(**values)
