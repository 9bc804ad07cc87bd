"""kubectl's own kustomize renders deploy/ and deploy/operator as tests/deploy/manifests.py does, and applies the
calico-node patch to Calico's DaemonSet as a kustomize user's overlay would (patches: + images:).

Skipped where kubectl is not installed: the other tests in tests/deploy check the same manifests
through manifests.py's rendering, which these tests hold to kustomize's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.manifests import (
    CALICO_NODE_BASE,
    DEPLOY,
    MERGE_KEYS,
    OPERATOR_DIR,
    PATCH_DIR,
    kustomization,
    patched_calico_node,
    render_objects,
    rendered_patch,
)

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed (its kustomize renders deploy/)")


def kustomize(directory: Path) -> list[dict[str, Any]]:
    assert KUBECTL is not None
    proc = subprocess.run([KUBECTL, "kustomize", "--load-restrictor", "LoadRestrictionsNone", str(directory)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def unordered(value: Any, field: str = "") -> Any:
    """Merged lists keyed by name (or mountPath) compared as sets: kustomize puts a patch's new items
    first, the API server after the old ones. (Both init containers are independent of each other.)"""
    if isinstance(value, dict):
        return {k: unordered(v, k) for k, v in value.items()}
    if isinstance(value, list) and field in MERGE_KEYS:
        return sorted((unordered(item) for item in value), key=lambda item: str(item.get(MERGE_KEYS[field])))
    return value


def by_id(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("directory", [DEPLOY, OPERATOR_DIR], ids=["deploy", "operator"])
def test_deploy_renders_as_the_tests_read_it(directory: Path) -> None:
    assert by_id(kustomize(directory)) == by_id(render_objects(directory))


def test_patch_renders_with_its_images() -> None:
    (patch,) = kustomize(PATCH_DIR)
    assert patch == rendered_patch()


def test_patch_merges_onto_calico_node_as_the_tests_merge_it(tmp_path: Path) -> None:
    overlay = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [str(CALICO_NODE_BASE)],
        "patches": [{"path": str(PATCH_DIR / "patch.yaml")}],
        "images": kustomization(PATCH_DIR)["images"],
    }
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    (merged,) = kustomize(tmp_path)
    assert unordered(merged) == unordered(patched_calico_node())
