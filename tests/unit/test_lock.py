"""requirements/*.lock is what runs: exact pins with hashes, inside pyproject's ranges, and installed.

`make venv` installs requirements/dev.lock with --require-hashes; these tests fail when the lock and
pyproject.toml drift apart (a dependency added to one and not the other, a pin outside the range
that library users get) or when the running environment is not the locked one.
"""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def _pins(lock: Path) -> dict[str, tuple[str, str | None, int]]:
    """name -> (version, environment marker, number of hashes) for every pin in a lock file."""
    pins: dict[str, tuple[str, str | None, int]] = {}
    current: str | None = None
    for line in lock.read_text().splitlines():
        match = _PIN.match(line)
        if match:
            current = canonicalize_name(match[1])
            pins[current] = (match[2], match[3], 0)
        elif current and line.strip().startswith("--hash=sha256:"):
            version, marker, hashes = pins[current]
            pins[current] = (version, marker, hashes + 1)
        elif line and not line.startswith((" ", "#")):
            raise AssertionError(f"{lock.name}: unexpected line {line!r}")
    return pins


def _project() -> dict:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]


@pytest.mark.parametrize("lock_name", ["runtime.lock", "dev.lock"])
def test_every_pin_is_exact_and_hashed(lock_name: str) -> None:
    pins = _pins(ROOT / "requirements" / lock_name)
    assert pins, lock_name
    unhashed = [name for name, (_, _, hashes) in pins.items() if hashes == 0]
    assert not unhashed, f"{lock_name}: pins without hashes {unhashed}"


@pytest.mark.parametrize(("lock_name", "extras"), [("runtime.lock", []), ("dev.lock", ["dev"])])
def test_lock_covers_pyproject_within_its_ranges(lock_name: str, extras: list[str]) -> None:
    pins = _pins(ROOT / "requirements" / lock_name)
    project = _project()
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    problems = []
    for req in wanted:
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not locked")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(f"{req.name}=={pins[name][0]} is outside pyproject's {req.specifier}")
    assert not problems, f"{lock_name}: {problems} (run `make lock`)"


def test_runtime_lock_agrees_with_dev_lock() -> None:
    runtime = _pins(ROOT / "requirements" / "runtime.lock")
    dev = _pins(ROOT / "requirements" / "dev.lock")
    differ = {n: (v[0], dev.get(n, ("missing",))[0]) for n, v in runtime.items() if dev.get(n, ("",))[0] != v[0]}
    assert not differ, f"runtime and dev locks pin different versions: {differ}"


def test_this_environment_is_the_locked_one() -> None:
    """What CI runs is what dev.lock says (skipped outside a venv made by `make venv`)."""
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("not running from the venv `make venv` installs from requirements/dev.lock")
    env = default_environment()
    wrong = []
    for name, (version, marker, _) in _pins(ROOT / "requirements" / "dev.lock").items():
        if marker and not _marker_applies(marker, env):
            continue
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} not installed")
            continue
        if Version(installed) != Version(version):
            wrong.append(f"{name} {installed} (lock: {version})")
    assert not wrong, wrong


def _marker_applies(marker: str, env: dict[str, str]) -> bool:
    return Requirement(f"x; {marker}").marker.evaluate(env)  # type: ignore[union-attr]
