"""docker/: the compose file is valid and the images install only from official package sources."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

DOCKER = Path(__file__).resolve().parents[2] / "docker"
OFFICIAL_IMAGES = re.compile(r"^FROM (python:3\.\d+-slim-bookworm|debian:bookworm-slim)$", re.MULTILINE)
URL = re.compile(r"https?://[^\s\"'/]+(/[^\s\"']*)?")


def test_compose_file_validates() -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian package docker-compose)")
    proc = subprocess.run([tool, "-f", str(DOCKER / "compose.yaml"), "config"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "realvpp-tests" in proc.stdout and "VPPAGENT_TEST_VPP_SOCKET" in proc.stdout


@pytest.mark.parametrize("dockerfile", sorted(p.name for p in DOCKER.glob("*.Dockerfile")))
def test_images_use_official_sources_only(dockerfile: str) -> None:
    text = (DOCKER / dockerfile).read_text()
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert froms and all(OFFICIAL_IMAGES.match(line) for line in froms), froms
    for match in URL.finditer(text):
        assert match.group(0).startswith("https://packagecloud.io/fdio/"), match.group(0)
    assert "--index-url" not in text and "--extra-index-url" not in text and "--trusted-host" not in text
