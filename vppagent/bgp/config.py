"""The `bgp:` section of the agent's YAML config.

Everything here can end up in bird.conf, so every string field is validated against what BIRD's
lexer accepts: BIRD 2.0 strings have no escape sequences (a `"` ends the string whatever precedes
it), so passwords are restricted to printable ASCII without `"` and `\\` rather than escaped.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator

from vppagent.command_line import socket_path_problem

AS_MAX = 2**32 - 1
# TCP_MD5SIG_MAXKEYLEN in Linux: longer keys are refused by the kernel when BIRD sets the option.
PASSWORD_MAX_LEN = 80

AsNumber = Annotated[int, Field(ge=1, le=AS_MAX)]
Seconds = Annotated[int, Field(ge=1, le=65535)]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_PASSWORD_RE = re.compile(r'^[\x20-\x7e]+$')
_COMMUNITY_RE = re.compile(r"^(\d+):(\d+)(?::(\d+))?$")
_INTERFACE_PATTERN_RE = re.compile(r"^[A-Za-z0-9_.:@-]+\*?$")


def _address_text(value: object, version: int | None) -> object:
    """Parse text here so that a bad address is one error naming the value, not one per union member.

    Only text: pydantic would take YAML's `yes` or `167772161` as 0.0.0.1 or 10.0.0.1.
    """
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    if not isinstance(value, str):
        raise ValueError("an address must be written as text, e.g. 10.0.0.1 or fd00::1")
    # IPv6Address accepts "fe80::1%<anything>" and str() returns the scope verbatim: refuse it
    # rather than let arbitrary text reach bird.conf next to an address.
    if "%" in value:
        raise ValueError("scoped IPv6 addresses (with %) are not supported")
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"not an {'IPv4' if version == 4 else 'IPv4 or IPv6'} address") from None
    if version is not None and parsed.version != version:
        raise ValueError(f"not an IPv{version} address")
    return parsed


IPAddress = Annotated[ipaddress.IPv4Address | ipaddress.IPv6Address,
                      BeforeValidator(lambda v: _address_text(v, None))]
IPv4Address = Annotated[ipaddress.IPv4Address, BeforeValidator(lambda v: _address_text(v, 4))]


def check_peer_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    """Raise ValueError for addresses no BGP session can use (or BIRD refuses without an interface)."""
    if ip.is_unspecified or ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ValueError(f"{ip} cannot be a BGP peer address")
    if ip.version == 6 and ip.is_link_local:
        raise ValueError(f"{ip}: link-local peers need an interface, which is not supported")


def check_bird_password(value: str) -> str:
    """Return `value` if BIRD can carry it inside a double-quoted string, else raise ValueError."""
    if not value:
        raise ValueError("password must not be empty")
    if len(value.encode()) > PASSWORD_MAX_LEN:
        raise ValueError(f"password longer than {PASSWORD_MAX_LEN} bytes (the TCP-MD5 key limit)")
    if not _PASSWORD_RE.match(value) or '"' in value or "\\" in value:
        raise ValueError('password may only contain printable ASCII characters other than " and \\')
    return value


def check_bird_config_path(value: Path) -> Path:
    """`value` if it can name bird.conf, else ValueError."""
    # birdc configure re-reads the path bird was started with; a relative one breaks reloads.
    if not value.is_absolute():
        raise ValueError("must be an absolute path")
    return value


def check_bird_socket_path(value: Path) -> Path:
    """`value` if it can name BIRD's control socket, else ValueError."""
    check_bird_config_path(value)
    problem = socket_path_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _check_secret(value: SecretStr | None) -> SecretStr | None:
    if value is not None:
        check_bird_password(value.get_secret_value())
    return value


