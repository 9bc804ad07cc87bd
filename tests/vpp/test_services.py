"""Kubernetes Services as cnat translations, on the emulator: convergence by diff, adoption after an
agent restart, translations of others left alone, one bad Service failing alone, and what a VPP
outage and restart do to the Services' status, and the source-NAT address announced on its uplink
by proxy ARP / ND (drivers/vpp/services/, docs/services.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from tests.vpp.helpers import Target, make_driver
from vppagent.config import ConfigError, load_config
from vppagent.drivers.vpp.api.errors import NO_INDEX, ApiError
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.drivers.vpp.services.settings import HAIRPIN_SNAT_V4, ServiceSettings
from vppagent.services.model import Backend, Frontend, ServiceEntry, ServicePortEntry
from vppagent.state.model import DataplaneState

NODE = "192.0.2.1"


def service(name: str, vip: str, port: int, backends: list[str], *, target_port: int = 8080, proto: str = "tcp",
            node_port: int | None = None, affinity: int | None = None) -> ServiceEntry:
    frontends = [Frontend(vip, port, proto, "cluster")]  # type: ignore[arg-type]
    if node_port is not None:
        frontends.append(Frontend(NODE, node_port, proto, "nodeport"))  # type: ignore[arg-type]
    return ServiceEntry(name, (ServicePortEntry("p", proto, tuple(frontends),  # type: ignore[arg-type]
                                                tuple(Backend(b, target_port) for b in backends)),),
                        affinity_timeout=affinity)


def held(target: Target) -> dict[str, tuple[list[str], int]]:
    """VIP:port/proto -> (backends, lb_type), as VPP's dump gives them."""
    out = {}
    for d in target.raw.api.cnat_translation_dump():
        t = d.translation
        key = f"{t.vip.addr}:{t.vip.port}/{int(t.ip_proto)}"
        out[key] = ([f"{p.dst_ep.addr}:{p.dst_ep.port}" for p in t.paths], int(t.lb_type))
    return out


def uplink(target: Target, address: str = NODE) -> int:
    """An interface that is not a pod's, holding the node's address (where node ports are)."""
    sw_if_index = int(target.raw.api.create_loopback().sw_if_index)
    target.raw.api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=True, prefix=f"{address}/24")
    return sw_if_index


def foreign(target: Target, vip: str, port: int) -> int:
    """A translation someone else made (no port of any desired Service)."""
    ep = {"addr": "10.65.9.9", "sw_if_index": NO_INDEX, "if_af": 0, "port": 80}
    zero = {"addr": "0.0.0.0", "sw_if_index": NO_INDEX, "if_af": 0, "port": 0}
    return int(target.raw.api.cnat_translation_update(translation={
        "vip": {"addr": vip, "sw_if_index": NO_INDEX, "if_af": 0, "port": port}, "id": 0, "ip_proto": 6,
        "is_real_ip": 0, "flags": 0, "lb_type": 0, "n_paths": 1, "flow_hash_config": 0,
        "paths": [{"dst_ep": ep, "src_ep": zero, "flags": 0}]}).id)


def services(*entries: ServiceEntry) -> dict[str, ServiceEntry]:
    return {e.name: e for e in entries}


@contextmanager
def programmed(target: Target, entries: dict[str, ServiceEntry], **driver_settings: Any) -> Iterator[VppDriver]:
    """An agent's driver that has read VPP back (resync of nothing) and been given `entries`; closed after."""
    driver = make_driver(target, **driver_settings)
    try:
        driver.resync(DataplaneState())
        driver.set_services(entries)
        yield driver
    finally:
        driver.close()


def programmed_and_gone(target: Target, entries: dict[str, ServiceEntry], **driver_settings: Any) -> None:
    """An agent that programmed `entries` and went away: what a restarted agent finds in VPP."""
    with programmed(target, entries, **driver_settings):
        pass


