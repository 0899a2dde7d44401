"""The promises a chaos run must keep, each judged from what the platform wrote: the journey
log's newest record of each run and the units' own books.

Each rule returns a `Finding`: how many things it checked and one line per violation, so a
report can say "0 of 812" or show the first culprit with its run id."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from bench.unit_books import Books

Run = dict[str, Any]
TERMINAL = frozenset({"completed", "failed", "timed_out", "compensation_failed"})
ORDER_JOURNEY = "order-to-delivery"


@dataclass
class Finding:
    """One invariant's verdict."""

    invariant: str
    checked: int
    violations: list[str] = field(default_factory=list)


@dataclass
class Evidence:
    """Everything the rules judge: the log, the books, and what the driver knows."""

    runs: dict[str, Run]
    books: Books
    accepted: list[str]
    start_stock: dict[str, int]
    prices: dict[tuple[str, str], Decimal]  # (capability, unit) -> contract price_per_call
    compensable: frozenset[str]  # capabilities whose contract names an undo
    unreadable: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)  # see JourneyLog.regressions

    @cached_property
    def orders(self) -> dict[str, list[Run]]:
        """order-to-delivery runs by the order id of their input."""
        found: dict[str, list[Run]] = defaultdict(list)
        for run in self.runs.values():
            if run.get("journey") == ORDER_JOURNEY:
                found[str(run.get("input", {}).get("order_id"))].append(run)
        return found


