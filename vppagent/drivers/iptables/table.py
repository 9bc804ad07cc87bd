"""One iptables table of one family: desired chains vs what the kernel holds, written atomically.

After Felix's felix/iptables/table.go: we own whole chains (names with our prefix) and a few rules
inserted at the top of kernel chains ("hooks"). Every rule carries a `vpa:` comment hashing
(chain, previous rule's hash, rule text); a chain is right when its hash list matches. An apply
writes the chains whose hashes differ in one `iptables-restore --noflush` and deletes our chains
nobody references. Only chains reachable from a hook are programmed.

Over 400 lines on purpose: the hash comment is written (`rule_line`) and read back (`read_save`,
streamed from iptables-save) beside the table that compares the two, so the comment's format and
what a read keeps have one home.
"""

from __future__ import annotations

import binascii
import bisect
import hashlib
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from vppagent.drivers.iptables.backend import Backend
from vppagent.drivers.iptables.runner import CommandError, Runner

log = logging.getLogger(__name__)

CHAIN_PREFIX = "vpa-"
HASH_PREFIX = "vpa:"
MAX_CHAIN_NAME = 28
KERNEL_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
_HASH_RE = re.compile(r'--comment "?' + re.escape(HASH_PREFIX) + r'([A-Za-z0-9_-]+)"?')
_ERROR_LINE_RE = re.compile(r"line:? (\d+)")


@dataclass(frozen=True, slots=True)
class Rule:
    """`match` (may be empty), then `action` ("-j DROP", "-g vpa-x", ...); `target` names our
    chain when the action jumps to one. Slotted: a big state holds hundreds of thousands."""

    match: str
    action: str
    target: str | None = None

    @property
    def text(self) -> str:
        return f"{self.match} {self.action}" if self.match else self.action


def jump(chain: str, match: str = "") -> Rule:
    # Interned: every endpoint chain jumps to its policies, so the same action text recurs.
    return Rule(match, sys.intern(f"-j {chain}"), chain)


def goto(chain: str, match: str = "") -> Rule:
    # "-g" returns to the caller's caller when the chain returns (dispatch chains use it).
    return Rule(match, sys.intern(f"-g {chain}"), chain)


@dataclass
class Chain:
    """A chain we own; `owner` names the object it comes from, for error messages."""

    name: str
    rules: tuple[Rule, ...]
    owner: str = ""
    _hashes: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name.startswith(CHAIN_PREFIX) or len(self.name) > MAX_CHAIN_NAME:
            raise ValueError(f"bad chain name {self.name!r}")

    @property
    def hashes(self) -> str:
        """The rules' hashes (`rule_hashes`) joined: HASH_LEN characters per rule. One string
        per chain, not one per rule: a big state has hundreds of thousands of rules."""
        if self._hashes is None:
            self._hashes = "".join(rule_hashes(self.name, self.rules))
        return self._hashes

    def targets(self) -> Iterable[str]:
        return (r.target for r in self.rules if r.target is not None)

    def restore_text(self) -> str:
        """The chain's "-A" lines for iptables-restore, newline-terminated. Formatted anew at
        every write and not kept: a chain shared by both families is formatted twice (~0.1 s
        for 300,000 rules), where keeping every chain's text until both families are written
        cost ~30 MB at 10,000 endpoints, and the agent's peak memory is what a node notices."""
        head, hashes = f"-A {self.name}", self.hashes
        return "".join(f"{rule_line(head, r, hashes[i * HASH_LEN:(i + 1) * HASH_LEN])}\n"
                       for i, r in enumerate(self.rules))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Chain) and self.name == other.name and self.rules == other.rules

    def __hash__(self) -> int:
        return hash((self.name, self.rules))


_URLSAFE = bytes.maketrans(b"+/", b"-_")
HASH_LEN = 16  # base64 of 12 bytes


def rule_hashes(chain_name: str, rules: Iterable[Rule]) -> tuple[str, ...]:
    """Deterministic per-rule ids; chaining the previous hash makes equal rules distinct.

    URL-safe base64 of a 12-byte blake2b (16 chars, no padding), spelled with binascii: the same
    text as base64.urlsafe_b64encode at a fraction of the cost (this runs once per rule)."""
    out = []
    previous = chain_name
    blake2b, b2a = hashlib.blake2b, binascii.b2a_base64
    for rule in rules:
        digest = blake2b(f"{previous}\0{rule.text}".encode(), digest_size=12).digest()
        previous = b2a(digest, newline=False).translate(_URLSAFE).decode()
        out.append(previous)
    return tuple(out)


