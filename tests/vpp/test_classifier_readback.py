"""Classifier tables read back as two pipelines (classifier/read.py `read_tables`) against the same
reading one request per table (what the driver did before: each table's info, then its sessions),
on the emulator: the same tables and chains; a table deleted after the ids were read, or between its
info and its sessions, read the same way by both; a refused info read raises the same refusal from
both, and the connection stays usable after it. And the pure part (`chains_in`) on walks that share
tables."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.vpp.helpers import Target, make_driver, state_of, tables_but_guards
from tests.vpp.test_classifier import MEMBERS, PODS, messages
from tests.vpp.test_classifier_adopt import foreign_chain
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused, ApiRequest
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.types import ClassifySession, ClassifyTableInfo
from vppagent.drivers.vpp.classifier.layout import DROP, OUR_OPAQUE, PERMIT
from vppagent.drivers.vpp.classifier.read import HeldTable, chains_in, read_tables
from vppagent.drivers.vpp.driver import VppDriver

Hook = Callable[[], None]


def one_by_one(calls: VppCalls, before_info: dict[int, Hook] | None = None,
               after_info: dict[int, Hook] | None = None) -> dict[int, HeldTable]:
    """The reading as it was: the ids, then per table its info and then its sessions, one request each.
    `before_info` / `after_info`: what happens in VPP just before / after a table's info is read."""
    tables = {}
    for index in calls.classify_table_ids():
        (before_info or {}).get(index, lambda: None)()
        [info] = calls.batches.classify_table_infos_if_present([index])  # a pipeline of one: one request
        (after_info or {}).get(index, lambda: None)()
        if info is None:
            continue
        tables[index] = HeldTable(info, calls.classify_sessions(index))
    return tables


def delete_table(target: Target, index: int) -> Hook:
    """Another client deletes the table (as `VppCalls.classify_table_del` does)."""
    def run() -> None:
        target.raw.api.classify_add_del_table(is_add=False, del_chain=False, table_index=index, match_n_vectors=1,
                                              mask_len=16, mask=bytes(16))
    return run


