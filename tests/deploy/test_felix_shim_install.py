"""deploy/agent/install_felix_shim.py: the felix-shim that Felix execs in calico-node runs on its own
copied Python, C library and loader, with nothing from the environment it is started in.

Run here with this machine's Python (the agent image runs it with the image's); the copy takes a few
seconds and about 150 MB in the test's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.install_script import load_installer


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("felix-plugins")
    launcher: Path = load_installer().install(dest)
    return launcher


def test_launcher_runs_felix_shim_with_an_empty_environment(installed: Path) -> None:
    assert installed.name == "felix-shim" and os.access(installed, os.X_OK)
    assert installed.read_text().startswith("#!/bin/sh\n")
    proc = subprocess.run([str(installed), "--help"], env={}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: felix-shim") and "VPPAGENT_SOCKET" in proc.stdout


def test_bad_setting_still_gets_the_shims_one_line(installed: Path) -> None:
    proc = subprocess.run([str(installed)], env={"VPPAGENT_SHIM_LOG_LEVEL": "loud"}, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "VPPAGENT_SHIM_LOG_LEVEL" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_every_library_comes_from_the_bundle(installed: Path) -> None:
    bundle = installed.parent / load_installer().BUNDLE
    extensions = sorted(str(p) for p in (bundle / "lib").rglob("*.so") if "python3" in str(p.parent))
    assert any("grpc" in e for e in extensions)
    for binary in [str(bundle / "bin" / "python3"), *extensions]:
        proc = subprocess.run([str(bundle / "lib" / "ld.so"), "--library-path", str(bundle / "lib"),
                               "--list", binary], env={}, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for line in proc.stdout.splitlines():
            if "=>" in line and "linux-vdso" not in line:
                target = line.split("=>", 1)[1].split("(", 1)[0].strip()
                assert target.startswith(str(bundle / "lib") + "/"), f"{binary}: {line.strip()}"


def test_reinstall_replaces_the_bundle(installed: Path) -> None:
    installer = load_installer()
    stale = installed.parent / installer.BUNDLE / "stale-marker"
    stale.write_text("x")
    assert installer.install(installed.parent) == installed
    assert not stale.exists()
    assert sorted(p.name for p in installed.parent.iterdir()) == sorted([installer.BUNDLE, installer.LAUNCHER])


def test_installer_refuses_a_non_elf_interpreter(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    installer = load_installer()
    with pytest.raises(installer.InstallError, match="not an ELF"):
        installer.elf_interpreter(script)
