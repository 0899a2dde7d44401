"""The quarantine of records no reader can use, in memory: every platform table and the
journey log apply what they can read and skip, count and copy the rest; the record reader
gets past records the Kafka client itself cannot decode, losing none around them."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

import contracts
from gateway.catalog import Catalog
from gateway.definition import load_all
from gateway.definition.store import DefinitionStore
from gateway.executor import Executor
from gateway.models import JourneyRun
from gateway.runlog import RunLog
from mbs.contract import Certifications, RegistryView, is_certified
from mbs.contract.certification import certification_key, fingerprint
from mbs.kafka import BadRecord, Connection, Quarantine, RecordReader, admit, verdict
from mbs.kafka.quarantine import Copy

NOWHERE = Connection("127.0.0.1:1")  # never dialled: nothing here starts a client
TOPIC = "test.table"


def record(
    offset: int, key: bytes | None, value: bytes | None, partition: int = 0, topic: str = TOPIC
) -> Any:
    return ConsumerRecord(topic, partition, offset, 0, 0, key, value, None, -1, -1, ())


class Captured:
    """A copier that keeps the copies (and can be told to fail)."""

    def __init__(self, fail: bool = False, closing_s: float = 0.0) -> None:
        self.copies: list[Copy] = []
        self.fail = fail
        self.closed = 0
        self.closing_s = closing_s
        self.closing = False

    async def __call__(self, copy: Copy) -> None:
        if self.fail:
            raise ConnectionError("broker gone")
        self.copies.append(copy)

    async def close(self) -> None:
        self.closing = True
        await asyncio.sleep(self.closing_s)  # a producer takes a while to close
        self.closing = False
        self.closed += 1


def counted(topic: str, reason: str) -> float:
    labels = {"topic": topic, "reason": reason}
    return REGISTRY.get_sample_value("mbs_records_quarantined_total", labels) or 0.0


def contract_json(index: int = 0, **changes: Any) -> tuple[bytes, bytes]:
    """A shipped contract's key and JSON, with `changes` made to the JSON."""
    contract = contracts.all_contracts()[index]
    return contract.key.encode(), json.dumps(
        {**contract.model_dump(mode="json"), **changes}
    ).encode()


@pytest.mark.parametrize(
    ("error_of", "reason", "says"),
    [
        (lambda: RegistryView().apply("k", os.urandom(64) + b"\xff"), "not_json", "not JSON"),
        (lambda: RegistryView().apply("k", b"[1,2,3]"), "schema_invalid", "Contract"),
        (lambda: RegistryView().apply("k", b"null"), "schema_invalid", "object"),
        (lambda: RegistryView().apply(*contract_json(version="x")), "schema_invalid", "semver"),
        (lambda: RegistryView().apply("other@1.0.0", contract_json()[1]), "refused", "filed"),
        (b"\xff".decode, "unreadable", "UTF-8"),
    ],
)
def test_the_reason_is_one_an_operator_understands(error_of: Any, reason: str, says: str) -> None:
    with pytest.raises(Exception) as raised:  # noqa: PT011 - any error a reader may meet
        error_of()
    got_reason, detail = verdict(raised.value)
    assert got_reason == reason
    assert says in detail
    assert len(detail) <= 300
    assert "\n" not in detail


