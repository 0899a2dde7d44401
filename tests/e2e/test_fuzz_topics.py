"""Garbage in every topic the ecosystem's processes read, then 20 orders that all complete.

Seeded random records (the seed is printed; `MBS_FUZZ_SEED=N` replays its choices) go to
every partition of each unit's request, reply and dead-letter topics and of the platform
topics the processes replay: the private journey log, definitions, registry and
certifications (the gateway requires certification here, so it reads them). Random bytes,
empty and null values, JSON of the wrong shape, 100 KB values, JSON nested too deeply, keys
and header values not UTF-8 or null, header names aiokafka cannot decode, repeated or missing
ids, deadlines that are no number, `mbs-shadow` garbage, and the most dangerous kind: a valid
request with one broken header, or a broken value under the key of a real run or contract.
Notifications is down while wave one lands and the gateway restarts after it, so both meet
it at start; wave two hits the reply topics while the orders run. Then every request record
is in its unit's dead-letter topic with a reason, no process died or logged a traceback, the
orders complete and the run from before is still completed. Counts are printed."""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.record.default_records import _DefaultRecordBatchBuilderPy

import contracts
from mbs import wire as h
from mbs.kafka import UNDECODABLE, pass_undecodable
from mbs.unit.intake import read_headers
from tests.e2e import ecosystem as e2e
from tests.e2e.ecosystem import Ecosystem, order

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(900)]
SEED = int(os.environ.get("MBS_FUZZ_SEED") or random.SystemRandom().randrange(10**6))
WAVE_ONE, WAVE_TWO, JOURNEYS = 560, 60, 20
WEIGHTS = {"request": 5, "reply": 2, "dlq": 1, "platform": 15}  # per partition
CONTRACTS = contracts.all_contracts()
SERVED = {c.request_topic: c for c in CONTRACTS}
ORDER, C, SKU = {"order_id": "o-1"}, {"customer_id": "c-1"}, {"sku": "espresso-beans-1kg"}
SAMPLES: dict[str, dict[str, Any]] = {  # a valid request per capability
    "pricing.quote": {**SKU, "quantity": 1},
    "inventory.reserve": {**ORDER, **SKU, "quantity": 1},
    "inventory.release": {"reservation_id": "r-1"},
    "fraud.score": {**ORDER, **C, "amount": "10.00"},
    "payments.charge": {**ORDER, **C, "amount": "10.00", "card_token": "tok-4242"},
    "payments.refund": {"charge_id": "ch-1"},
    "shipping.book": {**ORDER, **SKU, "quantity": 1, "postcode": "10115"},
    "shipping.cancel": {"shipment_id": "s-1"},
    "notifications.send": {**ORDER, **C, "template": "order_shipped"},
}
NAMES = [h.MESSAGE_ID, h.CORRELATION_ID, h.DEADLINE, h.SHADOW, h.JOURNEY_ID, h.STEP, h.ATTEMPT]
NAMES += [h.CALLER, h.UNIT, h.TRACEPARENT, h.ERROR, h.COST, h.PRICE, h.REQUEST_ID, "content-type"]
ODD_VALUES: list[bytes | None] = [None, b"", b"\xff\xfe", b"\xc3(", b"NaN", b"-1", b"1e999"]
ODD_VALUES += [b"1", b"9" * 15, b"9" * 5000, b"soon", "²".encode(), b"true", b"1\x00garbage"]
ODD_VALUES += [b"application/json", b"text/plain", b"x" * 10_000]
BREAKS: list[tuple[str, bytes | None]] = [  # one of these makes a valid request unservable
    *[(h.MESSAGE_ID, v) for v in (b"\xff\xfe", None, b"a second, different id")],
    (h.CORRELATION_ID, b"another caller"),
    *[(h.DEADLINE, v) for v in (b"soon", b"-5", "²".encode(), b"9" * 5000)],
    *[(h.SHADOW, v) for v in (b"true", b"1\x00garbage")],
    (h.TRACEPARENT, b"00-\x80\x81"),
]
Headers = list[tuple[str, bytes | None]]
Where = tuple[str, int, int]  # topic, partition, offset


