"""Classifier tables with current_data_flag 1 (CLASSIFY_FLAG_USE_CURR_DATA) match from the IP
header (the current data on the ip4/ip6 arcs) plus current_data_offset, in both directions, as
VPP's own classifier tests use them (test/template_classifier.py: flag 1, offset 0, masks laid out
over the IP header). Added with the VPP driver, which builds its tables this way."""

from __future__ import annotations

from vpp_papi import VPPApiClient

from vppagent.vppsim import Direction, Packet, VppSim

NONE = 0xFFFFFFFF
SOURCE_AT_IP_HEADER = bytes(12) + b"\xff" * 4 + bytes(16)  # IPv4 source address, 2 vectors


def test_current_data_tables_match_from_the_ip_header(vppsim: VppSim, vppsim_client: VPPApiClient) -> None:
    vpp = vppsim_client
    sw_if_index = vpp.api.create_loopback().sw_if_index
    tables = []
    for offset, mask in ((0, SOURCE_AT_IP_HEADER), (-14, bytes(14) + SOURCE_AT_IP_HEADER[:18])):
        reply = vpp.api.classify_add_del_table(
            is_add=True, table_index=NONE, nbuckets=2, memory_size=2 << 20, skip_n_vectors=0,
            match_n_vectors=2, next_table_index=NONE, miss_next_index=NONE, current_data_flag=1,
            current_data_offset=offset, mask_len=32, mask=mask)
        assert reply.retval == 0
        match = bytearray(32)
        start = 12 + (14 if offset == -14 else 0)
        match[start:start + 4] = bytes([10, 0, 0, 9])
        assert vpp.api.classify_add_del_session(is_add=True, table_index=reply.new_table_index,
                                                hit_next_index=0, match_len=32, match=bytes(match)).retval == 0
        tables.append(reply.new_table_index)
    blocked, other = Packet.make("10.0.0.9", "10.0.0.1", "udp", 1, 2), Packet.make("10.0.0.8", "10.0.0.1", "udp", 1, 2)
    assert vpp.api.input_acl_set_interface(sw_if_index=sw_if_index, ip4_table_index=tables[0], ip6_table_index=NONE,
                                           l2_table_index=NONE, is_add=True).retval == 0
    assert vpp.api.output_acl_set_interface(sw_if_index=sw_if_index, ip4_table_index=tables[1],
                                            ip6_table_index=NONE, l2_table_index=NONE, is_add=True).retval == 0
    for direction in Direction:
        assert not vppsim.evaluate(sw_if_index, direction, blocked).permitted
        assert vppsim.evaluate(sw_if_index, direction, other).permitted
