"""Keeps BIRD in step with the dataplane state: the agent calls `update` after each applied batch."""

from __future__ import annotations

import time
from typing import Any

from vppagent.bgp.apply import BgpApplyResult, BirdApplier
from vppagent.bgp.config import BgpConfig
from vppagent.bgp.model import BgpInputs, BgpInputsUnavailable, build_bgp_inputs
from vppagent.bgp.render import render_bird_config
from vppagent.state.model import DataplaneState


class BgpManager:
    def __init__(self, config: BgpConfig, applier: BirdApplier | None = None) -> None:
        self.config = config
        self.applier = applier or BirdApplier(
            config.config_path,
            config.socket_path,
            bird_binary=config.bird_binary,
            birdc_binary=config.birdc_binary,
            run=config.run_bird,
        )
        self.inputs: BgpInputs | None = None
        self.last_result: BgpApplyResult | None = None

    def update(self, state: DataplaneState) -> BgpApplyResult:
        """Render from `state` and apply; cheap when nothing BGP-relevant changed (no reload)."""
        started = time.monotonic()
        try:
            inputs = build_bgp_inputs(state, self.config)
        except BgpInputsUnavailable as exc:
            # Typically the first batches before Felix sent our HostMetadata: keep whatever
            # config BIRD has and say why nothing was applied.
            self.last_result = BgpApplyResult(ok=False, changed=False, error=f"waiting: {exc}")
            return self.last_result
        text = render_bird_config(inputs)
        render_s = time.monotonic() - started
        self.inputs = inputs
        result = self.applier.apply(text)
        self.last_result = BgpApplyResult(
            ok=result.ok,
            changed=result.changed,
            error=result.error,
            reloaded=result.reloaded,
            render_seconds=render_s,
            validate_seconds=result.validate_seconds,
            reload_seconds=result.reload_seconds,
        )
        return self.last_result

    def status(self) -> dict[str, Any]:
        """The `bgp` section of `vppagent state`."""
        report = self.applier.status()
        report["last_update"] = self.last_result.to_dict() if self.last_result else None
        if self.inputs is not None:
            report["hostname"] = self.inputs.hostname
            report["router_id"] = str(self.inputs.router_id)
            report["local_as"] = self.inputs.local_as
            report["configured_peers"] = len(self.inputs.peers)
            report["local_blocks"] = [str(net) for net in self.inputs.local_blocks]
            report["problems"] = list(self.inputs.problems)
        return report

    def close(self) -> None:
        self.applier.close()
