"""Do the engine's in-memory tests fail when a fix is reverted? Each mutant below undoes one
rule of "money moves once"; the engine's behaviour and simulation tests must catch every one.

    .venv/bin/python -m tests.engine_mutants            # 2,000 schedules per mutant
    MBS_SIM_EXAMPLES=500 .venv/bin/python -m tests.engine_mutants

It edits gateway/ in place for each run and always puts the file back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = [
    "tests/unit/test_engine_simulation.py",
    "tests/unit/test_engine_behaviour.py",
    "tests/unit/test_quarantine.py",  # the executor's replay
]
# name: (file, text of the fix, the text that reverts it)
MUTANTS: dict[str, tuple[str, str, str]] = {
    "side-effecting call not saved before it is sent": (
        "gateway/caller.py",
        "            await save(run)  # durable before it can happen: a resumed run settles it\n",
        "            pass\n",
    ),
    "calls of unknown outcome not settled at the end": (
        "gateway/engine.py",
        '                if call.effect != "unknown":\n                    continue\n',
        "                continue\n",
    ),
    "side effects of in-flight (cancelled) steps not undone": (
        "gateway/engine.py",
        '            if call.effect == "done" and not (keep and call.used)\n',
        '            if call.effect == "done" and not (keep and call.used)'
        ' and step.status == "ok"\n',
    ),
    "a failed undo counts as done": (
        "gateway/caller.py",
        '        if undo.outcome == "ok":\n            call.effect = "undone"',
        '        if True:\n            call.effect = "undone"',
    ),
    "a retry reuses the message id": (
        "gateway/caller.py",
        'message_id=f"{run.run_id}:{spec.id}:{contract.unit}:{number}"',
        'message_id=f"{run.run_id}:{spec.id}:{contract.unit}"',
    ),
    "a timed-out call not settled before moving on": (
        "gateway/caller.py",
        '        if call.effect == "unknown":\n            await self.settle(',
        "        if False:\n            await self.settle(",
    ),
    "an interrupted call counts as an attempt": (
        "gateway/caller.py",
        '            call.outcome = "interrupted"\n',
        "            pass\n",
    ),
    "no compensation at all": (
        "gateway/engine.py",
        "            verdict = await self._undo(definition, run, step, call)\n",
        '            verdict = "undone"\n',
    ),
    "a silent undo counted as a refusal (parked while its provider restarts)": (
        "gateway/engine.py",
        '            if call.undos[-1].outcome == "timeout":\n',
        "            if False:\n",
    ),
    "a silent provider waited for past the patience": (
        "gateway/engine.py",
        "            if left_ms <= 0:\n",
        "            if left_ms <= -1e12:\n",
    ),
    "a resumed run that ends does not ask what an earlier life did": (
        "gateway/engine.py",
        "                if not fresh and run.error is not None:  # see gateway.recovery\n",
        "                if False:\n",
    ),
    "failover broken (first provider only)": (
        "gateway/caller.py",
        "        units = step.providers if spec.providers.failover else step.providers[:1]\n",
        "        units = step.providers[:1]\n",
    ),
    "the price billed is the header's, not the contract's": (
        "gateway/replies.py",
        "    price = contract.pricing.price_per_call\n",
        "    price = stated\n",
    ),
    "retries broken (one attempt per provider)": (
        "gateway/caller.py",
        "if tried < spec.retry.attempts), None)\n",
        "if tried < 1), None)\n",
    ),
    "a down provider's last chance not waited for": (
        "gateway/caller.py",
        'if last and call.outcome == "timeout":  # nothing left to try: wait for this one\n',
        "if False:\n",
    ),
    "records of a partition being assigned acted on before its replay": (
        "gateway/executor.py",
        "            self.pending[partition] = {}\n\n    async def on_assigned",
        "            pass\n\n    async def on_assigned",
    ),
    "a replay's end taken from records only, not the reader's position": (
        "gateway/executor.py",
        "        if partition in self.pending and position >= self.replay_end.get(partition, 0):\n",
        "        if False:\n",
    ),
}


def caught(path: Path, fix: str, revert: str) -> bool:
    """True when the tests fail with the fix reverted."""
    original = path.read_text()
    if fix not in original:
        raise SystemExit(f"{path}: the fix this mutant reverts is not there any more: {fix!r}")
    path.write_text(original.replace(fix, revert, 1))
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
            cwd=ROOT,
            capture_output=True,
            env={**os.environ, "MBS_SIM_EXAMPLES": os.environ.get("MBS_SIM_EXAMPLES", "2000")},
            check=False,
        )
    finally:
        path.write_text(original)
    return result.returncode != 0


def main() -> int:
    survivors = []
    for name, (file, fix, revert) in MUTANTS.items():
        verdict = caught(ROOT / file, fix, revert)
        print(f"{'caught  ' if verdict else 'SURVIVED'}  {name}", flush=True)
        if not verdict:
            survivors.append(name)
    print(f"{len(MUTANTS) - len(survivors)} of {len(MUTANTS)} reverted fixes caught")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
