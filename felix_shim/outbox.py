"""The compacted snapshot plus the live feed of the current agent stream.

Every message from Felix is folded into one `DataplaneState` and, in the same critical section,
queued on the live feed of the current agent stream (if any). Opening a stream copies the state
and creates the stream's queue under that same lock, so each message is either already in the
copied snapshot or queued after it: never both, never neither, never reordered. A message that
was queued on a stream that then broke is not lost either: it is in the state, and the next
stream starts with a fresh snapshot.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.unknown_fields import UnknownFieldSet

from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState

log = logging.getLogger(__name__)

IN_SYNC_FRAME = felix.ToDataplane(in_sync=felix.InSync()).SerializeToString()
# The wire tag of `repeated felix.ToDataplane messages = 1` in ToDataplaneBatch.
BATCH_ITEM_TAG = b"\x0a"
# ... and of `FelixWire felix_wire = 2`: what felix-shim knows of Felix's release.
BATCH_WIRE_TAG = b"\x12"
DEFAULT_BATCH_MAX_MESSAGES = 1024
# Well under gRPC's default 4 MiB receive limit; a single larger message still goes alone.
DEFAULT_BATCH_MAX_BYTES = 1024 * 1024
# Past this many queued messages the reader waits (backpressure on Felix's pipe) until the
# stream drains to the low-water mark or is replaced.
DEFAULT_HIGH_WATER = 50_000


def varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def unknown_field_numbers(msg: felix.ToDataplane) -> list[int]:
    fields = UnknownFieldSet(msg)
    return sorted({fields[i].field_number for i in range(len(fields))})


@dataclass
class StreamFeed:
    """What one agent stream sends: a snapshot (+ InSync if Felix sent one), then live messages.

    `live` carries raw ToDataplane bytes; None marks the end of the stream (Felix closed fd 3,
    or the stream was replaced and the gRPC sender thread must be released).
    """

    snapshot: DataplaneState
    replay_in_sync: bool
    live: queue.SimpleQueue[bytes | None] = field(default_factory=queue.SimpleQueue)
    # Set when the sender reached the end marker: every queued message has been handed to gRPC.
    drained: threading.Event = field(default_factory=threading.Event)
    snapshot_messages: int = 0
    # The encoded FelixWire report; sent with the first batch and again whenever it changes.
    wire_report: Callable[[], bytes] = lambda: b""
    _wire_sent: bytes | None = None

    def _with_wire(self, parts: list[bytes]) -> bytes:
        report = self.wire_report()
        if report and report != self._wire_sent:
            self._wire_sent = report
            parts = [*parts, BATCH_WIRE_TAG, varint(len(report)), report]
        return b"".join(parts)

    def replay_frames(self) -> Iterator[bytes]:
        for msg in self.snapshot.to_messages():
            self.snapshot_messages += 1
            yield msg.SerializeToString()
        if self.replay_in_sync:
            yield IN_SYNC_FRAME

    def frames(self) -> Iterator[bytes]:
        """One ToDataplane per item (the plain `Sync` RPC)."""
        yield from self.replay_frames()
        while (item := self.live.get()) is not None:
            yield item
        self.drained.set()

    def batches(
        self, max_messages: int = DEFAULT_BATCH_MAX_MESSAGES, max_bytes: int = DEFAULT_BATCH_MAX_BYTES
    ) -> Iterator[bytes]:
        """Encoded ToDataplaneBatch messages: whatever is queued, up to the limits, per item.

        gRPC Python costs ~100 µs per streamed message whatever its size, so batching what has
        accumulated is what makes the throughput; an idle stream still sends each message at once.
        """
        parts: list[bytes] = []
        size = 0
        for raw in self.replay_frames():
            parts += (BATCH_ITEM_TAG, varint(len(raw)), raw)
            size += len(raw)
            if len(parts) >= 3 * max_messages or size >= max_bytes:
                yield self._with_wire(parts)
                parts, size = [], 0
        if parts or self.wire_report():
            yield self._with_wire(parts)  # the report goes out at once, even with nothing to replay
        while True:
            item = self.live.get()
            if item is None:
                break
            parts, size, ended = [BATCH_ITEM_TAG, varint(len(item)), item], len(item), False
            while len(parts) < 3 * max_messages and size < max_bytes:
                try:
                    item = self.live.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    ended = True
                    break
                parts += (BATCH_ITEM_TAG, varint(len(item)), item)
                size += len(item)
            yield self._with_wire(parts)
            if ended:
                break
        self.drained.set()


class Outbox:
    """Folds Felix's messages into the snapshot and feeds the current stream, atomically."""

    def __init__(self, state: DataplaneState | None = None, high_water: int = DEFAULT_HIGH_WATER,
                 wire_report: Callable[[], bytes] = lambda: b"") -> None:
        self.state = state if state is not None else DataplaneState()
        self.wire_report = wire_report
        self.felix_in_sync = False
        self.high_water = high_water
        self.received = 0
        self.skipped = 0
        self._lock = threading.Lock()
        self._feed: StreamFeed | None = None
        self._ended = False
        self._unknown_fields_logged: set[int] = set()
        self._fold_errors_logged: set[str] = set()

    def offer(self, raw: bytes, msg: felix.ToDataplane) -> bool:
        """Fold `msg` and queue `raw` for the live stream. False if skipped (unknown payload)."""
        with self._lock:
            self.received += 1
            try:
                change = self.state.apply(msg)
            except Exception as exc:  # a value the fold rejects; the agent judges it, still forward
                self._log_fold_error(msg, exc)
            else:
                if change.unknown:
                    self.skipped += 1
                    self._log_unknown(msg)
                    return False
                if change.in_sync:
                    self.felix_in_sync = True
            feed = self._feed
            if feed is not None:
                feed.live.put(raw)
        if feed is not None and feed.live.qsize() > self.high_water:
            self._wait_for_room(feed)
        return True

    def _wait_for_room(self, feed: StreamFeed) -> None:
        # Polling is fine here: it only runs while the agent is far behind.
        low_water = self.high_water // 2
        while feed.live.qsize() > low_water and self._feed is feed:
            time.sleep(0.002)

    def open_stream(self) -> StreamFeed:
        """A new feed: the snapshot as of now, then everything offered from now on."""
        with self._lock:
            if self._feed is not None:
                self._feed.live.put(None)
            feed = StreamFeed(self.state.copy(), self.felix_in_sync, wire_report=self.wire_report)
            if self._ended:
                feed.live.put(None)
            self._feed = feed
            return feed

    def close_stream(self, feed: StreamFeed) -> None:
        """Detach a feed whose stream ended; its unsent messages are covered by the next snapshot."""
        with self._lock:
            if self._feed is feed:
                self._feed = None
            # Releases the gRPC sender thread if it is still waiting for live messages.
            feed.live.put(None)

    def finish(self) -> StreamFeed | None:
        """Felix closed fd 3: end the current stream after what is queued. Returns that feed."""
        with self._lock:
            self._ended = True
            if self._feed is not None:
                self._feed.live.put(None)
            return self._feed

    def _log_unknown(self, msg: felix.ToDataplane) -> None:
        numbers = unknown_field_numbers(msg) or [0]
        for number in numbers:
            if number in self._unknown_fields_logged:
                continue
            self._unknown_fields_logged.add(number)
            what = f"unknown payload field {number}" if number else "no payload at all"
            log.warning(
                "skipping ToDataplane with %s (Felix sequence_number %d): a newer Calico than this "
                "shim knows? Logged once per field number.",
                what,
                msg.sequence_number,
            )

    def _log_fold_error(self, msg: felix.ToDataplane, exc: Exception) -> None:
        payload = msg.WhichOneof("payload") or "?"
        if payload not in self._fold_errors_logged:
            self._fold_errors_logged.add(payload)
            log.error(
                "cannot fold %s (Felix sequence_number %d) into the replay snapshot: %s; forwarding "
                "it anyway, but a replay after reconnecting will miss it. Logged once per payload type.",
                payload,
                msg.sequence_number,
                exc,
            )
