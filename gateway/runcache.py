"""The runs a gateway remembers for `GET` and for callers waiting on an outcome: each run's
newest state as the raw record (the bytes the journey log holds), within a byte budget.

Raw, not parsed: a parsed run costs several times its record in memory, and most are never
asked for. The newest run written (by this gateway) or read (from the log) is kept; a record
older than what is kept (an echo of this gateway's own write, read back late) is not. When
the budget is spent the least recently written runs go first."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterator

from gateway.models import TERMINAL

_REVISION = re.compile(rb'"revision":(\d+)')
_STATUS = b'"status":"'
_TERMINAL = frozenset(status.encode() for status in TERMINAL)


class RunCache:
    """Run id -> newest raw state, least recently kept first, at most `budget` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self._runs: OrderedDict[str, bytes] = OrderedDict()
        self.size = 0  # bytes of the records kept

    def __len__(self) -> int:
        return len(self._runs)

    def raw(self, run_id: str) -> bytes | None:
        return self._runs.get(run_id)

    def keep(self, run_id: str, value: bytes) -> bool:
        """Keep `value` as the run's newest state unless an equal or newer one is kept."""
        known = self._runs.get(run_id)
        if known is not None:
            if revision(value) <= revision(known):
                return False
            self.size -= len(known)
        self._runs[run_id] = value
        self._runs.move_to_end(run_id)
        self.size += len(value)
        while self.size > self.budget and len(self._runs) > 1:
            _, dropped = self._runs.popitem(last=False)
            self.size -= len(dropped)
        return True

    def forget(self, run_id: str) -> None:
        dropped = self._runs.pop(run_id, None)
        if dropped is not None:
            self.size -= len(dropped)

    def items(self) -> Iterator[tuple[str, bytes]]:
        return iter(list(self._runs.items()))


def revision(value: bytes) -> int:
    """A saved run's revision, read from its raw record. The last match: the field comes
    after the input and the replies (which may hold anything) and before nothing that does."""
    at = value.rfind(b'"revision":')
    found = _REVISION.match(value, at) if at >= 0 else None
    return int(found.group(1)) if found else 0


def raw_status(value: bytes) -> bytes:
    """A saved run's status, read from its raw record: the first `"status"` field is the
    run's own (it comes before the input, the steps and the replies)."""
    at = value.find(_STATUS)
    if at < 0:
        return b""
    start = at + len(_STATUS)
    return value[start : value.find(b'"', start)]


def looks_decided(value: bytes) -> bool:
    """Cheap: might this raw state be decided? (Then it is worth parsing.)"""
    return raw_status(value) in _TERMINAL
