"""The outbox: snapshot + live feed hand-over without loss or reordering, batching, skipping."""

from __future__ import annotations

import sys
import threading

from felix_shim.outbox import IN_SYNC_FRAME, Outbox, StreamFeed
from tests.shim import shim_messages as m
from tests.shim.harness import ToDataplaneBatch
from vppagent.gen.felix import felixbackend_pb2 as felix
from vppagent.state.model import DataplaneState


def offer_all(outbox: Outbox, messages: list[felix.ToDataplane]) -> None:
    for msg in messages:
        outbox.offer(msg.SerializeToString(), msg)


def drain_frames(feed: StreamFeed) -> list[felix.ToDataplane]:
    return [felix.ToDataplane.FromString(raw) for raw in feed.frames()]


def test_messages_before_open_are_replayed_compacted_and_later_ones_live() -> None:
    outbox = Outbox()
    offer_all(outbox, [m.config(a="1"), m.policy("p", "10.0.0.0/8"), m.policy("p", "10.1.0.0/16")])
    feed = outbox.open_stream()
    live = m.numbered([m.policy_remove("p"), m.in_sync()], start=9)
    offer_all(outbox, live)
    outbox.finish()
    assert drain_frames(feed) == [m.config(a="1"), m.policy("p", "10.1.0.0/16"), *live]
    assert feed.drained.is_set()


def test_replay_ends_with_in_sync_only_once_felix_sent_it() -> None:
    outbox = Outbox()
    offer_all(outbox, [m.config(a="1")])
    before = outbox.open_stream()
    assert not before.replay_in_sync
    offer_all(outbox, [m.in_sync()])
    after = outbox.open_stream()
    outbox.finish()
    assert list(after.replay_frames()) == [m.config(a="1").SerializeToString(), IN_SYNC_FRAME]
    # The first feed was replaced: it ends (releasing its sender) after what it had queued.
    assert drain_frames(before)[-1] == m.in_sync()


def test_unknown_payload_is_not_folded_or_queued() -> None:
    outbox = Outbox()
    feed = outbox.open_stream()
    future = felix.ToDataplane.FromString(m.unknown_payload(41))
    assert outbox.offer(m.unknown_payload(41), future) is False
    assert outbox.offer(m.config(a="1").SerializeToString(), m.config(a="1")) is True
    outbox.finish()
    assert drain_frames(feed) == [m.config(a="1")]
    assert (outbox.received, outbox.skipped) == (2, 1)


def test_closed_stream_is_released_and_gets_nothing_more() -> None:
    outbox = Outbox()
    feed = outbox.open_stream()
    outbox.close_stream(feed)
    offer_all(outbox, [m.config(a="1")])
    assert drain_frames(feed) == []
    assert outbox.state.config == {"a": "1"}


def test_batches_carry_the_same_messages_in_order() -> None:
    outbox = Outbox()
    snapshot = [m.ipset(f"s:{i:03}", f"10.0.{i}.0/24") for i in range(50)]
    offer_all(outbox, [*snapshot, m.in_sync()])
    feed = outbox.open_stream()
    live = m.numbered([m.ipset_delta("s:001", [f"10.9.0.{i}"], []) for i in range(40)], start=100)
    offer_all(outbox, live)
    outbox.finish()
    batches = list(feed.batches(max_messages=16, max_bytes=1 << 20))
    assert all(len(ToDataplaneBatch.FromString(b).messages) <= 16 for b in batches)
    unpacked = [
        felix.ToDataplane.FromString(item.SerializeToString())
        for b in batches
        for item in ToDataplaneBatch.FromString(b).messages
    ]
    assert unpacked == [*snapshot, m.in_sync(), *live]


def test_concurrent_stream_switches_lose_and_reorder_nothing() -> None:
    """Whenever a stream opens, its snapshot is exactly the fold of a prefix of Felix's messages
    and its live part exactly the rest, in order."""
    messages = [m.config(a="1")]
    for i in range(3000):
        messages.append(
            [
                m.ipset_delta("s:a", [f"10.0.{i // 250}.{i % 250}"], [f"10.0.{(i - 7) // 250}.{(i - 7) % 250}"]),
                m.policy(f"p{i % 37}", f"10.{i % 200}.0.0/16"),
                m.policy_remove(f"p{(i * 7) % 37}"),
            ][i % 3]
        )
    messages = [m.ipset("s:a"), *m.numbered(messages)]
    outbox = Outbox()
    feeds: list[StreamFeed] = []
    done = threading.Event()

    def switch_streams() -> None:
        while not done.is_set():
            feeds.append(outbox.open_stream())

    switcher = threading.Thread(target=switch_streams)
    # Switch threads as often as possible, so a hand-over race would actually be hit.
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        switcher.start()
        offer_all(outbox, messages)
    finally:
        done.set()
        switcher.join()
        sys.setswitchinterval(old_interval)
    outbox.finish()
    assert len(feeds) > 3, "the test needs switches during the offers"
    # Each feed's live part runs until the next feed opened (the last one's until EOF), so
    # walking back from the end gives the prefix each snapshot must be the fold of.
    lives = [[felix.ToDataplane.FromString(raw) for raw in iter(feed.live.get, None)] for feed in feeds]
    end = len(messages)
    prefixes = []
    for live in reversed(lives):
        start = end - len(live)
        assert live == messages[start:end]
        prefixes.append(start)
        end = start
    prefixes.reverse()
    expected = DataplaneState()
    folded, last_compared, compared = 0, -1, 0
    for feed, prefix in zip(feeds, prefixes, strict=True):
        for msg in messages[folded:prefix]:
            expected.apply(msg)
        folded = prefix
        if prefix != last_compared:  # consecutive switches at one point share a snapshot
            assert feed.snapshot.tables == expected.tables, f"snapshot of the feed opened after {prefix}"
            last_compared, compared = prefix, compared + 1
    assert compared > 3
