"""Pod attachment devices on the emulator: tapv2, af_packet, memif (real VPP needs host resources)."""

from __future__ import annotations

from vpp_papi import VPPApiClient

from vppagent.vppsim import ApiError, VppSim

NONE = 0xFFFFFFFF


def test_tap_with_namespace_and_host_name(vppsim_client: VPPApiClient) -> None:
    api = vppsim_client.api
    reply = api.tap_create_v3(host_namespace="cni-1234", host_namespace_set=True, host_if_name="eth0",
                              host_if_name_set=True, tag="pod-1")
    assert reply.retval == 0
    [tap] = api.sw_interface_tap_v2_dump(sw_if_index=reply.sw_if_index)
    assert (tap.id, tap.host_namespace, tap.host_if_name, tap.dev_name) == (0, "cni-1234", "eth0", "tap0")
    [details] = api.sw_interface_dump(sw_if_index=reply.sw_if_index)
    assert (details.interface_name, details.tag) == ("tap0", "pod-1")


def test_tap_ids_and_refusals(vppsim_client: VPPApiClient) -> None:
    api = vppsim_client.api
    first, second = api.tap_create_v3(), api.tap_create_v3(id=7)
    assert [t.id for t in api.sw_interface_tap_v2_dump()] == [0, 7]
    assert api.tap_create_v3(id=7).retval == ApiError.INVALID_INTERFACE
    assert api.tap_delete_v2(sw_if_index=0).retval == ApiError.INVALID_SW_IF_INDEX  # local0 is no tap
    assert api.tap_delete_v2(sw_if_index=first.sw_if_index).retval == 0
    assert api.tap_create_v3().sw_if_index == first.sw_if_index  # sw_if_index reused from the pool
    assert second.sw_if_index != first.sw_if_index


def test_tap_without_vhost_net_fails_like_vpp(vppsim_client: VPPApiClient, vppsim: VppSim) -> None:
    vppsim.faults.no_vhost_net = True
    reply = vppsim_client.api.tap_create_v3(host_namespace="p", host_namespace_set=True)
    assert reply.retval == ApiError.SYSCALL_ERROR_1
    assert vppsim_client.api.sw_interface_tap_v2_dump() == []
    vppsim.faults.no_vhost_net = False
    assert vppsim_client.api.tap_create_v3().retval == 0


def test_af_packet_lifecycle(vppsim_client: VPPApiClient) -> None:
    api = vppsim_client.api
    reply = api.af_packet_create_v3(host_if_name="veth-pod1", use_random_hw_addr=True, flags=3)
    assert reply.retval == 0
    again = api.af_packet_create_v3(host_if_name="veth-pod1", use_random_hw_addr=True)
    assert (again.retval, again.sw_if_index) == (ApiError.IF_ALREADY_EXISTS, reply.sw_if_index)
    assert [(d.sw_if_index, d.host_if_name) for d in api.af_packet_dump()] == [(reply.sw_if_index, "veth-pod1")]
    assert api.sw_interface_dump(sw_if_index=reply.sw_if_index)[0].interface_name == "host-veth-pod1"
    assert api.af_packet_delete(host_if_name="veth-pod1").retval == 0
    assert api.af_packet_delete(host_if_name="veth-pod1").retval == ApiError.SYSCALL_ERROR_1
    assert api.af_packet_dump() == []


def test_memif_lifecycle(vppsim_client: VPPApiClient) -> None:
    api = vppsim_client.api
    socket = api.memif_socket_filename_add_del_v2(is_add=True, socket_id=NONE, socket_filename="/run/m.sock")
    # VPP 26.06 draws a new socket id from random_u32 seeded with 0: its first draw.
    assert socket.retval == 0 and socket.socket_id == 1013904223
    reply = api.memif_create(role=0, mode=0, id=3, socket_id=socket.socket_id)
    assert reply.retval == 0
    assert [(d.id, d.socket_id, d.if_name) for d in api.memif_dump()] == [(3, 1013904223, "memif1013904223/3")]
    assert api.memif_delete(sw_if_index=reply.sw_if_index).retval == 0


def test_local0_exists_and_interfaces_are_listed_in_index_order(vppsim_client: VPPApiClient) -> None:
    api = vppsim_client.api
    loop = api.create_loopback().sw_if_index
    tap = api.tap_create_v3().sw_if_index
    assert [(d.sw_if_index, d.interface_name) for d in api.sw_interface_dump()] == [
        (0, "local0"), (loop, "loop0"), (tap, "tap0")]