def test_services_converge_by_diff(sim_target: Target, sim_driver: VppDriver) -> None:
    web = service("default/web", "10.96.0.10", 80, ["10.65.0.4", "10.65.0.3"], node_port=30080)
    dns = service("kube-system/dns", "10.96.0.53", 53, ["10.65.0.5"], target_port=5353, proto="udp")
    sim_driver.set_services(services(web, dns))
    assert sim_driver.service_errors() == {}
    assert held(sim_target) == {
        "10.96.0.10:80/6": (["10.65.0.3:8080", "10.65.0.4:8080"], 0),
        f"{NODE}:30080/6": (["10.65.0.3:8080", "10.65.0.4:8080"], 0),
        "10.96.0.53:53/17": (["10.65.0.5:5353"], 0),
    }
    writes = sim_driver.conn.writes
    sim_driver.set_services(services(web, dns))
    assert sim_driver.conn.writes == writes  # nothing differs: nothing written
    # a backend removed: the paths are replaced, in place
    ids = {str(d.translation.vip.addr): int(d.translation.id) for d in sim_target.raw.api.cnat_translation_dump()}
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.4"], node_port=30080), dns))
    assert held(sim_target)["10.96.0.10:80/6"] == (["10.65.0.4:8080"], 0)
    assert {str(d.translation.vip.addr): int(d.translation.id)
            for d in sim_target.raw.api.cnat_translation_dump()} == ids
    # affinity on: cnat keeps the balancing type of an existing translation, so it is made again
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.4"], affinity=10800), dns))
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.4:8080"], 1), "10.96.0.53:53/17": (["10.65.0.5:5353"], 0)}
    # no backends left: no translation (cnat holds none without paths)
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, []), dns))
    assert held(sim_target) == {"10.96.0.53:53/17": (["10.65.0.5:5353"], 0)}
    assert sim_driver.service_errors() == {}


def test_translations_of_others_are_left_alone(sim_target: Target, sim_driver: VppDriver) -> None:
    other = foreign(sim_target, "10.200.0.1", 80)
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"])))
    sim_driver.set_services({})
    sim_driver.resync(DataplaneState())
    assert held(sim_target) == {"10.200.0.1:80/6": (["10.65.9.9:80"], 0)}
    assert [int(d.translation.id) for d in sim_target.raw.api.cnat_translation_dump()] == [other]
    sim_driver.remove_all()  # a swap away removes ours only
    assert list(held(sim_target)) == ["10.200.0.1:80/6"]


def test_an_agent_restart_adopts_its_translations(sim_target: Target) -> None:
    web = service("default/web", "10.96.0.10", 80, ["10.65.0.3"])
    api = service("default/api", "10.96.0.20", 443, ["10.65.0.6"], target_port=8443)
    programmed_and_gone(sim_target, services(web, api))
    foreign(sim_target, "10.200.0.1", 80)
    # while the agent was away: api lost its port 443 for 444, web was deleted
    api_moved = service("default/api", "10.96.0.20", 444, ["10.65.0.6"], target_port=8443)
    with programmed(sim_target, services(api_moved)) as second:
        assert second.service_errors() == {}
        # 10.96.0.20:443 was on a Service address: ours, deleted. 10.96.0.10:80 belongs to no desired
        # Service any more: cnat gives no mark to tell it from another's, so it stays (docs/services.md).
        assert held(sim_target) == {"10.96.0.20:444/6": (["10.65.0.6:8443"], 0),
                                    "10.96.0.10:80/6": (["10.65.0.3:8080"], 0),
                                    "10.200.0.1:80/6": (["10.65.9.9:80"], 0)}
        writes = second.conn.writes
        third = make_driver(sim_target)
        try:
            third.set_services(services(api_moved))
            # adopted as it is (its writes: cnat's source-NAT policy, once per connection)
            assert third.conn.requests["cnat_translation_update"] == third.conn.requests["cnat_translation_del"] == 0
            assert second.conn.writes == writes
        finally:
            third.close()


CLUSTER = ServiceSettings(cidrs=(ipaddress.ip_network("10.96.0.0/12"), ipaddress.ip_network("fd96::/108")))


def test_with_service_cidrs_a_service_deleted_while_the_agent_was_down_is_removed(sim_target: Target) -> None:
    uplink(sim_target)
    web = service("default/web", "10.96.0.10", 80, ["10.65.0.3"], node_port=30080)
    api = service("default/api", "10.96.0.20", 443, ["10.65.0.6"], target_port=8443)
    programmed_and_gone(sim_target, services(web, api), service_settings=CLUSTER)
    # others': outside the service CIDRs; on the node address outside the NodePort range; a port in
    # the range on an address that is not the node's
    for vip, port in (("10.200.0.1", 80), (NODE, 8080), ("10.65.9.1", 30080)):
        foreign(sim_target, vip, port)
    # an agent restart; web deleted meanwhile
    with programmed(sim_target, services(api), service_settings=CLUSTER) as second:
        assert second.service_errors() == {}
        assert held(sim_target) == {"10.96.0.20:443/6": (["10.65.0.6:8443"], 0),
                                    "10.200.0.1:80/6": (["10.65.9.9:80"], 0),
                                    f"{NODE}:8080/6": (["10.65.9.9:80"], 0),
                                    "10.65.9.1:30080/6": (["10.65.9.9:80"], 0)}
        assert second.conn.requests["cnat_translation_del"] == 2  # web's cluster IP and node port, nothing else


