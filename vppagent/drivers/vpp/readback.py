"""VPP's classifier tables, read back at most once per fresh read of VPP, for both their readers.

The gate's chains (classifier/chains.py `reread`) and the source guards (guard/guards.py `reread`)
each tell their own tables apart from everything VPP holds, and a restarted agent (or VPP) needs
both. Read apart, every table was read twice (P1 after an agent restart: 6,008 tables, 12,022
`classify_table_info` and 12,014 `classify_session_dump`). One `ClassifierTables` per fresh read
(driver.py `programmed`) reads every table's info and sessions (classifier/read.py `read_tables`,
two pipelines) the first time either side asks; a side that trusts what it knows asks for the
table ids alone.
"""

from __future__ import annotations

from vppagent.drivers.vpp.api.calls import VppCalls
from vppagent.drivers.vpp.classifier.read import HeldTable, read_tables


class ClassifierTables:
    """What one fresh read of VPP finds in its classifier, read lazily and then kept."""

    def __init__(self, calls: VppCalls) -> None:
        self.calls = calls
        self._ids: frozenset[int] | None = None
        self._tables: dict[int, HeldTable] | None = None

    def ids(self) -> frozenset[int]:
        """The tables VPP lists (one request, or none once `tables` was read)."""
        if self._ids is None:
            self._ids = frozenset(self.calls.classify_table_ids() if self._tables is None else self._tables)
        return self._ids

    def tables(self) -> dict[int, HeldTable]:
        """Every table with its info and sessions; read on the first call only."""
        if self._tables is None:
            self._tables = read_tables(self.calls)
        return self._tables
