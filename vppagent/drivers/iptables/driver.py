"""The kernel driver: resync, apply, remove_all and refresh over tables, IP sets and routes.

A write goes: IP sets created and filled; each changed table restored (one iptables-restore per
table); IP sets nobody references destroyed; then routes and interface sysctls. A failed restore
fails the apply (ok=False, naming the chain) and keeps stale IP sets. Every
IptablesRefreshInterval seconds a refresh reads everything back and rewrites what drifted; the
driver owns no thread for it: each report says when it is due (`next_run`) and the agent's worker
calls `poll` then.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import threading
import time
from collections import Counter
from typing import Any

from vppagent.drivers.base import ApplyReport, Driver
from vppagent.drivers.iptables.backend import Backend, detect_backend
from vppagent.drivers.iptables.ipsets import IPSetTable
from vppagent.drivers.iptables.render import TABLES, Desired, StateRenderer
from vppagent.drivers.iptables.routes import RouteManager
from vppagent.drivers.iptables.runner import CommandError, NetnsRunner, Runner
from vppagent.drivers.iptables.settings import Settings
from vppagent.drivers.iptables.table import Table, empty_view, read_save
from vppagent.pods.spec import PodDelete, PodSpec
from vppagent.pods.veth import Attachment, VethAttacher
from vppagent.state.diff import StateDiff
from vppagent.state.model import DataplaneState, Kind

log = logging.getLogger(__name__)

# After a restore input this big, the freed text and parse buffers are worth handing back to the OS.
BIG_WRITE_LINES = 20_000


class IptablesDriver(Driver):
    name = "iptables"

    def __init__(self, netns: str | None = None, backend: str | None = None,
                 manage_remote_routes: bool = True, refresh: bool = True, program_routes: bool = True,
                 runner: Runner | None = None) -> None:
        # `runner`: where commands and kernel calls run; by default a thread in `netns`.
        self.runner: Runner = runner if runner is not None else NetnsRunner(netns)
        self.netns = netns
        self._backend_override = backend
        self.backend: Backend | None = None
        self.manage_remote_routes = manage_remote_routes
        self.program_routes = program_routes  # off only in benchmarks that have no real interfaces
        self.settings = Settings()
        self.renderer = StateRenderer()
        self.tables: dict[tuple[int, str], Table] = {}
        self.ipsets = IPSetTable(self.runner)
        self.routes = RouteManager(self.runner)
        self.counters: Counter[str] = Counter()
        self.last_refresh: dict[str, Any] | None = None
        self._desired: Desired | None = None
        self._lock = threading.RLock()
        self._refresh_enabled = refresh
        self._refresh_due: float | None = None  # monotonic time of the next refresh
        self._last = ApplyReport()  # the last report: what a poll repeats (reports are complete)
        self._delete_error: str | None = None  # logged once per reason

    # -- Driver interface --------------------------------------------------------------------
    def resync(self, state: DataplaneState) -> ApplyReport:
        with self._lock:
            self.counters["resyncs"] += 1
            for table in self.tables.values():
                table.invalidate()
            self.ipsets.invalidate()
            return self._reported(self._program(state, force_sysctls=True, read_all=True))

    def apply(self, diff: StateDiff, state: DataplaneState) -> ApplyReport:
        # The renderer notices changed objects by itself (its caches hold each object's
        # message); the diff is not needed to find them.
        with self._lock:
            self.counters["applies"] += 1
            return self._reported(self._program(state))

    def poll(self) -> ApplyReport | None:
        """The periodic refresh, when due; the report is the last one (a refresh only repairs
        drift back to what was programmed)."""
        with self._lock:
            if self._refresh_due is None:
                return None
            if time.monotonic() >= self._refresh_due:
                self._refresh_due = time.monotonic() + self.settings.refresh_interval
                try:
                    self.refresh()
                except Exception:  # a refresh bug must not stop the next one
                    log.exception("refresh failed")
            return self._reported(ApplyReport(ok=self._last.ok, error=self._last.error,
                                              failed=dict(self._last.failed)))

    def _reported(self, report: ApplyReport) -> ApplyReport:
        """Remember the report (a poll repeats it) and say when the next refresh is due."""
        self._last = report
        interval = self.settings.refresh_interval
        if not self._refresh_enabled or interval <= 0:  # Felix's convention: 0 switches it off
            self._refresh_due = None
        elif self._refresh_due is None or self._refresh_due > time.monotonic() + interval:
            self._refresh_due = time.monotonic() + interval  # (Felix's interval may have shrunk)
        if self._refresh_due is not None:
            report.next_run = max(0.0, self._refresh_due - time.monotonic())
        return report

    def remove_all(self) -> ApplyReport:
        with self._lock:
            if self.backend is None:
                self.backend = detect_backend(self.runner, self._backend_override or self.settings.backend)
            for key in [(f, t) for f in (4, 6) for t in TABLES]:
                table = self._table(key)
                table.invalidate()
                table.replace_chains([])
                for kernel_chain in table.hooks:
                    table.set_hooks(kernel_chain, [])
            self._desired = Desired()
            self.ipsets.desired = {}
            report = ApplyReport()
            errors = [r.error for r in (t.apply() for t in self.tables.values()) if r.error]
            self.ipsets.invalidate()
            deleted = self.ipsets.apply_deletes()
            if deleted.error:
                errors.append(deleted.error)
            self.routes.remove_all()
            if errors:
                report.ok, report.error = False, "; ".join(errors)
            return report

    def attach_pod(self, spec: PodSpec) -> Attachment:
        # On the dataplane thread, so that the pod's host side lands in the programmed netns.
        return self.runner.call(lambda: VethAttacher().add(spec))

    def detach_pod(self, request: PodDelete) -> str | None:
        return self.runner.call(lambda: VethAttacher().delete(request))

    def status(self) -> dict[str, Any]:
        with self._lock:
            chains = {f"{t.name}v{t.family}": len(t.reachable()) for t in self.tables.values()}
            return {
                "backend": self.backend.name if self.backend else None,
                "netns": self.netns,
                "calls": dict(self.runner.calls),
                "counters": dict(self.counters),
                "chains": chains,
                "ipsets": len(self.ipsets.desired),
                "last_refresh": self.last_refresh,
                "refresh_interval": self.settings.refresh_interval,
            }

    def close(self) -> None:
        with self._lock:
            self.routes.close()
            self.runner.close()

    # -- programming -------------------------------------------------------------------------
    def _table(self, key: tuple[int, str]) -> Table:
        table = self.tables.get(key)
        if table is None:
            assert self.backend is not None
            table = self.tables[key] = Table(key[1], key[0], self.runner, self.backend)
        return table

    def _read_all(self, families: tuple[int, ...]) -> str | None:
        """One iptables-save per family for every table, read as it comes (never whole: tens of
        MB at 10,000 endpoints, at every agent restart; docs/kernel-driver.md, Restart); the
        error, if any."""
        assert self.backend is not None
        for family in families:
            try:
                views = self.runner.stream([self.backend.save(family)], read_save, timeout=120)
            except CommandError as exc:
                return f"cannot read IPv{family} iptables: {exc}"
            for name in TABLES:
                self._table((family, name)).load(views.get(name) or empty_view())
        return None

    def _program(self, state: DataplaneState, force_sysctls: bool = False, read_all: bool = False) -> ApplyReport:
        start = time.monotonic()
        settings = Settings.from_config(state.config)
        self.settings = settings
        report = ApplyReport()
        if self.backend is None:
            try:
                self.backend = detect_backend(self.runner, self._backend_override or settings.backend)
            except CommandError as exc:
                return ApplyReport(ok=False, error=f"cannot detect the iptables backend: {exc}")
            log.info("iptables backend: %s", self.backend.name)
        if read_all:
            problem = self._read_all((4, 6) if settings.ipv6 else (4,))
            if problem:
                return ApplyReport(ok=False, error=problem)
        desired = self.renderer.render(state, settings)
        if self.manage_remote_routes:
            desired.routes += self.renderer.remote_routes(state)
        self._desired = desired
        report.failed.update(desired.failed)

        self.ipsets.desired = desired.ipsets
        created = self.ipsets.apply_creates()
        if created.error:
            return ApplyReport(ok=False, error=created.error, writes=created.calls)
        writes = created.calls
        lines = 0
        errors = []
        for key, chains in desired.chains.items():
            table = self._table(key)
            table.replace_chains(chains)
            for kernel_chain, hooks in desired.hooks[key].items():
                table.set_hooks(kernel_chain, hooks)
            result = table.apply()
            writes += result.restores
            self.counters["restores"] += result.restores
            self.counters["chains_written"] += result.chains_written
            lines += result.lines
            if result.error:
                errors.append(result.error)
        # Tables of a family we no longer program (IPv6 switched off): empty them.
        for key, table in self.tables.items():
            if key not in desired.chains and (table.chains or any(table.hooks.values())):
                table.replace_chains([])
                for kernel_chain in table.hooks:
                    table.set_hooks(kernel_chain, [])
                result = table.apply()
                writes += result.restores
                if result.error:
                    errors.append(result.error)
        self.counters["ipset_calls"] += created.calls
        if lines >= BIG_WRITE_LINES:
            release_free_memory()
        if errors:
            return ApplyReport(ok=False, error="; ".join(errors), failed=report.failed, writes=writes)
        deleted = self.ipsets.apply_deletes()
        writes += deleted.calls
        self.counters["ipset_calls"] += deleted.calls
        if deleted.error != self._delete_error:  # retried by the next apply or refresh; logged once
            self._delete_error = deleted.error
            if deleted.error:
                log.warning("%s", deleted.error)
        if not self.program_routes:
            report.writes = writes
            return report
        routed = self.routes.apply(desired.routes, desired.workload_ifaces, self.renderer.families,
                                   force_sysctls=force_sysctls, spoofing=desired.spoofing_ifaces)
        keys = {str(k): k for k in state.workload_endpoints}
        for owner, reason in routed.failed.items():
            if owner in keys:
                report.failed[(Kind.WORKLOAD_ENDPOINT, keys[owner])] = reason
            else:
                log.warning("%s", reason)
        report.writes = writes + routed.added + routed.removed
        self.counters["route_changes"] += routed.added + routed.removed
        log.debug("programmed in %.3f s (%d writes)", time.monotonic() - start, report.writes)
        return report

    # -- refresh -------------------------------------------------------------------------------
    def refresh(self) -> dict[str, Any]:
        """Read the kernel back and repair drift; returns what was found."""
        with self._lock:
            if self._desired is None or self.backend is None:
                return {}
            found: dict[str, Any] = {}
            sets = self.ipsets.drift()
            if sets:
                found["ipsets"] = sets
                self.ipsets.apply_creates()
            for _key, table in sorted(self.tables.items()):
                wrong = table.drift()
                if wrong:
                    found[f"{table.name}v{table.family}"] = wrong
                    result = table.apply()
                    self.counters["restores"] += result.restores
            if sets:
                self.ipsets.apply_deletes()
            if self.program_routes:
                routed = self.routes.apply(self._desired.routes, self._desired.workload_ifaces,
                                           self.renderer.families, force_sysctls=True,
                                           spoofing=self._desired.spoofing_ifaces)
                if routed.added or routed.removed:
                    found["routes"] = {"added": routed.added, "removed": routed.removed}
            self.counters["refreshes"] += 1
            if found:
                self.counters["repairs"] += 1
                log.warning("refresh repaired drift: %s", found)
            self.last_refresh = {"at": time.time(), "found": found}
            return found


def release_free_memory() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim; elsewhere nothing).

    A big write formats and frees hundreds of thousands of small strings (the restore input, the
    read-back); glibc keeps the freed pages, so the agent's RSS would stay at the write's peak:
    measured ~65 MB at 10,000 endpoints (docs/kernel-driver.md)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    """The C library's malloc_trim, looked up once; None when it has none."""
    try:
        return ctypes.CDLL(None).malloc_trim  # the process's own symbols: the C library's
    except (OSError, AttributeError):
        return None
