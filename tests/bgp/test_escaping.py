"""Hostile strings from the cluster (node names, labels, addresses, CIDRs) cannot inject config."""

from __future__ import annotations

import dataclasses
import ipaddress
import subprocess
from pathlib import Path

import pytest

from tests.bgp import states as m
from vppagent.bgp.config import BgpConfig
from vppagent.bgp.model import BgpPeer, PeerKind, build_bgp_inputs
from vppagent.bgp.render import render_bird_config

INJECTION = '";\n}\nprotocol bgp evil { neighbor 6.6.6.6 as 666; ipv4 { export all; }; }\n# \\'
HOSTILE_NAMES = [
    INJECTION,
    "node\r\nrouter id 6.6.6.6;",
    "node #{ }; /* */ include \"/etc/shadow\";",
    "nöde-\u202e-unicode\x00\x1b[31m",
    "x" * 300,
]


def assert_not_injected(text: str) -> None:
    """Hostile text may survive only inside one-line comments, as harmless characters."""
    config_lines = []
    for line in text.splitlines():
        assert all(" " <= c <= "~" for c in line), repr(line)
        if line.lstrip().startswith("#"):
            assert not set(line) & set('"{};\\'), repr(line)
        else:
            config_lines.append(line)
    config = "\n".join(config_lines)
    assert "6.6.6.6" not in config and "evil" not in config and "shadow" not in config


def validate(bird: str, tmp_path: Path, text: str) -> None:
    conf = tmp_path / "bird.conf"
    conf.write_text(text)
    proc = subprocess.run([bird, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_hostnames_only_reach_sanitised_comments(name: str, bird_binary: str, tmp_path: Path) -> None:
    messages = [
        m.config_msg(name),
        m.host_msg(name, "198.18.0.1", labels={"rr": INJECTION}),
        m.host_msg(INJECTION + "2", "198.18.0.2"),
        m.host_msg("ok", "198.18.0.3"),
        m.pool_msg("10.244.0.0/16"),
        m.block_msg("10.244.1.0/24", name, local=True),
    ]
    inputs = build_bgp_inputs(m.state_of(messages), BgpConfig(route_reflector_label="rr"))
    text = render_bird_config(inputs)
    assert_not_injected(text)
    assert text.count("protocol bgp ") == 2
    assert "route 10.244.1.0/24 blackhole;" in text
    validate(bird_binary, tmp_path, text)


def test_hostile_values_in_addresses_and_cidrs_are_dropped(bird_binary: str, tmp_path: Path) -> None:
    evil_ip = "198.18.0.9; } protocol bgp evil { neighbor 6.6.6.6 as 666; }"
    messages = [
        m.config_msg("a", InterfacePrefix='cali,evil" ; }'),
        m.host_msg("a", "198.18.0.1"),
        m.host_msg("b", evil_ip),
        m.host_msg("c", "198.18.0.3", asnumber="64512; } protocol bgp evil"),
        m.host_msg("d", "198.18.0.4", ipv6="fd00::4%eth0\n"),
        m.pool_msg("10.244.0.0/16 ] then accept; evil"),
        m.block_msg("10.244.1.0/24 blackhole; } evil", "a", local=True),
        m.global_bgp_msg(cluster=["6.6.6.6/32 blackhole; evil"]),
    ]
    inputs = build_bgp_inputs(m.state_of(messages), BgpConfig())
    text = render_bird_config(inputs)
    assert_not_injected(text)
    assert text.count("protocol bgp ") == 0
    assert len(inputs.problems) == 7  # b, c, d, InterfacePrefix, pool, block, service CIDR
    validate(bird_binary, tmp_path, text)


def test_renderer_refuses_unsafe_strings_even_when_handed_them_directly() -> None:
    messages = [m.config_msg("a"), m.host_msg("a", "198.18.0.1")]
    inputs = build_bgp_inputs(m.state_of(messages), BgpConfig())
    bad_peer = BgpPeer(address=ipaddress.ip_address("198.18.0.2"), port=None, kind=PeerKind.EXPLICIT,
                       as_number=1, password='x"; }')
    with pytest.raises(ValueError, match="password"):
        render_bird_config(dataclasses.replace(inputs, peers=(bad_peer,)))
    with pytest.raises(ValueError, match="interface pattern"):
        render_bird_config(dataclasses.replace(inputs, ignored_interfaces=('eth0"; }',)))
    # Descriptions and problems are free text: they are sanitised, not refused.
    odd = dataclasses.replace(bad_peer, password=None, description=INJECTION)
    text = render_bird_config(dataclasses.replace(inputs, peers=(odd,), problems=(INJECTION,)))
    assert_not_injected(text)


@pytest.mark.parametrize("field", ["address", "source_address"])
def test_scoped_addresses_are_refused_in_config(field: str) -> None:
    peer = {"address": "fd00::1", "as_number": 1, field: "fd00::2%x; } protocol bgp evil {"}
    with pytest.raises(ValueError, match="scoped"):
        BgpConfig.model_validate({"peers": [peer]})
    with pytest.raises(ValueError, match="scoped"):
        BgpConfig.model_validate({"listen_address": "fe80::1%eth0"})