def parse_community(text: str) -> tuple[int, ...]:
    """`a:b` (standard, 16-bit parts) or `a:b:c` (large, 32-bit parts) as a tuple of ints."""
    match = _COMMUNITY_RE.match(text.strip())
    if match is None:
        raise ValueError(f"community {text!r} is not 'a:b' or 'a:b:c'")
    parts = tuple(int(p) for p in match.groups() if p is not None)
    limit = 0xFFFF if len(parts) == 2 else 0xFFFFFFFF
    if any(p > limit for p in parts):
        kind = "standard community parts are 16-bit" if len(parts) == 2 else "large community parts are 32-bit"
        raise ValueError(f"community {text!r}: {kind}")
    return parts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BgpPeerConfig(_Strict):
    """An explicit BGP peer (a ToR switch, an external router, a route reflector outside the cluster)."""

    address: IPAddress
    as_number: AsNumber
    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    password: SecretStr | None = None
    # GTSM (RFC 5082): only accept packets whose TTL shows they came from at most `multihop` hops away.
    ttl_security: bool = False
    # Hop count for a non-directly-connected peer; None means BIRD's default for the session type.
    multihop: Annotated[int, Field(ge=1, le=255)] | None = None
    # An address, or "node" for this node's address of the peer's family.
    source_address: IPAddress | Literal["node"] | None = None
    keepalive: Seconds | None = None
    hold_time: Annotated[int, Field(ge=3, le=65535)] | None = None
    graceful_restart: bool = True
    graceful_restart_time: Seconds | None = None
    passive: bool = False
    # Reflect routes to this peer (only meaningful when this node is a route reflector).
    route_reflector_client: bool = False
    next_hop_self: bool = False

    @field_validator("password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)

    @field_validator("address")
    @classmethod
    def _usable_address(cls, value: IPAddress) -> IPAddress:
        check_peer_address(value)
        return value

    @model_validator(mode="after")
    def _check_timers(self) -> BgpPeerConfig:
        if self.keepalive is not None and self.hold_time is not None and self.keepalive * 3 > self.hold_time:
            raise ValueError("keepalive must be at most a third of hold_time")
        if (
            isinstance(self.source_address, ipaddress.IPv4Address | ipaddress.IPv6Address)
            and self.source_address.version != self.address.version
        ):
            raise ValueError("source_address and address must be the same IP version")
        return self


class CommunityConfig(_Strict):
    """Communities attached to advertised routes inside `prefix` (Calico's prefixAdvertisements)."""

    prefix: IPNetwork
    communities: list[str] = Field(min_length=1)

    @field_validator("prefix", mode="before")
    @classmethod
    def _strict_prefix(cls, value: object) -> object:
        # ip_network(strict=True) semantics: "10.0.0.1/8" is almost certainly a typo, say so.
        if isinstance(value, str):
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("communities")
    @classmethod
    def _check_communities(cls, values: list[str]) -> list[str]:
        for text in values:
            parse_community(text)
        return values


class BgpConfig(_Strict):
    """BGP settings; the cluster's view (nodes, blocks, pools, services) comes from Felix."""

    enabled: bool = False
    # This node's name; defaults to Felix's FelixHostname.
    hostname: str | None = Field(default=None, min_length=1, max_length=253)
    # Default AS for every node whose HostMetadata carries no AS number.
    as_number: AsNumber = 64512
    # Defaults to the node's IPv4 address, else a stable hash of the hostname.
    router_id: IPv4Address | None = None
    node_mesh: bool = True
    node_mesh_password: SecretStr | None = None
    node_mesh_graceful_restart_time: Seconds | None = None
    peers: list[BgpPeerConfig] = Field(default_factory=list)
    # Set on route reflector nodes: this node reflects routes between its iBGP clients.
    route_reflector_cluster_id: IPv4Address | None = None
    # Label `key` or `key=value` marking route reflector nodes in HostMetadata labels. Nodes
    # peer with every route reflector; route reflectors treat the other same-AS nodes as clients.
    route_reflector_label: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_./-]+(=[A-Za-z0-9_.-]*)?$")
    communities: list[CommunityConfig] = Field(default_factory=list)
    listen_address: IPAddress | None = None
    listen_port: Annotated[int, Field(ge=1, le=65535)] | None = None
    # Interfaces BIRD's direct protocol skips, besides Felix's InterfacePrefix (workload) ones.
    ignored_interfaces: list[str] = Field(default_factory=lambda: ["kube-ipvs*"])
    # Keep BIRD's kernel routes when BIRD stops or crashes, so forwarding survives a restart.
    kernel_persist: bool = True
    # Session timers. BIRD's defaults are 5 s connect delay and 120 s retry; tests use 1 s delay.
    connect_delay_time: Seconds = 5
    connect_retry_time: Seconds = 5
    error_wait_time: tuple[Seconds, Seconds] = (5, 30)

    # Where the agent writes bird.conf and how it reaches BIRD.
    config_path: Path = Path("/etc/vppagent/bird.conf")
    socket_path: Path = Path("/run/vppagent/bird.ctl")
    bird_binary: str = "bird"
    birdc_binary: str = "birdc"
    # --bird-run: the agent starts and supervises bird itself.
    run_bird: bool = False

    @field_validator("node_mesh_password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        return _check_secret(value)

    @field_validator("router_id")
    @classmethod
    def _nonzero_router_id(cls, value: ipaddress.IPv4Address | None) -> ipaddress.IPv4Address | None:
        if value is not None and int(value) == 0:
            raise ValueError("router_id must not be 0.0.0.0")
        return value

    @field_validator("ignored_interfaces")
    @classmethod
    def _check_interfaces(cls, values: list[str]) -> list[str]:
        for pattern in values:
            if not _INTERFACE_PATTERN_RE.match(pattern):
                raise ValueError(f"interface pattern {pattern!r}: letters, digits, _.:@- and a trailing *")
        return values

    @field_validator("config_path")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return check_bird_config_path(value)

    @field_validator("socket_path")
    @classmethod
    def _socket(cls, value: Path) -> Path:
        return check_bird_socket_path(value)

    @model_validator(mode="after")
    def _check_peers(self) -> BgpConfig:
        seen: set[tuple[IPAddress, int | None]] = set()
        for peer in self.peers:
            key = (peer.address, peer.port)
            if key in seen:
                raise ValueError(f"peer {peer.address} port {peer.port} is listed twice")
            seen.add(key)
        if self.error_wait_time[0] > self.error_wait_time[1]:
            raise ValueError("error_wait_time: the minimum is larger than the maximum")
        return self
