"""Agent configuration: flags > environment (VPPAGENT_*) > YAML file > defaults.

pydantic-settings does the layering and validation; a bad value becomes one clear line
(`ConfigError`) that the CLI prints before exiting with status 2.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    YamlConfigSettingsSource,
)

from vppagent.bgp.config import BgpConfig, check_bird_config_path, check_bird_socket_path
from vppagent.command_line import UsageError, describe_yaml_error, read_text_file

DEFAULT_SOCKET = "/run/vppagent/agent.sock"
DEFAULT_NODE_PORT_RANGE = "30000-32767"  # Kubernetes' --service-node-port-range default


class ConfigError(UsageError):
    """Configuration that cannot be used; the message is one line naming the setting."""


class AgentConfig(BaseSettings):
    """Every setting of `vppagent run` (README: configuration reference)."""

    model_config = SettingsConfigDict(env_prefix="VPPAGENT_", extra="forbid", validate_default=True)

    socket: Path = Field(Path(DEFAULT_SOCKET), description="Agent gRPC unix socket (mode 0600)")
    driver: Literal["auto", "vpp", "iptables", "dry-run"] = Field(
        "auto", description="Dataplane driver; auto = VPP if its API socket answers, else iptables"
    )
    vpp_api_socket: Path = Field(Path("/run/vpp/api.sock"), description="VPP binary API socket")
    # allow_inf_nan=False on every float: an infinite wait is a hang, and NaN compares false to any bound.
    vpp_connect_timeout: float = Field(2.0, gt=0, allow_inf_nan=False,
                                       description="Seconds to wait for VPP in auto mode")
    cni_socket: Path = Field(Path("/var/run/calico/cni-server.sock"), description="CNI dataplane socket")
    iptables_netns: str | None = Field(
        None, description="iptables driver: program this named network namespace instead of the agent's own"
    )
    iptables_backend: Literal["auto", "nft", "legacy"] | None = Field(
        None, description="iptables driver: backend, overriding Felix's IptablesBackend (default: detect)"
    )
    pod_interface: Literal["tap", "af_packet", "auto"] = Field("auto", description="VPP pod attachment")
    bird_config: Path | None = Field(None, description="BIRD config file to generate (enables BGP)")
    bird_socket: Path | None = Field(None, description="BIRD control socket for reloads")
    bird_run: bool = Field(False, description="Also supervise the bird process")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Prometheus metrics port")
    log_level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level")
    batch_window_ms: float = Field(
        10.0, ge=0, le=1000, allow_inf_nan=False,
        description="Quiet time that ends a batch of deltas before a driver apply"
    )
    max_batch_delay_ms: float = Field(
        200.0, gt=0, le=10000, allow_inf_nan=False, description="Longest a delta waits for its batch to be applied"
    )
    rule_limit: int = Field(
        100_000, gt=0, description="Most flat rules one endpoint direction may compile to"
    )
    services: Literal["off", "kubernetes"] = Field(
        "off", description="Kubernetes Services on VPP: off, or kubernetes (list+watch the API server)"
    )
    kubeconfig: Path | None = Field(
        None, description="Service source: kubeconfig file (default: in-cluster config, else $KUBECONFIG)"
    )
    # Services on VPP (docs/services.md, "Source NAT" and "Which translations are ours").
    service_snat_ipv4: ipaddress.IPv4Address | None = Field(
        None, description="Services: VPP-only IPv4 source for NodePort/external flows to other nodes' backends"
    )
    service_snat_ipv6: ipaddress.IPv6Address | None = Field(
        None, description="Services: VPP-only IPv6 source for NodePort/external flows to other nodes' backends"
    )
    service_cidrs: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = Field(
        default_factory=list, description="Services: the cluster's --service-cluster-ip-range (comma-separated)"
    )
    service_node_port_range: str = Field(
        DEFAULT_NODE_PORT_RANGE, description="Services: the cluster's --service-node-port-range (FIRST-LAST)"
    )
    config: Path | None = Field(None, description="YAML file with these same keys")
    bgp: BgpConfig = Field(default_factory=BgpConfig, description="BGP section (README: BGP)")

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("config", "service_snat_ipv4", "service_snat_ipv6", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("service_cidrs", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):  # a flag or the environment: "10.96.0.0/12,fd00:96::/108"
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("service_node_port_range")
    @classmethod
    def _node_port_range(cls, value: str) -> str:
        node_port_range(value)
        return value

    def service_node_ports(self) -> tuple[int, int]:
        return node_port_range(self.service_node_port_range)

    @field_validator("bird_config")
    @classmethod
    def _bird_config(cls, value: Path | None) -> Path | None:
        return None if value is None else check_bird_config_path(value)

    @field_validator("bird_socket")
    @classmethod
    def _bird_socket(cls, value: Path | None) -> Path | None:
        return None if value is None else check_bird_socket_path(value)

    def bgp_settings(self) -> BgpConfig | None:
        """The BGP configuration when BGP is on (--bird-config or bgp.enabled), else None.

        The top-level flags are shorthands for bgp.config_path / socket_path / run_bird.
        """
        updates: dict[str, Any] = {}
        if self.bird_config is not None:
            updates.update(enabled=True, config_path=self.bird_config)
        if self.bird_socket is not None:
            updates["socket_path"] = self.bird_socket
        if self.bird_run:
            updates["run_bird"] = True
        bgp = self.bgp.model_copy(update=updates) if updates else self.bgp
        return bgp if bgp.enabled else None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init kwargs carry the command-line flags; the YAML file is named by flag or env.
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _CURRENT_YAML.get("path")
        if yaml_path is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_path))
        return tuple(sources)


def node_port_range(text: str) -> tuple[int, int]:
    """Kubernetes' `--service-node-port-range` form, FIRST-LAST (inclusive); ValueError names it."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", text)
    if match is None:
        raise ValueError(f"a port range is FIRST-LAST, e.g. {DEFAULT_NODE_PORT_RANGE}")
    first, last = int(match.group(1)), int(match.group(2))
    if not 1 <= first <= last <= 65535:
        raise ValueError("a port range needs 1 <= FIRST <= LAST <= 65535")
    return first, last