async def test_a_table_applies_what_it_can_read_and_quarantines_the_rest() -> None:
    view = RegistryView()
    copier = Captured()
    quarantine = Quarantine(TOPIC, copier=copier)
    good_key, good = contract_json(0)
    other_key, other = contract_json(1)
    feed = [
        record(0, good_key, good),
        record(1, b"garbage", os.urandom(100)),
        record(2, b"list", b"[1,2,3]"),
        record(3, b"\xff\xfe", other),  # a key that is not UTF-8
        record(4, None, other),  # no key
        record(5, other_key, contract_json(1, pricing={"price_per_call": "x"})[1]),
        record(6, other_key, b'{"a":"' + b"x" * 2_000_000 + b'"}'),  # huge
        record(7, other_key, other),
        record(8, good_key, None),  # a tombstone retires a version: applied
    ]
    before = {r: counted(TOPIC, r) for r in ("not_json", "schema_invalid", "unreadable")}
    applied = [admit(r, view.apply, quarantine) for r in feed]
    assert applied == [True, False, False, False, False, False, False, True, True]
    assert sorted(view.by_key) == [other_key.decode()]
    assert quarantine.counts == {"not_json": 1, "schema_invalid": 3, "unreadable": 2}
    for reason, n in quarantine.counts.items():
        assert counted(TOPIC, reason) == before[reason] + n
    await quarantine.flush()
    by_key = {c.key: c for c in copier.copies}
    assert sorted(by_key) == [b"0:1", b"0:2", b"0:3", b"0:4", b"0:5", b"0:6"]
    copy = by_key[b"0:3"]
    assert copy.topic == f"{TOPIC}.dlq"
    assert copy.value == other
    assert dict(copy.headers) == {
        "mbs-error": b"unreadable",
        "mbs-error-detail": b"the key is not UTF-8 text: b'\\xff\\xfe'",
        "mbs-source-topic": TOPIC.encode(),
        "mbs-source-partition": b"0",
        "mbs-source-offset": b"3",
        "mbs-source-key": b"\xff\xfe",
    }
    assert "mbs-source-key" not in dict(by_key[b"0:4"].headers)
    assert len(by_key[b"0:6"].value) > 2_000_000
    assert copier.closed >= 1, "the producer goes once nothing is left to copy"


async def test_a_record_read_again_is_reported_once_and_a_failed_copy_is_only_logged() -> None:
    copier = Captured(fail=True)
    quarantine = Quarantine(TOPIC, copier=copier)
    bad = record(3, b"k", b"{")
    assert not admit(bad, RegistryView().apply, quarantine)
    assert not admit(bad, RegistryView().apply, quarantine)  # the next replay
    assert quarantine.counts == {"not_json": 1}
    await quarantine.flush()
    copier.fail = False
    admit(record(4, b"k", b"}"), RegistryView().apply, quarantine)
    await quarantine.close()
    assert [c.key for c in copier.copies] == [b"0:4"], "the reader went on; later copies too"


async def test_a_record_refused_while_the_producer_closes_is_still_copied() -> None:
    copier = Captured(closing_s=0.05)
    quarantine = Quarantine(TOPIC, copier=copier)
    admit(record(1, b"k", b"{"), RegistryView().apply, quarantine)
    deadline = asyncio.get_running_loop().time() + 5
    while not copier.closing:  # copied; the producer is closing
        assert asyncio.get_running_loop().time() < deadline, "the producer never closed"
        await asyncio.sleep(0)
    admit(record(2, b"k", b"{"), RegistryView().apply, quarantine)
    await quarantine.flush()
    assert [c.key for c in copier.copies] == [b"0:1", b"0:2"]


def test_without_an_event_loop_nothing_is_copied_and_nothing_raises() -> None:
    quarantine = Quarantine(TOPIC, copier=Captured())
    assert not admit(record(0, b"k", b"x"), RegistryView().apply, quarantine)
    assert quarantine.counts == {"not_json": 1}


def test_certifications_keep_only_what_is_a_certification() -> None:
    certs = Certifications(NOWHERE, "test.certs")
    quarantine = Quarantine("test.certs")
    contract = contracts.all_contracts()[0]
    key = certification_key(contract).encode()
    good = (
        b'{"passed": true, "contract_sha256": "%s", "certified_at": "now"}'
        % fingerprint(contract).encode()
    )
    feed = [
        (b"[1]", False),
        (b'{"passed": "x", "contract_sha256": "y"}', False),
        (b'{"passed": "true", "contract_sha256": "y"}', False),  # no coercion
        (b'{"passed": true}', False),
        (good, True),
        (b"\x00\x01", False),
    ]
    for offset, (value, ok) in enumerate(feed):
        assert admit(record(offset, key, value), certs.apply, quarantine) is ok, value
    assert certs.records[key.decode()]["certified_at"] == "now", "other fields are kept"
    assert is_certified(certs.records, contract)
    assert quarantine.counts == {"schema_invalid": 4, "not_json": 1}


