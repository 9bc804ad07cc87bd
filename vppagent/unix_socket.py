"""Preparing a unix socket path for a server to bind: the one rule for the agent, CNI and emulator sockets.

Only a leftover socket that nobody accepts on is replaced; a regular file, directory or symlink at
the path is never touched, and a socket someone listens on is never taken over.
"""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

from vppagent.command_line import socket_path_problem


class SocketPathError(RuntimeError):
    """A socket path the agent must not serve on; the message starts with the path."""


def prepare_socket_path(path: Path) -> None:
    """Create the parent directory and remove a stale socket at `path`; refuse anything else.

    Only a unix socket that nobody accepts on (a killed agent's leftover) is removed. A regular
    file, directory or symlink is never touched, and a socket someone listens on is never stolen.
    """
    problem = socket_path_problem(path)
    if problem is not None:
        raise SocketPathError(f"{path} {problem}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    except OSError as exc:
        raise SocketPathError(f"{path}: cannot create its directory: {exc.strerror or exc}") from None
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SocketPathError(f"{path}: {exc.strerror or exc}") from None
    if not stat.S_ISSOCK(mode):
        raise SocketPathError(f"{path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(str(path))
    except ConnectionRefusedError:
        try:
            path.unlink()  # nobody listens: a leftover of a killed agent
        except FileNotFoundError:
            pass  # another starting agent removed it first; binding will tell who wins
        except OSError as exc:
            raise SocketPathError(f"{path}: cannot remove the stale socket: {exc.strerror or exc}") from None
        return
    except TimeoutError:
        pass  # a listener with a full backlog is still a listener
    except OSError as exc:
        raise SocketPathError(f"{path}: cannot tell whether another agent listens: {exc.strerror or exc}") from None
    finally:
        probe.close()
    raise SocketPathError(f"{path}: another agent listens on this socket; not taking it over")
