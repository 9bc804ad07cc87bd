"""The `bgp:` config section: defaults, and clear errors for anything BIRD could not take."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from vppagent.bgp.config import BgpConfig, check_bird_password, parse_community


def errors(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        BgpConfig.model_validate(data)
    return str(info.value)


def test_defaults() -> None:
    config = BgpConfig()
    assert config.as_number == 64512
    assert config.node_mesh is True
    assert config.peers == []
    assert config.connect_delay_time == 5


def test_unknown_keys_are_rejected() -> None:
    assert "extra_forbidden" in errors({"as_numbr": 1})
    assert "extra_forbidden" in errors({"peers": [{"address": "10.0.0.1", "as_number": 1, "pasword": "x"}]})


@pytest.mark.parametrize("password", ['a"b', "a\\b", "line\nbreak", "tab\there", "é", "x" * 81, ""])
def test_passwords_bird_cannot_quote_are_rejected(password: str) -> None:
    message = errors({"node_mesh_password": password})
    assert "node_mesh_password" in message
    message = errors({"peers": [{"address": "10.0.0.1", "as_number": 65001, "password": password}]})
    assert "peers.0.password" in message


def test_password_is_secret_in_repr() -> None:
    config = BgpConfig.model_validate({"node_mesh_password": "hunter2"})
    assert "hunter2" not in repr(config)
    assert check_bird_password("ok-Pass word!#;{}") == "ok-Pass word!#;{}"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"as_number": 0}, "as_number"),
        ({"as_number": 2**32}, "as_number"),
        ({"peers": [{"address": "10.0.0.1", "as_number": 1, "port": 70000}]}, "port"),
        ({"peers": [{"address": "not-an-ip", "as_number": 1}]}, "address"),
        ({"peers": [{"address": "10.0.0.1", "as_number": 1, "keepalive": 30, "hold_time": 60}]}, "keepalive"),
        ({"peers": [{"address": "10.0.0.1", "as_number": 1, "source_address": "fd00::1"}]}, "same IP version"),
        ({"peers": [{"address": "10.0.0.1", "as_number": 1}, {"address": "10.0.0.1", "as_number": 2}]},
         "listed twice"),
        ({"communities": [{"prefix": "10.0.0.1/8", "communities": ["1:2"]}]}, "host bits"),
        ({"communities": [{"prefix": "10.0.0.0/8", "communities": ["70000:1"]}]}, "16-bit"),
        ({"communities": [{"prefix": "10.0.0.0/8", "communities": ["1:2:3:4"]}]}, "'a:b' or 'a:b:c'"),
        ({"config_path": "relative/bird.conf"}, "absolute"),
        ({"socket_path": "/" + "s" * 120}, "longer than the 107 bytes"),
        ({"ignored_interfaces": ['eth"0']}, "interface pattern"),
        ({"route_reflector_label": "rr;=x"}, "route_reflector_label"),
        ({"error_wait_time": [30, 5]}, "error_wait_time"),
        ({"router_id": "fd00::1"}, "router_id"),
        ({"router_id": "0.0.0.0"}, "must not be 0.0.0.0"),
        ({"peers": [{"address": "::", "as_number": 1}]}, "cannot be a BGP peer"),
        ({"peers": [{"address": "224.0.0.5", "as_number": 1}]}, "cannot be a BGP peer"),
        ({"peers": [{"address": "fe80::1", "as_number": 1}]}, "link-local"),
    ],
)
def test_invalid_values_name_the_field(data: dict[str, Any], fragment: str) -> None:
    assert fragment in errors(data)


def test_communities() -> None:
    assert parse_community("65000:100") == (65000, 100)
    assert parse_community("4200000000:1:2") == (4200000000, 1, 2)
    with pytest.raises(ValueError, match="32-bit"):
        parse_community("4294967296:1:2")


def test_full_config_round_trips() -> None:
    data = {
        "enabled": True,
        "hostname": "node1",
        "as_number": 65000,
        "node_mesh": False,
        "peers": [{"address": "fd00::1", "as_number": 65001, "port": 1179, "password": "pw", "ttl_security": True,
                   "multihop": 2, "source_address": "node", "keepalive": 10, "hold_time": 30,
                   "graceful_restart": False}],
        "route_reflector_cluster_id": "224.0.0.1",
        "communities": [{"prefix": "fd10::/48", "communities": ["1:2"]}],
        "listen_address": "198.18.0.1",
        "listen_port": 1179,
    }
    config = BgpConfig.model_validate(data)
    assert BgpConfig.model_validate(config.model_dump()) == config


@pytest.mark.parametrize("field", ["address", "source_address"])
def test_a_bad_peer_address_is_one_error_at_its_field(field: str) -> None:
    peer = {"address": "10.0.0.1", "as_number": 1, field: "10.0.0.300"}
    with pytest.raises(ValidationError) as info:
        BgpConfig.model_validate({"peers": [peer]})
    first = info.value.errors()[0]
    # source_address is a union with "node": pydantic adds the member's name after the field.
    assert first["loc"][:3] == ("peers", 0, field) and len(first["loc"]) <= 4, first["loc"]
    assert "not an IPv4 or IPv6 address" in first["msg"] and first["input"] == "10.0.0.300"


@pytest.mark.parametrize("data", [
    {"router_id": True},
    {"route_reflector_cluster_id": 5},
    {"peers": [{"address": 167772161, "as_number": 1}]},
    {"listen_address": False},
])
def test_addresses_are_written_as_text(data: dict[str, Any]) -> None:
    """YAML `router_id: yes` or `address: 167772161` is a mistake, not 0.0.0.1 or 10.0.0.1."""
    assert "written as text" in errors(data)
