"""deploy/base/agent/install_felix_shim.py as a module (it ships in a ConfigMap, not in the package)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.deploy.manifests import BASE

INSTALLER = BASE / "agent" / "install_felix_shim.py"


def load_installer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("install_felix_shim", INSTALLER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
