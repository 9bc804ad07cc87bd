"""The committed vppagent/gen must say what scripts/gen_proto.py makes from proto/.

"What it says" is compared, not the text: the file descriptors embedded in each `_pb2.py` (every
message, field, enum and service), the type stubs, and the RPC methods with their request and
response types in each `_pb2_grpc.py`. A grpcio-tools release that only changes a version header
or the layout of the generated code does not fail this; a `.proto` edited without `make proto` does.
The lock (requirements/dev.lock) pins the grpcio-tools that CI regenerates with.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "vppagent" / "gen"


def _descriptors(pb2: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    """The FileDescriptorProtos that a generated _pb2.py registers, parsed from its source."""
    found = []
    for node in ast.walk(ast.parse(pb2.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "AddSerializedFile":
            arg = node.args[0]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, bytes), pb2
            found.append(descriptor_pb2.FileDescriptorProto.FromString(arg.value))
    assert found, f"no serialized descriptor in {pb2}"
    return found


def _rpc_methods(grpc_py: Path) -> set[tuple[str, str]]:
    """(method path, serializer or deserializer) pairs wired up by a generated _pb2_grpc.py."""
    methods: set[tuple[str, str]] = set()
    for node in ast.walk(ast.parse(grpc_py.read_text())):
        if not isinstance(node, ast.Call):
            continue
        path = next((a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
                     and a.value.startswith("/")), None)
        for kw in node.keywords:
            if path and kw.arg in ("request_serializer", "response_deserializer"):
                methods.add((path, ast.unparse(kw.value)))
    return methods


_STUB_NOISE = re.compile(r"^(#.*|\s*)$", re.MULTILINE)


def _meaning(path: Path) -> object:
    if path.name.endswith("_pb2.py"):
        return [d.SerializeToString(deterministic=True) for d in _descriptors(path)]
    if path.name.endswith("_pb2_grpc.py"):
        return sorted(_rpc_methods(path))
    if path.suffix == ".pyi":
        return _STUB_NOISE.sub("", path.read_text())
    return path.read_text()


def _files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools is not installed (make venv installs it from requirements/dev.lock)")
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_proto"] = module
    spec.loader.exec_module(module)
    module.generate(tmp_path)
    fresh = tmp_path / "vppagent" / "gen"
    assert _files(fresh) == _files(COMMITTED)
    stale = [str(p) for p in _files(fresh) if _meaning(fresh / p) != _meaning(COMMITTED / p)]
    assert not stale, f"regenerate with `make proto`: stale {stale}"


def test_the_comparison_sees_a_changed_schema(tmp_path: Path) -> None:
    """A field renamed in a descriptor, or an RPC removed, is a difference (the check can fail)."""
    pb2 = COMMITTED / "vppagent" / "v1" / "agent_pb2.py"
    [desc] = _descriptors(pb2)
    desc.message_type[0].field[0].name += "_renamed"
    changed = tmp_path / "agent_pb2.py"
    changed.write_text(f"_d.AddSerializedFile({desc.SerializeToString()!r})\n")
    assert _meaning(changed) != _meaning(pb2)

    grpc_py = COMMITTED / "vppagent" / "v1" / "agent_pb2_grpc.py"
    methods = _rpc_methods(grpc_py)
    assert {path for path, _ in methods} >= {"/vppagent.v1.Agent/GetState", "/vppagent.v1.Agent/SetDriver"}
    text = grpc_py.read_text().replace("/vppagent.v1.Agent/GetState", "/vppagent.v1.Agent/GetStateX")
    (tmp_path / "agent_pb2_grpc.py").write_text(text)
    assert _meaning(tmp_path / "agent_pb2_grpc.py") != _meaning(grpc_py)