@pytest.fixture
def gated(target: Target) -> Iterator[VppDriver]:
    """A driver that programmed gated pods (an IPv4 chain) beside someone else's chain, on the
    emulator and on a real VPP."""
    before = tables_but_guards(target)
    for pod in PODS:
        target.pod(pod)
    foreign_chain(target)
    driver = make_driver(target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        yield driver
    finally:
        driver.close()
        if target.sim is None:
            remove_tables(target, tables_but_guards(target) - before)


def remove_tables(target: Target, tables: set[int]) -> None:
    """A real VPP serves the whole session: the chains these tests made (broken ones included, which
    no driver takes for its own) are detached from the pods and deleted (the guards, the pods and
    the ACLs go in `Target.cleanup`)."""
    raw = target.raw.api
    for sw_if_index in target.loopbacks:
        for table in tables:
            for detach in (raw.output_acl_set_interface, raw.input_acl_set_interface):
                detach(sw_if_index=sw_if_index, ip4_table_index=table, ip6_table_index=NO_INDEX,
                       l2_table_index=NO_INDEX, is_add=False)  # NO_SUCH_TABLE where not attached there
    for table in tables:
        delete_table(target, table)()


def test_pipelined_read_back_is_the_one_by_one_read_back(gated: VppDriver, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = gated.calls
    sent: list[int] = []
    pipeline = gated.conn.pipeline

    def counted(requests: Sequence[ApiRequest]) -> list[Any]:
        sent.append(len(requests))
        return pipeline(requests)

    with monkeypatch.context() as patch:
        patch.setattr(gated.conn, "pipeline", counted)
        pipelined = read_tables(calls)
    assert sent == [len(pipelined), len(pipelined)], "the infos as one pipeline, then the sessions"
    reference = one_by_one(calls)
    assert pipelined == reference
    assert len(reference) > 6 and any(t.sessions for t in reference.values())
    assert [c.tables for c in chains_in(pipelined)] == [c.tables for c in chains_in(reference)]
    assert len(chains_in(pipelined)) == 1, "web0's chain, shared with web1; the foreign one left out"


def test_a_table_deleted_mid_read_reads_as_before(target: Target, gated: VppDriver,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # Pipelined: one table goes after the ids were read (before the infos' pipeline), another after
    # its info was read (before the sessions' pipeline).
    driver = gated
    before = read_tables(driver.calls)
    vanished, emptied = two_tables(before)
    with monkeypatch.context() as patch:
        batches = driver.calls.batches
        patch.setattr(batches, "classify_table_infos_if_present",
                      after(delete_table(target, vanished), batches.classify_table_infos_if_present))
        patch.setattr(batches, "classify_sessions_of",
                      after(delete_table(target, emptied), batches.classify_sessions_of))
        pipelined = read_tables(driver.calls)
    assert pipelined == gone(before, vanished, emptied)
    [head] = [c.head for c in chains_in(before)]
    assert head not in [c.head for c in chains_in(pipelined)], "a chain that lost a table is not provably ours"

    # One by one, the same events at the same points of the read: the agent restarts and makes its
    # chains again (the broken ones are not provably its own: left alone), which are then read.
    driver.close()
    driver = make_driver(target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        before = read_tables(driver.calls)
        vanished, emptied = two_tables(before)
        reference = one_by_one(driver.calls, before_info={vanished: delete_table(target, vanished)},
                               after_info={emptied: delete_table(target, emptied)})
        assert reference == gone(before, vanished, emptied)
    finally:
        driver.close()


def two_tables(tables: dict[int, HeldTable]) -> tuple[int, int]:
    """Two tables after the head of our longest chain, holding sessions."""
    chain = max(chains_in(tables), key=lambda c: len(c.tables))
    first, second, *_ = [t for t in chain.tables[1:] if tables[t].sessions]
    return first, second


def after(event: Hook, read: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def run(indexes: Any) -> Any:
        event()
        return read(indexes)
    return run


def gone(before: dict[int, HeldTable], vanished: int, emptied: int) -> dict[int, HeldTable]:
    """What a read finds when `vanished` went before its info was read and `emptied` after: the one
    left out, the other with its info and no sessions."""
    assert before[emptied].sessions, "a table that held sessions (else its deletion would not show)"
    out = {i: t for i, t in before.items() if i != vanished}
    out[emptied] = HeldTable(before[emptied].info, [])
    return out


def test_a_refused_info_read_raises_as_before_and_the_connection_goes_on(target: Target, gated: VppDriver) -> None:
    if target.sim is None:
        pytest.skip("a refused read is made by the emulator's fault injection; a real VPP refuses none here")
    calls = gated.calls
    before = read_tables(calls)
    refused = sorted(before)[len(before) // 2]
    faults = target.emulator.faults

    def refuse_once() -> None:
        faults.reject("classify_table_info", ApiError.INVALID_VALUE, times=1, when=lambda f: f["table_id"] == refused)

    refuse_once()
    with pytest.raises(ApiRefused) as pipelined:
        read_tables(calls)
    refuse_once()
    with pytest.raises(ApiRefused) as reference:
        one_by_one(calls)
    assert str(pipelined.value) == str(reference.value) == (
        f"VPP refused classify_table_info (classifier table {refused}): retval {int(ApiError.INVALID_VALUE)}")
    assert read_tables(calls) == before, "every answer of the refused pipeline was read: the stream is in step"


# -- chains_in alone (pure): walks that share tables ---------------------------------------------------
ADMIT_MASK = bytes(12) + b"\xff" * 4 + bytes(16)  # IPv4 source, two vectors
GAP_MASK = bytes(9) + b"\xff" + bytes(22)  # IPv4 protocol


def held_table(index: int, mask: bytes, next_table: int, *sessions: tuple[int, int]) -> HeldTable:
    """A table missing to permit, with sessions (hit next, opaque); matches are made distinct."""
    return HeldTable(ClassifyTableInfo(index, mask, next_table, PERMIT, 2),
                     [ClassifySession(bytes([n]) + bytes(31), hit, opaque) for n, (hit, opaque) in enumerate(sessions)])


def two_heads_one_tail(second_head_opaque: int) -> dict[int, HeldTable]:
    """Heads 1 and 2 both pointing to admit table 3, then gap table 4 (a new head whose linking VPP
    refused points where the head it was to follow points)."""
    return {1: held_table(1, bytes(16) + b"\xff" * 4 + bytes(12), 3, (PERMIT, OUR_OPAQUE)),
            2: held_table(2, bytes(16) + b"\xff" * 4 + bytes(12), 3, (PERMIT, second_head_opaque)),
            3: held_table(3, ADMIT_MASK, 4, (PERMIT, OUR_OPAQUE)),
            4: held_table(4, GAP_MASK, NO_INDEX, (DROP, OUR_OPAQUE))}


def test_walks_sharing_tables_are_each_a_chain_when_all_ours_and_none_when_one_is_not() -> None:
    assert [c.tables for c in chains_in(two_heads_one_tail(OUR_OPAQUE))] == [[1, 3, 4], [2, 3, 4]]
    assert chains_in(two_heads_one_tail(7)) == [], "head 1's walk shares tables with a walk not all ours"
    alone = {i: t for i, t in two_heads_one_tail(7).items() if i != 2}
    assert [c.tables for c in chains_in(alone)] == [[1, 3, 4]], "without the foreign head it is ours"
