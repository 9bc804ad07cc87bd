"""Golden bytes: messages built and parsed by hand with ``struct`` from the published VPP 25.10 layouts.

Nothing here goes through vpp_papi's serializer, so a codec bug on the emulator side
cannot hide behind the same bug on the client side.  Layouts (from the vendored
``*.api.json``, big-endian, packed):

- frame header ``>QII``: 0, data length, 0
- ``sockclnt_create`` ``>HI64s`` (id 15, context, name); reply id 16 ``>HIIiIH`` then
  ``count`` × ``message_table_entry`` ``>H64s``
- ``acl_rule`` (48 bytes): is_permit u8, src/dst ``prefix`` = af u8 + 16-byte union + len u8,
  proto u8, four u16 port bounds, tcp_flags_mask u8, tcp_flags_value u8
- ``acl_add_replace`` ``>HIII64sI`` + rules; reply ``>HIIi`` (context, acl_index, retval)
- ``acl_details`` ``>HII64sI`` + rules; ``control_ping_reply`` ``>HIiII``
- ``create_loopback`` ``>HII6s``; reply ``>HIiI``
- ``acl_interface_set_acl_list`` ``>HIIIBB`` + u32 acls; ``acl_interface_list_details`` ``>HIIBB`` + u32 acls
"""

from __future__ import annotations

import ipaddress
import json
import socket
import struct
from collections.abc import Iterator

import pytest

from vppagent.vppsim import API_DIR, VppSim

HEADER = struct.Struct(">QII")
NONE = 0xFFFFFFFF


def vendored_crc(module: str, message: str) -> str:
    definition = json.loads((API_DIR / f"{module}.api.json").read_text())
    [entry] = [m for m in definition["messages"] if m[0] == message]
    crc: str = entry[-1]["crc"]
    return crc[2:]


class RawClient:
    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.sock.settimeout(2)
        self.ids: dict[str, int] = {}
        self.client_index = 0

    def send(self, body: bytes) -> None:
        self.sock.sendall(HEADER.pack(0, len(body), 0) + body)

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def receive(self) -> bytes:
        zero, length, gc_mark = HEADER.unpack(self._exactly(HEADER.size))
        assert (zero, gc_mark) == (0, 0)
        return self._exactly(length)

    def handshake(self) -> bytes:
        self.send(struct.pack(">HI64s", 15, 124, b"golden"))
        reply = self.receive()
        msg_id, _client_index, context, response, index, count = struct.unpack_from(">HIIiIH", reply)
        assert (msg_id, context, response) == (16, 124, 0)
        offset = struct.calcsize(">HIIiIH")
        for _ in range(count):
            entry_id, name = struct.unpack_from(">H64s", reply, offset)
            offset += 66
            self.ids[name.rstrip(b"\0").decode()] = entry_id
        assert offset == len(reply)
        self.client_index = index
        return reply

    def id(self, module: str, message: str) -> int:
        return self.ids[f"{message}_{vendored_crc(module, message)}"]

    def request(self, module: str, message: str, context: int, payload: bytes = b"") -> None:
        self.send(struct.pack(">HII", self.id(module, message), self.client_index, context) + payload)


def prefix(text: str) -> bytes:
    network = ipaddress.ip_network(text)
    return struct.pack(">B16sB", 0 if network.version == 4 else 1, network.network_address.packed,
                       network.prefixlen)


def acl_rule(action: int, src: str, dst: str, proto: int, sport: tuple[int, int], dport: tuple[int, int]) -> bytes:
    return (struct.pack(">B", action) + prefix(src) + prefix(dst)
            + struct.pack(">BHHHHBB", proto, *sport, *dport, 0, 0))


RULE = acl_rule(2, "10.1.0.0/16", "0.0.0.0/0", 6, (0, 65535), (80, 80))


@pytest.fixture
def raw(vppsim: VppSim) -> Iterator[RawClient]:
    client = RawClient(str(vppsim.socket_path))
    client.handshake()
    yield client
    client.sock.close()


def test_handshake_reply_layout_and_table(vppsim: VppSim) -> None:
    client = RawClient(str(vppsim.socket_path))
    client.handshake()
    assert client.client_index == 0x80000001  # pool entry 0 is the listener, as in VPP
    assert client.ids["sockclnt_create_455fb9c4"] == 15
    assert client.ids["sockclnt_create_reply_35166268"] == 16
    assert "acl_add_replace_ee5c2f18" in client.ids
    assert "acl_interface_set_acl_list_473982bd" in client.ids
    client.sock.close()