def test_a_definition_the_catalog_refuses_never_goes_live() -> None:
    catalog = Catalog(contracts.all_contracts())
    store = DefinitionStore(NOWHERE, "test.defs", catalog)
    quarantine = Quarantine("test.defs")
    shipped = load_all(catalog)["order-to-delivery"]
    unknown = shipped.model_dump(mode="json") | {"version": 2}
    unknown["steps"][-1]["capability"] = "nobody.offers"
    upstream = shipped.model_dump(mode="json") | {"version": 6}
    upstream["steps"][0]["capability"] = "nobody.offers"  # later steps read its reply
    feed = [
        (b"order-to-delivery@1", shipped.model_dump_json().encode(), True),
        (b"order-to-delivery@2", json.dumps(unknown).encode(), False),
        (b"order-to-delivery@3", shipped.model_dump_json().encode(), False),  # wrong key
        (b"order-to-delivery@4", b"\x89PNG", False),
        (b"order-to-delivery@5", b'{"name": "order-to-delivery"}', False),
        (b"order-to-delivery@6", json.dumps(upstream).encode(), False),
    ]
    for offset, (key, value, ok) in enumerate(feed):
        assert admit(record(offset, key, value), store.apply, quarantine) is ok, key
    assert store.latest("order-to-delivery") == shipped
    assert "unknown capability 'nobody.offers'" in store.refused["order-to-delivery@2"]
    assert quarantine.counts == {"refused": 3, "not_json": 1, "schema_invalid": 1}


