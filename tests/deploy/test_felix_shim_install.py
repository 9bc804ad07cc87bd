"""deploy/base/agent/install_felix_shim.py: the felix-shim that Felix execs in calico-node runs on its own
copied Python, C library and loader, with nothing from the environment it is started in.

Run here with this machine's Python (the agent image runs it with the image's); the copy takes a few
seconds and about 150 MB in the test's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentproc import AgentProcess, wait_for
from tests.deploy.install_script import INSTALLER, load_installer
from vppagent.lab import builders as b
from vppagent.lab.felix_standin import FelixStandIn


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Installed as the init container does it: the script run by a fresh interpreter, so only what
    felix-shim imports is copied (not what this test process has loaded)."""
    dest = tmp_path_factory.mktemp("felix-plugins")
    proc = subprocess.run([sys.executable, str(INSTALLER), str(dest)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"install_felix_shim: {dest / 'felix-shim'} ready"
    return dest / "felix-shim"


def test_only_what_felix_shim_imports_is_copied(installed: Path) -> None:
    site = next((installed.parent / load_installer().BUNDLE / "lib").glob("python3*/site-packages"))
    names = {p.name for p in site.iterdir()}
    assert {"felix_shim", "vppagent", "grpc", "google"} <= names
    assert not names & {"pytest", "_pytest", "kubernetes_validate", "hypothesis", "mypy"}, names


def test_launcher_runs_felix_shim_with_an_empty_environment(installed: Path) -> None:
    assert installed.name == "felix-shim" and os.access(installed, os.X_OK)
    assert installed.read_text().startswith("#!/bin/sh\n")
    proc = subprocess.run([str(installed), "--help"], env={}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: felix-shim") and "VPPAGENT_SOCKET" in proc.stdout


def test_installed_shim_carries_felixs_stream_to_a_real_agent(installed: Path, tmp_path: Path) -> None:
    """As Felix runs it: the launcher on fd 3/4, an environment with only VPPAGENT_SOCKET, an agent
    (dry-run driver) at the other end; the endpoint's status comes back to "Felix" on fd 4."""
    agent = AgentProcess(tmp_path / "run" / "agent.sock", tmp_path / "agent.log", ["--driver", "dry-run"])
    agent.start()
    felix = FelixStandIn(agent.socket, shim_command=[str(installed)], env={}, log_path=tmp_path / "shim.log")
    try:
        felix.send([b.config({}), b.workload("ns/pod1", "cali1", ipv4=["10.65.0.2/32"]), b.in_sync()])
        wait_for(lambda: agent.state()["in_sync"], timeout=30, what="agent in sync through the installed shim")
        wait_for(lambda: felix.statuses() == {"ns/pod1": "up"}, timeout=30, what="status back on fd 4")
    finally:
        felix.close()
        agent.stop()


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


def stub_bundle(dest: Path) -> None:
    """A bundle whose loader only prints the socket felix-shim would get (the launcher's shell logic)."""
    lib = dest / load_installer().BUNDLE / "lib"
    lib.mkdir(parents=True)
    (lib / "ld.so").write_text('#!/bin/sh\necho "socket=${VPPAGENT_SOCKET-unset} home=$PYTHONHOME"\n')
    (lib / "ld.so").chmod(0o755)


def test_launcher_gives_its_socket_unless_felix_has_one(tmp_path: Path) -> None:
    installer = load_installer()
    stub_bundle(tmp_path)
    launcher = installer.write_launcher(tmp_path, "felix-api-proxy", "/var/run/calico/vppagent.sock")
    bundle = tmp_path / installer.BUNDLE
    out = subprocess.run([str(launcher)], env={}, capture_output=True, text=True, timeout=30).stdout
    assert out == f"socket=/var/run/calico/vppagent.sock home={bundle}\n"
    out = subprocess.run([str(launcher)], env={"VPPAGENT_SOCKET": "/run/x.sock"}, capture_output=True, text=True,
                         timeout=30).stdout
    assert out.startswith("socket=/run/x.sock ")
    plain = installer.write_launcher(tmp_path, "felix-shim", None)
    assert subprocess.run([str(plain)], env={}, capture_output=True, text=True, timeout=30).stdout.startswith(
        "socket=unset ")


@pytest.mark.parametrize("socket", ["relative.sock", "/run/$(reboot).sock", "/run/a b.sock", '/run/"x'])
def test_installer_refuses_a_socket_the_launcher_cannot_carry(tmp_path: Path, socket: str) -> None:
    installer = load_installer()
    with pytest.raises(installer.InstallError, match="--socket"):
        installer.install(tmp_path / "dest", socket=socket)
    assert not (tmp_path / "dest").exists()  # refused before anything is copied


@pytest.mark.parametrize("name", ["../felix-shim", "felix-shim.d", ""])
def test_installer_refuses_a_launcher_name_that_is_not_a_file_name(tmp_path: Path, name: str) -> None:
    assert load_installer().main([str(tmp_path), "--name", name]) == 2
    assert list(tmp_path.iterdir()) == []