def test_acl_add_replace_reply_bytes(raw: RawClient) -> None:
    rule_count = 1
    raw.request("acl", "acl_add_replace", 7, struct.pack(">I64sI", NONE, b"golden-tag", rule_count) + RULE)
    assert raw.receive() == struct.pack(">HIIi", raw.id("acl", "acl_add_replace_reply"), 7, 0, 0)


def test_dump_details_then_control_ping_trailer(raw: RawClient) -> None:
    raw.request("acl", "acl_add_replace", 1, struct.pack(">I64sI", NONE, b"golden-tag", 1) + RULE)
    raw.receive()
    raw.request("acl", "acl_dump", 9, struct.pack(">I", NONE))
    raw.request("memclnt", "control_ping", 9)
    details = raw.receive()
    assert details == struct.pack(">HII64sI", raw.id("acl", "acl_details"), 9, 0, b"golden-tag", 1) + RULE
    trailer = raw.receive()
    msg_id, context, retval, client_index, pid = struct.unpack(">HIiII", trailer)
    assert (msg_id, context, retval, client_index) == (raw.id("memclnt", "control_ping_reply"), 9, 0, 0)
    assert pid > 0


def test_set_acl_list_and_interface_list_details_bytes(raw: RawClient) -> None:
    raw.request("interface", "create_loopback", 2, bytes(6))
    msg_id, context, retval, sw_if_index = struct.unpack(">HIiI", raw.receive())
    assert (msg_id, context, retval, sw_if_index) == (raw.id("interface", "create_loopback_reply"), 2, 0, 1)
    for context in (3, 4):
        raw.request("acl", "acl_add_replace", context, struct.pack(">I64sI", NONE, b"", 1) + RULE)
        raw.receive()
    raw.request("acl", "acl_interface_set_acl_list", 5, struct.pack(">IBBII", sw_if_index, 2, 1, 1, 0))
    assert raw.receive() == struct.pack(">HIi", raw.id("acl", "acl_interface_set_acl_list_reply"), 5, 0)
    raw.request("acl", "acl_interface_list_dump", 6, struct.pack(">I", sw_if_index))
    assert raw.receive() == struct.pack(">HIIBBII", raw.id("acl", "acl_interface_list_details"), 6,
                                        sw_if_index, 2, 1, 1, 0)


def test_stats_enable_reply_carries_the_acl_del_reply_id(raw: RawClient) -> None:
    raw.request("acl", "acl_stats_intf_counters_enable", 11, struct.pack(">B", 1))
    assert raw.receive() == struct.pack(">HIi", raw.id("acl", "acl_del_reply"), 11, 0)


def test_tag_without_terminating_nul_is_invalid_value(raw: RawClient) -> None:
    raw.request("acl", "acl_add_replace", 12, struct.pack(">I64sI", NONE, b"t" * 64, 1) + RULE)
    assert raw.receive() == struct.pack(">HIIi", raw.id("acl", "acl_add_replace_reply"), 12, NONE, -7)


def test_message_shorter_than_its_rule_count_is_invalid_value(raw: RawClient) -> None:
    raw.request("acl", "acl_add_replace", 13, struct.pack(">I64sI", NONE, b"", 2) + RULE)
    assert raw.receive() == struct.pack(">HIIi", raw.id("acl", "acl_add_replace_reply"), 13, NONE, -7)


def test_request_with_a_foreign_client_index_gets_no_reply(raw: RawClient) -> None:
    raw.send(struct.pack(">HII", raw.id("memclnt", "control_ping"), 0x80000063, 14))
    raw.request("memclnt", "control_ping", 15)
    assert struct.unpack_from(">HI", raw.receive()) == (raw.id("memclnt", "control_ping_reply"), 15)


def test_sockclnt_delete_answers_1_and_closes(raw: RawClient) -> None:
    raw.request("memclnt", "sockclnt_delete", 16, struct.pack(">I", raw.client_index))
    assert raw.receive() == struct.pack(">HIi", raw.id("memclnt", "sockclnt_delete_reply"), 16, 1)
    with pytest.raises(EOFError):
        raw.receive()
