"""The committed vppagent/gen must be exactly what scripts/gen_proto.py makes from proto/."""

from __future__ import annotations

import filecmp
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (pip install -e '.[dev]')")
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    fresh = tmp_path / "vppagent" / "gen"
    committed = ROOT / "vppagent" / "gen"
    fresh_files = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    committed_files = sorted(p.relative_to(committed) for p in committed.rglob("*")
                             if p.is_file() and "__pycache__" not in p.parts)
    assert fresh_files == committed_files
    stale = [str(p) for p in fresh_files if not filecmp.cmp(fresh / p, committed / p, shallow=False)]
    assert not stale, f"regenerate with `make proto`: stale {stale}"


def test_v332_host_metadata_payloads_are_accepted() -> None:
    from vppagent.gen.felix import felixbackend_pb2 as felix
    from vppagent.state.model import DataplaneState

    state = DataplaneState()
    for msg in (
        felix.ToDataplane(host_metadata_v4v6_update=felix.HostMetadataV4V6Update(
            hostname="n1", ipv4_addr="10.0.0.1/24", asnumber="65001", labels={"zone": "a"})),
        felix.ToDataplane(host_metadata_v6_update=felix.HostMetadataV6Update(hostname="n1", ipv6_addr="fd::1")),
        felix.ToDataplane(host_metadata_v4v6_update=felix.HostMetadataV4V6Update(hostname="n2", ipv4_addr="10.0.0.2")),
        felix.ToDataplane(host_metadata_v4v6_remove=felix.HostMetadataV4V6Remove(hostname="n2")),
    ):
        wire = msg.SerializeToString()
        assert state.apply(felix.ToDataplane.FromString(wire)).kind is not None
    n1 = state.host_metadata["n1"]
    got = (n1.ipv4_addr, n1.ipv6_addr, n1.asnumber, dict(n1.labels))
    assert got == ("10.0.0.1/24", "fd::1", "65001", {"zone": "a"})
    assert "n2" not in state.host_metadata
    # field numbers 35-38 are what v3.32 Felix sends
    assert felix.ToDataplane.DESCRIPTOR.fields_by_name["host_metadata_v4v6_update"].number == 37
