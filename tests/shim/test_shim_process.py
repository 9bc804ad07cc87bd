"""felix-shim as a real child process with Felix's pipes on fd 3/fd 4, against a fake agent."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from felix_shim.framing import LENGTH_PREFIX
from tests.shim import shim_messages as m
from tests.shim.harness import FakeAgent, ShimProcess
from vppagent.gen.felix import felixbackend_pb2 as felix

Spawn = Callable[..., ShimProcess]


def start_of_day() -> list[felix.ToDataplane]:
    return m.numbered(
        [
            m.config(ReportingIntervalSecs="30"),
            m.ipset("s:a", "10.0.0.1/32"),
            m.ipset("s:b", "10.0.1.0/24"),
            m.policy("allow-a", "10.0.0.0/8"),
            m.workload("ns/pod1", "cali1", "10.65.0.1/32"),
            m.in_sync(),
        ]
    )


@pytest.mark.parametrize("mode", ["batch", "single"])
def test_messages_arrive_in_order_and_status_goes_back_to_felix(
    fake_agent: FakeAgent, spawn_shim: Spawn, mode: str
) -> None:
    shim = spawn_shim(fake_agent.socket_path, "--stream-mode", mode)
    snapshot = start_of_day()
    deltas = m.numbered(
        [m.ipset_delta("s:a", [f"10.0.{i // 250}.{i % 250}"], []) for i in range(300)],
        start=len(snapshot) + 1,
    )
    # Connected before Felix says anything, so nothing is replayed: the agent must see
    # exactly what Felix sent, in order.
    stream = fake_agent.wait_for_stream()
    assert stream.method == ("SyncBatch" if mode == "batch" else "Sync")
    shim.send(*snapshot)
    shim.send(*deltas)
    assert fake_agent.wait_for_messages(stream, len(snapshot) + len(deltas)) == snapshot + deltas

    status = felix.FromDataplane(
        sequence_number=1,
        process_status_update=felix.ProcessStatusUpdate(iso_timestamp="2026-01-01T00:00:00Z", uptime=1.5),
    )
    stream.outgoing.put(status)
    assert shim.next_from_shim() == status

    shim.close_input()
    assert shim.wait() == 0, shim.stderr_text()
    assert stream.ended.wait(2), "the shim should half-close its stream on EOF"


def test_live_stream_preserves_felix_order_exactly(fake_agent: FakeAgent, spawn_shim: Spawn) -> None:
    shim = spawn_shim(fake_agent.socket_path)
    stream = fake_agent.wait_for_stream()  # connected before Felix says anything: no replay
    sent = start_of_day() + m.numbered(
        [m.policy(f"p{i}", f"10.{i % 200}.0.0/16") for i in range(500)] + [m.policy_remove("p3")], start=100
    )
    shim.send(*sent)
    assert fake_agent.wait_for_messages(stream, len(sent)) == sent
    shim.close_input()
    assert shim.wait() == 0


@pytest.mark.parametrize("agent_present", [True, False])
def test_sigterm_exits_zero_within_one_second(
    fake_agent: FakeAgent, spawn_shim: Spawn, agent_present: bool
) -> None:
    if not agent_present:
        fake_agent.stop()
    shim = spawn_shim(fake_agent.socket_path)
    shim.send(*start_of_day())
    if agent_present:
        fake_agent.wait_for_messages(fake_agent.wait_for_stream(), 1)
    else:
        time.sleep(1.0)  # let it start and fail to connect at least once
    sent_at = time.monotonic()
    shim.proc.send_signal(signal.SIGTERM)
    code = shim.wait(timeout=3)
    elapsed = time.monotonic() - sent_at
    assert code == 0, shim.stderr_text()
    assert elapsed < 1.0, f"took {elapsed:.2f} s to exit after SIGTERM"
    assert "received SIGTERM" in shim.stderr_text()


def test_eof_without_agent_exits_zero(socket_path: Path, spawn_shim: Spawn) -> None:
    shim = spawn_shim(socket_path)
    shim.send(*start_of_day())
    shim.close_input()
    assert shim.wait() == 0, shim.stderr_text()


def test_reconnect_replays_compacted_snapshot_then_in_sync(
    fake_agent: FakeAgent, spawn_shim: Spawn
) -> None:
    shim = spawn_shim(fake_agent.socket_path)
    first = fake_agent.wait_for_stream()
    sent = start_of_day() + m.numbered(
        [
            m.policy("allow-a", "10.1.0.0/16"),  # replaces the start-of-day version
            m.ipset_delta("s:a", ["10.0.0.2", "10.0.0.3"], ["10.0.0.1"]),
            m.policy("to-remove", "192.168.0.0/16"),
        ],
        start=50,
    )
    shim.send(*sent)
    fake_agent.wait_for_messages(first, len(sent))

    fake_agent.stop()
    assert first.ended.wait(2)
    # Changes while the agent is away are folded into the snapshot only.
    shim.send(
        *m.numbered(
            [
                m.policy_remove("to-remove"),
                m.ipset_remove("s:b"),
                m.ipset_delta("s:a", ["10.0.0.4/32"], ["10.0.0.2"]),
                m.workload("ns/pod2", "cali2", "10.65.0.2/32"),
                m.workload("ns/pod1", "cali1", "10.65.0.9/32"),
            ],
            start=60,
        )
    )
    time.sleep(0.3)
    fake_agent.start()
    second = fake_agent.wait_for_stream(2, timeout=5)
    expected_replay = [
        m.config(ReportingIntervalSecs="30"),
        m.ipset("s:a", "10.0.0.3/32", "10.0.0.4/32"),
        m.policy("allow-a", "10.1.0.0/16"),
        m.workload("ns/pod1", "cali1", "10.65.0.9/32"),
        m.workload("ns/pod2", "cali2", "10.65.0.2/32"),
        m.in_sync(),
    ]
    replay = fake_agent.wait_for_messages(second, len(expected_replay))
    assert replay == expected_replay

    # Live messages continue after the replay, in order, with Felix's sequence numbers.
    live = m.numbered([m.policy("after", "10.9.0.0/16"), m.policy_remove("allow-a")], start=70)
    shim.send(*live)
    assert fake_agent.wait_for_messages(second, len(expected_replay) + 2)[len(expected_replay) :] == live
    assert len(fake_agent.streams) == 2, "no extra streams"
    shim.close_input()
    assert shim.wait() == 0


def test_replay_before_felix_in_sync_has_no_in_sync(fake_agent: FakeAgent, spawn_shim: Spawn) -> None:
    fake_agent.stop()
    shim = spawn_shim(fake_agent.socket_path)
    partial = start_of_day()[:3]  # config and two ipsets; Felix is still sending its snapshot
    shim.send(*partial)
    time.sleep(0.3)
    fake_agent.start()
    stream = fake_agent.wait_for_stream()
    time.sleep(0.2)
    received = fake_agent.wait_for_messages(stream, 3)
    assert [msg.WhichOneof("payload") for msg in received] == ["config_update", "ipset_update", "ipset_update"]
    rest = m.numbered([m.policy("allow-a", "10.0.0.0/8"), m.in_sync()], start=10)
    shim.send(*rest)
    assert fake_agent.wait_for_messages(stream, 5)[3:] == rest


def test_agent_without_sync_batch_gets_per_message_sync(socket_path: Path, spawn_shim: Spawn) -> None:
    agent = FakeAgent(socket_path, batch=False).start()
    try:
        shim = spawn_shim(socket_path)
        sent = start_of_day()
        shim.send(*sent)
        stream = agent.wait_for_stream()
        assert stream.method == "Sync"
        received = agent.wait_for_messages(stream, 1)
        # Connected after some frames were folded or not: compare what the agent ends up with.
        agent.wait_for(lambda: stream.received[-1:] == sent[-1:] or stream.received[-1:] == [m.in_sync()])
        shim.close_input()
        assert shim.wait() == 0
        assert "does not implement SyncBatch" in shim.stderr_text()
        assert received[0].WhichOneof("payload") == "config_update"
    finally:
        agent.stop()


def test_unknown_payload_is_skipped_and_logged_once(fake_agent: FakeAgent, spawn_shim: Spawn) -> None:
    shim = spawn_shim(fake_agent.socket_path)
    stream = fake_agent.wait_for_stream()
    before, after = m.numbered([m.ipset("s:a", "10.0.0.1"), m.ipset("s:b", "10.0.0.2")])
    future = m.unknown_payload(40)
    shim.send(before)
    shim.send_raw(LENGTH_PREFIX.pack(len(future)) + future)
    shim.send_raw(LENGTH_PREFIX.pack(len(future)) + future)
    shim.send(after)
    shim.close_input()
    assert shim.wait() == 0
    assert fake_agent.wait_for_messages(stream, 2) == [before, after]
    log = shim.stderr_text()
    assert log.count("unknown payload field 40") == 1, log


@pytest.mark.parametrize(
    ("garbage", "expected"),
    [
        (LENGTH_PREFIX.pack(65 * 1024 * 1024), "exceeds the limit of 67108864 bytes"),
        (LENGTH_PREFIX.pack(100) + b"short", "truncated frame: end of stream after 5 of 100"),
        (LENGTH_PREFIX.pack(3) + b"\xff\xff\xff", "undecodable felix.ToDataplane"),
    ],
    ids=["oversized", "truncated", "garbage"],
)
def test_bad_input_exits_nonzero_naming_the_frame(
    fake_agent: FakeAgent, spawn_shim: Spawn, garbage: bytes, expected: str
) -> None:
    shim = spawn_shim(fake_agent.socket_path)
    good = m.numbered([m.config(a="b")], start=41)
    shim.send(*good)
    shim.send_raw(garbage)
    shim.close_input()
    assert shim.wait() == 1
    log = shim.stderr_text()
    frame_bytes = LENGTH_PREFIX.size + good[0].ByteSize()
    assert f"frame #2 at byte offset {frame_bytes}" in log, log
    assert "previous frame had Felix sequence_number 41" in log
    assert expected in log
