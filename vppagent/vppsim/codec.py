"""Message definitions, message ids and wire encoding for the emulator.

The definitions are the vendored ``*.api.json`` files of one release in ``api/<release>/``.
Encoding and decoding use vpp_papi's own serializer (``vpp_papi.vpp_serializer``
via ``VPPApiJSONFiles``); nothing here knows a field layout by hand.

Decoding walks vpp_papi's packer tree instead of calling ``VPPType.unpack``
because that method keeps per-type mutable state (``toplevelconversion``) that is
shared by every user in the process: when the emulator runs inside the test
process, a server-side decode racing a client-side decode of the same type can
hand either side the wrong representation.  The walk below uses the leaf packers
(integers, strings, byte arrays, enums) unchanged and never touches that state.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpp_papi.vpp_papi import VPPApiJSONFiles
from vpp_papi.vpp_serializer import (
    BaseTypes,
    FixedList,
    FixedList_u8,
    VLAList,
    VLAList_legacy,
    VPPMessage,
    VPPType,
    VPPTypeAlias,
    VPPUnionType,
)

from vppagent.vppsim.release import API_ROOT, DEFAULT_RELEASE

# The default release's definitions directory (``--vpp-version`` picks another).
API_DIR = API_ROOT / DEFAULT_RELEASE
_U32 = BaseTypes("u32")

# Modules in the order VPP registers them: memclnt first (its ids are
# fixed: vpp_papi sends sockclnt_create as id 15 and expects id 16 back), then
# the other core modules, then plugins.  Ids other than memclnt's are dynamic in
# VPP; clients must look them up by name_crc, and tests must not assume them.
MODULES: tuple[str, ...] = (
    "memclnt",
    "vlib",
    "vpe",
    "interface",
    "ip",
    "ip_neighbor",
    "arp",
    "ip6_nd",
    "tapv2",
    "classify",
    "acl",
    "af_packet",
    "memif",
    "cnat",
)

Fields = dict[str, Any]


@dataclass(frozen=True)
class ApiModule:
    """One vendored ``.api.json`` file: its JSON text and the messages it defines."""

    name: str
    json_text: str
    message_names: tuple[str, ...]
    version: tuple[int, int, int]
    vl_api_version: int


class ApiDefinitions:
    """The emulator's message catalogue: codecs, CRCs, ids and services."""

    def __init__(self, modules: list[ApiModule], messages: dict[str, VPPMessage],
                 services: dict[str, dict[str, Any]]) -> None:
        self.modules = modules
        self.messages = messages
        self.services = services
        self.id_by_name: dict[str, int] = {}
        next_id = 1
        for module in modules:
            for name in module.message_names:
                self.id_by_name[name] = next_id
                next_id += 1
        self.name_by_id = {msg_id: name for name, msg_id in self.id_by_name.items()}

    def crc(self, name: str) -> str:
        """The CRC as VPP prints it in the message table: 8 lowercase hex digits."""
        crc: str = self.messages[name].crc
        return crc[2:] if crc.startswith("0x") else crc

    def name_crc(self, name: str) -> str:
        return f"{name}_{self.crc(name)}"

    def reply_name(self, request: str) -> str | None:
        service = self.services.get(request)
        if not service or service.get("reply") in (None, "null"):
            return None
        reply: str = service["reply"]
        return reply

    def is_old_style_dump(self, request: str) -> bool:
        service = self.services.get(request, {})
        return bool(service.get("stream")) and "stream_msg" not in service

    def api_json_text(self) -> str:
        """The payload of ``get_api_json_reply``: a JSON array of the modules' definitions.

        VPP's handler (``vlibmemory/memclnt_api.c``) joins each module's JSON with
        commas inside ``[`` … ``]``; vpp_papi parses it with ``process_json_array_str``.
        memclnt is not among them (a running 26.06 serves none of its messages): clients
        bring their own copy to bootstrap with.
        """
        return "[\n" + ",".join(module.json_text for module in self.modules if module.name != "memclnt") + "]"

    def encode(self, name: str, fields: Mapping[str, Any]) -> bytes:
        message = self.messages[name]
        complete = complete_fields(message, dict(fields))
        complete["_vl_msg_id"] = self.id_by_name[name]
        packed: bytes = message.pack(complete)
        return packed

    def decode(self, name: str, data: bytes) -> Fields:
        """Decode ``data`` as message ``name`` into plain dicts, lists, ints, str and bytes."""
        value, _size = _walk(self.messages[name], data, 0, [])
        assert isinstance(value, dict)
        return value