class Engine:
    """Records which runs the executor acts on."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.revisions: list[int] = []

    async def run(self, definition: Any, run: JourneyRun, *, fresh: bool = True) -> None:
        self.ran.append(run.run_id)
        self.revisions.append(run.revision)


def run_record(run_id: str, status: str = "running", revision: int = 2) -> bytes:
    run = JourneyRun(
        run_id=run_id,
        journey="order-to-delivery",
        version=1,
        status=status,  # type: ignore[arg-type]
        input={},
        steps=[],
        created_ms=0,
        deadline_ms=1,
        revision=revision,
    )
    return run.model_dump_json().encode()


async def test_a_replay_resumes_every_run_around_bad_records() -> None:
    shipped = load_all(Catalog(contracts.all_contracts()))["order-to-delivery"]
    runlog = RunLog(NOWHERE, "test.journeys", "test.group")
    engine = Engine()
    executor = Executor(engine, runlog, {("order-to-delivery", 1): shipped})  # type: ignore[arg-type]
    feed: list[tuple[str, bytes | None]] = [
        ("r1", run_record("r1")),
        ("r2", run_record("r2")),
        ("r3", run_record("r3", "completed")),
        ("garbage", os.urandom(80)),
        ("r2", b"[1,2,3]"),  # not a run: r2's state before it stands
        ("r4", run_record("r4")),
        ("r4", b'{"run_id":"r4","revision":3}'),  # looks saved, is not: r4 is lost, alone
        ("r5", run_record("r1")),  # another run's state filed under r5
        ("", None),  # a record with nothing to act on (an unreadable one)
    ]
    end = len(feed) + 2  # two transaction markers after the last record: no record there
    await executor.on_assigned({0: end})
    for offset, (run_id, value) in enumerate(feed):
        await executor.on_record(run_id, value, 0, offset)
    await executor.on_position(0, len(feed))
    await asyncio.sleep(0)
    assert engine.ran == [], "resumed before the replay reached the partition's end"
    await executor.on_position(0, end)  # the reader's position passes the markers
    await asyncio.sleep(0)
    assert sorted(engine.ran) == ["r1", "r2"]
    assert runlog.quarantine.counts == {"not_json": 1, "schema_invalid": 2, "refused": 1}
    await executor.stop()


async def test_the_observer_answers_none_for_a_run_it_cannot_read() -> None:
    runlog = RunLog(NOWHERE, "test.journeys", "test.group")
    await runlog.observe("r1", run_record("r1"), 0, 0)
    await runlog.observe("r1", b"\xff garbage", 0, 1)  # read at once, skipped
    await runlog.observe("r2", b'{"run_id":"r2","revision":1}', 0, 2)  # kept raw
    await runlog.observe("r3", run_record("r1"), 0, 3)
    run = runlog.get("r1")
    assert run is not None
    assert run.run_id == "r1"
    assert runlog.get("r2") is None
    assert runlog.get("r3") is None
    assert runlog.quarantine.counts == {"not_json": 1, "refused": 1}


POISON = object()


class PoisonedConsumer:
    """aiokafka on a record it cannot decode: raises at it on every fetch, and drops what
    the failing fetch had taken (of that and every other partition)."""

    def __init__(self, logs: dict[TopicPartition, dict[int, object]]) -> None:
        self.logs = logs
        self.positions = dict.fromkeys(logs, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.logs)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: max(self.logs[tp]) + 1 for tp in tps}

    async def getmany(
        self, *tps: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]:
        out = {}
        for tp in tps or sorted(self.logs):
            taken = []
            for offset in sorted(o for o in self.logs[tp] if o >= self.positions[tp]):
                if self.logs[tp][offset] is POISON:
                    self.positions[tp] = offset
                    raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
                taken.append(self.logs[tp][offset])
                if max_records is not None and len(taken) >= max_records:
                    break
            if taken:
                out[tp] = taken
                self.positions[tp] = taken[-1].offset + 1
        return out


async def test_the_reader_gets_past_records_the_client_cannot_decode() -> None:
    a, b = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)

    def good(tp: TopicPartition, offset: int) -> Any:
        return record(offset, b"k", b"v%d" % offset, tp.partition)

    logs: dict[TopicPartition, dict[int, object]] = {
        a: {o: POISON if o == 4 else good(a, o) for o in range(10)},
        # compacted gaps, two undecodable records in a row, one at the very end
        b: {0: good(b, 0), 2: POISON, 3: POISON, 7: good(b, 7), 9: POISON},
    }
    quarantine = Quarantine(TOPIC)
    reader = RecordReader(PoisonedConsumer(logs), quarantine)
    for tp in logs:
        reader.seek(tp, 0)
    seen: dict[TopicPartition, list[tuple[int, bytes | None]]] = {a: [], b: []}
    for _ in range(20):
        for tp, records in (await reader.getmany(timeout_ms=0)).items():
            seen[tp] += [(r.offset, r.value) for r in records]
    assert seen[a] == [(o, None if o == 4 else b"v%d" % o) for o in range(10)]
    assert seen[b] == [(0, b"v0"), (3, None), (7, b"v7"), (9, None)]
    assert quarantine.counts == {"unreadable": 3}
    assert reader.next == {a: 10, b: 10}


def test_a_bad_record_names_its_reason() -> None:
    refused = BadRecord("refused", "a journey calling nobody")
    assert verdict(refused) == ("refused", "a journey calling nobody")


async def test_a_replay_read_twice_from_its_start_resumes_the_newest_state_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The fetcher may start on a partition before the replay's own seek to its beginning:
    the first records then come twice. Neither copy is an older state written later."""
    shipped = load_all(Catalog(contracts.all_contracts()))["order-to-delivery"]
    runlog = RunLog(NOWHERE, "test.journeys", "test.group")
    engine = Engine()
    executor = Executor(engine, runlog, {("order-to-delivery", 1): shipped})  # type: ignore[arg-type]
    feed = [run_record("r1", revision=n) for n in (1, 2, 3)]
    executor.assigning({0})
    for offset, value in enumerate(feed[:2]):  # fetched before the seek
        await executor.on_record("r1", value, 0, offset)
    await executor.on_assigned({0: len(feed)})
    for offset, value in enumerate(feed):  # from the beginning again
        await executor.on_record("r1", value, 0, offset)
    await executor.on_position(0, len(feed))
    await asyncio.sleep(0)
    assert (engine.ran, engine.revisions) == (["r1"], [3]), "not resumed from its newest state"
    assert "older state" not in caplog.text
    await executor.stop()
