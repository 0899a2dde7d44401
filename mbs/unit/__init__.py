"""The unit runtime: a unit's API (`Unit`, `Binding`, `dry_run`), the server that takes a
request through validation, memory, handler and reply, the state store, and hosting one unit
as a process."""

from mbs.unit.api import Unit
from mbs.unit.binding import Binding, Handler, RetryPolicy
from mbs.unit.context import dry_run
from mbs.unit.ecosystem import Ecosystem, load_ecosystem
from mbs.unit.state import StoredReply, Table, Transaction, UnitStore

__all__ = [
    "Binding",
    "Ecosystem",
    "Handler",
    "RetryPolicy",
    "StoredReply",
    "Table",
    "Transaction",
    "Unit",
    "UnitStore",
    "dry_run",
    "load_ecosystem",
]