def test_with_service_cidrs_no_service_at_all_still_removes_what_is_in_them(sim_target: Target) -> None:
    uplink(sim_target)
    foreign(sim_target, "10.96.0.99", 80)  # in the CIDRs: a Service's, though no desired one has it
    foreign(sim_target, "10.200.0.2", 80)
    with programmed(sim_target, {}, service_settings=CLUSTER):
        assert held(sim_target) == {"10.200.0.2:80/6": (["10.65.9.9:80"], 0)}


def test_one_bad_service_is_that_services_error(sim_target: Target, sim_driver: VppDriver) -> None:
    bad = service("default/a-bad", "10.96.0.1", 80, ["10.65.0.3"])
    good = service("default/b-good", "10.96.0.2", 80, ["10.65.0.4"])
    sim_target.emulator.faults.reject("cnat_translation_update", ApiError.INVALID_VALUE, times=1)
    sim_driver.set_services(services(bad, good))
    errors = sim_driver.service_errors()
    assert list(errors) == ["default/a-bad"] and "cnat_translation_update" in errors["default/a-bad"]
    assert list(held(sim_target)) == ["10.96.0.2:80/6"]
    report = sim_driver.poll()  # the driver itself is fine, and the next keepalive retries
    assert report is not None and report.ok and sim_driver.service_errors() == {}
    assert sorted(held(sim_target)) == ["10.96.0.1:80/6", "10.96.0.2:80/6"]


def test_services_are_errors_while_vpp_is_away_and_come_back_with_it(sim_target: Target,
                                                                     sim_driver: VppDriver) -> None:
    web = service("default/web", "10.96.0.10", 80, ["10.65.0.3"])
    sim_driver.resync(DataplaneState())
    sim_driver.set_services(services(web))
    sim = sim_target.emulator
    sim.stop()
    for _ in range(3):  # steadily, poll after poll
        report = sim_driver.poll()
        assert report is not None and report.unreachable
        errors = sim_driver.service_errors()
        assert list(errors) == ["default/web"] and errors["default/web"].startswith("VPP: ")
    sim.start()  # a fresh VPP: nothing in it
    report = sim_driver.poll()
    assert report is not None and report.ok, report
    assert sim_driver.service_errors() == {}
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.3:8080"], 0)}


def test_a_vpp_without_cnat_runs_the_driver_and_fails_the_services(sim_target: Target) -> None:
    sim_target.emulator.faults.omit_from_message_table("cnat_translation_update")
    driver = make_driver(sim_target)
    try:
        assert driver.resync(DataplaneState()).ok
        driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"])))
        errors: dict[str, Any] = driver.service_errors()
        assert "cnat plugin cannot be used" in errors["default/web"]
        assert "missing cnat_translation_update" in errors["default/web"]
    finally:
        driver.close()


def test_ipv6_frontends_get_ipv6_backends_only(sim_target: Target, sim_driver: VppDriver) -> None:
    dual = ServiceEntry("default/dual", (ServicePortEntry("p", "tcp", (
        Frontend("10.96.0.10", 80, "tcp", "cluster"), Frontend("fd96::10", 80, "tcp", "cluster")),
        (Backend("10.65.0.3", 8080), Backend("fd65::3", 8080))),))
    sim_driver.set_services({dual.name: dual})
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.3:8080"], 0), "fd96::10:80/6": (["fd65::3:8080"], 0)}


def test_cnat_runs_on_the_interfaces_with_the_pods_source_nat_for_hairpin(sim_target: Target,
                                                                          sim_driver: VppDriver) -> None:
    pod = sim_target.pod("default/web-1")
    sim_driver.resync(DataplaneState())
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"])))
    cnat = sim_target.emulator.state.cnat
    assert pod in cnat.features and 0 not in cnat.features  # local0 left alone
    assert cnat.snat_policy == 2 and cnat.snat_interfaces == {2: {pod}}
    assert cnat.snat_addresses is not None and ipaddress.ip_address(cnat.snat_addresses[0][:4]) == \
        ipaddress.ip_address(HAIRPIN_SNAT_V4)
    enables = sim_driver.conn.requests["feature_cnat_enable_disable"]
    sim_driver.resync(DataplaneState())
    assert sim_driver.conn.requests["feature_cnat_enable_disable"] == enables  # once per interface and connection


