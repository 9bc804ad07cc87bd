"""Frame codec: round trip and every way a frame can be bad."""

from __future__ import annotations

import io

import pytest

from felix_shim.framing import LENGTH_PREFIX, FrameError, FrameReader, FrameWriter, encode_frame
from tests.shim import shim_messages as m
from vppagent.gen.felix import felixbackend_pb2 as felix


def reader_over(data: bytes, max_frame_bytes: int = 1024) -> FrameReader:
    return FrameReader(io.BufferedReader(io.BytesIO(data)), max_frame_bytes)


def test_round_trip_through_writer_and_reader() -> None:
    messages = m.numbered([m.config(a="1"), m.ipset("s:x", "10.0.0.0/8"), m.in_sync()], start=5)
    sink = io.BytesIO()
    writer = FrameWriter(sink)
    for msg in messages:
        writer.write_frame(msg.SerializeToString())
    data = sink.getvalue()
    assert data[:8] == LENGTH_PREFIX.pack(messages[0].ByteSize())  # little-endian uint64 length

    reader = reader_over(data)
    decoded = []
    while (item := reader.read_message()) is not None:
        raw, msg = item
        assert raw == msg.SerializeToString()
        decoded.append(msg)
    assert decoded == messages
    assert reader.last_felix_sequence == 7
    assert reader.read_message() is None  # EOF stays EOF


def test_empty_stream_is_a_clean_eof() -> None:
    assert reader_over(b"").read_message() is None


def test_zero_length_frame_is_an_empty_message() -> None:
    item = reader_over(encode_frame(b"")).read_message()
    assert item is not None and item[1] == felix.ToDataplane()


def test_length_prefix_is_little_endian_uint64() -> None:
    payload = m.config(k="v").SerializeToString()
    header = len(payload).to_bytes(8, "little")
    item = reader_over(header + payload).read_message()
    assert item is not None and item[0] == payload


def _error(data: bytes, max_frame_bytes: int = 1024) -> FrameError:
    reader = reader_over(data, max_frame_bytes)
    with pytest.raises(FrameError) as caught:
        while reader.read_message() is not None:
            pass
    return caught.value


GOOD = encode_frame(m.numbered([m.config(a="b")], start=41)[0].SerializeToString())


def test_oversized_length_names_offset_frame_and_limit() -> None:
    err = _error(GOOD + LENGTH_PREFIX.pack(1025))
    assert (err.frame_number, err.offset, err.last_felix_sequence) == (2, len(GOOD), 41)
    assert "frame length 1025 bytes exceeds the limit of 1024 bytes" in str(err)
    assert f"frame #2 at byte offset {len(GOOD)}" in str(err)
    assert "Felix sequence_number 41" in str(err)


def test_huge_length_is_refused_without_reading() -> None:
    err = _error(LENGTH_PREFIX.pack(2**64 - 1))
    assert err.frame_number == 1 and err.offset == 0 and err.last_felix_sequence is None
    assert "no earlier frame decoded" in str(err)


def test_truncated_payload() -> None:
    err = _error(GOOD + LENGTH_PREFIX.pack(10) + b"abc")
    assert "truncated frame: end of stream after 3 of 10 payload bytes" in str(err)
    assert err.offset == len(GOOD)


def test_truncated_length_prefix() -> None:
    err = _error(GOOD + b"\x05\x00\x00")
    assert "truncated length prefix: end of stream after 3 of 8 bytes" in str(err)
    assert err.frame_number == 2


@pytest.mark.parametrize(
    "garbage",
    [b"\xff\xff\xff", b"\x12\x05ab", b"\x0f"],
    ids=["bad-varint", "short-length-delimited", "field-zero"],
)
def test_undecodable_bytes(garbage: bytes) -> None:
    err = _error(GOOD + encode_frame(garbage))
    assert "undecodable felix.ToDataplane" in str(err)
    assert (err.frame_number, err.offset, err.last_felix_sequence) == (2, len(GOOD), 41)


def test_default_limit_is_64_mib() -> None:
    reader = FrameReader(io.BufferedReader(io.BytesIO(LENGTH_PREFIX.pack(64 * 1024 * 1024 + 1))))
    with pytest.raises(FrameError, match="exceeds the limit of 67108864 bytes"):
        reader.read_frame()
