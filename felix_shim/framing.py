"""Felix's pipe framing: an 8-byte little-endian length, then that many bytes of protobuf.

Felix writes `felix.ToDataplane` frames to the driver's fd 3 and reads `felix.FromDataplane`
frames from its fd 4 (felix/dataplane/external/ext_dataplane.go). Nothing is acknowledged and
there is no resynchronisation marker, so any framing error means the pipe is unusable: the
caller reports it and exits, and Felix restarts the driver.
"""

from __future__ import annotations

import struct
import threading
from typing import BinaryIO

from felix_shim.releases.decoder import FelixDecoder, UndecodableFrame
from vppagent.gen.felix import felixbackend_pb2 as felix

LENGTH_PREFIX = struct.Struct("<Q")
DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024


class FrameError(Exception):
    """The input pipe cannot be read further: oversized length, truncated frame or bad bytes."""

    def __init__(
        self, reason: str, *, offset: int, frame_number: int, last_felix_sequence: int | None
    ) -> None:
        self.reason = reason
        self.offset = offset
        self.frame_number = frame_number
        self.last_felix_sequence = last_felix_sequence
        where = f"frame #{frame_number} at byte offset {offset}"
        if last_felix_sequence is not None:
            where += f" (previous frame had Felix sequence_number {last_felix_sequence})"
        else:
            where += " (no earlier frame decoded)"
        super().__init__(f"{where}: {reason}")


def encode_frame(payload: bytes) -> bytes:
    return LENGTH_PREFIX.pack(len(payload)) + payload


class FrameReader:
    """Reads frames from a binary stream; `offset`/`frame_number` locate errors for humans.

    `frame_number` counts frames from 1; `offset` is the byte offset of the current frame's
    length prefix from the start of the stream.
    """

    def __init__(self, stream: BinaryIO, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 decoder: FelixDecoder | None = None) -> None:
        self._stream = stream
        # Reads each frame as whichever Felix release sent it and hands on the v3.33 form.
        self.decoder = decoder if decoder is not None else FelixDecoder()
        self.max_frame_bytes = max_frame_bytes
        self.offset = 0
        self.frame_number = 0
        self.last_felix_sequence: int | None = None
        self._next_offset = 0

    def error(self, reason: str) -> FrameError:
        return FrameError(
            reason,
            offset=self.offset,
            frame_number=self.frame_number,
            last_felix_sequence=self.last_felix_sequence,
        )

    def read_frame(self) -> bytes | None:
        """The next frame's payload, or None at a clean end of stream (EOF between frames)."""
        # Advance past the previous frame only now, so errors point at the frame they concern.
        self.offset = self._next_offset
        self.frame_number += 1
        header = self._stream.read(LENGTH_PREFIX.size)
        if not header:
            return None
        if len(header) < LENGTH_PREFIX.size:
            raise self.error(
                f"truncated length prefix: end of stream after {len(header)} of {LENGTH_PREFIX.size} bytes"
            )
        (length,) = LENGTH_PREFIX.unpack(header)
        if length > self.max_frame_bytes:
            raise self.error(
                f"frame length {length} bytes exceeds the limit of {self.max_frame_bytes} bytes "
                "(--max-frame-bytes / VPPAGENT_SHIM_MAX_FRAME_BYTES)"
            )
        payload = self._stream.read(length) if length else b""
        if len(payload) < length:
            raise self.error(f"truncated frame: end of stream after {len(payload)} of {length} payload bytes")
        self._next_offset = self.offset + LENGTH_PREFIX.size + length
        return payload

    def read_message(self) -> tuple[bytes, felix.ToDataplane] | None:
        """The next frame as a v3.33 ToDataplane (with its encoding, to forward), or None at EOF."""
        payload = self.read_frame()
        if payload is None:
            return None
        try:
            decoded = self.decoder.decode(payload)
        except UndecodableFrame as exc:
            raise self.error(str(exc)) from None
        self.last_felix_sequence = decoded[1].sequence_number
        return decoded


class FrameWriter:
    """Writes whole frames; safe to share between threads (each frame is written atomically)."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write_frame(self, payload: bytes) -> None:
        with self._lock:
            self._stream.write(encode_frame(payload))
            self._stream.flush()
