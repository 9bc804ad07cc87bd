"""The service source against the API server stand-in, over real HTTP on 127.0.0.1 (no monkeypatching)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import wait_for
from vppagent.lab.apiserver import ENDPOINTSLICES, SERVICES, StandInApiServer
from vppagent.services.model import SERVICE_NAME_LABEL, ServiceEntry
from vppagent.services.source import (
    Backoff,
    KubernetesServiceSource,
    ServicesConfigError,
    load_api_client,
)

FAST = Backoff(initial=0.05, maximum=0.2)


def dns_service() -> dict[str, Any]:
    return {"metadata": {"namespace": "kube-system", "name": "dns"},
            "spec": {"clusterIPs": ["10.96.0.10"], "ports": [{"name": "dns", "protocol": "UDP", "port": 53}]}}


def dns_slice(*ips: str) -> dict[str, Any]:
    return {"metadata": {"namespace": "kube-system", "name": "dns-1", "labels": {SERVICE_NAME_LABEL: "dns"}},
            "addressType": "IPv4", "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}} for ip in ips]}


class Recorder:
    """Collects what the source hands to on_change."""

    def __init__(self) -> None:
        self.calls: list[dict[str, ServiceEntry]] = []
        self._lock = threading.Lock()

    def __call__(self, entries: dict[str, ServiceEntry]) -> None:
        with self._lock:
            self.calls.append(entries)

    def backends(self, name: str) -> list[str] | None:
        with self._lock:
            if not self.calls or name not in self.calls[-1]:
                return None
            return self.calls[-1][name].report()["backends"]


def make_source(api: StandInApiServer, tmp_path: Path, recorder: Recorder, **kwargs: Any) -> KubernetesServiceSource:
    client = load_api_client(api.write_kubeconfig(tmp_path / "kubeconfig"))
    kwargs.setdefault("backoff", FAST)
    return KubernetesServiceSource(client, recorder, **kwargs)


@contextmanager
def running(api: StandInApiServer, tmp_path: Path, **kwargs: Any) -> Iterator[tuple[KubernetesServiceSource, Recorder]]:
    """A started source against `api` and what it hands on; stopped after."""
    recorder = Recorder()
    source = make_source(api, tmp_path, recorder, **kwargs)
    source.start()
    try:
        yield source, recorder
    finally:
        source.stop()


def publish_dns(api: StandInApiServer, *backends: str) -> None:
    """kube-system/dns and its slice with `backends`, as the API server's objects."""
    api.put(SERVICES, dns_service())
    api.put(ENDPOINTSLICES, dns_slice(*backends))


def test_list_then_watch_events(api: StandInApiServer, tmp_path: Path) -> None:
    publish_dns(api, "10.65.0.2")
    with running(api, tmp_path) as (source, recorder):
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.2:53"])
        assert source.status() == {"connected": True, "last_error": None}
        api.put(ENDPOINTSLICES, dns_slice("10.65.0.2", "10.65.0.3"))
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.2:53", "10.65.0.3:53"])
        api.delete(SERVICES, "kube-system", "dns")
        wait_for(lambda: recorder.calls[-1] == {})
        assert source.services() == {}
    # one list each, then watches from the list's resourceVersion asking for bookmarks
    assert api.count(SERVICES, watch=False) == 1 and api.count(ENDPOINTSLICES, watch=False) == 1
    watches = [q for p, q in api.requests if p == SERVICES and q.get("watch") == "true"]
    assert watches[0]["resourceVersion"] == "3" and watches[0]["allowWatchBookmarks"] == "true"


