"""The cnat plugin's translations (``cnat_translation_update``, ``_del``, ``_dump``).

After VPP ``src/plugins/cnat/cnat_api.c`` and ``cnat_translation.c`` (26.06), checked against a
running 26.06 (``tests/vppsim/fidelity_sequences.py``, the ``cnat_`` sequences):
- a translation is found by its VIP (address, port) and protocol: an update of an existing one keeps
  its id and replaces its paths, but its load-balancing type and flow hash stay what they were at
  creation (``cnat_translation_update`` sets them only for a new one);
- ids come from a pool (freed ids are reused last-freed-first); deleting an unknown id answers
  NO_SUCH_ENTRY;
- a dump gives back the VIP, id, protocol, load-balancing type and paths; ``is_real_ip``, the
  translation's flags and its flow hash are not filled in (zero). Each path's flags are the ones
  given plus the tracker's "active" bit (both endpoints resolved, as an address always is), whose
  value differs by release (``Release.cnat_active_flag``).
- SNAT configuration (``cnat_set_snat_addresses``, ``cnat_get_snat_addresses``, ``cnat_set_snat_policy``,
  ``cnat_snat_policy_add_del_if``; addresses all zero delete the entry, as ``cnat_set_snat`` does)
  and, in 26.06, the per-interface feature
  (``feature_cnat_enable_disable``): kept as state; an interface that does not exist answers
  INVALID_SW_IF_INDEX (``VALIDATE_SW_IF_INDEX``), anything else 0. VPP counts feature enables; the
  emulator counts them too.
Sessions and packets are not emulated: translations are state only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vppagent.drivers.vpp.api.errors import NO_INDEX, OK, ApiError
from vppagent.vppsim.addresses import IPAddress, decode_address, encode_address
from vppagent.vppsim.handlers import Handler, Reply, Request, retval_reply
from vppagent.vppsim.interfaces import InterfaceTable
from vppagent.vppsim.pool import Pool


@dataclass(frozen=True)
class Endpoint:
    address: IPAddress
    sw_if_index: int
    port: int

    @staticmethod
    def decode(fields: dict[str, Any]) -> Endpoint:
        return Endpoint(decode_address(fields["addr"]), fields["sw_if_index"], fields["port"])

    def encode(self) -> dict[str, Any]:
        return {"addr": encode_address(self.address), "sw_if_index": self.sw_if_index,
                "if_af": 0 if self.address.version == 4 else 1, "port": self.port}


@dataclass
class Translation:
    vip: Endpoint
    proto: int
    lb_type: int
    flow_hash: int
    paths: list[tuple[Endpoint, Endpoint, int]]  # (dst, src, flags as given)


class Cnat:
    def __init__(self, active_flag: int, interfaces: InterfaceTable) -> None:
        self._active_flag = active_flag
        self._interfaces = interfaces
        self.translations: Pool[Translation] = Pool()
        self.features: dict[int, int] = {}  # sw_if_index -> enable count
        self.snat_addresses: tuple[bytes, bytes] | None = None
        self.snat_policy = 0
        self.snat_interfaces: dict[int, set[int]] = {}  # table -> sw_if_indices

    def handlers(self) -> dict[str, Handler]:
        return {
            "cnat_translation_update": self.update,
            "cnat_translation_del": self.delete,
            "cnat_translation_dump": self.dump,
            "cnat_set_snat_addresses": self.set_snat_addresses,
            "cnat_get_snat_addresses": self.get_snat_addresses,
            "cnat_set_snat_policy": self.set_snat_policy,
            "cnat_snat_policy_add_del_if": self.snat_policy_add_del_if,
            "feature_cnat_enable_disable": self.feature_enable_disable,
        }

    def on_interface_deleted(self, sw_if_index: int) -> None:
        self.features.pop(sw_if_index, None)
        for members in self.snat_interfaces.values():
            members.discard(sw_if_index)

    def set_snat_addresses(self, request: Request) -> list[Reply]:
        """A zero address keeps what the family had; all zero (and no interface) deletes the entry,
        with its policy and interface tables (FEATURE_DISABLED when there is none)."""
        ip4, ip6 = bytes(request.fields["snat_ip4"]), bytes(request.fields["snat_ip6"])
        if not any(ip4) and not any(ip6) and request.fields["sw_if_index"] == NO_INDEX:
            if self.snat_addresses is None:
                return retval_reply("cnat_set_snat_addresses_reply", ApiError.FEATURE_DISABLED)
            self.snat_addresses, self.snat_policy, self.snat_interfaces = None, 0, {}
            return retval_reply("cnat_set_snat_addresses_reply", OK)
        held4, held6 = self.snat_addresses or (bytes(4), bytes(16))
        self.snat_addresses = (ip4 if any(ip4) else held4, ip6 if any(ip6) else held6)
        return retval_reply("cnat_set_snat_addresses_reply", OK)

    def get_snat_addresses(self, request: Request) -> list[Reply]:
        if self.snat_addresses is None:  # VPP zero-fills; vpp_papi would pack the field's default (~0)
            return retval_reply("cnat_get_snat_addresses_reply", ApiError.FEATURE_DISABLED, sw_if_index=0)
        return retval_reply("cnat_get_snat_addresses_reply", OK, snat_ip4=self.snat_addresses[0],
                            snat_ip6=self.snat_addresses[1], sw_if_index=NO_INDEX)

    def set_snat_policy(self, request: Request) -> list[Reply]:
        self.snat_policy = int(request.fields["policy"])
        return retval_reply("cnat_set_snat_policy_reply", OK)

    def snat_policy_add_del_if(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("cnat_snat_policy_add_del_if_reply", ApiError.INVALID_SW_IF_INDEX)
        members = self.snat_interfaces.setdefault(int(request.fields["table"]), set())
        if request.fields["is_add"]:
            members.add(sw_if_index)
        else:
            members.discard(sw_if_index)
        return retval_reply("cnat_snat_policy_add_del_if_reply", OK)

    def feature_enable_disable(self, request: Request) -> list[Reply]:
        sw_if_index = request.fields["sw_if_index"]
        if not self._interfaces.exists(sw_if_index):
            return retval_reply("feature_cnat_enable_disable_reply", ApiError.INVALID_SW_IF_INDEX)
        count = self.features.get(sw_if_index, 0) + (1 if request.fields["enable_disable"] else -1)
        if count > 0:
            self.features[sw_if_index] = count
        else:
            self.features.pop(sw_if_index, None)
        return retval_reply("feature_cnat_enable_disable_reply", OK)

    def _find(self, vip: Endpoint, proto: int) -> int | None:
        for index, translation in self.translations.items():
            if (translation.vip.address, translation.vip.port, translation.proto) == (vip.address, vip.port, proto):
                return index
        return None

    def update(self, request: Request) -> list[Reply]:
        fields = request.fields["translation"]
        vip = Endpoint.decode(fields["vip"])
        proto = int(fields["ip_proto"])
        paths = [(Endpoint.decode(p["dst_ep"]), Endpoint.decode(p["src_ep"]), int(p["flags"]))
                 for p in fields["paths"][:fields["n_paths"]]]
        index = self._find(vip, proto)
        if index is None:
            index = self.translations.add(Translation(vip, proto, int(fields["lb_type"]),
                                                      int(fields["flow_hash_config"]), paths))
        else:
            existing = self.translations.get(index)
            assert existing is not None
            existing.paths = paths
        return retval_reply("cnat_translation_update_reply", OK, id=index)

    def delete(self, request: Request) -> list[Reply]:
        index = request.fields["id"]
        if index not in self.translations:
            return retval_reply("cnat_translation_del_reply", ApiError.NO_SUCH_ENTRY)
        self.translations.remove(index)
        return retval_reply("cnat_translation_del_reply", OK)

    def dump(self, request: Request) -> list[Reply]:
        out: list[Reply] = []
        for index, t in self.translations.items():
            paths = [{"dst_ep": dst.encode(), "src_ep": src.encode(), "flags": flags | self._active_flag}
                     for dst, src, flags in t.paths]
            out.append(("cnat_translation_details", {"translation": {
                "vip": t.vip.encode(), "id": index, "ip_proto": t.proto, "is_real_ip": 0, "flags": 0,
                "lb_type": t.lb_type, "n_paths": len(paths), "flow_hash_config": 0, "paths": paths}}))
        return out

