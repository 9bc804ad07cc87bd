"""The threadless transport and pipelined writes (api/transport.py, VppConnection.pipeline), on the
emulator and on a real VPP: requests and both kinds of dump read on the caller's thread, events
nobody asked for skipped, a pipeline's per-item refusals, a stall in the middle of a pipeline,
and no thread left behind by connecting and dropping connections."""

from __future__ import annotations

import os
import struct
import threading

import pytest

from tests.vpp.helpers import Target
from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.api.connection import ApiRefused, ApiRequest, VppConnection, VppConnectionLost
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.transport import PIPELINE_WINDOW, ThreadlessTransport
from vppagent.drivers.vpp.api.types import SessionWrite
from vppagent.vppsim import VppSim

MASK = bytes(12) + b"\xff\xff\xff\xff"  # an IPv4 source address, matched from the IP header


def match(i: int) -> bytes:
    return bytes(12) + (0x0A400000 + i).to_bytes(4, "big")


def our_threads() -> set[threading.Thread]:
    """Threads (objects: an ident may be reused), but the emulator's (its per-client threads end
    on their own). Compared as "none that was not there before": earlier tests' may end meanwhile."""
    return {t for t in threading.enumerate() if not t.name.startswith("vppsim")}


def connected(target: Target, **kwargs: float) -> VppConnection:
    conn = VppConnection(target.socket_path, request_timeout=kwargs.get("request_timeout", 5.0))
    conn.connect()
    return conn


def test_requests_and_dumps_are_read_on_the_callers_thread(target: Target) -> None:
    before = our_threads()
    conn = connected(target)
    try:
        assert isinstance(conn._client.transport, ThreadlessTransport)  # type: ignore[union-attr]
        assert our_threads() <= before, "connecting started no thread"
        calls = VppCalls(conn)
        loop = calls.create_loopback("test loopback")
        target.loopbacks.append(loop)
        calls.set_tag(loop, "vpa-test-pipeline", "test tag")
        # an old-style dump (details, then vpp_papi's control_ping trailer)
        assert any(i.sw_if_index == loop and i.tag == "vpa-test-pipeline" for i in calls.interfaces())
        assert [i.sw_if_index for i in calls.interfaces(loop)] == [loop]
        with pytest.raises(ApiRefused) as refused:
            conn.call("sw_interface_set_flags", sw_if_index=NO_INDEX - 1, flags=1, what="no such interface")
        assert refused.value.retval == ApiError.INVALID_SW_IF_INDEX
        conn.ping()  # the stream is still in step after a refusal
        assert conn.requests["sw_interface_dump"] == 2 and conn.writes == 3
        assert our_threads() <= before
    finally:
        conn.close()


def test_a_reply_and_details_dump(target: Target) -> None:
    if target.sim is not None:
        pytest.skip("the emulator serves no `_reply` + details dump (none the driver sends is of that form)")
    conn = connected(target)
    hops = [f"10.65.254.{i}" for i in (1, 2)]
    try:
        for mtu, hop in enumerate(hops, 1300):
            conn.call("ip_path_mtu_update", pmtu={"table_id": 0, "nh": hop, "path_mtu": mtu})
        details = conn.dump("ip_path_mtu_get", cursor=0)
        assert {(str(d.pmtu.nh), int(d.pmtu.path_mtu)) for d in details} >= {(hops[0], 1300), (hops[1], 1301)}
        conn.ping()
    finally:
        for hop in hops:
            conn.call("ip_path_mtu_update", pmtu={"table_id": 0, "nh": hop, "path_mtu": 0})
        assert not {str(d.pmtu.nh) for d in conn.dump("ip_path_mtu_get", cursor=0)} & set(hops)
        conn.close()


def test_an_event_nobody_asked_for_does_not_break_a_request(target: Target) -> None:
    """The driver subscribes to nothing; a message with no context (an interface event) that
    arrives anyway is skipped, and the requests around it get their own replies."""
    conn = connected(target)
    try:
        calls = VppCalls(conn)
        conn.call("want_interface_events", enable_disable=True, pid=os.getpid(), what="interface events")
        try:
            for _ in range(3):  # each create sends an event behind its reply (VPP: from its process node)
                target.loopbacks.append(calls.create_loopback("test loopback"))
            conn.ping()
            results = conn.pipeline([ApiRequest("control_ping") for _ in range(10)])
            assert [type(r).__name__ for r in results] == ["control_ping_reply"] * 10
            assert [i.sw_if_index for i in calls.interfaces(target.loopbacks[-1])] == [target.loopbacks[-1]]
        finally:
            conn.call("want_interface_events", enable_disable=False, pid=os.getpid(), what="interface events off")
        conn.ping()
    finally:
        conn.close()