def test_a_configured_source_nat_address_is_cnats(sim_target: Target) -> None:
    settings = ServiceSettings(snat_ipv4=ipaddress.IPv4Address("192.0.2.5"),
                               snat_ipv6=ipaddress.IPv6Address("2001:db8::5"))
    web = service("default/web", "10.96.0.10", 80, ["10.65.0.3"])
    with programmed(sim_target, services(web), service_settings=settings):
        cnat = sim_target.emulator.state.cnat
        assert cnat.snat_policy == 2 and cnat.snat_addresses is not None
        assert (ipaddress.ip_address(cnat.snat_addresses[0][:4]), ipaddress.ip_address(cnat.snat_addresses[1])) == \
            (settings.snat_ipv4, settings.snat_ipv6)


def test_the_services_settings_reach_the_driver_from_flags_and_environment(sim_target: Target,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from vppagent.drivers.vpp import create_driver

    monkeypatch.setenv("VPPAGENT_SERVICE_CIDRS", "10.96.0.0/12, fd96::/108")
    monkeypatch.setenv("VPPAGENT_SERVICE_NODE_PORT_RANGE", "30000-30999")
    config = load_config({"vpp_api_socket": sim_target.socket_path, "service_snat_ipv4": "192.0.2.5"})
    driver = create_driver(config)
    try:
        assert driver.service_settings == ServiceSettings(
            snat_ipv4=ipaddress.IPv4Address("192.0.2.5"), snat_ipv6=None,
            cidrs=(ipaddress.ip_network("10.96.0.0/12"), ipaddress.ip_network("fd96::/108")), node_ports=(30000, 30999))
        assert driver.service_settings.snat_addresses() == ("192.0.2.5", "fd69:fe::1")  # IPv6: hairpin only
    finally:
        driver.close()


@pytest.mark.parametrize(("flags", "message"), [
    ({"service_cidrs": "10.96.0.1/12"}, "invalid setting service_cidrs[0]"),
    ({"service_node_port_range": "32767-30000"}, "invalid setting service_node_port_range: a port range needs"),
    ({"service_node_port_range": "30000"}, "invalid setting service_node_port_range: a port range is FIRST-LAST"),
    ({"service_snat_ipv4": "fd00::5"}, "invalid setting service_snat_ipv4"),
])
def test_bad_services_settings_are_one_line_naming_the_setting(flags: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(flags)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value), caught.value


# -- the source-NAT address announced on its uplink (services/proxy.py) ----------------------------
SNAT4, SNAT6 = ipaddress.IPv4Address("192.0.2.5"), ipaddress.IPv6Address("2001:db8::5")


def dual_uplink(target: Target) -> int:
    """An uplink holding the node's addresses 192.0.2.1/24 and 2001:db8::1/64."""
    sw_if_index = uplink(target)
    target.raw.api.sw_interface_add_del_address(sw_if_index=sw_if_index, is_add=True, prefix="2001:db8::1/64")
    return sw_if_index


def proxies(target: Target) -> tuple[list[tuple[int, str, str]], set[int], set[tuple[int, str]]]:
    """(proxy ARP ranges, interfaces with proxy ARP, ND proxy entries), as VPP's dumps give them."""
    api = target.raw.api
    return ([(int(d.proxy.table_id), str(d.proxy.low), str(d.proxy.hi)) for d in api.proxy_arp_dump()],
            {int(d.sw_if_index) for d in api.proxy_arp_intfc_dump()},
            {(int(d.sw_if_index), str(d.ip)) for d in api.ip6nd_proxy_dump()})


def snat(v4: ipaddress.IPv4Address = SNAT4, v6: ipaddress.IPv6Address = SNAT6) -> ServiceSettings:
    return ServiceSettings(snat_ipv4=v4, snat_ipv6=v6)


WEB_NODEPORT = services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"], node_port=30080))


def test_the_source_nat_address_is_announced_on_its_uplink_once(sim_target: Target) -> None:
    up = dual_uplink(sim_target)
    with programmed(sim_target, WEB_NODEPORT, service_settings=snat()) as driver:
        assert driver.service_errors() == {}
        assert proxies(sim_target) == ([(0, str(SNAT4), str(SNAT4))], {up}, {(up, str(SNAT6))})
        notes = driver.status()["snat_proxy"]["notes"]
        assert notes == [f"{SNAT4}: proxy ARP on loop{up - 1}", f"{SNAT6}: ND proxy on loop{up - 1}"], notes
        writes = driver.conn.writes
        driver.resync(DataplaneState())  # read back, nothing differs: nothing written
        driver.set_services(WEB_NODEPORT)
        assert driver.conn.writes == writes
        assert proxies(sim_target) == ([(0, str(SNAT4), str(SNAT4))], {up}, {(up, str(SNAT6))})


def test_an_address_in_no_uplinks_subnet_gets_no_proxy_and_says_so(sim_target: Target) -> None:
    dual_uplink(sim_target)
    elsewhere = snat(ipaddress.IPv4Address("198.51.100.5"), ipaddress.IPv6Address("2001:db9::5"))
    with programmed(sim_target, WEB_NODEPORT, service_settings=elsewhere) as driver:
        assert driver.service_errors() == {}
        assert proxies(sim_target) == ([], set(), set())
        notes = driver.status()["snat_proxy"]["notes"]
        assert len(notes) == 2 and all("in no uplink's subnet" in note for note in notes), notes


def test_a_changed_address_replaces_ours_and_leaves_others_alone(sim_target: Target) -> None:
    up = dual_uplink(sim_target)
    other = uplink(sim_target, "203.0.113.1")
    api = sim_target.raw.api
    # someone else's: a wider range, a single address elsewhere, proxy ARP on another interface, an ND entry
    for low, high in (("192.0.2.100", "192.0.2.110"), ("192.0.2.77", "192.0.2.77")):
        api.proxy_arp_add_del(is_add=True, proxy={"table_id": 0, "low": low, "hi": high})
    api.proxy_arp_intfc_enable_disable(sw_if_index=other, enable=True)
    api.ip6nd_proxy_add_del(sw_if_index=up, is_add=True, ip="2001:db8::77")
    programmed_and_gone(sim_target, WEB_NODEPORT, service_settings=snat())
    # the agent restarts with other addresses: cnat's old ones are released, their proxies ours to remove
    changed = snat(ipaddress.IPv4Address("192.0.2.6"), ipaddress.IPv6Address("2001:db8::6"))
    with programmed(sim_target, WEB_NODEPORT, service_settings=changed) as second:
        assert second.service_errors() == {}
        ranges, interfaces, nd = proxies(sim_target)
        assert ranges == [(0, "192.0.2.100", "192.0.2.110"), (0, "192.0.2.77", "192.0.2.77"),
                          (0, "192.0.2.6", "192.0.2.6")]
        assert interfaces == {up, other}
        assert nd == {(up, "2001:db8::77"), (up, "2001:db8::6")}
        cnat = sim_target.emulator.state.cnat
        assert cnat.snat_addresses == (ipaddress.IPv4Address("192.0.2.6").packed,
                                       ipaddress.IPv6Address("2001:db8::6").packed)
        assert cnat.snat_policy == 2  # set again after the release
        assert second.status()["snat_proxy"]["retired"] == [str(SNAT4), str(SNAT6)]
        second.remove_all()  # a swap away: ours go, the others' stay (the interface flag it found on, too)
        assert proxies(sim_target) == ([(0, "192.0.2.100", "192.0.2.110"), (0, "192.0.2.77", "192.0.2.77")],
                                       {up, other}, {(up, "2001:db8::77")})


def test_proxy_arp_is_turned_off_only_where_the_driver_turned_it_on(sim_target: Target) -> None:
    up = dual_uplink(sim_target)
    with programmed(sim_target, WEB_NODEPORT, service_settings=snat()) as driver:
        assert proxies(sim_target)[1] == {up}
        driver.remove_all()
        assert proxies(sim_target) == ([], set(), set())


def test_a_refused_proxy_write_is_the_outside_services_error_and_is_retried(sim_target: Target) -> None:
    up = dual_uplink(sim_target)
    sim_target.emulator.faults.reject("proxy_arp_add_del", ApiError.NO_SUCH_FIB, times=1)
    cluster_only = service("default/dns", "10.96.0.53", 53, ["10.65.0.5"], proto="udp")
    with programmed(sim_target, services(*WEB_NODEPORT.values(), cluster_only), service_settings=snat()) as driver:
        errors = driver.service_errors()
        assert list(errors) == ["default/web"], errors  # a ClusterIP alone does not need the address
        assert "source-NAT address not announced" in errors["default/web"]
        assert "proxy_arp_add_del" in errors["default/web"]
        assert held(sim_target)["10.96.0.10:80/6"] == (["10.65.0.3:8080"], 0)  # the translations are programmed
        report = driver.poll()  # retried at the keepalive
        assert report is not None and report.ok
        assert driver.service_errors() == {}
        assert proxies(sim_target) == ([(0, str(SNAT4), str(SNAT4))], {up}, {(up, str(SNAT6))})
