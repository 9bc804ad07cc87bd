"""Property: for random topologies and configs, `bird -p` accepts the rendered file, and
rendering is deterministic. Hostnames and labels are arbitrary text, addresses arbitrary IPs."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.bgp import states as m
from vppagent.bgp.config import BgpConfig, check_peer_address
from vppagent.bgp.model import BgpInputsUnavailable, build_bgp_inputs
from vppagent.bgp.render import render_bird_config
from vppagent.gen.felix import felixbackend_pb2 as felix

PASSWORD_CHARS = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\')
passwords = st.text(PASSWORD_CHARS, min_size=1, max_size=20)
hostnames = st.text(min_size=1, max_size=30)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)
as_numbers = st.integers(1, 2**32 - 1)


def _usable(address: str) -> bool:
    try:
        check_peer_address(ipaddress.ip_address(address))
    except ValueError:
        return False
    return True


peer_addresses = st.one_of(ipv4, ipv6).filter(_usable)


@st.composite
def networks(draw: st.DrawFn, version: int, min_len: int, max_len: int) -> str:
    address = draw(st.ip_addresses(v=version))
    prefix = draw(st.integers(min_len, max_len))
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


any_network = st.one_of(networks(4, 8, 32), networks(6, 32, 128))


@st.composite
def peers(draw: st.DrawFn) -> dict[str, Any]:
    address = draw(peer_addresses)
    peer: dict[str, Any] = {"address": address, "as_number": draw(as_numbers)}
    if draw(st.booleans()):
        peer["port"] = draw(st.integers(1, 65535))
    if draw(st.booleans()):
        peer["password"] = draw(passwords)
    peer["ttl_security"] = draw(st.booleans())
    peer["multihop"] = draw(st.none() | st.integers(1, 255))
    peer["source_address"] = draw(st.sampled_from([None, "node"]))
    keepalive = draw(st.none() | st.integers(1, 100))
    peer["keepalive"] = keepalive
    peer["hold_time"] = draw(st.none() | st.integers(max(3, (keepalive or 1) * 3), 65535))
    peer["graceful_restart"] = draw(st.booleans())
    peer["graceful_restart_time"] = draw(st.none() | st.integers(1, 3600))
    peer["passive"] = draw(st.booleans())
    peer["route_reflector_client"] = draw(st.booleans())
    peer["next_hop_self"] = draw(st.booleans())
    return peer


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[felix.ToDataplane], dict[str, Any]]:
    me = draw(hostnames)
    own_v4 = draw(st.none() | st.integers(1, 254).map(lambda n: f"198.18.0.{n}"))
    own_v6 = draw(st.none() | st.integers(1, 0xFFFF).map(lambda n: f"fd00::{n:x}"))
    if own_v4 is None and own_v6 is None:
        own_v4 = "198.18.0.1"
    label = {"rr": "true"}
    messages = [
        m.config_msg(me, InterfacePrefix=draw(st.sampled_from(["cali", "cali,tap", "", "x y"]))),
        m.host_msg(me, own_v4 or "", own_v6 or "", asnumber=draw(st.sampled_from(["", "65001", "1.2"])),
                   labels=label if draw(st.booleans()) else None),
    ]
    for name in draw(st.lists(hostnames, max_size=6, unique=True)):
        messages.append(m.host_msg(
            name, draw(st.just("") | ipv4), draw(st.just("") | ipv6),
            asnumber=draw(st.sampled_from(["", "64512", "65002", "bogus"])),
            labels=label if draw(st.booleans()) else None))
    for cidr in draw(st.lists(any_network, max_size=3)):
        messages.append(m.pool_msg(cidr, ipip_mode=draw(st.sampled_from(["Never", "Always", ""])),
                                   vxlan_mode=draw(st.sampled_from(["Never", "CrossSubnet"]))))
    for cidr in draw(st.lists(any_network, max_size=6)):
        messages.append(m.block_msg(cidr, draw(st.sampled_from([me, "", "other"])), local=draw(st.booleans())))
    for cidr in draw(st.lists(any_network, max_size=3)):
        messages.append(m.workload_route_msg(cidr, me, borrowed=draw(st.booleans())))
    messages.append(m.global_bgp_msg(cluster=draw(st.lists(any_network, max_size=3)),
                                     lb=draw(st.lists(any_network, max_size=2))))
    config: dict[str, Any] = {
        "as_number": draw(as_numbers),
        "node_mesh": draw(st.booleans()),
        "node_mesh_password": draw(st.none() | passwords),
        "peers": draw(st.lists(peers(), max_size=3, unique_by=lambda p: (p["address"], p.get("port")))),
        "route_reflector_cluster_id": draw(st.none() | ipv4),
        "route_reflector_label": draw(st.sampled_from([None, "rr", "rr=true"])),
        "communities": [
            {"prefix": prefix, "communities": draw(st.lists(
                st.one_of(st.tuples(st.integers(0, 65535), st.integers(0, 65535)).map(lambda t: f"{t[0]}:{t[1]}"),
                          st.tuples(as_numbers, as_numbers, as_numbers).map(lambda t: f"{t[0]}:{t[1]}:{t[2]}")),
                min_size=1, max_size=3))}
            for prefix in draw(st.lists(any_network, max_size=3))
        ],
        "listen_address": draw(st.none() | st.sampled_from([own_v4, own_v6, "fd00::beef"])),
        "listen_port": draw(st.none() | st.integers(1, 65535)),
        "kernel_persist": draw(st.booleans()),
        "connect_delay_time": draw(st.integers(1, 100)),
    }
    return messages, config


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_bird_accepts_every_rendered_config(
    scenario: tuple[list[felix.ToDataplane], dict[str, Any]], bird_binary: str, tmp_path_factory: Any
) -> None:
    messages, config_data = scenario
    try:
        inputs = build_bgp_inputs(m.state_of(messages), BgpConfig.model_validate(config_data))
    except BgpInputsUnavailable:
        return  # e.g. our own HostMetadata was overwritten by a later, unusable one
    event(f"families={inputs.families()}, sessions>0={bool(inputs.peers)}")
    text = render_bird_config(inputs)
    assert render_bird_config(inputs) == text
    conf = Path(tmp_path_factory.mktemp("prop")) / "bird.conf"
    conf.write_text(text)
    proc = subprocess.run([bird_binary, "-p", "-c", str(conf)], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 0, f"{proc.stderr}\n{text}"


@pytest.mark.slow
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=scenarios())
def test_bird_accepts_every_rendered_config_long(
    scenario: tuple[list[felix.ToDataplane], dict[str, Any]], bird_binary: str, tmp_path_factory: Any
) -> None:
    """The same property with many more examples (`-m slow`)."""
    test_bird_accepts_every_rendered_config.hypothesis.inner_test(  # type: ignore[attr-defined]
        scenario, bird_binary, tmp_path_factory
    )
