"""Connecting: definitions, the CRC/missing-message check with one clear line, the version and the
API layout found, driver selection (vpp, and auto's fallback), and that the pinned CRCs are those of
every release the layout claims (25.10 and 26.06)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agentproc import wait_for
from tests.vpp.helpers import Target
from vppagent.config import AgentConfig
from vppagent.drivers import DriverUnavailable, make_driver
from vppagent.drivers.vpp import create_driver, pod_kind
from vppagent.drivers.vpp.api.connection import VppConnection, VppConnectionLost, VppUnavailable
from vppagent.drivers.vpp.api.errors import NO_INDEX
from vppagent.drivers.vpp.api.messages import LAYOUTS, REQUIRED_MESSAGES, release_of, requests
from vppagent.vppsim import API_DIR, RELEASES, VppSim


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_pinned_crcs_are_those_of_each_release_the_layout_claims(release: str) -> None:
    crcs = {}
    for path in RELEASES[release].api_dir.glob("*.api.json"):
        for message in json.loads(path.read_text())["messages"]:
            crcs[message[0]] = message[-1]["crc"][2:]
    [layout] = [layout for layout in LAYOUTS if release in layout.releases]
    assert {n: crcs.get(n) for n in layout.messages} == dict(layout.messages)
    assert layout.messages is REQUIRED_MESSAGES
    assert "acl_add_replace" in requests() and "acl_details" not in requests()


@pytest.mark.parametrize(("version", "release"), [
    ("26.06.0-release", "26.06"), ("25.10.0-release", "25.10"), ("v26.06-rc0~123-gabcdef", "26.06"),
    ("24.2.1", "24.02"), ("unknown", None), ("(version unknown)", None),
])
def test_release_of_a_version_string(version: str, release: str | None) -> None:
    assert release_of(version) == release


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_the_driver_says_which_release_and_layout_it_found(release: str, tmp_path: Path) -> None:
    with VppSim(tmp_path / "api.sock", vpp_version=release) as sim:
        config = AgentConfig.model_validate({"vpp_api_socket": str(sim.socket_path), "driver": "vpp"})
        driver, _ = make_driver("vpp", config)
        try:
            status = driver.status()
            assert (status["vpp_version"], status["vpp_release"], status["api_layout"]) == (
                RELEASES[release].version, release, "25.10")
        finally:
            driver.close()


def test_connect_reads_definitions_from_vpp_and_knows_its_version(target: Target) -> None:
    conn = VppConnection(target.socket_path)
    conn.connect()
    try:
        assert conn.definitions == "get_api_json"
        assert conn.version and conn.version != "unknown"
        if target.sim is not None:
            assert conn.version == "26.06.0-release"
        conn.ping()
        assert conn.writes == 0 and conn.requests["control_ping"] == 1
    finally:
        conn.close()


def test_without_get_api_json_the_definitions_come_from_a_directory(vppsim: VppSim) -> None:
    vppsim.faults.omit_from_message_table("get_api_json")
    conn = VppConnection(vppsim.socket_path, api_dir=str(API_DIR))
    conn.connect()
    try:
        assert conn.definitions == str(API_DIR)
        assert conn.dump("acl_dump", acl_index=NO_INDEX) == []
    finally:
        conn.close()
    with pytest.raises(VppUnavailable, match=r"does not serve get_api_json.*/nonexistent"):
        VppConnection(vppsim.socket_path, api_dir="/nonexistent").connect()


def test_a_changed_crc_is_refused_in_one_line_naming_it_and_the_version(vppsim: VppSim) -> None:
    vppsim.faults.alter_crc("acl_add_replace", "deadbeef")
    with pytest.raises(VppUnavailable) as err:
        VppConnection(vppsim.socket_path).connect()
    text = str(err.value)
    assert "\n" not in text
    assert "VPP 26.06.0-release" in text
    assert "CRC differs for acl_add_replace (VPP deadbeef, driver ee5c2f18)" in text
    # the emulator sees the close on its own thread, after the client has returned
    wait_for(lambda: vppsim.client_count == 0, timeout=5.0, what="the refused connection closed")


def test_missing_messages_are_named(vppsim: VppSim) -> None:
    vppsim.faults.omit_from_message_table("tap_create_v3")
    vppsim.faults.omit_from_message_table("acl_interface_list_details")
    with pytest.raises(VppUnavailable, match=r"missing acl_interface_list_details, tap_create_v3 "
                                             r"\(layout 25\.10, for VPP 25\.10/26\.06\)$"):
        VppConnection(vppsim.socket_path).connect()


def test_no_socket_is_unavailable_not_a_crash(tmp_path: object) -> None:
    with pytest.raises(VppUnavailable,
                       match=r"^cannot connect to VPP at /nonexistent/api\.sock: No such file or directory$"):
        VppConnection("/nonexistent/api.sock").connect()


def test_requests_after_loss_raise_connection_lost(vppsim: VppSim) -> None:
    conn = VppConnection(vppsim.socket_path, request_timeout=1)
    conn.connect()
    vppsim.restart()
    with pytest.raises(VppConnectionLost):
        conn.ping()
    assert not conn.connected
    with pytest.raises(VppConnectionLost, match="not connected"):
        conn.ping()
    conn.connect()
    conn.ping()
    conn.close()


def test_make_driver_vpp_and_auto(vppsim: VppSim) -> None:
    config = AgentConfig.model_validate({"vpp_api_socket": vppsim.socket_path, "driver": "vpp"})
    driver, reason = make_driver("vpp", config)
    try:
        assert driver.name == "vpp" and reason == "requested: vpp"
        assert driver.status()["vpp_version"] == "26.06.0-release"
    finally:
        driver.close()
    driver, reason = make_driver("auto", config)
    try:
        assert driver.name == "vpp" and reason.startswith("auto: VPP answered")
    finally:
        driver.close()


def test_crc_mismatch_refuses_vpp_and_auto_falls_back_with_the_reason(vppsim: VppSim) -> None:
    vppsim.faults.alter_crc("ip_route_add_del", "0badc0de")
    config = AgentConfig.model_validate({"vpp_api_socket": vppsim.socket_path})
    with pytest.raises(DriverUnavailable, match="CRC differs for ip_route_add_del"):
        create_driver(config)
    try:
        driver, reason = make_driver("auto", config)
    except DriverUnavailable as exc:  # no iptables on this host: the reason still names VPP's problem
        assert "CRC differs for ip_route_add_del" in str(exc)
        return
    try:
        assert driver.name == "iptables"
        assert "CRC differs for ip_route_add_del" in reason and reason.endswith("using iptables")
    finally:
        driver.close()


def test_pod_interface_auto_follows_vhost_net(tmp_path: object) -> None:
    from pathlib import Path

    present = Path(str(tmp_path)) / "vhost-net"
    present.touch()
    assert pod_kind("auto", present) == "tap"
    assert pod_kind("auto", Path("/nonexistent/vhost-net")) == "af_packet"
    assert pod_kind("tap", Path("/nonexistent")) == "tap" and pod_kind("af_packet", present) == "af_packet"
