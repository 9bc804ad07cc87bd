"""Driver selection: `make_driver(name, config)` and the `auto` rule (DESIGN.md section 2)."""

from __future__ import annotations

import importlib
import logging
import socket

from vppagent.config import AgentConfig
from vppagent.drivers.base import Driver

log = logging.getLogger(__name__)


class DriverUnavailable(RuntimeError):
    """The driver cannot run here; the message says why."""


def _vpp_answers(config: AgentConfig) -> str | None:
    """None when VPP's API socket accepts a connection, else the reason it does not."""
    path = config.vpp_api_socket
    if not path.exists():
        return f"VPP API socket {path} does not exist"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(config.vpp_connect_timeout)
    try:
        probe.connect(str(path))
    except OSError as exc:
        return f"VPP API socket {path} does not answer: {exc}"
    finally:
        probe.close()
    return None


def make_driver(name: str, config: AgentConfig) -> tuple[Driver, str]:
    """The driver called `name` and why it was chosen; DriverUnavailable when it cannot run."""
    if name == "dry-run":
        from vppagent.drivers.dryrun import DryRunDriver

        return DryRunDriver(rule_limit=config.rule_limit), "requested: dry-run"
    if name == "auto":
        reason = _vpp_answers(config)
        if reason is None:
            try:
                return make_driver("vpp", config)[0], "auto: VPP answered on its API socket"
            except DriverUnavailable as exc:
                reason = str(exc)
        log.info("auto driver: not using VPP (%s); falling back to iptables", reason)
        try:
            fallback = make_driver("iptables", config)[0]
        except DriverUnavailable as exc:
            raise DriverUnavailable(f"auto: no usable driver: {reason}; {exc}") from None
        return fallback, f"auto: {reason}; using iptables"
    module_name = {"vpp": "vppagent.drivers.vpp", "iptables": "vppagent.drivers.iptables"}.get(name)
    if module_name is None:
        raise DriverUnavailable(f"unknown driver {name!r} (choose vpp, iptables or dry-run)")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise DriverUnavailable(f"the {name} driver is not part of this build yet") from None
    driver: Driver = module.create_driver(config)
    return driver, f"requested: {name}"
