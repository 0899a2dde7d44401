"""The gateway's memory of recent runs: raw states within a byte budget, newest kept."""

from __future__ import annotations

import asyncio

from gateway.models import JourneyRun
from gateway.runcache import RunCache, looks_decided, raw_status, revision
from gateway.runlog import RunLog
from mbs.kafka import Connection


def _raw(run_id: str, revision_: int, status: str = "running", pad: int = 0) -> bytes:
    run = JourneyRun(
        run_id=run_id,
        journey="j",
        version=1,
        status=status,  # type: ignore[arg-type]
        input={"note": "x" * pad, "status": "completed"},  # a field named status in the input
        steps=[],
        created_ms=0,
        deadline_ms=1,
        revision=revision_,
    )
    return run.model_dump_json().encode()


def test_the_budget_holds_and_the_least_recently_kept_go_first() -> None:
    cache = RunCache(budget=10_000)
    records = {f"r{i}": _raw(f"r{i}", 1, pad=1_000) for i in range(30)}
    for run_id, value in records.items():
        cache.keep(run_id, value)
        assert cache.size <= 10_000
    assert cache.size == sum(len(v) for _, v in cache.items())
    kept = [run_id for run_id, _ in cache.items()]
    assert kept == list(records)[-len(kept) :]
    assert 5 <= len(kept) < 30


def test_an_older_state_read_back_does_not_replace_a_newer_one() -> None:
    cache = RunCache(budget=1 << 20)
    assert cache.keep("r", _raw("r", 3, "completed"))
    assert not cache.keep("r", _raw("r", 2))
    assert not cache.keep("r", _raw("r", 3))
    assert revision(cache.raw("r") or b"") == 3
    assert cache.keep("r", _raw("r", 4, "running"))  # an operator reopened it


def test_the_run_status_is_read_without_parsing_whatever_the_input_holds() -> None:
    assert raw_status(_raw("r", 1)) == b"running"
    assert not looks_decided(_raw("r", 1))
    assert looks_decided(_raw("r", 2, "compensation_failed"))
    assert raw_status(b"not a run") == b""


async def test_a_caller_waiting_is_told_when_the_decided_state_is_read_back() -> None:
    """`save` keeps the decided state before the run settles what is still unknown; the
    caller is told the outcome when that state comes back from the log, not after."""
    runlog = RunLog(Connection("127.0.0.1:1"), "t", "g")
    decided = _raw("r", 5, "failed")
    waiting = asyncio.create_task(runlog.wait_finished("r", timeout_s=5))
    await asyncio.sleep(0)  # the caller waits from the start
    runlog.runs.keep("r", decided)  # as `save` does
    await runlog.observe("r", decided, partition=0, offset=7)
    run = await asyncio.wait_for(waiting, 1)
    assert run is not None
    assert run.status == "failed"
