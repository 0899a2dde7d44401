"""A unit's business state and its memory of what it answered, in one SQLite file per unit.

Why one local transaction: "was this message id answered?", the handler's writes and the
reply it remembers must commit together or not at all, or a redelivery after a crash or a
rebalance charges a card twice. SQLite gives that with nothing to install, and one file
(`<MBS_UNIT_STATE_DIR>/<unit>.sqlite3`, WAL mode) is shared by every instance of the unit on
a host: `BEGIN IMMEDIATE` makes their writers take turns across processes.

Handlers use typed tables (`store.table("charges", Charge)`) with plain `get`/`put` calls;
the kit opens the transaction around the handler and the tables read and write through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar

from pydantic import TypeAdapter

from mbs.errors import StateError

if TYPE_CHECKING:
    from mbs.settings import Settings

T = TypeVar("T")
BUSY_TIMEOUT_S = 30.0
PRUNE_EVERY_S = 600.0
DEFAULT_RETENTION_HOURS = 168.0
_SCHEMA = """
CREATE TABLE IF NOT EXISTS replies (
    message_id TEXT PRIMARY KEY, body BLOB NOT NULL, headers TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS replies_by_age ON replies (created_ms);
CREATE TABLE IF NOT EXISTS state (
    tbl TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (tbl, key)
);
"""


@dataclass(frozen=True)
class StoredReply:
    """A reply as it was sent: body and headers (a repeat gets exactly this again)."""

    body: bytes
    headers: dict[str, str]


class Transaction:
    """The open transaction of one request: the kit's memory of replies lives in it."""

    def __init__(self, store: UnitStore) -> None:
        self.store = store

    def reply(self, message_id: str) -> StoredReply | None:
        """The reply remembered for `message_id`, if it was answered before."""
        row = self.store.connection.execute(
            "SELECT body, headers FROM replies WHERE message_id = ?", (message_id,)
        ).fetchone()
        return None if row is None else StoredReply(bytes(row[0]), json.loads(row[1]))

    def remember(self, message_id: str, reply: StoredReply) -> None:
        """Keep `reply` as the final answer to `message_id` (commits with the handler's work)."""
        now_ms = int(time.time() * 1000)
        self.store.connection.execute(
            "INSERT INTO replies (message_id, body, headers, created_ms) VALUES (?, ?, ?, ?)",
            (message_id, reply.body, json.dumps(reply.headers), now_ms),
        )
        self.store.prune_now_and_then(now_ms)


_CURRENT: ContextVar[Transaction | None] = ContextVar("mbs_transaction", default=None)


class Table(Generic[T]):
    """One kind of business record of a unit, by key; reads and writes join the current
    transaction, so a handler's writes commit with its reply or not at all."""

    def __init__(self, store: UnitStore, name: str, kind: type[T]) -> None:
        self.store = store
        self.name = name
        self._adapter: TypeAdapter[T] = TypeAdapter(kind)

    def get(self, key: str) -> T | None:
        row = (
            self._db()
            .execute("SELECT value FROM state WHERE tbl = ? AND key = ?", (self.name, key))
            .fetchone()
        )
        return None if row is None else self._adapter.validate_json(row[0])

    def put(self, key: str, value: T) -> None:
        self._db().execute(
            "INSERT INTO state (tbl, key, value) VALUES (?, ?, ?) "
            "ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value",
            (self.name, key, self._adapter.dump_json(value).decode()),
        )

    def delete(self, key: str) -> None:
        self._db().execute("DELETE FROM state WHERE tbl = ? AND key = ?", (self.name, key))

    def items(self) -> list[tuple[str, T]]:
        """Every record with its key, oldest first."""
        rows = self._db().execute(
            "SELECT key, value FROM state WHERE tbl = ? ORDER BY rowid", (self.name,)
        )
        return [(key, self._adapter.validate_json(value)) for key, value in rows]

    def values(self) -> list[T]:
        """Every record, oldest first."""
        return [value for _, value in self.items()]

    def keys(self) -> list[str]:
        return [key for key, _ in self.items()]

    def _db(self) -> sqlite3.Connection:
        current = _CURRENT.get()
        if current is not None:
            if current.store is not self.store:
                raise StateError(
                    f"table {self.name!r} belongs to another store than the open transaction; "
                    "build the unit with the store it is attached with"
                )
            return self.store.connection
        if self.store.connection.in_transaction:
            raise StateError(
                f"table {self.name!r} used outside the transaction another request holds; "
                "use it from a handler or inside `store.transaction()`"
            )
        return self.store.connection  # outside the kit (tests, scripts): each call commits


class UnitStore:
    """The state and reply memory of one unit: a SQLite file, or memory for tests."""

    def __init__(
        self,
        path: Path | None,
        *,
        retention_hours: float = DEFAULT_RETENTION_HOURS,
        busy_timeout_s: float = BUSY_TIMEOUT_S,
    ) -> None:
        self.path = path
        self.retention_ms = int(retention_hours * 3_600_000)
        # autocommit (isolation_level=None): the store issues BEGIN/COMMIT itself
        self.connection = sqlite3.connect(
            ":memory:" if path is None else str(path),
            timeout=busy_timeout_s,  # sqlite's busy timeout: how long to wait for the lock
            isolation_level=None,
            check_same_thread=False,  # BEGIN waits in a worker thread; the lock serialises use
        )
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        self.connection.executescript(_SCHEMA)
        self._lock = asyncio.Lock()  # one connection cannot nest transactions
        self._pruned_at = float("-inf")

    @classmethod
    def temporary(cls) -> UnitStore:
        """A store in memory, gone with the process (unit tests, in-memory brokers)."""
        return cls(None)

    @classmethod
    def open(cls, path: Path, *, retention_hours: float = DEFAULT_RETENTION_HOURS) -> UnitStore:
        """The store in `path`, created if missing."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls(path, retention_hours=retention_hours)

    @classmethod
    def for_unit(cls, unit: str, settings: Settings) -> UnitStore:
        """The store every instance of `unit` on this host shares."""
        path = settings.unit_state_dir / f"{unit}.sqlite3"
        return cls.open(path, retention_hours=settings.reply_retention_hours)

    def table(self, name: str, kind: type[T]) -> Table[T]:
        """A typed table of this store; `kind` is a pydantic model or any type pydantic reads."""
        return Table(self, name, kind)

    @contextlib.asynccontextmanager
    async def transaction(self, *, rollback_only: bool = False) -> AsyncIterator[Transaction]:
        """All or nothing: commits when the block ends, rolls back when it raises. A
        `rollback_only` transaction (a dry run) never commits, whatever the handler wrote."""
        current = _CURRENT.get()
        if current is not None and current.store is self:
            raise StateError("a transaction of this store is open already; they do not nest")
        async with self._lock:
            await self._begin()
            current = Transaction(self)
            token = _CURRENT.set(current)
            try:
                yield current
            except BaseException:
                self._rollback()
                raise
            finally:
                _CURRENT.reset(token)
            if rollback_only:
                self._rollback()
                return
            try:
                self.connection.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise

    def remembered(self) -> int:
        """How many answers the store remembers (for the start-up log)."""
        row = self.connection.execute("SELECT count(*) FROM replies").fetchone()
        return int(row[0])

    def prune_now_and_then(self, now_ms: int) -> None:
        """Forget replies older than the retention, at most every PRUNE_EVERY_S seconds."""
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = time.monotonic()
        self.connection.execute(
            "DELETE FROM replies WHERE created_ms < ?", (now_ms - self.retention_ms,)
        )

    def close(self) -> None:
        self.connection.close()

    async def _begin(self) -> None:
        """BEGIN IMMEDIATE takes the file's write lock, waiting for another instance's turn
        to end; it waits in a thread so the event loop (and Kafka heartbeats) keep going."""
        begin = asyncio.ensure_future(asyncio.to_thread(self.connection.execute, "BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            await asyncio.wait([begin])  # the connection is ours again only once BEGIN returned
            self._rollback()
            raise

    def _rollback(self) -> None:
        if self.connection.in_transaction:
            self.connection.execute("ROLLBACK")
