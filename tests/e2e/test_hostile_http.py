"""Hostile HTTP against a live gateway process on the real broker: huge bodies with and
without a key, and a broker outage (SIGSTOP) during which readiness and new runs say so at
once instead of hanging."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mbs.broker import LocalBroker
from mbs.settings import Settings
from tests.e2e.ecosystem import ADMIN, CALLER, Ecosystem, order, run_journey

pytestmark = pytest.mark.kafka
MB = 1024 * 1024


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("hostile-http"))
    try:
        ecosystem.start_units("pricing", "inventory", "payments", "fraud", "shipping")
        ecosystem.start_units("notifications", "fastship")
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakRss:
    """Samples a process's resident memory every 20 ms until stopped; the peak, in MB."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, _rss_mb(pid), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb(self.pid))


def _upload(url: str, headers: dict[str, str], size: int) -> tuple[int, float]:
    """POST `size` bytes of junk in 1 MiB chunks; the status and the seconds it took. The
    server may answer and close before the whole body is sent."""

    def chunks() -> Iterator[bytes]:
        block = b"x" * MB
        for _ in range(size // MB):
            yield block

    started = time.monotonic()
    try:
        response = httpx.post(
            f"{url}/journeys/order-to-delivery",
            content=chunks(),
            headers={**headers, "Content-Type": "application/json"},
            timeout=60,
        )
        status = response.status_code
    except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
        status = -1  # the server closed the connection mid-upload: refused, not read
    return status, time.monotonic() - started


@pytest.mark.parametrize(
    ("who", "status"), [("no key", 401), ("caller", 413)], ids=["no-key", "caller-key"]
)
def test_a_50_mb_body_is_refused_at_once_and_costs_the_gateway_nothing(
    eco: Ecosystem, who: str, status: int, record_property: pytest.RecordProperty
) -> None:
    url = eco.gateways["gateway"]
    pid = eco.process("gateway").popen.pid
    before = _rss_mb(pid)
    headers = {} if who == "no key" else CALLER
    with PeakRss(pid) as rss:
        answered, seconds = _upload(url, headers, 50 * MB)
        healthy = httpx.get(f"{url}/healthz", timeout=5).status_code
    print(
        f"{who}: {answered} in {seconds:.2f}s; gateway RSS {before:.0f} -> peak {rss.peak:.0f} MB"
    )
    record_property("peak_rss_mb", round(rss.peak, 1))
    assert answered in (status, -1), answered
    assert seconds < 10, f"refusing took {seconds:.1f}s"
    assert healthy == 200
    assert rss.peak - before < 20, f"RSS grew {before:.0f} -> {rss.peak:.0f} MB"
    assert run_journey(url, order(1)).json()["status"] == "completed"


def test_during_a_broker_outage_readiness_and_new_runs_say_so_at_once(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    assert httpx.get(f"{url}/readyz").status_code == 200
    broker = LocalBroker(Settings()).status().pid
    assert broker is not None, "the shared local broker runs this test"
    os.kill(broker, signal.SIGSTOP)
    try:
        started = time.monotonic()
        while httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
            assert time.monotonic() - started < 10, "readyz still 200 10 s into the outage"
            time.sleep(0.2)
        noticed = time.monotonic() - started
        readiness = httpx.get(f"{url}/readyz", timeout=5).json()
        asked = time.monotonic()
        refused = httpx.post(
            f"{url}/journeys/order-to-delivery", json=order(2), headers=CALLER, timeout=30
        )
        answered_in = time.monotonic() - asked
    finally:
        os.kill(broker, signal.SIGCONT)
    print(
        f"readyz 503 after {noticed:.1f}s; "
        f"POST answered {refused.status_code} in {answered_in:.1f}s"
    )
    assert readiness["ready"] is False
    assert readiness["kafka_reachable"] is False
    assert refused.status_code == 503, refused.text
    assert refused.headers["Retry-After"]
    assert answered_in < 7
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
        assert time.monotonic() < deadline, "not ready 60 s after the broker came back"
        time.sleep(0.5)
    assert run_journey(url, order(3)).json()["status"] == "completed"


def test_an_input_too_large_for_the_journey_log_is_refused_before_anything_runs(
    eco: Ecosystem,
) -> None:
    """Under the body limit, over the input's share of the run record: 413, and no run."""
    url = eco.gateways["gateway"]
    big = order(4, customer_id="c" * 900_000)
    response = httpx.post(f"{url}/journeys/order-to-delivery", json=big, headers=CALLER, timeout=30)
    assert response.status_code == 413, response.text
    assert "journey log" in response.json()["detail"]
    assert "location" not in response.headers


def test_a_yaml_alias_bomb_is_refused_at_once(eco: Ecosystem) -> None:
    url = eco.gateways["gateway"]
    pid = eco.process("gateway").popen.pid
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    before = _rss_mb(pid)
    with PeakRss(pid) as rss:
        response = httpx.put(f"{url}/journeys/bomb", content=bomb, headers=ADMIN, timeout=30)
    assert len(bomb) < 700
    assert response.status_code == 400, response.text
    assert "anchors and aliases" in response.json()["detail"]
    assert rss.peak - before < 10
