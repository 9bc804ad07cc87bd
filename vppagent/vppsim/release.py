"""The VPP releases the emulator can play: their API definitions and where their behaviour differs.

Each release's definitions are vendored under ``api/<release>/`` (``api/vendor.py``).  What a
release answers beyond its definitions is listed here, with where it was learnt:

- 26.06: checked against a running VPP 26.06.0 (``tests/vppsim/test_conformance_realvpp.py`` and
  the differential sequences in ``test_fidelity_realvpp.py``).
- 25.10: from reading its source (``src/vnet``, ``src/plugins/acl``) and from the traffic checks of
  the ACL plugin; where 26.06 was observed to differ from that reading and nothing says 25.10 did
  the same, the 25.10 reading is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

API_ROOT = Path(__file__).parent / "api"


@dataclass(frozen=True)
class Release:
    """One VPP release as the emulator plays it."""

    name: str  # "26.06"
    version: str  # show_version's ``version`` and the CLI's "vpp v<version>"
    # ip6_link_enable refuses an interface that is not Ethernet (local0) with UNSUPPORTED: the 25.10
    # source reading; a running 26.06 enables IPv6 on local0 and answers 0.
    ip6_enable_needs_ethernet: bool
    # The cnat tracker's "active" bit, which a translation dump ORs into each path's flags
    # (cnat_types.h: 1 << 0 in 25.10, 1 << 2 in 26.06; 26.06 read back from a running VPP).
    cnat_active_flag: int = 4

    @property
    def api_dir(self) -> Path:
        return API_ROOT / self.name


RELEASES: dict[str, Release] = {
    "25.10": Release("25.10", "25.10.0-release", ip6_enable_needs_ethernet=True, cnat_active_flag=1),
    "26.06": Release("26.06", "26.06.0-release", ip6_enable_needs_ethernet=False, cnat_active_flag=4),
}
DEFAULT_RELEASE = "26.06"


def release(name: str = DEFAULT_RELEASE) -> Release:
    """The release called ``name``; ValueError naming the known ones otherwise."""
    try:
        return RELEASES[name]
    except KeyError:
        raise ValueError(f"VPP release {name!r} is not emulated; known: {', '.join(sorted(RELEASES))}") from None