def calls_of(run: Run) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(step, call) for every call a run made (attempts, not undos)."""
    for step in run.get("steps", []):
        for call in step.get("calls", []):
            yield step, call


def used_output(run: Run, step_id: str) -> dict[str, Any]:
    """The reply a step of a completed run kept ({} if none)."""
    for step in run.get("steps", []):
        if step.get("id") == step_id:
            return step.get("output") or {}
    return {}


def runs_finished(ev: Evidence) -> Finding:
    """Every accepted run is in the log, decided and settled; so is every other run there."""
    finding = Finding("runs finished (decided, settled)", len(set(ev.accepted) | set(ev.runs)))
    finding.violations += [f"unreadable journey-log record {where}" for where in ev.unreadable]
    for run_id in ev.accepted:
        if run_id not in ev.runs:
            finding.violations.append(f"run {run_id}: accepted, but not in the journey log")
    for run_id, run in ev.runs.items():
        accepted = "accepted" if run_id in ev.accepted else "not accepted"
        if run.get("status") not in TERMINAL:
            finding.violations.append(f"run {run_id} ({accepted}): still {run.get('status')}")
        elif run.get("unsettled"):
            finding.violations.append(f"run {run_id}: unsettled calls {run['unsettled']}")
    return finding


def log_moves_forward(ev: Evidence) -> Finding:
    """Each run's states reach the log in revision order: one writer per run at a time. A
    state written after a newer one means two executions of the run at once (and if it is
    the last, the log's newest state of the run is a stale one)."""
    return Finding("journey log moves forward", len(ev.runs), list(ev.regressions))


def no_double_charge(ev: Evidence) -> Finding:
    """At most one live (never refunded) charge per order id."""
    orders = {str(c.get("order_id")) for c in ev.books.charges.values()}
    finding = Finding("no order charged twice", len(orders))
    for order_id in sorted(orders):
        live = ev.books.live_charges(order_id)
        if len(live) > 1:
            runs = [r["run_id"] for r in ev.orders.get(order_id, [])]
            finding.violations.append(f"order {order_id}: live charges {live} (runs {runs})")
    return finding


def charges_belong(ev: Evidence) -> Finding:
    """A charge never refunded is the one a completed order run reports."""
    finding = Finding("live charges belong to completed runs", len(ev.books.charges))
    orders = ev.orders
    for charge_id, charge in ev.books.charges.items():
        if charge_id in ev.books.refunds:
            continue
        runs = orders.get(str(charge.get("order_id")), [])
        if any(
            r.get("status") == "completed" and used_output(r, "pay").get("charge_id") == charge_id
            for r in runs
        ):
            continue
        said = [f"{r['run_id']} {r.get('status')}" for r in runs] or ["no run"]
        finding.violations.append(
            f"charge {charge_id} of order {charge.get('order_id')} ({charge.get('amount')}) "
            f"is neither kept by a completed run nor refunded: {', '.join(said)}"
        )
    return finding


def stock_conserved(ev: Evidence) -> Finding:
    """Per SKU: start = end + kept - returned, where kept is what completed orders reserved
    and returned what was released of it; and the unit's own ledger adds up."""
    moves = ev.books.stock_moves()
    skus = sorted(set(ev.start_stock) | set(ev.books.on_hand) | set(moves))
    finding = Finding("stock conserved per SKU", len(skus))
    kept: dict[str, int] = defaultdict(int)
    returned: dict[str, int] = defaultdict(int)
    keepers = _kept_reservations(ev)
    for rid in keepers:
        reservation = ev.books.reservations.get(rid)
        if reservation is None:
            continue  # "log and unit books agree" reports it
        kept[reservation["sku"]] += int(reservation["quantity"])
        if rid in ev.books.releases:
            returned[reservation["sku"]] += int(ev.books.releases[rid]["released"])
    for sku in skus:
        if sku not in ev.start_stock:
            finding.violations.append(f"{sku}: moved, but no starting stock was recorded")
            continue
        start = ev.start_stock[sku]
        end = ev.books.on_hand.get(sku, start)
        reserved, released = moves.get(sku, (0, 0))
        if start - reserved + released != end:
            finding.violations.append(
                f"{sku}: the unit's ledger does not add up: start {start} - reserved "
                f"{reserved} + released {released} != on hand {end}"
            )
        if start != end + kept[sku] - returned[sku]:
            leaks = _leaks(ev, sku, keepers)
            finding.violations.append(
                f"{sku}: start {start} != end {end} + kept {kept[sku]} - returned "
                f"{returned[sku]}; held for no completed order: {leaks[:3]}"
            )
    return finding


def _kept_reservations(ev: Evidence) -> set[str]:
    """Reservation ids the completed order runs kept."""
    return {
        str(used_output(run, "reserve").get("reservation_id"))
        for runs in ev.orders.values()
        for run in runs
        if run.get("status") == "completed"
    }


def _leaks(ev: Evidence, sku: str, keepers: set[str]) -> list[str]:
    orders = ev.orders
    found = []
    for rid, r in ev.books.reservations.items():
        if r.get("sku") == sku and rid not in ev.books.releases and rid not in keepers:
            runs = [f"{x['run_id']} {x.get('status')}" for x in orders.get(r["order_id"], [])]
            found.append(f"{rid} x{r['quantity']} order {r['order_id']} runs {runs}")
    return found


def failed_runs_compensated(ev: Evidence) -> Finding:
    """A run that did not complete left nothing behind: in its own record every undoable
    side effect is undone, nothing is parked, and the units hold no live charge, reservation
    or booking for its order."""
    failed = [r for r in ev.runs.values() if r.get("status") in TERMINAL - {"completed"}]
    finding = Finding("failed runs compensated", len(failed))
    for run in failed:
        where = f"run {run['run_id']} ({run.get('journey')} {run.get('status')})"
        if run.get("parked"):
            finding.violations.append(f"{where}: parked {run['parked']}")
        for step, call in calls_of(run):
            if call.get("capability") in ev.compensable and call.get("effect") in (
                "done",
                "unknown",
            ):
                finding.violations.append(
                    f"{where}: step {step['id']} call {call['message_id']} is "
                    f"{call['effect']}, not undone"
                )
        if run.get("journey") != ORDER_JOURNEY:
            continue
        order_id = str(run.get("input", {}).get("order_id"))
        if any(r.get("status") == "completed" for r in ev.orders[order_id]):
            continue  # the order completed in another run: that run answers for it
        left = _left_behind(ev.books, order_id, set())
        if left:
            finding.violations.append(f"{where}: order {order_id} left {left}")
    return finding


def completed_keep_what_they_used(ev: Evidence) -> Finding:
    """A completed order keeps exactly the charge, reservation and booking it reports; any
    other one (a retry, a failover) is undone."""
    completed = [
        r
        for runs in ev.orders.values()
        for r in runs
        if r.get("status") == "completed" and r.get("journey") == ORDER_JOURNEY
    ]
    finding = Finding("completed runs keep only what they used", len(completed))
    for run in completed:
        where = f"run {run['run_id']} (order {run['input'].get('order_id')})"
        for _, call in calls_of(run):
            extra = not call.get("used") and call.get("effect") in ("done", "unknown")
            if extra and call.get("capability") in ev.compensable:
                finding.violations.append(
                    f"{where}: extra {call['capability']} {call['message_id']} is {call['effect']}"
                )
        used = {
            used_output(run, "pay").get("charge_id"),
            used_output(run, "reserve").get("reservation_id"),
            f"{_step_unit(run, 'ship')}:{used_output(run, 'ship').get('shipment_id')}",
        }
        left = _left_behind(ev.books, str(run["input"].get("order_id")), used)
        if left:
            finding.violations.append(f"{where}: keeps more than it used: {left}")
    return finding


def _step_unit(run: Run, step_id: str) -> str:
    return next((s.get("unit", "") for s in run.get("steps", []) if s.get("id") == step_id), "")


def _left_behind(books: Books, order_id: str, used: set[Any]) -> list[str]:
    left = [f"charge {c}" for c in books.live_charges(order_id) if c not in used]
    left += [f"reservation {r}" for r in books.held_reservations(order_id) if r not in used]
    left += [f"booking {b}" for b in books.live_bookings(order_id) if b not in used]
    return left


def log_agrees_with_books(ev: Evidence) -> Finding:
    """Every side effect a run's record says was done is in the unit's books, and every one
    it says was undone is undone there: the log and the units tell one story."""
    finding = Finding("log and unit books agree", 0)
    for run in ev.runs.values():
        for step, call in calls_of(run):
            effect = call.get("effect")
            if effect not in ("done", "undone"):
                continue
            finding.checked += 1
            where = f"run {run['run_id']} step {step['id']} call {call['message_id']}"
            output = call.get("output") or {}
            problem = ev.books.has_effect(call["unit"], call["capability"], output)
            if problem is None and effect == "undone":
                problem = ev.books.is_undone(call["unit"], call["capability"], output)
            if problem is not None:
                finding.violations.append(f"{where} ({effect}): {problem}")
    return finding


def bills_match_contracts(ev: Evidence) -> Finding:
    """A decided run's bill is the sum of its calls' prices, and each call's price is its
    contract's `price_per_call` when answered ok, else nothing."""
    decided = [r for r in ev.runs.values() if r.get("status") in TERMINAL]
    finding = Finding("bills match contract prices", len(decided))
    for run in decided:
        bill = run.get("bill")
        if not bill:
            finding.violations.append(f"run {run['run_id']}: decided without a bill")
            continue
        expected = Decimal(0)
        for step in run.get("steps", []):
            for call in step.get("calls", []):
                for one in (call, *call.get("undos", [])):
                    price = ev.prices.get((one["capability"], one["unit"]))
                    if price is None:
                        finding.violations.append(f"{one['message_id']}: no contract for it")
                        continue
                    due = price if one.get("outcome") == "ok" else Decimal(0)
                    expected += due
                    if Decimal(str(one.get("price", "0"))) != due:
                        finding.violations.append(
                            f"run {run['run_id']} call {one['message_id']} ({one.get('outcome')})"
                            f" priced {one.get('price')}, its contract says {due}"
                        )
        total = Decimal(str(bill.get("total_price", "0")))
        by_unit = sum((Decimal(str(u["price"])) for u in bill.get("by_unit", [])), Decimal(0))
        if total != expected or by_unit != expected:
            finding.violations.append(
                f"run {run['run_id']}: bill {total} (by unit {by_unit}), its calls at "
                f"contract prices {expected}"
            )
    return finding


RULES: tuple[Callable[[Evidence], Finding], ...] = (
    runs_finished,
    log_moves_forward,
    no_double_charge,
    charges_belong,
    stock_conserved,
    failed_runs_compensated,
    completed_keep_what_they_used,
    log_agrees_with_books,
    bills_match_contracts,
)
