"""Classifier tables read back as two pipelines (classifier/read.py `read_tables`) against the same
reading one request per table (what the driver did before: each table's info, then its sessions),
on the emulator: the same tables and chains; a table deleted after the ids were read, or between its
info and its sessions, read the same way by both; a refused info read raises the same refusal from
both, and the connection stays usable after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from tests.vpp.helpers import Target, make_driver, state_of
from tests.vpp.test_classifier import MEMBERS, PODS, messages
from tests.vpp.test_classifier_adopt import foreign_chain
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused, ApiRequest
from vppagent.drivers.vpp.api.errors import ApiError
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
    """A driver that programmed gated pods (chains in both families) beside someone else's chain,
    on the emulator and on a real VPP."""
    for pod in PODS:
        target.pod(pod)
    foreign_chain(target)
    driver = make_driver(target)
    try:
        assert driver.resync(state_of(messages(MEMBERS))).ok
        yield driver
    finally:
        driver.close()


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
