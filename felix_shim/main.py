"""felix-shim entry point: the process Felix runs as its external dataplane driver.

Threads: a reader (fd 3 → fold + queue), the agent link (gRPC stream, fd 4), and the main
thread, which only waits for the end (EOF, SIGTERM, a broken pipe, a framing error) and exits.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import BinaryIO

from felix_shim.config import ShimConfig, parse_config
from felix_shim.framing import FrameError, FrameReader, FrameWriter
from felix_shim.link import AgentLink
from felix_shim.outbox import Outbox
from felix_shim.releases.decoder import FelixDecoder
from vppagent.command_line import EXIT_BROKEN_PIPE, EXIT_USAGE, flush_stdout

log = logging.getLogger("felix_shim")

READ_BUFFER_BYTES = 1024 * 1024
# After Felix closes fd 3, how long queued messages may take to reach the agent before exiting.
# Felix is gone by then, so this only helps the agent see the final state sooner.
EOF_DRAIN_SECONDS = 0.8
EXIT_OK = 0
EXIT_BAD_INPUT = 1  # Felix's frames, not the command line (that is EXIT_USAGE)


class Shutdown:
    """The first reason to stop wins; the main thread waits on it."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.exit_code = EXIT_OK
        self.reason = ""
        self.input_ended = False

    def request(self, exit_code: int, reason: str, *, input_ended: bool = False) -> None:
        with self._lock:
            if self._event.is_set():
                return
            self.exit_code, self.reason, self.input_ended = exit_code, reason, input_ended
            self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def read_felix(reader: FrameReader, outbox: Outbox, shutdown: Shutdown) -> None:
    """Reader thread body: every frame is decoded once, folded, and queued as the same bytes."""
    try:
        while (item := reader.read_message()) is not None:
            outbox.offer(*item)
    except FrameError as exc:
        shutdown.request(EXIT_BAD_INPUT, f"unusable input from Felix on fd 3: {exc}")
        return
    except OSError as exc:
        shutdown.request(EXIT_BAD_INPUT, f"reading fd 3 failed: {exc}")
        return
    shutdown.request(EXIT_OK, "Felix closed fd 3 (end of input)", input_ended=True)


class NotStartedByFelix(Exception):
    """A pipe fd is not open: felix-shim was not started the way Felix starts it."""


def _open_fd(fd: int, mode: str, what: str) -> BinaryIO:
    try:
        os.fstat(fd)
    except OSError:
        raise NotStartedByFelix(
            f"felix-shim: fd {fd} ({what}) is not open; felix-shim is meant to be started by Felix as "
            "its external dataplane driver (FELIX_USEINTERNALDATAPLANEDRIVER=false)"
        ) from None
    if mode == "rb":
        return os.fdopen(fd, "rb", buffering=READ_BUFFER_BYTES)
    return os.fdopen(fd, "wb", buffering=0)


def run(config: ShimConfig) -> int:
    in_stream = _open_fd(config.in_fd, "rb", "Felix → driver frames")
    out_stream = _open_fd(config.out_fd, "wb", "driver → Felix frames")
    shutdown = Shutdown()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        shutdown.request(EXIT_OK, f"received {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    decoder = FelixDecoder(config.forced_release)
    outbox = Outbox(wire_report=decoder.report_bytes)
    reader = FrameReader(in_stream, config.max_frame_bytes, decoder)
    link = AgentLink(
        config.socket_path,
        outbox,
        FrameWriter(out_stream),
        mode=config.stream_mode,
        max_frame_bytes=config.max_frame_bytes,
        backoff_max=config.reconnect_max_seconds,
        on_felix_gone=lambda reason: shutdown.request(EXIT_OK, reason),
        for_felix=decoder.for_felix,
    )
    log.info(
        "felix-shim started: fd %d → agent at unix:%s (%s) → fd %d; max frame %d bytes",
        config.in_fd,
        config.socket_path,
        config.stream_mode,
        config.out_fd,
        config.max_frame_bytes,
    )
    threading.Thread(target=read_felix, args=(reader, outbox, shutdown), name="felix-reader", daemon=True).start()
    threading.Thread(target=link.run, name="agent-link", daemon=True).start()

    # Short waits keep the main thread in Python code so the signal handler runs promptly.
    while not shutdown.wait(0.1):
        pass
    if shutdown.input_ended:
        feed = outbox.finish()
        if feed is not None and not link.finished.wait(EOF_DRAIN_SECONDS):
            log.warning("agent did not take all queued messages within %.1f s of EOF", EOF_DRAIN_SECONDS)
    link.stop()
    level = logging.ERROR if shutdown.exit_code else logging.INFO
    log.log(
        level,
        "exiting (%s): %d messages read, %d skipped, %d agent streams",
        shutdown.reason,
        outbox.received,
        outbox.skipped,
        link.streams_opened,
    )
    return shutdown.exit_code


def main(argv: Sequence[str] | None = None) -> None:
    try:
        config = parse_config(argv)
    except SystemExit:
        # --help or a usage error; its text may still be buffered for a reader that has gone.
        if not flush_stdout():
            os._exit(EXIT_BROKEN_PIPE)
        raise
    logging.basicConfig(
        stream=sys.stderr,
        level=config.log_level,
        format="%(asctime)s %(levelname)s felix-shim[%(process)d] %(name)s: %(message)s",
    )
    try:
        code = run(config)
    except NotStartedByFelix as exc:
        print(exc, file=sys.stderr)
        code = EXIT_USAGE
    logging.shutdown()
    sys.stderr.flush()
    # The reader thread may sit in a blocking read of fd 3 and gRPC keeps its own threads;
    # a normal interpreter exit could wait on them, and Felix allows only ~4 s before SIGKILL.
    os._exit(code)
