"""The gRPC side: one Sync stream to the agent at a time, reconnecting with backoff.

Each stream starts from `Outbox.open_stream()` (snapshot + InSync if Felix sent it, then live
messages). FromDataplane messages the agent streams back are written to Felix as frames.

Two RPCs carry the same stream: `SyncBatch` (many ToDataplane per gRPC message) and the plain
per-message `Sync`. In `auto` mode each connection tries `SyncBatch` first and falls back to
`Sync` when the agent answers UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum

import grpc

from felix_shim.framing import FrameWriter
from felix_shim.outbox import Outbox

log = logging.getLogger(__name__)

SYNC_METHOD = "/vppagent.v1.Agent/Sync"
SYNC_BATCH_METHOD = "/vppagent.v1.Agent/SyncBatch"
READY_POLL_SECONDS = 0.25
# A stream that lasted this long counts as a success: the next failure starts backoff afresh.
HEALTHY_STREAM_SECONDS = 1.0


class StreamMode(StrEnum):
    AUTO = "auto"
    BATCH = "batch"
    SINGLE = "single"


class FelixGone(Exception):
    """Writing to fd 4 failed: Felix has closed its end, so there is nobody left to serve."""


class AgentLink:
    """Keeps a Sync stream to the agent open until stopped or until the input has ended."""

    def __init__(
        self,
        socket_path: str,
        outbox: Outbox,
        writer: FrameWriter,
        *,
        mode: StreamMode = StreamMode.AUTO,
        max_frame_bytes: int,
        backoff_initial: float = 0.05,
        backoff_max: float = 2.0,
        on_felix_gone: Callable[[str], None] = lambda reason: None,
        for_felix: Callable[[bytes], bytes | None] = lambda raw: raw,
    ) -> None:
        self.target = f"unix:{socket_path}"
        self.outbox = outbox
        self.writer = writer
        self.mode = mode
        self.max_frame_bytes = max_frame_bytes
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.on_felix_gone = on_felix_gone
        # The agent writes v3.33 messages; this puts them in the form Felix's release knows
        # (None: a message that release does not know, which is not sent).
        self.for_felix = for_felix
        # Set once a stream ended after delivering everything up to Felix's EOF.
        self.finished = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._call: grpc.CallIterator[bytes] | None = None
        self.streams_opened = 0

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            if self._call is not None:
                self._call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
            if self._channel is not None:
                self._channel.close()

    def _channel_options(self) -> list[tuple[str, int]]:
        backoff_ms = int(self.backoff_max * 1000)
        return [
            ("grpc.max_send_message_length", -1),
            ("grpc.max_receive_message_length", self.max_frame_bytes),
            # gRPC's own reconnect backoff starts at 1 s and grows to 120 s; keep it short so
            # a restarted agent gets its replay within a few seconds.
            ("grpc.initial_reconnect_backoff_ms", int(self.backoff_initial * 1000)),
            ("grpc.min_reconnect_backoff_ms", int(self.backoff_initial * 1000)),
            ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ]

    def run(self) -> None:
        """Thread body: connect, stream, reconnect, until stopped or the input ended and drained."""
        channel = grpc.insecure_channel(self.target, options=self._channel_options())
        with self._lock:
            self._channel = channel
        if self._stop.is_set():
            channel.close()
            return
        delay = self.backoff_initial
        use_batch = self.mode != StreamMode.SINGLE
        announced_wait = False
        try:
            while not self._stop.is_set():
                if not self._wait_ready(channel, announced_wait):
                    announced_wait = True
                    continue
                announced_wait = False
                started = time.monotonic()
                outcome = self._stream_once(channel, use_batch)
                if outcome == "done" or self._stop.is_set():
                    return
                if outcome == "no-batch":
                    use_batch = False
                    continue
                if self.mode == StreamMode.AUTO:
                    use_batch = True  # the agent may have been upgraded when it comes back
                if time.monotonic() - started >= HEALTHY_STREAM_SECONDS:
                    delay = self.backoff_initial
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_max)
        except FelixGone as exc:
            self.on_felix_gone(str(exc))
        finally:
            channel.close()

    def _wait_ready(self, channel: grpc.Channel, quiet: bool) -> bool:
        try:
            grpc.channel_ready_future(channel).result(timeout=READY_POLL_SECONDS)
            return True
        except grpc.FutureTimeoutError:
            if not quiet:
                log.warning("agent at %s is not reachable yet; retrying with backoff", self.target)
            return False

    def _stream_once(self, channel: grpc.Channel, use_batch: bool) -> str:
        """One stream's life. Returns "done", "no-batch" or "broken"."""
        feed = self.outbox.open_stream()
        method = SYNC_BATCH_METHOD if use_batch else SYNC_METHOD
        requests = feed.batches() if use_batch else feed.frames()
        multi_callable = channel.stream_stream(method, request_serializer=None, response_deserializer=None)
        call = multi_callable(requests)
        with self._lock:
            self._call = call
        if self._stop.is_set():
            call.cancel()  # type: ignore[no-untyped-call]  # untyped in grpc-stubs
        self.streams_opened += 1
        counts = feed.snapshot.counts()
        log.info(
            "streaming to agent at %s via %s: replaying %d objects%s, then live messages",
            self.target,
            method.rsplit("/", 1)[1],
            sum(counts.values()),
            " + InSync" if feed.replay_in_sync else " (Felix not in sync yet)",
        )
        try:
            for response in call:
                self._write_to_felix(response)
            if feed.drained.is_set():
                self.finished.set()
                return "done"
            log.warning("agent ended the stream; reconnecting")
            return "broken"
        except grpc.RpcError as exc:
            code = call.code()
            if code == grpc.StatusCode.UNIMPLEMENTED and use_batch and self.mode == StreamMode.AUTO:
                log.info("agent does not implement SyncBatch; using per-message Sync")
                return "no-batch"
            if not self._stop.is_set():
                log.warning("agent stream broken (%s: %s); reconnecting", code, call.details() or exc)
            return "broken"
        finally:
            self.outbox.close_stream(feed)
            with self._lock:
                self._call = None

    def _write_to_felix(self, response: bytes) -> None:
        frame = self.for_felix(response)
        if frame is None:
            return
        try:
            self.writer.write_frame(frame)
        except OSError as exc:
            raise FelixGone(f"cannot write to Felix on fd 4: {exc}") from None