def _walk(packer: Any, data: bytes, offset: int, siblings: list[Any]) -> tuple[Any, int]:
    """Decode one value with vpp_papi's packers, returning plain Python data."""
    if isinstance(packer, VPPType):  # includes VPPMessage
        result: list[Any] = []
        total = 0
        for sub in packer.packers:
            value, size = _walk(sub, data, offset + total, result)
            result.append(value)
            total += size
        return dict(zip(packer.fields, result, strict=True)), total
    if isinstance(packer, VPPUnionType):
        arms: dict[str, Any] = {}
        largest = 0
        for arm_name, arm in packer.packers.items():
            arms[arm_name], size = _walk(arm, data, offset, [])
            largest = max(largest, size)
        return arms, largest
    if isinstance(packer, VPPTypeAlias):
        return _walk(packer.packer, data, offset, siblings)
    if isinstance(packer, FixedList):
        return _walk_elements(packer.packer, packer.num, data, offset)
    if isinstance(packer, VLAList) and not isinstance(packer, FixedList_u8):
        count = siblings[packer.index]
        if packer.packer.size == 1 and packer.field_type == "u8":
            return bytes(data[offset:offset + count]), count
        return _walk_elements(packer.packer, count, data, offset)
    if isinstance(packer, VLAList_legacy):
        raise ValueError("legacy variable-length lists are not used by the vendored messages")
    value, size = packer.unpack(data, offset, siblings, ntc=True)
    if isinstance(value, tuple) and len(value) == 1:
        value = value[0]
    if hasattr(value, "value") and isinstance(value.value, int):  # enum members decay to int
        value = int(value.value)
    return value, size


def _walk_elements(element: Any, count: int, data: bytes, offset: int) -> tuple[list[Any], int]:
    values: list[Any] = []
    total = 0
    for _ in range(count):
        value, size = _walk(element, data, offset + total, [])
        values.append(value)
        total += size
    if offset + total > len(data):
        raise ValueError("message shorter than its declared element count")
    return values, total


def zero_value(packer: Any) -> Any:
    """The all-zero value of a field, as vpp_papi's packers accept it."""
    if isinstance(packer, VPPType):
        return {name: zero_value(sub) for name, sub in zip(packer.fields, packer.packers, strict=True)}
    if isinstance(packer, VPPTypeAlias):
        return zero_value(packer.packer)
    if isinstance(packer, FixedList):
        return [zero_value(packer.packer) for _ in range(packer.num)]
    return None  # every other packer encodes None as zeros


def complete_fields(packer: Any, fields: Fields) -> Fields:
    """Fill in omitted fields that vpp_papi cannot default by itself (fixed arrays of structs).

    VPP zero-fills every field a handler does not set; vpp_papi defaults most
    omitted fields to zero but refuses to pack a missing fixed-length array.
    """
    for name, sub in zip(packer.fields, packer.packers, strict=True):
        if isinstance(sub, VPPType) and isinstance(fields.get(name), dict):
            fields[name] = complete_fields(sub, dict(fields[name]))
        elif name not in fields or fields[name] is None:
            default = zero_value(sub)
            if default is not None:
                fields[name] = default
        elif isinstance(sub, VLAList | VLAList_legacy) and isinstance(fields[name], list):
            element = sub.packer
            if isinstance(element, VPPType):
                fields[name] = [complete_fields(element, dict(item)) for item in fields[name]]
    return fields


@functools.cache
def load_definitions(api_dir: Path = API_DIR) -> ApiDefinitions:
    """Load (once per process) the vendored definitions into vpp_papi codecs."""
    modules: list[ApiModule] = []
    messages: dict[str, VPPMessage] = {}
    services: dict[str, dict[str, Any]] = {}
    for module_name in MODULES:
        text = (api_dir / f"{module_name}.api.json").read_text()
        parsed = json.loads(text)
        module_messages, module_services = VPPApiJSONFiles.process_json_str(text)
        messages.update(module_messages)
        services.update(module_services)
        major, minor, patch = (int(part) for part in parsed["options"]["version"].split("."))
        modules.append(ApiModule(
            name=module_name,
            json_text=json.dumps(parsed),
            message_names=tuple(message[0] for message in parsed["messages"]),
            version=(major, minor, patch),
            vl_api_version=int(parsed["vl_api_version"], 16),
        ))
    return ApiDefinitions(modules, messages, services)


def field_offset(packer: VPPType, field_name: str) -> int:
    """Byte offset of ``field_name`` in ``packer``'s wire form (all earlier fields must be fixed-size)."""
    offset = 0
    for name, sub in zip(packer.fields, packer.packers, strict=True):
        if name == field_name:
            return offset
        offset += sub.size
    raise KeyError(field_name)


def read_u32(data: bytes, offset: int) -> int:
    """A big-endian u32 read with vpp_papi's own u32 packer."""
    value, _ = _walk(_U32, data, offset, [])
    assert isinstance(value, int)
    return value
