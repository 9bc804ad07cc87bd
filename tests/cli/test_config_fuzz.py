"""`run --config FILE` with random values for every setting (and the bgp section's): a config, or
ConfigError, one line naming a setting. Any other exception is the failure this test looks for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vppagent.bgp.config import BgpConfig, BgpPeerConfig
from vppagent.config import AgentConfig, ConfigError, load_config

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["10.0.0.300", "fe80::1%eth0", "::", "65000:1", "/run/x.sock", "rel/path", "auto", "1e999"]),
)
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=3), max_leaves=6)


def _section(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(fields), VALUES, max_size=4)


PEER = _section(list(BgpPeerConfig.model_fields))
BGP = st.fixed_dictionaries({"peers": st.lists(PEER, max_size=2)}, optional={
    name: VALUES for name in BgpConfig.model_fields if name != "peers"})
TOP = _section([n for n in AgentConfig.model_fields if n not in ("config", "bgp")])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(top=TOP, bgp=st.none() | BGP)
def test_any_config_file_is_a_config_or_one_line(tmp_path: Path, top: dict[str, Any],
                                                 bgp: dict[str, Any] | None) -> None:
    doc = dict(top)
    if bgp is not None:
        doc["bgp"] = bgp
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        load_config({"config": str(path)})
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(("invalid setting", "config file")), str(exc)