def test_bookmark_moves_the_resource_version_so_a_compaction_needs_no_relist(
    api: StandInApiServer, tmp_path: Path
) -> None:
    api.put(SERVICES, dns_service())
    with running(api, tmp_path, watch_timeout=1) as (_, recorder):  # watches end every second
        wait_for(lambda: "kube-system/dns" in (recorder.calls[-1] if recorder.calls else {}))
        for port in (54, 55, 56):  # the version moves on; none of it is an endpointslice event
            api.put(SERVICES, {**dns_service(), "spec": {**dns_service()["spec"], "ports": [{"port": port}]}})
        api.bookmark()
        version = api.list_body(SERVICES)["metadata"]["resourceVersion"]

        def rewatched_from_bookmark() -> bool:
            return any(p == ENDPOINTSLICES and q.get("resourceVersion") == version for p, q in api.requests)

        wait_for(rewatched_from_bookmark)
        api.compact()
        time.sleep(1.5)  # at least one more watch round for both kinds
    assert api.count(ENDPOINTSLICES, watch=False) == 1, "a bookmarked watch must not need a re-list"


@pytest.mark.parametrize("gone_as", ["error event", "http status"])
def test_gone_relists_and_catches_up(api: StandInApiServer, tmp_path: Path, gone_as: str) -> None:
    publish_dns(api, "10.65.0.2")
    api.gone_as_http_status = gone_as == "http status"
    with running(api, tmp_path, watch_timeout=1) as (source, recorder):
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.2:53"])
        api.hold(True)  # the watch falls behind: the change below is never streamed
        api.put(ENDPOINTSLICES, dns_slice("10.65.0.9"))
        api.compact()
        api.hold(False)
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.9:53"])
        assert source.status() == {"connected": True, "last_error": None}, "410 is routine, not an outage"
    assert api.count(ENDPOINTSLICES, watch=False) == 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_server_is_one_line_then_recovers(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vppagent.services")
    api = StandInApiServer(port=free_port())  # not started: nothing answers on the port
    publish_dns(api, "10.65.0.2")
    recorder = Recorder()
    source = make_source(api, tmp_path, recorder)
    began = time.monotonic()
    source.start()
    assert time.monotonic() - began < 1.0, "start() must not wait for the API server"
    try:
        wait_for(lambda: source.status()["last_error"] is not None)
        time.sleep(1.0)  # several retries at the backoff's pace
        status = source.status()
        assert status["connected"] is False
        assert api.url in status["last_error"] and "Connection refused" in status["last_error"]
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        assert recorder.calls == []
        api.start()
        wait_for(lambda: source.status()["connected"] is True)
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.2:53"])
        assert any("reached again" in r.getMessage() for r in caplog.records)
    finally:
        source.stop()
        api.stop()


def test_server_restart_mid_watch_reconnects_and_sees_changes(api: StandInApiServer, tmp_path: Path) -> None:
    publish_dns(api, "10.65.0.2")
    with running(api, tmp_path) as (source, recorder):
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.2:53"])
        api.stop()
        wait_for(lambda: source.status()["connected"] is False)
        api.put(ENDPOINTSLICES, dns_slice("10.65.0.4"))  # changed while the client cannot see
        api.start()
        wait_for(lambda: recorder.backends("kube-system/dns") == ["10.65.0.4:53"])
        # Services and EndpointSlices reconnect on their own threads and backoffs: the slices' change
        # can arrive while the services' watch still waits out its backoff.
        wait_for(lambda: source.status()["connected"] is True, what="both watches reconnected")


def test_stop_ends_an_open_watch_promptly(api: StandInApiServer, tmp_path: Path) -> None:
    recorder = Recorder()
    source = make_source(api, tmp_path, recorder, watch_timeout=300)
    source.start()
    wait_for(lambda: api.count(ENDPOINTSLICES, watch=True) >= 1 and api.count(SERVICES, watch=True) >= 1)
    began = time.monotonic()
    source.stop()
    assert time.monotonic() - began < 3.0
    assert not any(t.is_alive() for t in threading.enumerate() if t.name.startswith("services-"))


def test_kubeconfig_that_is_missing_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a cluster
    with pytest.raises(ServicesConfigError, match=r"kubeconfig .*nope.* is not a file"):
        load_api_client(tmp_path / "nope")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "also-missing"))
    with pytest.raises(ServicesConfigError, match="also-missing"):
        load_api_client(None)


def test_kubeconfig_from_the_environment(
    api: StandInApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(api.write_kubeconfig(tmp_path / "env-kubeconfig")))
    assert load_api_client(None).configuration.host == api.url