def rule_line(head: str, rule: Rule, rule_hash: str) -> str:
    """`head` is "-A chain" or "-I chain 1"; our hash comment comes first, like Felix's."""
    return f'{head} -m comment --comment "{HASH_PREFIX}{rule_hash}" {rule.text}'


@dataclass
class ApplyResult:
    restores: int = 0
    chains_written: int = 0
    chains_deleted: int = 0
    lines: int = 0
    error: str | None = None


@dataclass
class _KernelView:
    """What iptables-save showed: our chains' hashes, and each kernel chain's hashes (None: foreign)."""

    ours: dict[str, str]  # chain -> its rules' hashes joined, as Chain.hashes
    kernel: dict[str, list[str | None]]


class Table:
    def __init__(self, name: str, family: int, runner: Runner, backend: Backend) -> None:
        self.name = name
        self.family = family
        self.runner = runner
        self.backend = backend
        self.chains: dict[str, Chain] = {}
        self.hooks: dict[str, tuple[Rule, ...]] = {c: () for c in KERNEL_CHAINS[name]}
        self._actual: _KernelView | None = None  # None: read the kernel before the next write
        self._fresh = False  # the view was read during this apply (no need to re-read for hooks)
        # The kernel held exactly the desired chains and hooks after the last apply, and neither
        # changed since: the next apply has nothing to compare (an IP set member change, say).
        self._settled = False
        self._given: object | None = None  # the chain list last passed to replace_chains

    @property
    def label(self) -> str:
        return f"{self.name} (IPv{self.family})"

    # -- desired state ---------------------------------------------------------------------------
    def replace_chains(self, chains: Iterable[Chain]) -> None:
        """The whole desired chain set. The renderer hands back the very same list when nothing
        that feeds the chains changed, which keeps the table settled without comparing."""
        if chains is self._given:
            return
        self.chains = {c.name: c for c in chains}
        self._settled, self._given = False, chains

    def set_hooks(self, kernel_chain: str, rules: Iterable[Rule]) -> None:
        wanted = tuple(rules)
        if self.hooks.get(kernel_chain) != wanted:
            self.hooks[kernel_chain] = wanted
            self._settled = False

    def invalidate(self) -> None:
        """Forget what we believe the kernel holds (next apply reads it back)."""
        self._actual = None
        self._settled = False

    def load(self, view: _KernelView) -> None:
        """Take the kernel's state from this table's part of an iptables-save of all tables
        (one read per family instead of one per table: with nf_tables every save lists all)."""
        self._actual = view
        self._fresh = True
        self._settled = False

    def reachable(self) -> dict[str, Chain]:
        """Desired chains referenced, directly or not, from a hook."""
        seen: dict[str, Chain] = {}
        stack = [r.target for rules in self.hooks.values() for r in rules if r.target]
        while stack:
            name = stack.pop()
            if name in seen or name not in self.chains:
                continue
            chain = seen[name] = self.chains[name]
            stack.extend(chain.targets())
        return seen

    # -- kernel state ----------------------------------------------------------------------------
    def read_back(self) -> _KernelView:
        views = self.runner.stream([self.backend.save(self.family), "-t", self.name], read_save, timeout=60)
        return views.get(self.name) or empty_view()

    def _kernel_view(self) -> _KernelView:
        if self._actual is None:
            self._actual = self.read_back()
            self._fresh = True
        return self._actual

    def drift(self) -> list[str]:
        """Read the kernel and name the chains that differ from what we programmed (refresh)."""
        self._actual = self.read_back()
        self._settled = False
        want = self.reachable()
        wrong = [n for n, c in want.items() if self._actual.ours.get(n) != c.hashes]
        wrong += [n for n in self._actual.ours if n not in want]
        wrong += [k for k in self.hooks if self._hook_plan(k, self._actual.kernel.get(k, [])) is not None]
        return sorted(wrong)

    def _hook_plan(self, kernel_chain: str, present: list[str | None]) -> list[str] | None:
        """Restore lines fixing our rules at the top of `kernel_chain`, or None when right."""
        rules = self.hooks.get(kernel_chain, ())
        hashes = rule_hashes(kernel_chain, rules)
        ours_at = [i for i, h in enumerate(present) if h is not None]
        if ours_at == list(range(len(hashes))) and tuple(present[: len(hashes)]) == hashes:
            return None
        lines = [f"-D {kernel_chain} {i + 1}" for i in reversed(ours_at)]
        for rule, rule_hash in reversed(list(zip(rules, hashes, strict=True))):
            lines.append(rule_line(f"-I {kernel_chain} 1", rule, rule_hash))
        return lines

    # -- writing ---------------------------------------------------------------------------------
    def apply(self) -> ApplyResult:
        """Write what differs in one transaction; on failure nothing changed and we re-read later."""
        result = ApplyResult()
        if self._settled and self._actual is not None:
            return result
        try:
            actual = self._kernel_view()
        except CommandError as exc:
            result.error = f"cannot read {self.label}: {exc}"
            return result
        want = self.reachable()
        write = [c for n, c in sorted(want.items()) if actual.ours.get(n) != c.hashes]
        delete = sorted(n for n in actual.ours if n not in want)
        hook_chains = [k for k in self.hooks if self._hook_plan(k, actual.kernel.get(k, [])) is not None]
        if not (write or delete or hook_chains):
            self._settled = True
            return result
        fresh, self._fresh = self._fresh, False
        if hook_chains and not fresh:
            # Hook fixes delete by rule number: those numbers must be fresh, not cached.
            try:
                actual = self._actual = self.read_back()
            except CommandError as exc:
                result.error = f"cannot read {self.label}: {exc}"
                return result
        pieces, owners = self._restore_input(write, delete, actual)
        result.lines = owners.lines
        try:
            self.runner.run([self.backend.restore(self.family), "--noflush", "--wait"], stdin=pieces, timeout=120)
        except CommandError as exc:
            self._actual = None
            result.error = self._describe_failure(exc, owners)
            result.restores = 1
            return result
        for chain in write:
            actual.ours[chain.name] = chain.hashes
        for name in delete:
            actual.ours.pop(name, None)
        for kernel_chain in self.hooks:
            foreign: list[str | None] = [h for h in actual.kernel.get(kernel_chain, []) if h is None]
            actual.kernel[kernel_chain] = [*rule_hashes(kernel_chain, self.hooks[kernel_chain]), *foreign]
        result.restores = 1
        result.chains_written = len(write)
        result.chains_deleted = len(delete)
        self._settled = True
        return result

    def _restore_input(self, write: list[Chain], delete: list[str], actual: _KernelView
                       ) -> tuple[Iterator[str], _LineOwners]:
        """The restore input as pieces (one per chain, formatted only when the runner takes
        it, so a 300,000-line input is never held whole), and what each line belongs to (for
        naming a failing line; known before any piece is formatted).

        Order matters to iptables-nft (1.8.x) in --noflush mode: for every command it inserts
        the chain name (and the jump target) into a cache request list kept sorted, walking it
        from the smallest name, so a command costs the number of names already listed that sort
        before its chain; with all chains declared first that is quadratic in the chain count
        (~1 s of a 60k-rule restore). So chains are written in descending name order, each
        declared just before its rules, and a chain's targets are declared just before it (a
        jump needs its target to exist): mostly the names already listed sort after the chain.
        "-N" for new chains: iptables-nft restores those faster than ":chain" declarations."""
        owners = _LineOwners(1 + len(delete))
        plan: list[str | Chain] = [f"*{self.name}\n", *(f"-F {name}\n" for name in delete)]
        writing = {c.name: c for c in write}
        declared: set[str] = set()

        def declare(name: str) -> None:
            declared.add(name)
            owners.add(describe(writing[name]), 1)
            plan.append(f":{name} - [0:0]\n" if name in actual.ours else f"-N {name}\n")

        def describe(chain: Chain) -> str:
            return f"chain {chain.name}" + (f" ({chain.owner})" if chain.owner else "")

        for name in sorted(writing, reverse=True):
            chain = writing[name]
            for target in chain.targets():
                if target in writing and target not in declared:
                    declare(target)
            if name not in declared:
                declare(name)
            owners.add(describe(chain), len(chain.rules))
            plan.append(chain)
        tail: list[str] = []
        for kernel_chain in self.hooks:
            hook_lines = self._hook_plan(kernel_chain, actual.kernel.get(kernel_chain, [])) or []
            owners.add(f"hook in {kernel_chain}", len(hook_lines))
            tail += hook_lines
        for name in delete:
            owners.add(f"deletion of chain {name}", 1)
            tail.append(f"-X {name}")
        tail.append("COMMIT")
        plan.append("\n".join(tail) + "\n")
        return (piece if isinstance(piece, str) else piece.restore_text() for piece in plan), owners

    def _describe_failure(self, exc: CommandError, owners: _LineOwners) -> str:
        found = _ERROR_LINE_RE.search(exc.stderr or str(exc))
        where = ""
        if found:
            line = int(found.group(1))
            where = owners.at(line) or f"line {line}"
        detail = str(exc)
        return f"iptables-restore of {self.label} failed" + (f" at {where}" if where else "") + f": {detail}"


