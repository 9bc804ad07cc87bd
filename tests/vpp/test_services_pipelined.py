"""Services' cnat writes pipelined (services/converge.py), on the emulator: each make-before-break
step is one pipeline whose replies are all read before the next (the deletes of translations made
again, the writes, the deletes of stale ones); a write VPP refuses inside a pipeline fails its own
Service alone, with VPP's refusal, and is retried; a refused delete keeps that translation; cnat's
interface enables go as one pipeline, and an interface VPP refused is enabled again next pass while
the others are not enabled twice (VPP counts enables)."""

from __future__ import annotations

from tests.vpp.helpers import Target
from tests.vpp.test_pipeline_driver import recorded_pipelines
from tests.vpp.test_services import held, service, services
from vppagent.drivers.vpp.api.errors import ApiError
from vppagent.drivers.vpp.driver import VppDriver
from vppagent.state.model import DataplaneState

CNAT_STEPS = {"cnat_translation_update", "cnat_translation_del"}

WEB = service("default/web", "10.96.0.10", 80, ["10.65.0.3"])
DNS = service("kube-system/dns", "10.96.0.53", 53, ["10.65.0.5"], target_port=5353, proto="udp")
API = service("default/api", "10.96.0.20", 443, ["10.65.0.6"], target_port=6443)


def cnat_steps(batches: list[list[str]]) -> list[list[str]]:
    return [batch for batch in batches if set(batch) & CNAT_STEPS]


def test_translation_writes_are_one_pipeline_and_a_refused_one_fails_its_service_alone(
        sim_target: Target, sim_driver: VppDriver) -> None:
    sim_driver.resync(DataplaneState())
    batches = recorded_pipelines(sim_driver)
    faults = sim_target.emulator.faults
    faults.reject("cnat_translation_update", ApiError.INVALID_VALUE,
                  when=lambda f: f["translation"]["vip"]["port"] == 53)
    sim_driver.set_services(services(WEB, DNS, API))
    assert cnat_steps(batches) == [["cnat_translation_update"] * 3]
    assert sim_driver.service_errors() == {"kube-system/dns": "VPP refused cnat_translation_update (service "
                                                              "kube-system/dns 10.96.0.53:53/udp): retval -7"}
    assert set(held(sim_target)) == {"10.96.0.10:80/6", "10.96.0.20:443/6"}, "the others are programmed"
    faults.clear()
    report = sim_driver.poll()  # what VPP refused, again at the keepalive
    assert report is not None and report.ok and sim_driver.service_errors() == {}
    assert cnat_steps(batches)[1:] == [["cnat_translation_update"]], "only the refused one is written again"
    assert set(held(sim_target)) == {"10.96.0.10:80/6", "10.96.0.20:443/6", "10.96.0.53:53/17"}


def test_make_before_break_steps_each_one_pipeline(sim_target: Target, sim_driver: VppDriver) -> None:
    sim_driver.resync(DataplaneState())
    sim_driver.set_services(services(WEB, DNS, API))
    batches = recorded_pipelines(sim_driver)
    # web's affinity changes (deleted and made again: cnat keeps an existing translation's balancing),
    # dns's backends change (written in place), api goes (a stale one), one is new
    new = service("default/new", "10.96.0.30", 8080, ["10.65.0.7"])
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"], affinity=10800),
                                     service("kube-system/dns", "10.96.0.53", 53, ["10.65.0.8"], target_port=5353,
                                             proto="udp"), new))
    assert cnat_steps(batches) == [["cnat_translation_del"], ["cnat_translation_update"] * 3,
                                   ["cnat_translation_del"]]
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.3:8080"], 1), "10.96.0.53:53/17": (["10.65.0.8:5353"], 0),
                                "10.96.0.30:8080/6": (["10.65.0.7:8080"], 0)}
    assert sim_driver.service_errors() == {}


def test_a_refused_delete_keeps_its_translation_and_the_rest_go_on(sim_target: Target, sim_driver: VppDriver) -> None:
    sim_driver.resync(DataplaneState())
    sim_driver.set_services(services(WEB, DNS, API))
    ids = {int(d.translation.vip.port): int(d.translation.id) for d in sim_target.raw.api.cnat_translation_dump()}
    faults = sim_target.emulator.faults
    # the delete before web is made again (its affinity changes) and api's stale delete are refused
    faults.reject("cnat_translation_del", ApiError.INVALID_VALUE, when=lambda f: f["id"] in (ids[80], ids[443]))
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"], affinity=10800),
                                     service("kube-system/dns", "10.96.0.53", 53, ["10.65.0.8"], target_port=5353,
                                             proto="udp")))
    errors = sim_driver.service_errors()
    assert list(errors) == ["default/web"] and "cnat_translation_del" in errors["default/web"]
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.3:8080"], 0), "10.96.0.53:53/17": (["10.65.0.8:5353"], 0),
                                "10.96.0.20:443/6": (["10.65.0.6:6443"], 0)}, "web as it was, dns written, api kept"
    faults.clear()
    sim_driver.set_services(services(service("default/web", "10.96.0.10", 80, ["10.65.0.3"], affinity=10800),
                                     service("kube-system/dns", "10.96.0.53", 53, ["10.65.0.8"], target_port=5353,
                                             proto="udp")))
    assert sim_driver.service_errors() == {}
    assert held(sim_target) == {"10.96.0.10:80/6": (["10.65.0.3:8080"], 1), "10.96.0.53:53/17": (["10.65.0.8:5353"], 0)}


def test_cnat_interface_enables_are_one_pipeline_and_a_refused_one_alone_is_retried(sim_target: Target,
                                                                                     sim_driver: VppDriver) -> None:
    pods = [sim_target.pod(f"default/web-{i}") for i in range(3)]
    refused = pods[1]
    faults = sim_target.emulator.faults
    faults.reject("feature_cnat_enable_disable", ApiError.INVALID_VALUE, when=lambda f: f["sw_if_index"] == refused)
    sim_driver.resync(DataplaneState())
    batches = recorded_pipelines(sim_driver)
    sim_driver.set_services(services(WEB))
    enables = [batch for batch in batches if "feature_cnat_enable_disable" in batch]
    assert len(enables) == 1 and enables[0].count("feature_cnat_enable_disable") >= len(pods)
    cnat = sim_target.emulator.state.cnat
    assert refused not in cnat.features and all(cnat.features[p] == 1 for p in pods if p != refused)
    assert cnat.snat_interfaces == {2: set(pods)}, "each pod's own source-NAT write is its own outcome"
    faults.clear()
    sim_driver.resync(DataplaneState())
    assert all(cnat.features[p] == 1 for p in pods), "the refused one enabled now, the others not twice"
