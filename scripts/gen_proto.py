"""Regenerate the Python code for proto/ into vppagent/gen/.

protoc writes imports relative to proto/ (`from felix import felixbackend_pb2`); they are rewritten
to `from vppagent.gen.felix import ...` so the generated code lives inside our package. The
descriptor file names stay "felix/felixbackend.proto" etc., as in Calico's own schema.
Usage: python scripts/gen_proto.py [OUTDIR]   (default: the repository root)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ["felix/felixbackend.proto", "vppagent/v1/agent.proto", "cni/cni.proto"]
WITH_SERVICES = {"vppagent/v1/agent.proto", "cni/cni.proto"}


IMPORT = re.compile(r"^(\s*)from ((?:felix|cni|vppagent\.v1)(?:\.\w+)*) import", re.MULTILINE)


def generate(out: Path) -> None:
    """Write the generated package to OUT/vppagent/gen."""
    gen = out / "vppagent" / "gen"
    gen.mkdir(parents=True, exist_ok=True)
    include = str(Path(protoc.__file__).parent / "_proto")
    for proto in PROTOS:
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={gen}",
            f"--pyi_out={gen}",
        ]
        if proto in WITH_SERVICES:
            args.append(f"--grpc_python_out={gen}")
        args.append(str(ROOT / "proto" / proto))
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed for {proto}")
    for path in sorted(gen.rglob("*.py*")):
        text = IMPORT.sub(r"\1from vppagent.gen.\2 import", path.read_text())
        path.write_text(text)
    for module in gen.rglob("*.py"):
        for pkg in module.parents:
            (pkg / "__init__.py").touch()
            if pkg == gen:
                break


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
