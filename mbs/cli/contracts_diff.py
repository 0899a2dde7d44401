"""`mbs contracts diff`: two contract files side by side, a partner's list as well as one
contract, paired by provider and capability."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape

from mbs.contract.compat import Incompatibility, check_contract
from mbs.contract.model import Contract

Pairing = tuple[str, str]  # (unit, capability)


@dataclass
class Change:
    """One contract in both files: the fields that differ and why it may break callers."""

    before: Contract
    after: Contract
    fields: list[str]
    reasons: list[Incompatibility]


@dataclass
class DiffReport:
    """Every pair, and the contracts only one file has."""

    changes: list[Change] = field(default_factory=list)
    added: list[Contract] = field(default_factory=list)
    removed: list[Contract] = field(default_factory=list)

    @property
    def compatible(self) -> bool:
        return not self.removed and not any(c.reasons for c in self.changes)

    def lines(self) -> list[str]:
        """For people: one line per contract, its reasons under it, a verdict last."""
        out = []
        for c in self.changes:
            if not c.fields:
                out.append(f"= {c.after.key} ({c.after.unit}): unchanged")
                continue
            what = ", ".join(c.fields)
            out.append(f"[yellow]~[/] {c.before.key} -> {c.after.key} ({c.after.unit}): {what}")
            out += [f"  [red]x[/] {escape(r.path)}: {escape(r.reason)}" for r in c.reasons]
        out += [f"[green]+[/] {c.key} ({c.unit}): added" for c in self.added]
        out += [f"[red]-[/] {c.key} ({c.unit}): removed, its callers lose it" for c in self.removed]
        changed = sum(1 for c in self.changes if c.fields)
        verdict = "[green]compatible[/]" if self.compatible else "[red]incompatible[/]"
        out.append(
            f"{changed} changed, {len(self.added)} added, {len(self.removed)} removed: {verdict}"
            + "".join(f" under {m}" for m in sorted({c.after.compatibility for c in self.changes}))
        )
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "compatible": self.compatible,
            "changed": [
                {
                    "unit": c.after.unit,
                    "from": c.before.key,
                    "to": c.after.key,
                    "fields": c.fields,
                    "reasons": [{"path": r.path, "reason": r.reason} for r in c.reasons],
                }
                for c in self.changes
            ],
            "added": [{"unit": c.unit, "key": c.key} for c in self.added],
            "removed": [{"unit": c.unit, "key": c.key} for c in self.removed],
        }


def diff_files(old: list[Contract], new: list[Contract]) -> DiffReport:
    """Pair by (unit, capability); where a file has several majors of one, by major too."""
    report = DiffReport()
    olds, news = _by_pairing(old), _by_pairing(new)
    for pairing in sorted(olds.keys() | news.keys()):
        before, after = olds.get(pairing, []), news.get(pairing, [])
        if len(before) == 1 and len(after) == 1:
            report.changes.append(_change(before[0], after[0]))
            continue
        majors_before = {c.major: c for c in before}
        majors_after = {c.major: c for c in after}
        for major in sorted(majors_before.keys() | majors_after.keys()):
            b, a = majors_before.get(major), majors_after.get(major)
            if b is not None and a is not None:
                report.changes.append(_change(b, a))
            elif b is not None:
                report.removed.append(b)
            elif a is not None:
                report.added.append(a)
    return report


def _by_pairing(contracts: list[Contract]) -> dict[Pairing, list[Contract]]:
    found: dict[Pairing, list[Contract]] = {}
    for c in contracts:
        found.setdefault((c.unit, c.capability), []).append(c)
    return found


def _change(before: Contract, after: Contract) -> Change:
    fields = _changed_fields(before, after)
    reasons = check_contract(before, after) if fields else []
    return Change(before, after, fields, reasons)


def _changed_fields(before: Contract, after: Contract) -> list[str]:
    a, b = json.loads(before.model_dump_json()), json.loads(after.model_dump_json())
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