# The YAML path must be known before pydantic builds the sources; load_config sets it.
_CURRENT_YAML: dict[str, Path | None] = {"path": None}


def load_config(flags: dict[str, Any]) -> AgentConfig:
    """Build the configuration from command-line `flags` (None = not given) and the environment."""
    given = {k: v for k, v in flags.items() if v is not None}
    yaml_path = given.get("config") or os.environ.get("VPPAGENT_CONFIG") or None  # empty = unset
    if yaml_path is not None:
        path = Path(yaml_path)
        if not path.exists():
            raise ConfigError(f"config file {path} does not exist")
        if not path.is_file():
            raise ConfigError(f"config file {path} is not a file")
        _check_yaml_keys(path)
    _CURRENT_YAML["path"] = Path(yaml_path) if yaml_path else None
    try:
        return AgentConfig(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:  # a nested setting from the environment that is not JSON
        raise ConfigError(_describe_settings_error(exc)) from None
    finally:
        _CURRENT_YAML["path"] = None


def _describe_settings_error(exc: SettingsError) -> str:
    match = re.search(r'field "(\w+)" from source "EnvSettingsSource"', str(exc))
    if match is None:
        return f"invalid setting: {str(exc).splitlines()[0]}"
    name = match.group(1)
    return f"invalid setting {name}: VPPAGENT_{name.upper()} must be JSON (or use the YAML file)"


def describe_validation_error(exc: ValidationError) -> str:
    """The first error as one line: `invalid setting bgp.peers[1].address: MESSAGE (got VALUE)`."""
    err = exc.errors()[0]
    where = ""
    for part in err["loc"]:
        if isinstance(part, int):
            where += f"[{part}]"
        elif part.isidentifier():  # not pydantic's names for union members and validators
            where += f".{part}" if where else part
    message = str(err["msg"]).removeprefix("Value error, ")
    got = "" if "password" in where else f" (got {err.get('input')!r})"  # never echo a secret
    return f"invalid setting {where or 'config'}: {message}{got}"


def _check_yaml_keys(path: Path) -> None:
    import yaml

    try:
        data = yaml.safe_load(read_text_file(path, "config file")) or {}
    except UsageError as exc:
        raise ConfigError(str(exc)) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {describe_yaml_error(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of settings")
