"""The session rule with `reclassify_sessions` on (the driver's default; docs/vpp-driver.md, "The
session rule"), on the emulator: an ACL change makes the flows of the interfaces it touches stale;
the next packet in the direction that made a flow's session is judged again by the new policy, so a
flow it still allows goes on and one it denies stops there. Packets the other way still pass on the
stale session until then. With it off: tests/vpp/test_sessions.py. On real VPP:
tests/realvpp/test_reclassify.py."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import pytest

from tests.vpp.helpers import Target, make_driver, resynced, state_of
from tests.vpp.test_sessions import ACK, A, B, Flow, base, update
from vppagent.config import AgentConfig
from vppagent.drivers import DriverUnavailable
from vppagent.drivers.vpp import create_driver, flag
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.lab import builders as b
from vppagent.state.model import DataplaneState
from vppagent.vppsim import Direction, Packet

PODS = ("ns/a", "ns/b", "ns/b2", "ns/c")


def a_sends(target: Target, b_interface: int) -> bool:
    """A's next packet of the flow (an ACK A:40000 -> B:80) leaves VPP on B's interface: the
    direction that made the flow's session there."""
    assert target.emulator is not None
    ack = Packet.make(A, B, "tcp", 40000, 80, tcp_flags=ACK)
    return target.emulator.evaluate(b_interface, Direction.OUTPUT, ack).permitted


@contextlib.contextmanager
def flowing(target: Target) -> Iterator[tuple[VppDriver, DataplaneState, Flow, int]]:
    """The pods attached, `base()` resynced by a driver, A's flow to B open: the driver, the
    state, the flow, and B's interface."""
    interfaces = {p: target.pod(p) for p in PODS}
    state = state_of(base())
    with resynced(target, state) as driver:
        flow = Flow(target, interfaces)
        assert flow.open()
        yield driver, state, flow, interfaces["ns/b"]


def test_the_driver_turns_it_on_and_reports_it(sim_target: Target) -> None:
    assert sim_target.emulator is not None
    with resynced(sim_target, state_of(base())) as driver:
        assert sim_target.emulator.state.acl.reclassify_sessions
        assert driver.status()["reclassify_sessions"] == "on"


def test_a_flow_the_new_policy_allows_goes_on_and_one_it_denies_stops_in_its_direction(sim_target: Target) -> None:
    with flowing(sim_target) as (driver, state, flow, server):
        assert flow.alive()
        # B's policy widens in place (its ACL replaced, a new policy epoch): the flow is judged
        # again at A's next packet, still allowed, and goes on
        state = update(driver, state, b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[80, 81])]))
        assert a_sends(sim_target, server) and flow.alive()
        # B's policy tightens (tcp/80 no longer allowed): B's answers pass on the stale session
        # until A sends again; A's next packet is judged again and dropped, and the session is gone
        state = update(driver, state, b.policy("web", inbound=[b.rule("allow", protocol="tcp", dst_ports=[81])]))
        assert flow.alive(), "the other direction passes until a packet in the flow's own direction"
        assert not a_sends(sim_target, server), "judged again by the new policy: denied"
        assert not flow.alive(), "its session went with that packet"
        assert not flow.new_one_allowed()


def test_an_unrelated_update_keeps_flows(sim_target: Target) -> None:
    """Updates that leave B's ACLs and bindings alone bump no epoch of B's: nothing is judged again."""
    with flowing(sim_target) as (driver, state, flow, server):
        state = update(driver, state, b.ipset_delta("s:other", added=["10.65.7.8"]))
        state = update(driver, state, b.workload("ns/d", "cali5", ipv4=["10.65.0.6/32"], profiles=["open"]))
        assert a_sends(sim_target, server) and flow.alive()


def test_the_setting_is_set_again_after_vpp_restarts(sim_target: Target) -> None:
    assert sim_target.emulator is not None
    state = state_of(base())
    with resynced(sim_target, state) as driver:
        sim_target.emulator.restart()
        assert not sim_target.emulator.state.acl.reclassify_sessions, "a restarted VPP forgets it"
        assert driver.resync(state).ok
        assert sim_target.emulator.state.acl.reclassify_sessions
        assert driver.status()["reclassify_sessions"] == "on"


def test_off_turns_it_off(sim_target: Target) -> None:
    assert sim_target.emulator is not None
    sim_target.emulator.state.run_cli("set acl-plugin reclassify-sessions 1")
    with resynced(sim_target, state_of(base()), reclassify_sessions=False) as driver:
        assert not sim_target.emulator.state.acl.reclassify_sessions
        assert driver.status()["reclassify_sessions"] == "off"


def test_a_vpp_that_refuses_it_is_logged_once_reported_and_programmed(sim_target: Target,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    assert sim_target.emulator is not None
    sim_target.emulator.faults.reject("cli_inband", -1)
    driver: VppDriver = make_driver(sim_target)
    try:
        with caplog.at_level(logging.WARNING, logger="vppagent.drivers.vpp.driver"):
            state = state_of(base())
            assert driver.resync(state).ok, "the ACLs are programmed all the same"
            assert driver.resync(state).ok
        status = driver.status()["reclassify_sessions"]
        assert status.startswith("refused: VPP refused cli_inband"), status
        assert sum("reclassify" in r.getMessage() for r in caplog.records) == 1, "logged once"
        assert not sim_target.emulator.state.acl.reclassify_sessions
    finally:
        sim_target.emulator.faults.clear()
        driver.close()


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("", True), ("true", True), ("False", False),
                                                 ("0", False), ("on", True)])
def test_the_setting_reads_true_or_false(monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool) -> None:
    if value is None:
        monkeypatch.delenv("VPPAGENT_VPP_RECLASSIFY_SESSIONS", raising=False)
    else:
        monkeypatch.setenv("VPPAGENT_VPP_RECLASSIFY_SESSIONS", value)
    assert flag("VPPAGENT_VPP_RECLASSIFY_SESSIONS", True) is expected


def test_another_value_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VPPAGENT_VPP_RECLASSIFY_SESSIONS", "maybe")
    with pytest.raises(DriverUnavailable, match="VPPAGENT_VPP_RECLASSIFY_SESSIONS='maybe': expected true or false"):
        create_driver(AgentConfig.model_validate({"driver": "vpp", "vpp_api_socket": "/nonexistent/api.sock"}))
