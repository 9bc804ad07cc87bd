"""Fault injection and transport robustness, observed through vpp_papi."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from vpp_papi import VPPApiClient
from vpp_papi.vpp_papi import VPPIOError

from tests.vppsim.conformance import rule
from vppagent.vppsim import RELEASES, VppSim, load_definitions
from vppagent.vppsim.testing import running_vppsim, socket_directory

NONE = 0xFFFFFFFF


def connect(sim: VppSim, *, read_timeout: float = 2) -> VPPApiClient:
    client = VPPApiClient(server_address=str(sim.socket_path), bootstrapapi=True, read_timeout=read_timeout)
    client.connect("fault-test")
    return client


def add_acl(client: VPPApiClient) -> int:
    reply = client.api.acl_add_replace(acl_index=NONE, tag="", count=1, r=[rule()])
    assert reply.retval == 0
    return int(reply.acl_index)


def test_restart_closes_connections_and_forgets_everything(vppsim: VppSim, vppsim_client: VPPApiClient) -> None:
    add_acl(vppsim_client)
    vppsim_client.api.create_loopback()
    vppsim.restart()
    with pytest.raises(OSError):  # VPPIOError or the transport's broken-pipe error, both IOError
        vppsim_client.api.control_ping()
    fresh = connect(vppsim)
    assert fresh.api.acl_dump(acl_index=NONE) == []
    assert [d.interface_name for d in fresh.api.sw_interface_dump()] == ["local0"]
    fresh.disconnect()


def test_restart_with_downtime_refuses_connections_until_back(vppsim: VppSim) -> None:
    vppsim.restart(downtime=0.3)
    with pytest.raises(OSError):
        connect(vppsim)
    deadline = time.monotonic() + 3
    while not vppsim.socket_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    client = connect(vppsim)
    assert client.api.control_ping().retval == 0
    client.disconnect()


def test_stalled_reply_times_out_the_client(vppsim: VppSim) -> None:
    client = connect(vppsim, read_timeout=0.2)
    vppsim.faults.stall(0.6, message="show_version")
    with pytest.raises(VPPIOError):
        client.api.show_version()
    time.sleep(0.5)
    assert client.api.control_ping().retval == 0
    client.disconnect()


def test_connection_dropped_mid_dump(vppsim: VppSim, vppsim_client: VPPApiClient) -> None:
    for _ in range(3):
        add_acl(vppsim_client)
    vppsim.faults.drop_mid_dump("acl_dump", after_details=1)
    # Either the read fails (VPPIOError) or, if the socket is already gone, sending the trailing
    # control_ping does (the transport's broken pipe): both are IOError.
    with pytest.raises(OSError):
        vppsim_client.api.acl_dump(acl_index=NONE)
    again = connect(vppsim)
    assert len(again.api.acl_dump(acl_index=NONE)) == 3
    again.disconnect()


def test_rejected_message_answers_the_chosen_retval_without_effect(vppsim: VppSim,
                                                                  vppsim_client: VPPApiClient) -> None:
    vppsim.faults.reject("acl_add_replace", -1, times=1)
    reply = vppsim_client.api.acl_add_replace(acl_index=NONE, tag="", count=1, r=[rule()])
    assert reply.retval == -1
    assert vppsim_client.api.acl_dump(acl_index=NONE) == []
    assert add_acl(vppsim_client) == 0


def test_message_missing_from_the_table_is_not_callable(vppsim: VppSim) -> None:
    vppsim.faults.omit_from_message_table("acl_interface_add_del")
    client = connect(vppsim)
    definitions = load_definitions()
    assert not hasattr(client.api, "acl_interface_add_del")
    assert client.validate_message_table([definitions.name_crc("acl_interface_add_del")]) == [
        definitions.name_crc("acl_interface_add_del")]
    client.disconnect()


def test_altered_crc_makes_the_message_unusable(vppsim: VppSim) -> None:
    vppsim.faults.alter_crc("acl_dump", "deadbeef")
    client = connect(vppsim)
    assert "acl_dump_deadbeef" in client.transport.message_table
    assert not hasattr(client.api, "acl_dump")
    assert client.api.acl_plugin_get_version().major == 1
    client.disconnect()


def _raw_connection(sim: VppSim) -> socket.socket:
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(str(sim.socket_path))
    raw.settimeout(2)
    return raw


@pytest.mark.parametrize("garbage", [
    struct.pack(">QII", 0, 0xFFFFFFF0, 0),  # a frame no message can fill
    struct.pack(">QII", 0, 4, 0) + struct.pack(">HH", 38, 0),  # sw_interface_set_flags cut short
])
def test_garbage_drops_that_client_only(vppsim: VppSim, vppsim_client: VPPApiClient, garbage: bytes) -> None:
    raw = _raw_connection(vppsim)
    raw.sendall(garbage)
    assert raw.recv(16) == b""  # the emulator closed this connection
    raw.close()
    assert vppsim_client.api.control_ping().retval == 0


def test_unknown_message_id_is_ignored_without_dropping(vppsim: VppSim, vppsim_client: VPPApiClient) -> None:
    vppsim_client.transport.write(struct.pack(">HII", 0xFFF0, vppsim_client.transport.socket_index, 77))
    assert vppsim_client.api.control_ping().retval == 0


def test_several_clients_in_parallel(vppsim: VppSim) -> None:
    clients = [connect(vppsim) for _ in range(4)]
    created: list[list[int]] = [[] for _ in clients]

    def work(position: int) -> None:
        for _ in range(10):
            created[position].append(add_acl(clients[position]))

    threads = [threading.Thread(target=work, args=(position,)) for position in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every_index = sorted(index for indices in created for index in indices)
    assert every_index == list(range(40))
    assert len({c.transport.socket_index for c in clients}) == 4
    for client in clients:
        client.disconnect()


def test_many_instances_start_fast_and_stay_separate() -> None:
    with socket_directory() as directory:
        sims = []
        for number in range(8):
            started = time.monotonic()
            sims.append(VppSim(directory / f"vpp{number}.sock").start())
            assert time.monotonic() - started < 0.5
        try:
            clients = [connect(sim) for sim in sims]
            add_acl(clients[0])
            assert [len(c.api.acl_dump(acl_index=NONE)) for c in clients] == [1] + [0] * 7
            for client in clients:
                client.disconnect()
        finally:
            for sim in sims:
                sim.stop()


@pytest.mark.parametrize("vpp_version", [None, *sorted(RELEASES)])
def test_runs_as_a_process(vpp_version: str | None) -> None:
    """``python -m vppagent.vppsim`` plays the release ``--vpp-version`` names, 26.06 without it."""
    with socket_directory() as directory:
        path = directory / "api.sock"
        started = time.monotonic()
        version_args = [] if vpp_version is None else ["--vpp-version", vpp_version]
        process = subprocess.Popen([sys.executable, "-m", "vppagent.vppsim", "--socket", str(path), *version_args],
                                   stderr=subprocess.DEVNULL)
        try:
            while not _accepts(path):
                assert process.poll() is None and time.monotonic() - started < 10
                time.sleep(0.01)
            client = VPPApiClient(server_address=str(path), bootstrapapi=True)
            client.connect("process-test")
            assert client.api.show_version().version == RELEASES[vpp_version or "26.06"].version
            client.disconnect()
        finally:
            process.terminate()
            assert process.wait(timeout=5) == 0


def _accepts(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_disconnect_is_clean(vppsim: VppSim) -> None:
    client = connect(vppsim)
    assert vppsim.client_count == 1
    client.disconnect()
    deadline = time.monotonic() + 2
    while vppsim.client_count and time.monotonic() < deadline:
        time.sleep(0.01)
    assert vppsim.client_count == 0


def test_running_vppsim_helper_cleans_up() -> None:
    with running_vppsim() as sim:
        path = sim.socket_path
        assert path.exists()
    assert not path.exists()