def test_a_pipeline_of_2000_session_adds_with_one_refused_in_the_middle(target: Target) -> None:
    conn = connected(target)
    try:
        calls = VppCalls(conn)
        table = calls.classify_table_add(mask=MASK, next_table=NO_INDEX, miss_next=NO_INDEX, nbuckets=4096,
                                         memory_size=8 << 20, what="test table")
        missing = max(calls.classify_table_ids()) + 1000  # a table VPP does not have: that add is refused
        writes = [SessionWrite(missing if i == 1000 else table, match(i), NO_INDEX, i) for i in range(2000)]
        requests_before, writes_before = conn.requests["classify_add_del_session"], conn.writes
        try:
            outcomes = calls.batches.classify_sessions_write(writes)
            assert [i for i, o in enumerate(outcomes) if o is not None] == [1000]
            refusal = outcomes[1000]
            assert refusal is not None and refusal.retval == ApiError.NO_SUCH_TABLE
            assert f"table {missing}" in str(refusal)
            held = {s.match: s.opaque for s in calls.classify_sessions(table)}
            assert held == {match(i): i for i in range(2000) if i != 1000}, "the others are applied"
            assert conn.requests["classify_add_del_session"] - requests_before == 2000
            assert conn.writes - writes_before == 2000
            # deletes of the same, pipelined: the table is empty again
            outcomes = calls.batches.classify_sessions_write([SessionWrite(table, match(i), NO_INDEX, i, add=False)
                                                      for i in range(2000) if i != 1000])
            assert outcomes == [None] * 1999 and calls.classify_sessions(table) == []
        finally:
            calls.classify_table_del(table)
    finally:
        conn.close()


def test_dumps_in_a_pipeline_answer_with_their_details(target: Target) -> None:
    """Old-style dumps (each with its control_ping trailer) and a `_reply` + details one (real VPP),
    among writes: each answered with its own details, in order, the writes before them applied."""
    conn = connected(target)
    try:
        calls = VppCalls(conn)
        table = calls.classify_table_add(mask=MASK, next_table=NO_INDEX, miss_next=NO_INDEX, nbuckets=64,
                                         memory_size=1 << 20, what="test table")
        try:
            requests = []
            for i in range(100):
                requests.append(ApiRequest("classify_add_del_session", {
                    "is_add": True, "table_index": table, "hit_next_index": NO_INDEX, "opaque_index": i,
                    "match_len": 16, "match": match(i)}))
                requests.append(ApiRequest("classify_session_dump", {"table_id": table}))
            if target.sim is None:
                requests.append(ApiRequest("ip_path_mtu_get", {"cursor": 0}))
            results = conn.pipeline(requests)
            dumps = results[1:200:2]
            assert [sorted(int(s.opaque_index) for s in d) for d in dumps] == [list(range(i + 1)) for i in range(100)]
            if target.sim is None:
                assert isinstance(results[-1], list)
            assert conn.requests["classify_session_dump"] == 100 and "control_ping" not in conn.requests
            conn.ping()
        finally:
            calls.classify_table_del(table)
    finally:
        conn.close()


def test_a_pipeline_keeps_the_order_of_dependent_writes(target: Target) -> None:
    """Adds and deletes of the same sessions in one pipeline: VPP applies them in order (out of
    order, a delete would come before its add and be refused, or the wrong opaque would stay)."""
    conn = connected(target)
    try:
        calls = VppCalls(conn)
        table = calls.classify_table_add(mask=MASK, next_table=NO_INDEX, miss_next=NO_INDEX, nbuckets=64,
                                         memory_size=1 << 20, what="test table")
        try:
            steps = []
            for i in range(PIPELINE_WINDOW):  # add, delete, add again (another opaque); the odd ones deleted last
                steps += [SessionWrite(table, match(i), NO_INDEX, i),
                          SessionWrite(table, match(i), NO_INDEX, i, add=False),
                          SessionWrite(table, match(i), NO_INDEX, 1000 + i)]
                if i % 2:
                    steps.append(SessionWrite(table, match(i), NO_INDEX, 1000 + i, add=False))
            outcomes = calls.batches.classify_sessions_write(steps)
            assert outcomes == [None] * len(steps)
            assert {s.match: s.opaque for s in calls.classify_sessions(table)} == {
                match(i): 1000 + i for i in range(0, PIPELINE_WINDOW, 2)}
        finally:
            calls.classify_table_del(table)
    finally:
        conn.close()


