"""Command line and environment for felix-shim. Flags beat environment beats defaults."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from felix_shim.framing import DEFAULT_MAX_FRAME_BYTES
from felix_shim.link import StreamMode

DEFAULT_SOCKET = "/run/vppagent/agent.sock"


@dataclass(frozen=True)
class ShimConfig:
    socket_path: str
    in_fd: int
    out_fd: int
    max_frame_bytes: int
    stream_mode: StreamMode
    reconnect_max_seconds: float
    log_level: str


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def _fd(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a file descriptor number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a file descriptor number")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="felix-shim",
        description="Felix's external dataplane driver: forwards Felix's fd 3/fd 4 pipes to vppagent over gRPC.",
    )
    parser.add_argument(
        "--socket",
        dest="socket_path",
        default=env.get("VPPAGENT_SOCKET", DEFAULT_SOCKET),
        help="agent unix socket (env VPPAGENT_SOCKET, default %(default)s)",
    )
    parser.add_argument("--in-fd", type=_fd, default=3, help="fd carrying Felix's ToDataplane frames (3)")
    parser.add_argument("--out-fd", type=_fd, default=4, help="fd for FromDataplane frames to Felix (4)")
    parser.add_argument(
        "--max-frame-bytes",
        type=_positive_int,
        default=env.get("VPPAGENT_SHIM_MAX_FRAME_BYTES", str(DEFAULT_MAX_FRAME_BYTES)),
        help="largest accepted frame (env VPPAGENT_SHIM_MAX_FRAME_BYTES, default 64 MiB)",
    )
    parser.add_argument(
        "--stream-mode",
        type=StreamMode,
        choices=list(StreamMode),
        default=env.get("VPPAGENT_SHIM_STREAM_MODE", StreamMode.AUTO.value),
        help="batch: SyncBatch RPC; single: per-message Sync; auto: SyncBatch, falling back to Sync "
        "(env VPPAGENT_SHIM_STREAM_MODE, default %(default)s)",
    )
    parser.add_argument(
        "--reconnect-max-seconds",
        type=_positive_float,
        default=env.get("VPPAGENT_SHIM_RECONNECT_MAX_SECONDS", "2.0"),
        help="cap of the reconnect backoff (env VPPAGENT_SHIM_RECONNECT_MAX_SECONDS, default %(default)s)",
    )
    parser.add_argument(
        "--log-level",
        default=env.get("VPPAGENT_SHIM_LOG_LEVEL", "INFO"),
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="env VPPAGENT_SHIM_LOG_LEVEL, default %(default)s",
    )
    return parser


def parse_config(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ShimConfig:
    """Parses flags over environment; a bad value exits 2 with argparse's one-line error."""
    parser = build_parser(os.environ if env is None else env)
    args = parser.parse_args(argv)
    return ShimConfig(
        socket_path=args.socket_path,
        in_fd=args.in_fd,
        out_fd=args.out_fd,
        max_frame_bytes=args.max_frame_bytes,
        stream_mode=args.stream_mode,
        reconnect_max_seconds=args.reconnect_max_seconds,
        log_level=args.log_level,
    )
