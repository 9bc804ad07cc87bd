"""The reviewed differences between Felix releases' `felixbackend.proto`, as data.

Each Calico release from v3.28 to v3.32 is described as the project's own v3.33 schema
(`proto/felix/felixbackend.proto`) with the edits below applied, newest first: the v3.32 schema is
v3.33 with `DELTAS["3.32"]` applied, v3.31 is v3.32 with `DELTAS["3.31"]` applied, and so on.
The list was made by diffing each release's descriptor set message by message and field by field
(`tests/felixver/test_release_schemas.py` re-checks it against Calico's descriptor sets when they
are at hand); docs/felix-compat.md says what each difference means and how felix-shim reads it.

Only facts about the wire schema are recorded here: names, numbers, types and labels.
"""

from __future__ import annotations

from dataclasses import dataclass

# Newest first; the project's generated code is the first one.
NEWEST = "3.33"
RELEASES = ("3.33", "3.32", "3.31", "3.30", "3.29", "3.28")


@dataclass(frozen=True)
class Field:
    """A field as a release declares it. `type` is a scalar type name ("string", "bool", "uint32",
    ...), a message or enum name of package felix ("PolicyID", "WorkloadType"), or
    "map<string,string>" (protoc's map entry type is generated for it)."""

    name: str
    number: int
    type: str
    repeated: bool = False
    oneof: str | None = None


@dataclass(frozen=True)
class AddField:
    message: str
    field: Field


@dataclass(frozen=True)
class DropField:
    message: str
    number: int


@dataclass(frozen=True)
class ReplaceField:
    """Same number, another name, type or label."""

    message: str
    field: Field


@dataclass(frozen=True)
class AddMessage:
    name: str
    fields: tuple[Field, ...]


@dataclass(frozen=True)
class DropMessage:
    name: str


@dataclass(frozen=True)
class AddEnum:
    name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class DropEnum:
    name: str


@dataclass(frozen=True)
class RenumberEnum:
    name: str
    values: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Unreserve:
    """The older release still uses numbers (and names) the newer one reserved."""

    message: str
    numbers: tuple[int, ...]
    names: tuple[str, ...]


@dataclass(frozen=True)
class DropMethod:
    service: str
    method: str


Edit = (AddField | DropField | ReplaceField | AddMessage | DropMessage | AddEnum | DropEnum | RenumberEnum
        | Unreserve | DropMethod)

_S = "string"

DELTAS: dict[str, tuple[Edit, ...]] = {
    # v3.33 folded the per-family host metadata messages into HostMetadataUpdate.
    "3.32": (
        DropField("Encapsulation", 4),  # no_encap_enabled
        DropField("HostMetadataUpdate", 3),  # ipv6_addr
        DropField("HostMetadataUpdate", 4),  # asnumber
        DropField("HostMetadataUpdate", 5),  # labels
        DropField("ServiceUpdate", 8),  # loadbalancer_ingress_ips
        Unreserve("ToDataplane", (35, 36, 37, 38), ("HostMetadataV6Update", "HostMetadataV6Remove",
                                                    "HostMetadataV4V6Update", "HostMetadataV4V6Remove")),
        AddMessage("HostMetadataV6Update", (Field("hostname", 1, _S), Field("ipv6_addr", 2, _S))),
        AddMessage("HostMetadataV6Remove", (Field("hostname", 1, _S), Field("ipv6_addr", 2, _S))),
        AddMessage("HostMetadataV4V6Update", (
            Field("hostname", 1, _S), Field("ipv4_addr", 2, _S), Field("ipv6_addr", 3, _S),
            Field("asnumber", 4, _S), Field("labels", 5, "map<string,string>"))),
        AddMessage("HostMetadataV4V6Remove", (Field("hostname", 1, _S), Field("ipv4_addr", 2, _S))),
        AddField("ToDataplane", Field("host_metadata_v6_update", 35, "HostMetadataV6Update", oneof="payload")),
        AddField("ToDataplane", Field("host_metadata_v6_remove", 36, "HostMetadataV6Remove", oneof="payload")),
        AddField("ToDataplane", Field("host_metadata_v4v6_update", 37, "HostMetadataV4V6Update", oneof="payload")),
        AddField("ToDataplane", Field("host_metadata_v4v6_remove", 38, "HostMetadataV4V6Remove", oneof="payload")),
    ),
    # v3.32 identified policies by (name, namespace, kind) and moved the tier into Policy.
    "3.31": (
        DropEnum("LiveMigrationRole"),
        DropField("Policy", 8),  # tier
        Unreserve("PolicyID", (1,), ("tier",)),
        AddField("PolicyID", Field("tier", 1, _S)),
        DropField("PolicyID", 3),  # namespace
        DropField("PolicyID", 4),  # kind
        ReplaceField("TierInfo", Field("ingress_policies", 2, _S, repeated=True)),
        ReplaceField("TierInfo", Field("egress_policies", 3, _S, repeated=True)),
        DropField("WorkloadEndpoint", 16),  # is_istio_ambient
        DropField("WorkloadEndpoint", 17),  # live_migration_role
        DropField("WorkloadEndpoint", 18),  # live_migration_uid
        DropField("WorkloadEndpoint", 19),  # live_migration_vmi_name
    ),
    # v3.31 added QoS policies and BPF redirect skipping, replacing v3.30's WorkloadEndpoint.type.
    "3.30": (
        AddEnum("WorkloadType", (("REGULAR", 0), ("VM", 1))),
        DropMessage("QoSPolicy"),
        DropMessage("WorkloadBpfSkipRedir"),
        DropField("HostEndpoint", 9),  # qos_policies
        DropField("IPAMPool", 5),  # allowed_uses
        ReplaceField("WorkloadEndpoint", Field("type", 14, "WorkloadType")),
        DropField("WorkloadEndpoint", 15),  # qos_policies
    ),
    # v3.30 made the route type a bit set and added QoS controls, local BGP peers and stats.
    "3.29": (
        DropMethod("PolicySync", "Report"),
        DropMessage("DataplaneStats"),
        DropMessage("ReportResult"),
        DropMessage("Statistic"),
        DropMessage("RuleTrace"),
        DropMessage("QoSControls"),
        DropMessage("LocalBGPPeer"),
        DropEnum("Action"),
        DropEnum("WorkloadType"),  # added in v3.30 only for WorkloadEndpoint.type, dropped below
        DropField("GlobalBGPConfigUpdate", 4),  # local_workload_peering_ip_v4
        DropField("GlobalBGPConfigUpdate", 5),  # local_workload_peering_ip_v6
        DropField("Policy", 7),  # perf_hints
        RenumberEnum("RouteType", (
            ("CIDR_INFO", 0), ("REMOTE_WORKLOAD", 1), ("REMOTE_HOST", 2), ("LOCAL_WORKLOAD", 3),
            ("LOCAL_HOST", 4), ("REMOTE_TUNNEL", 5), ("LOCAL_TUNNEL", 6))),
        Unreserve("RouteUpdate", (1,), ("type",)),
        AddField("RouteUpdate", Field("type", 1, "RouteType")),
        DropField("RouteUpdate", 12),  # types
        DropField("WorkloadEndpoint", 12),  # qos_controls
        DropField("WorkloadEndpoint", 13),  # local_bgp_peer
        DropField("WorkloadEndpoint", 14),  # type
        DropField("WorkloadEndpointStatusUpdate", 3),  # endpoint
    ),
    # v3.29 added tier default actions and borrowed-block routes.
    "3.28": (
        DropField("RouteUpdate", 11),  # borrowed
        DropField("TierInfo", 4),  # default_action
    ),
}