def test_a_request_that_cannot_be_sent_stops_the_pipeline_in_step(target: Target) -> None:
    """A message VPP's definitions lack, or a field the message does not have, after a few bursts
    went out: ValueError, the requests sent before it answered and applied, still in step."""
    conn = connected(target)
    try:
        calls = VppCalls(conn)
        table = calls.classify_table_add(mask=MASK, next_table=NO_INDEX, miss_next=NO_INDEX, nbuckets=1024,
                                         memory_size=1 << 20, what="test table")
        try:
            adds = [ApiRequest("classify_add_del_session", {
                "is_add": True, "table_index": table, "hit_next_index": NO_INDEX, "opaque_index": i,
                "match_len": 16, "match": match(i)}) for i in range(300)]
            with pytest.raises(ValueError, match="no_such_table_request is not a request"):
                conn.pipeline([*adds[:150], ApiRequest("no_such_table_request"), *adds[150:]])
            with pytest.raises(ValueError, match="no_such_field"):
                conn.pipeline([*adds[150:200], ApiRequest("control_ping", {"no_such_field": 1}), *adds[200:]])
            assert conn.connected
            conn.ping()
            assert {s.match for s in calls.classify_sessions(table)} == {match(i) for i in range(200)}
        finally:
            calls.classify_table_del(table)
    finally:
        conn.close()


def test_a_stall_in_the_middle_of_a_pipeline_loses_the_connection_and_reconnecting_works(vppsim: VppSim) -> None:
    conn = VppConnection(vppsim.socket_path, request_timeout=0.3)
    conn.connect()
    calls = VppCalls(conn)
    table = calls.classify_table_add(mask=MASK, next_table=NO_INDEX, miss_next=NO_INDEX, nbuckets=64,
                                     memory_size=1 << 20, what="test table")
    vppsim.faults.stall(1.5, message="classify_add_del_table")  # the 301st request's reply comes late
    requests = [ApiRequest("classify_add_del_session", {"is_add": True, "table_index": table,
                                                        "hit_next_index": NO_INDEX, "opaque_index": i,
                                                        "match_len": 16, "match": match(i)}) for i in range(600)]
    requests.insert(300, ApiRequest("classify_add_del_table", {
        "is_add": True, "table_index": table, "nbuckets": 64, "memory_size": 1 << 20, "match_n_vectors": 1,
        "next_table_index": NO_INDEX, "miss_next_index": NO_INDEX, "mask_len": 16, "mask": MASK}))
    with pytest.raises(VppConnectionLost, match="pipeline of 601 requests: timed out"):
        conn.pipeline(requests)
    assert not conn.connected
    assert conn.requests["classify_add_del_session"] <= 300 + PIPELINE_WINDOW, "none sent past the window"
    with pytest.raises(VppConnectionLost, match="not connected"):
        conn.pipeline(requests[:1])
    conn.connect()
    held = {s.match for s in calls.classify_sessions(table)}
    assert {match(i) for i in range(300)} <= held, "what came before the stall was applied"
    assert calls.batches.classify_sessions_write([SessionWrite(table, match(1000), NO_INDEX, 0)]) == [None]
    conn.close()


def test_twenty_connections_made_and_dropped_leave_no_thread(target: Target) -> None:
    """Closed politely, or lost (a stall, on the emulator): no thread is left, none ever started."""
    before = our_threads()
    for i in range(20):
        conn = connected(target, request_timeout=0.3)
        conn.pipeline([ApiRequest("control_ping") for _ in range(3)])
        assert our_threads() <= before
        if target.sim is not None and i % 2:
            target.sim.faults.stall(0.6, message="control_ping")
            with pytest.raises(VppConnectionLost):
                conn.ping()
            assert not conn.connected
        else:
            conn.close()
    assert our_threads() <= before


def test_an_error_reply_whose_unset_part_is_garbage_decodes_as_its_retval(target: Target) -> None:
    """VPP 26.06's `classify_table_info` of a table that is gone sets only id, context and retval
    of a reply it allocates uninitialised: its mask_length is whatever the buffer held (seen, as
    here, far past the 42-byte message). The transport reads such a reply as its retval; a reply
    saying success that does not decode stays an error."""
    conn = connected(target)
    try:
        client = conn._client
        assert client is not None
        transport = client.transport
        msg_id = client.id_msgdef.index(client.messages["classify_table_info_reply"])
        rest = struct.pack(">7II", *(0,) * 7, 0xFE7F0000)  # table_id ... miss_next_index, then mask_length
        refused = struct.pack(">HIi", msg_id, 77, int(ApiError.CLASSIFY_TABLE_NOT_FOUND)) + rest
        assert len(refused) == 42
        reply = transport._decode(refused)
        assert type(reply).__name__ == "classify_table_info_reply"
        assert (reply.context, reply.retval) == (77, ApiError.CLASSIFY_TABLE_NOT_FOUND)
        with pytest.raises(struct.error):
            transport._decode(struct.pack(">HIi", msg_id, 78, 0) + rest)
    finally:
        conn.close()
