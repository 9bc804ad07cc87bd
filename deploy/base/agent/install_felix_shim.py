"""Puts felix-shim where calico-node's Felix can exec it, with the Python and C library it runs on.

Felix runs its external dataplane driver inside the calico-node container (FELIX_DATAPLANEDRIVER),
whose image has no Python, and whose C library may be older than the one the agent image's Python
was built against. So this copies, from the image it runs in (the agent image, as an init
container), everything felix-shim needs into DEST/felix-shim.d:

  bin/python3          the interpreter
  lib/ld.so, lib/*.so  the dynamic loader and every shared library the interpreter and the copied
                       extension modules need, found by asking the loader (`ld.so --list`)
  lib/python3.X/       the standard library, and in site-packages the top-level packages that
                       importing felix_shim.main loads (whole packages, so lazy imports find theirs)

and writes DEST/felix-shim, a /bin/sh launcher that runs the copied interpreter through the copied
loader (`ld.so --library-path`), so nothing of calico-node's C library or search paths is used.
The launcher is written last and renamed into place: Felix never finds a half-copied driver.

Usage: python3 install_felix_shim.py DEST [--name FILE] [--socket PATH]
  --name    the launcher's file name (default felix-shim; Calico's operator execs felix-api-proxy)
  --socket  the agent socket felix-shim dials when Felix's environment sets no VPPAGENT_SOCKET
Exit 1 with one line on stderr when it cannot, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import struct
import subprocess
import sys
import sysconfig
from pathlib import Path

BUNDLE = "felix-shim.d"
LAUNCHER = "felix-shim"
# Parts of the standard library felix-shim never imports (tests, GUI, build files): megabytes, not needed.
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo", "ensurepip",
               "lib2to3"}
PT_INTERP = 3

LAUNCHER_TEXT = """#!/bin/sh
# felix-shim, Felix's external dataplane driver (FELIX_DATAPLANEDRIVER), written by install_felix_shim.py.
# It runs on the Python and C library copied beside it ({bundle}/), through their own loader, because
# the calico-node image has no Python and its C library may be older than the agent image's.
bundle="${{0%/*}}/{bundle}"
unset PYTHONPATH PYTHONSTARTUP
export PYTHONHOME="$bundle" PYTHONNOUSERSITE=1 PYTHONDONTWRITEBYTECODE=1
{socket_line}exec "$bundle/lib/ld.so" --library-path "$bundle/lib" "$bundle/bin/python3" -s -m felix_shim "$@"
"""
# Where calico-node's environment cannot be set (Calico's operator), the launcher names the socket.
SOCKET_LINE = 'export VPPAGENT_SOCKET="${{VPPAGENT_SOCKET:-{socket}}}"\n'


class InstallError(Exception):
    """Something needed cannot be found or copied; the message says what."""


def elf_interpreter(executable: Path) -> Path:
    """The dynamic loader an ELF executable names (its PT_INTERP program header)."""
    data = executable.read_bytes()
    if data[:4] != b"\x7fELF":
        raise InstallError(f"{executable} is not an ELF executable")
    is_64 = data[4] == 2
    endian = "<" if data[5] == 1 else ">"
    if is_64:
        phoff, = struct.unpack_from(endian + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(endian + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(endian + "HH", data, 0x2A)
    for index in range(phnum):
        header = phoff + index * phentsize
        p_type, = struct.unpack_from(endian + "I", data, header)
        if p_type != PT_INTERP:
            continue
        if is_64:
            offset, = struct.unpack_from(endian + "Q", data, header + 8)
            size, = struct.unpack_from(endian + "Q", data, header + 32)
        else:
            offset, = struct.unpack_from(endian + "I", data, header + 4)
            size, = struct.unpack_from(endian + "I", data, header + 16)
        return Path(data[offset:offset + size].rstrip(b"\0").decode())
    raise InstallError(f"{executable} names no dynamic loader (statically linked?)")


def needed_libraries(loader: Path, binaries: list[Path]) -> set[Path]:
    """Every shared library the binaries load, as the loader resolves them (`ld.so --list`)."""
    found: set[Path] = set()
    for binary in binaries:
        result = subprocess.run([str(loader), "--list", str(binary)], capture_output=True, text=True,
                                check=False)
        if result.returncode != 0:
            raise InstallError(f"{loader} --list {binary}: {result.stderr.strip() or result.stdout.strip()}")
        for line in result.stdout.splitlines():
            if "=> not found" in line:
                raise InstallError(f"{binary} needs {line.split()[0]}, which the loader cannot find")
            if "=>" in line:
                target = line.split("=>", 1)[1].split("(", 1)[0].strip()
                if target:
                    found.add(Path(target))
    return found


def imported_top_levels(module: str) -> dict[str, Path]:
    """Top-level packages or modules that importing `module` loads, outside the standard library.

    A namespace package split over several directories keeps its last one; felix-shim's (google,
    for protobuf) lives in one.
    """
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    importlib.import_module(module)
    tops: dict[str, Path] = {}
    for name, loaded in list(sys.modules.items()):
        if "." in name or name == "__main__":
            continue
        file = getattr(loaded, "__file__", None)
        # A namespace package (google, for protobuf) has no file, only its directories.
        places = [Path(file)] if file else [Path(p) for p in getattr(loaded, "__path__", [])]
        for place in places:
            path = place.resolve()
            if path.is_relative_to(stdlib) and "site-packages" not in path.parts:
                continue
            tops[name] = path.parent if path.name == "__init__.py" else path
    return tops


def copy_tree(source: Path, target: Path) -> None:
    shutil.copytree(source, target, symlinks=False, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("*.a"))


def build_bundle(bundle: Path) -> None:
    executable = Path(sys.executable).resolve()
    loader = elf_interpreter(executable)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    lib = bundle / "lib"
    pylib = lib / version
    site = pylib / "site-packages"
    (bundle / "bin").mkdir(parents=True)
    site.mkdir(parents=True)
    shutil.copy2(executable, bundle / "bin" / "python3")
    for entry in stdlib.iterdir():
        if entry.name in STDLIB_SKIP or entry.name.startswith("config-"):
            continue
        if entry.is_dir():
            copy_tree(entry, pylib / entry.name)
        else:
            shutil.copy2(entry, pylib / entry.name)
    for name, path in imported_top_levels("felix_shim.main").items():
        if path.is_dir():
            copy_tree(path, site / name)
        else:
            shutil.copy2(path, site / path.name)
    for tk in pylib.glob("lib-dynload/_tkinter*"):  # the GUI toolkit would pull in X11's libraries
        tk.unlink()
    extensions = sorted(p for p in pylib.rglob("*.so*") if p.is_file())
    for library in needed_libraries(loader, [executable, *extensions]):
        shutil.copy2(library.resolve(), lib / library.name)
    shutil.copy2(loader.resolve(), lib / "ld.so")


def launcher_text(socket: str | None) -> str:
    """The launcher; with `socket`, VPPAGENT_SOCKET defaults to it (a value from Felix's environment wins)."""
    socket_line = ""
    if socket is not None:
        if not socket.startswith("/") or any(c in socket for c in "\"'$`\\ \t\n"):
            raise InstallError(f"--socket {socket!r}: an absolute path without quotes, $, ` or spaces")
        socket_line = SOCKET_LINE.format(socket=socket)
    return LAUNCHER_TEXT.format(bundle=BUNDLE, socket_line=socket_line)


def write_launcher(dest: Path, name: str, socket: str | None) -> Path:
    """Writes the launcher beside the bundle and renames it into place (Felix sees all of it or none)."""
    launcher = dest / name
    new_launcher = dest / f".{name}.{os.getpid()}"
    new_launcher.write_text(launcher_text(socket))
    new_launcher.chmod(0o755)
    new_launcher.rename(launcher)
    return launcher


def install(dest: Path, name: str = LAUNCHER, socket: str | None = None) -> Path:
    """Builds the bundle beside DEST's current one, swaps it in, then writes the launcher; returns it."""
    launcher_text(socket)  # a bad --socket is refused before anything is copied
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".{BUNDLE}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    build_bundle(staging)
    final = dest / BUNDLE
    old = dest / f".{BUNDLE}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return write_launcher(dest, name, socket)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="install_felix_shim.py", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("dest", type=Path, help="directory calico-node mounts for Felix's driver")
    parser.add_argument("--name", default=LAUNCHER,
                        help=f"launcher's file name, the end of FELIX_DATAPLANEDRIVER (default {LAUNCHER})")
    parser.add_argument("--socket", default=None,
                        help="agent socket the launcher gives felix-shim when Felix's environment has no "
                             "VPPAGENT_SOCKET")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if "/" in args.name or args.name in ("", ".", "..", BUNDLE):
        print(f"install_felix_shim: --name {args.name!r} is not a plain file name", file=sys.stderr)
        return 2
    try:
        launcher = install(args.dest, args.name, args.socket)
    except (InstallError, OSError, ImportError) as exc:
        print(f"install_felix_shim: {exc}", file=sys.stderr)
        return 1
    print(f"install_felix_shim: {launcher} ready")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
