"""Typed VPP batches: many requests of one kind sent as one pipeline (connection.py `pipeline`).

Why apart from calls.py: a batch answers per item, where a call raises. Every method takes a
sequence of items and returns one result per item, in order: for a write None where VPP applied
it, else its `ApiRefused` as a value, so the caller fails the object that item was for and keeps
the others; for a read what the matching call in calls.py returns. A broken connection is
`VppConnectionLost` (the items before it may or may not be applied: a resync reads VPP back).
The message fields and reply readings are fields.py's, shared with calls.py.

Callers reach a batch through the typed calls (`VppCalls.batches`), so whatever holds the calls
holds the batches too.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from vppagent.drivers.vpp.api.connection import ApiRefused, ApiRequest, VppConnection
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.api.fields import (
    acl_fields,
    acl_list_fields,
    classify_acl_fields,
    cnat_feature_fields,
    cnat_pod_interface_fields,
    cnat_translation_fields,
    input_tables_from,
    route_fields,
    session_fields,
    session_of,
    table_del_fields,
    table_fields,
    table_info,
)
from vppagent.drivers.vpp.api.types import (
    AclContent,
    ClassifySession,
    ClassifyTableAdd,
    ClassifyTableInfo,
    CnatTranslation,
    InterfaceTable,
    RouteTarget,
    SessionWrite,
)
from vppagent.policy.model import IPNetwork


class VppBatches:
    def __init__(self, conn: VppConnection) -> None:
        self.conn = conn

    # -- ACLs -------------------------------------------------------------------------------------
    def acls_write(self, items: Sequence[tuple[int, str, AclContent]]) -> list[int | ApiRefused]:
        """`acl_add_replace` of each (index, tag, content); per item the ACL's index or its refusal."""
        results = self.conn.pipeline([ApiRequest("acl_add_replace", acl_fields(index, tag, content),
                                                 what=f"ACL {tag}, {len(content)} rules")
                                      for index, tag, content in items])
        return [r if isinstance(r, ApiRefused) else int(r.acl_index) for r in results]

    def acls_del(self, indexes: Sequence[int]) -> list[ApiRefused | None]:
        """`acl_del` of each."""
        return _outcomes(self.conn.pipeline([ApiRequest("acl_del", {"acl_index": i}, what=f"ACL {i}")
                                             for i in indexes]))

    def acl_lists_write(self, items: Sequence[tuple[int, int | None, int | None]]) -> list[ApiRefused | None]:
        """`set_acl_list` of each (sw_if_index, acl_in, acl_out)."""
        return _outcomes(self.conn.pipeline([ApiRequest("acl_interface_set_acl_list",
                                                        acl_list_fields(ifx, acl_in, acl_out), what=f"interface {ifx}")
                                             for ifx, acl_in, acl_out in items]))

    # -- interfaces -------------------------------------------------------------------------------
    def interface_prefixes_of(self, sw_if_indexes: Sequence[int]
                              ) -> list[list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]]:
        """Each interface's own addresses with their prefix lengths (the subnets on it), IPv4 first
        (two dumps each)."""
        results = self.conn.pipeline([ApiRequest("ip_address_dump", {"sw_if_index": i, "is_ipv6": is_ip6})
                                      for i in sw_if_indexes for is_ip6 in (False, True)])
        return [[ipaddress.ip_interface(a.prefix) for a in (*results[2 * n], *results[2 * n + 1])]
                for n in range(len(sw_if_indexes))]

    # -- FIB --------------------------------------------------------------------------------------
    def routes_write(self, changes: Sequence[tuple[IPNetwork, RouteTarget | None]]) -> list[ApiRefused | None]:
        """`route_add` (a target) or `route_del` (None) for each."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "ip_route_add_del", {"is_add": target is not None, "is_multipath": False,
                                 "route": route_fields(prefix, target)},
            what=f"route {prefix} {target}" if target is not None else f"route {prefix}")
            for prefix, target in changes]))

    # -- classifier -------------------------------------------------------------------------------
    def classify_table_infos_if_present(self, indexes: Sequence[int]) -> list[ClassifyTableInfo | None]:
        """`VppCalls.classify_table_info` of each, None where the table is gone (CLASSIFY_TABLE_NOT_FOUND:
        deleted since). Ask only about indexes `classify_table_ids` listed: VPP's reply for a missing
        table leaves mask_length uninitialized (26.06), and vpp_papi cannot decode it when that
        memory is not zero (seen after guard sessions had used it). Any other refusal raises, the
        first in order, once every answer is in (as the calls one by one would have raised it)."""
        results = self.conn.pipeline([ApiRequest("classify_table_info", {"table_id": i},
                                                 accept=(0, ApiError.CLASSIFY_TABLE_NOT_FOUND),
                                                 what=f"classifier table {i}") for i in indexes])
        out: list[ClassifyTableInfo | None] = []
        for index, info in zip(indexes, results, strict=True):
            if isinstance(info, ApiRefused):
                raise info
            out.append(table_info(index, info) if int(info.retval) == 0 else None)
        return out

    def classify_sessions_of(self, indexes: Sequence[int]) -> list[list[ClassifySession]]:
        """`VppCalls.classify_sessions` of each table (a table gone by then has none)."""
        return [[session_of(s) for s in details] for details in self.conn.pipeline(
            [ApiRequest("classify_session_dump", {"table_id": i}) for i in indexes])]

    def classify_tables_add(self, tables: Sequence[ClassifyTableAdd]) -> list[int | ApiRefused]:
        """New tables (none may name another of the same batch); per item its index or its refusal."""
        results = self.conn.pipeline([ApiRequest("classify_add_del_table", table_fields(t, NO_INDEX), what=t.what)
                                      for t in tables])
        return [r if isinstance(r, ApiRefused) else int(r.new_table_index) for r in results]

    def classify_tables_del(self, indexes: Sequence[int]) -> list[ApiRefused | None]:
        """`VppCalls.classify_table_del` of each (gone already is fine)."""
        return _outcomes(self.conn.pipeline([ApiRequest("classify_add_del_table", table_del_fields(i),
                                                        accept=(0, ApiError.NO_SUCH_TABLE),
                                                        what=f"classifier table {i}") for i in indexes]))

    def classify_sessions_write(self, sessions: Sequence[SessionWrite]) -> list[ApiRefused | None]:
        """`VppCalls.classify_session` for each."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "classify_add_del_session", session_fields(s.table, s.match, s.hit_next, s.opaque, add=s.add),
            what=f"classifier session in table {s.table}") for s in sessions]))

    def input_tables_write(self, items: Sequence[InterfaceTable]) -> list[ApiRefused | None]:
        """`VppCalls.input_table` for each (a detach naming a table not attached there is refused)."""
        return _outcomes(self.conn.pipeline([ApiRequest(
            "input_acl_set_interface", classify_acl_fields(i.sw_if_index, i.family, i.table, add=i.add),
            what=i.what or f"input classifier {i.table} on interface {i.sw_if_index}") for i in items]))

    def input_tables_of(self, sw_if_indexes: Sequence[int]) -> list[dict[int, int] | ApiRefused]:
        """`VppCalls.input_tables` of each interface (its refusal where VPP refused)."""
        results = self.conn.pipeline([ApiRequest("classify_table_by_interface", {"sw_if_index": i},
                                                 what=f"input classifier of interface {i}") for i in sw_if_indexes])
        return [r if isinstance(r, ApiRefused) else input_tables_from(r) for r in results]

    # -- cnat (Services) --------------------------------------------------------------------------
    def cnat_translations_update(self, items: Sequence[tuple[CnatTranslation, str]]) -> list[int | ApiRefused]:
        """`VppCalls.cnat_translation_update` of each (translation, what); per item the translation's
        id or its refusal."""
        results = self.conn.pipeline([ApiRequest("cnat_translation_update",
                                                 {"translation": cnat_translation_fields(t)},
                                                 what=what or f"cnat translation {t.text()}") for t, what in items])
        return [r if isinstance(r, ApiRefused) else int(r.id) for r in results]

    def cnat_translations_del(self, items: Sequence[tuple[int, str]]) -> list[ApiRefused | None]:
        """`VppCalls.cnat_translation_del` of each (id, what): gone already is fine (NO_SUCH_ENTRY)."""
        return _outcomes(self.conn.pipeline([ApiRequest("cnat_translation_del", {"id": i},
                                                        accept=(0, ApiError.NO_SUCH_ENTRY),
                                                        what=what or f"cnat translation {i}") for i, what in items]))

    def cnat_interfaces_write(self, features: Sequence[int], pods: Sequence[int]
                              ) -> tuple[list[ApiRefused | None], list[ApiRefused | None]]:
        """`VppCalls.cnat_feature` on each of `features`, then `cnat_snat_pod_interface` of each of
        `pods`, as one pipeline; the outcomes of each."""
        results = _outcomes(self.conn.pipeline(
            [ApiRequest("feature_cnat_enable_disable", cnat_feature_fields(i), what=f"cnat on interface {i}")
             for i in features]
            + [ApiRequest("cnat_snat_policy_add_del_if", cnat_pod_interface_fields(i),
                          what=f"interface {i} as a pod's for cnat source NAT") for i in pods]))
        return results[:len(features)], results[len(features):]


def _outcomes(results: list[Any]) -> list[ApiRefused | None]:
    return [r if isinstance(r, ApiRefused) else None for r in results]