class _LineOwners:
    """Consecutive line ranges of a restore input and what each belongs to (1-based lines)."""

    def __init__(self, header_lines: int) -> None:
        self.lines = header_lines
        self._starts: list[int] = []
        self._whats: list[str] = []
        self._ends: list[int] = []

    def add(self, what: str, count: int) -> None:
        if count:
            self._starts.append(self.lines + 1)
            self._whats.append(what)
            self.lines += count
            self._ends.append(self.lines)

    def at(self, line: int) -> str | None:
        i = bisect.bisect_right(self._starts, line) - 1
        return self._whats[i] if i >= 0 and line <= self._ends[i] else None


class _SaveReader:
    """One table's part of iptables-save output, a line at a time: each of our chains' hashes,
    and each kernel chain's (the hooks' places). Other software's own chains are skipped, so
    what is kept is a few bytes per rule of ours, never the text."""

    def __init__(self, table: str) -> None:
        self.builtin = frozenset(KERNEL_CHAINS.get(table, ()))
        self.ours: dict[str, str] = {}
        self.kernel: dict[str, list[str | None]] = {}
        self._chain: str | None = None  # the chain whose hashes are being collected
        self._hashes: list[str] = []

    def declare(self, name: str) -> None:
        if name.startswith(CHAIN_PREFIX):
            self.ours.setdefault(name, "")
        elif name in self.builtin:
            self.kernel.setdefault(name, [])

    def rule(self, line: str) -> None:
        name = line[3:].split(" ", 1)[0]
        if name.startswith(CHAIN_PREFIX):
            if name != self._chain:
                self._flush()
                self._chain = name
            # A rule without our hash in our chain (inserted by hand) makes the chain differ.
            found = _HASH_RE.search(line)
            self._hashes.append(found.group(1) if found else "?" * HASH_LEN)
        elif name in self.builtin:
            found = _HASH_RE.search(line)
            self.kernel.setdefault(name, []).append(found.group(1) if found else None)

    def _flush(self) -> None:
        """A chain's rules come together in iptables-save: joined once the chain ends, so only
        one chain's list of hashes exists at a time."""
        if self._chain is not None:
            self.ours[self._chain] = self.ours.get(self._chain, "") + "".join(self._hashes)
        self._chain, self._hashes = None, []

    def view(self) -> _KernelView:
        self._flush()
        return _KernelView(self.ours, self.kernel)


def read_save(lines: Iterable[str]) -> dict[str, _KernelView]:
    """What iptables-save output (of one table or all) shows, per table: our chains' hashes and
    the kernel chains' hashes, read a line at a time (rules are not parsed beyond the comment)."""
    readers: dict[str, _SaveReader] = {}
    current: _SaveReader | None = None
    for line in lines:
        if line.startswith("-A "):
            if current is not None:
                current.rule(line)
        elif line.startswith(":"):
            if current is not None:
                current.declare(line[1:].split(" ", 1)[0])
        elif line.startswith("*"):
            name = line[1:].strip()
            current = readers.get(name) or readers.setdefault(name, _SaveReader(name))
    return {name: reader.view() for name, reader in readers.items()}


def empty_view() -> _KernelView:
    """A table iptables-save did not show: nothing of ours in it, no rules in its chains."""
    return _KernelView({}, {})
