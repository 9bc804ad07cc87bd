"""Which Felix object a VPP write serves (`Owner`), and the per-object failures a pass reports."""

from __future__ import annotations

from typing import Any

from vppagent.state.model import Kind

Owner = tuple[Kind, Any]
Failures = dict[Owner, str]