@dataclass
class Rec:
    topic: str
    partition: int
    kind: str  # request, reply, dlq, platform
    key: bytes | None
    value: bytes | None
    headers: Headers
    undecodable: bool = False  # a header name aiokafka cannot decode
    offset: int | None = None
    refused: str = ""  # why the broker refused it

    @property
    def where(self) -> Where:
        return (self.topic, self.partition, self.offset or 0)


class _RawName(str):
    """A header name not UTF-8 (aiokafka's Python batch builder calls `.encode`)."""

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return b"\xff\xfemb"


class Garbage:
    """Every record from one `random.Random`, so a seed replays the choices."""

    def __init__(self, rng: random.Random, real: dict[str, list[Any]]) -> None:
        self.rng = rng
        self.real = {t: [(r.partition, r.key, r.value) for r in rs if r.key and r.value]
                     for t, rs in real.items()}  # fmt: skip

    def value(self) -> bytes | None:
        rng = self.rng
        sample = json.dumps(rng.choice(list(SAMPLES.values()))).encode()
        makers: list[Callable[[], bytes | None]] = [
            *(lambda: rng.randbytes(rng.randint(1, 300)), lambda: b"", lambda: None),
            *(lambda: b"[1,2,3]", lambda: b'{"unexpected": true}', lambda: b"null"),
            lambda: sample,  # valid JSON, for some capability
            *(lambda: sample[: len(sample) // 2], lambda: sample.replace(b'"', b"\xff", 1)),
            lambda: rng.randbytes(100_000),
            lambda: json.dumps({"pad": "x" * 100_000}).encode(),
            lambda: b"[" * 50_000 + b"]" * 50_000,  # json.loads: RecursionError
            lambda: b'{"quantity": ' + b"9" * 5000 + b"}",  # int(): ValueError
        ]
        return rng.choice(makers)()

    def headers(self) -> Headers:
        rng = self.rng
        names = [*NAMES, "x-random", "ünïcode-name", ""]
        values = [*ODD_VALUES, rng.randbytes(16), str(rng.random()).encode()]
        return [(rng.choice(names), rng.choice(values)) for _ in range(rng.randint(0, 6))]

    def record(self, topic: str, partition: int, kind: str) -> Rec:
        rng = self.rng
        key = rng.choice([None, rng.randbytes(8), b"\xff" + rng.randbytes(4), b"journey-1"])
        rec = Rec(topic, partition, kind, key, self.value(), self.headers())
        if kind == "request" and rng.random() < 0.35:  # almost right: one broken header
            rec.value = json.dumps(SAMPLES[SERVED[topic].capability]).encode()
            rec.headers = [(h.MESSAGE_ID, rng.randbytes(8).hex().encode())]
            rec.headers += [(h.CORRELATION_ID, b"c-fuzz"), (h.DEADLINE, b"9" * 13)]
            rec.headers += [(h.JOURNEY_ID, b"fuzz"), rng.choice(BREAKS)]
        elif kind == "platform" and self.real.get(topic) and rng.random() < 0.3:
            rec.partition, rec.key, real = rng.choice(self.real[topic])
            rec.value = rng.choice(  # the key of a real record, a value that cannot be valid
                [real[: len(real) // 2], real.replace(b"{", b"\xff{", 1), b"[" + real + b"]"]
            )
        rec.undecodable = rng.random() < 0.03
        if kind == "request" and servable(rec):
            rec.headers.append((h.MESSAGE_ID, b"and another id"))
        return rec


def servable(rec: Rec) -> bool:
    """Would the unit serve this record (what the test must never send, a real request)?"""
    judged = read_headers(rec.headers)
    ids = judged.text.get(h.MESSAGE_ID) and judged.text.get(h.CORRELATION_ID)
    if rec.undecodable or judged.problems or not ids:
        return False
    try:
        body = json.loads(rec.value or b"")
    except (ValueError, RecursionError):
        return False
    return bool(jsonschema.Draft202012Validator(SERVED[rec.topic].request).is_valid(body))


async def produce(bootstrap: str, records: list[Rec]) -> None:
    """Each record on its own, so one the broker refuses (a compacted topic takes no record
    without a key) takes no other with it; offsets noted."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        for rec in records:
            try:
                if rec.undecodable or (rec.key is None and rec.value is None):
                    meta = await _raw(producer, rec)
                else:
                    args = (rec.topic, rec.value, rec.key, rec.partition)
                    meta = await producer.send_and_wait(*args, headers=rec.headers)
                rec.offset = meta.offset
            except Exception as exc:
                rec.refused = type(exc).__name__
    finally:
        await producer.stop()


async def _raw(producer: AIOKafkaProducer, rec: Rec) -> Any:
    batch = producer.create_batch()
    batch._builder = _DefaultRecordBatchBuilderPy(  # the C builder insists on real text
        2, 0, is_transactional=0, producer_id=-1, producer_epoch=-1, base_sequence=0,
        batch_size=16384,
    )  # fmt: skip
    headers = [(_RawName("x") if rec.undecodable else n, v) for n, v in rec.headers[:1]]
    batch.append(key=rec.key, value=rec.value, timestamp=None, headers=headers or [("a", b"b")])
    return await (await producer.send_batch(batch, rec.topic, partition=rec.partition))


async def look(bootstrap: str, topics: list[str]) -> tuple[dict[str, list[int]], dict[Any, int]]:
    """Partitions of those `topics` that exist, and their end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        there = await consumer.topics()
        parts = {t: sorted(consumer.partitions_for_topic(t) or ()) for t in topics if t in there}
        tps = [TopicPartition(t, p) for t, ps in parts.items() for p in ps]
        return parts, (dict(await consumer.end_offsets(tps)) if tps else {})
    finally:
        await consumer.stop()


async def read(bootstrap: str, starts: dict[Any, int], enough: Any = None) -> list[Any]:
    """Records from `starts` on (stepping over those aiokafka cannot decode: we wrote some),
    until caught up and `enough(records)` says so (no `enough`: once caught up), or 2 min."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: list[Any] = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                found.append(await asyncio.wait_for(consumer.getone(), 1.0))
            except TimeoutError:  # caught up for now
                if enough is None or enough(found):
                    break
            except UNDECODABLE:
                await pass_undecodable(consumer)
    finally:
        await consumer.stop()
    return found


def sources(records: list[Any]) -> dict[Where, list[str]]:
    """Dead letters and quarantine copies by the record they stand for: their reasons."""
    found: dict[Where, list[str]] = {}
    for record in records:
        hdrs = {k: (v or b"").decode(errors="replace") for k, v in record.headers}
        try:  # not so for garbage we wrote to a dead-letter topic ourselves
            at = [hdrs[f"mbs-source-{n}"] for n in ("topic", "partition", "offset")]
            found.setdefault((at[0], int(at[1]), int(at[2])), []).append(hdrs[h.ERROR])
        except (KeyError, ValueError):
            continue
    return found


def tracebacks(log_dir: Path) -> dict[str, str]:
    """Per process log, its first traceback (a crash, or a record that got past the guards)."""
    texts = {log.name: log.read_text(errors="replace") for log in log_dir.glob("*.log")}
    return {n: t[t.index("Traceback") - 300 :][:3000] for n, t in texts.items() if "Traceback" in t}


@dataclass
class Topics:
    """What the processes read, by kind, with their partitions."""

    kinds: dict[str, str]
    parts: dict[str, list[int]]
    private: list[str]
    dlqs = [c.dlq_topic for c in CONTRACTS]

    @classmethod
    async def of(cls, eco: Ecosystem, bootstrap: str) -> Topics:
        names = ("MBS_JOURNEYS_TOPIC", "MBS_DEFINITIONS_TOPIC", "MBS_CONTRACTS_TOPIC")
        private = [eco.topics[k] for k in names] + [eco.extra_env["MBS_CERTIFICATIONS_TOPIC"]]
        kinds = {c.request_topic: "request" for c in CONTRACTS}
        kinds |= {c.reply_topic: "reply" for c in CONTRACTS}
        kinds |= {c.dlq_topic: "dlq" for c in CONTRACTS} | dict.fromkeys(private, "platform")
        parts, _ = await look(bootstrap, list(kinds))
        assert all(parts.get(t) for t in kinds), f"topics without partitions: {parts}"
        return cls(kinds, parts, private)

    def slots(self, *kinds: str) -> list[tuple[str, int]]:
        return [(t, p) for t, ps in self.parts.items() for p in ps if self.kinds[t] in kinds]

    def wave_one(self, garbage: Garbage) -> list[Rec]:
        """A record on every partition, the nastiest on every request and reply topic (a
        header name aiokafka cannot decode, an id not UTF-8), then random ones, weighted."""
        rng, kinds, slots = garbage.rng, self.kinds, self.slots(*WEIGHTS)
        wave = [garbage.record(t, p, kinds[t]) for t, p in slots]
        for topic in sorted({t for t, _ in self.slots("request", "reply")}):
            for undecodable, headers in ((True, []), (False, [(h.MESSAGE_ID, b"\xff\xfe")])):
                rec = garbage.record(topic, rng.choice(self.parts[topic]), kinds[topic])
                rec.undecodable, rec.headers = undecodable, headers + rec.headers
                wave.append(rec)
        weights = [WEIGHTS[kinds[t]] for t, _ in slots]
        for topic, partition in rng.choices(slots, weights, k=WAVE_ONE - len(wave)):
            wave.append(garbage.record(topic, partition, kinds[topic]))
        too_large = garbage.record(rng.choice(sorted(SERVED)), 0, "request")
        too_large.value = b"x" * 1_000_100  # the unit's limit is 1 000 000
        rng.shuffle(wave)
        return [*wave, too_large]


async def test_garbage_in_every_topic_then_twenty_orders_complete(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    print(f"\nfuzz seed {SEED} (replay: MBS_FUZZ_SEED={SEED})")
    certified = {"MBS_REQUIRE_CERTIFICATION": "true"}  # the gateway reads certifications
    certified["MBS_CERTIFICATIONS_TOPIC"] = f"test.certifications.{uuid.uuid4().hex[:10]}"
    started, eco = time.monotonic(), Ecosystem(kafka_bootstrap, tmp_path, extra_env=certified)
    try:
        await _run(eco, kafka_bootstrap, random.Random(SEED))
    finally:
        eco.stop()
        print(f"took {time.monotonic() - started:.0f} s in all (seed {SEED})")


async def _run(eco: Ecosystem, bootstrap: str, rng: random.Random) -> None:
    assert eco.group is not None
    for c in CONTRACTS:
        assert jsonschema.Draft202012Validator(c.request).is_valid(SAMPLES[c.capability])
    units = (*e2e.UNITS, "paylater")  # every unit's request topics are served
    eco.start_units(*units)
    url = eco.start_gateway("gateway")
    for unit in units:
        eco.wait_serving(unit, [c.request_topic for c in CONTRACTS if c.unit == unit])
    baseline = (await asyncio.to_thread(e2e.run_journey, url, order(0))).json()
    assert baseline["status"] == "completed", baseline
    topics = await Topics.of(eco, bootstrap)
    starts = {t: {TopicPartition(t, p): 0 for p in topics.parts[t]} for t in topics.private}
    garbage = Garbage(rng, {t: await read(bootstrap, starts[t]) for t in topics.private})
    quarantines = [f"{t}.dlq" for t in topics.private]
    _, before = await look(bootstrap, topics.dlqs + quarantines)
    wave = topics.wave_one(garbage)
    eco.group.kill(eco.process("notifications"))  # it meets its garbage at start
    await produce(bootstrap, wave)
    requests = {r.where for r in wave if r.kind == "request" and not r.refused}
    await _dead_letters(bootstrap, before, {w for w in requests if "notif" not in w[0]})
    eco.group.check_alive()
    reserve = {"order_id": "fuzz-q", "sku": "espresso-beans-1kg", "quantity": 1}
    quoted = await asyncio.to_thread(e2e.run_journey, url, reserve, "quote-and-reserve")
    assert quoted.json()["status"] == "completed", f"first gateway, after: {quoted.text}"
    eco.group.kill(eco.process("gateway"))
    eco.start_units("notifications")
    url, restarted = eco.start_gateway("gateway-restarted"), time.monotonic()
    eco.wait_serving("notifications", ["notifications.send.v1"])
    dead = await _dead_letters(bootstrap, before, requests)
    slots = rng.choices(topics.slots("reply"), k=WAVE_TWO)
    second = [garbage.record(t, p, "reply") for t, p in slots]
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        orders = (e2e.submit(client, "order-to-delivery", order(i)) for i in range(JOURNEYS))
        _, locations = await asyncio.gather(produce(bootstrap, second), asyncio.gather(*orders))
        runs = await e2e.wait_all(client, list(locations), 180)
        run = f"/journeys/order-to-delivery/runs/{baseline['run_id']}"
        kept = await _known(client, run, restarted)
        metrics = (await client.get("/metrics/", headers=e2e.ADMIN)).text
    _report(wave + second, dead, await _quarantined(bootstrap, quarantines), metrics)
    failed = [r for r in runs.values() if r["status"] != "completed"]
    print(f"journeys completed: {len(runs) - len(failed)} of {JOURNEYS}")
    assert not failed, failed
    assert kept.json()["status"] == "completed", f"a garbage record replaced it: {kept.text}"
    gone = [(c.name, c.popen.returncode) for c in eco.group.children if not c.alive()]
    assert not gone, f"processes died: {gone}"
    found = tracebacks(eco.log_dir)
    assert not found, "\n\n".join(f"== {name}\n{text}" for name, text in found.items())


async def _known(client: httpx.AsyncClient, run: str, since: float) -> httpx.Response:
    """The run from before, once the restarted gateway has replayed the journey log."""
    while (found := await client.get(run, headers=e2e.CALLER)).status_code == 404:
        assert time.monotonic() - since < 90, f"the run is lost: {found.text}"
        await asyncio.sleep(0.2)
    print(f"the run from before the garbage is known {time.monotonic() - since:.1f} s on")
    return found


async def _dead_letters(
    bootstrap: str, before: dict[Any, int], wanted: set[Where]
) -> dict[Where, list[str]]:
    """The unit dead letters since `before`, once each `wanted` record has one."""
    starts = {tp: o for tp, o in before.items() if tp.topic in Topics.dlqs}
    found = sources(await read(bootstrap, starts, lambda got: wanted <= set(sources(got))))
    missing = sorted(wanted - set(found))
    assert not missing, f"{len(missing)} request records never dead-lettered: {missing[:10]}"
    return found


async def _quarantined(bootstrap: str, names: list[str]) -> dict[Where, list[str]]:
    """The quarantine copies in the platform topics' `<topic>.dlq`, if there are any."""
    _, there = await look(bootstrap, names)
    return sources(await read(bootstrap, dict.fromkeys(there, 0)))


def _report(
    sent: list[Rec], dead: dict[Where, list[str]], copies: dict[Where, list[str]], metrics: str
) -> None:
    kinds, hit = dict(Counter(r.kind for r in sent)), len({r.where[:2] for r in sent})
    print(f"records sent: {len(sent)} {kinds} on {hit} topic partitions")
    print(f"refused by the broker: {dict(Counter((r.kind, r.refused) for r in sent if r.refused))}")
    print(f"header names aiokafka cannot decode: {sum(r.undecodable for r in sent)}")
    requests = [dead.get(r.where, []) for r in sent if r.kind == "request" and not r.refused]
    reasons, twice = Counter(d[0] for d in requests if d), sum(len(d) > 1 for d in requests)
    print(f"dead-lettered: {sum(map(bool, requests))} of {len(requests)} request records")
    print(f"  by reason {dict(reasons)}; more than once: {twice}")
    platform = [r for r in sent if r.kind == "platform" and not r.refused]
    kept = Counter(r.topic for r in platform if r.where in copies)
    print(f"quarantined: {sum(kept.values())} of {len(platform)} platform records {dict(kept)}")
    for rec in [r for r in platform if r.where not in copies][:8]:
        print(f"  not quarantined: {rec.where} key={rec.key!r:.40} value={rec.value!r:.60}")
    prefix = "mbs_records_quarantined_total"
    print("gateway:", [line for line in metrics.splitlines() if line.startswith(prefix)])
