"""A partner in another language joins from the published documents alone (issue 15).

tests/partner_node/ is FastShip in Node.js (kafkajs + ajv), written only from
contracts/published: PARTNERS.md, the AsyncAPI document and the JSON Schemas, read at run
time. It builds its contract file from them (equal to the one the registry holds), registers
it over HTTP with its partner key, passes the conformance kit (`mbs contracts verify`, its
deadline and repeat checks included) and serves a live journey through the gateway while
the Python FastShip stays down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mbs import Contract
from mbs.kafka import Connection, ensure_topics
from tests.conftest import require_tool
from tests.e2e.ecosystem import UNITS, Ecosystem, order, run_journey, steps_of

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[2]
PARTNER = ROOT / "tests" / "partner_node"
PUBLISHED = ROOT / "contracts" / "published"
FASTSHIP = ROOT / "contracts" / "partners" / "fastship.json"
PARTNER_KEY = {"X-API-Key": "dev-fastship-key"}
NPM_TIMEOUT_S = 240


def node_modules() -> Path:
    """`npm ci` of the partner's lockfile into the cache, once per lockfile (from the npm
    registry: CI machines reach it)."""
    node = require_tool("node", "install Node.js 18+ (https://nodejs.org)")
    npm = require_tool("npm", "install npm with Node.js")
    lock = (PARTNER / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("MBS_CACHE_DIR") or Path.home() / ".cache" / "mbs")
    folder = cache / "partner_node" / hashlib.sha256(lock).hexdigest()[:16]
    if not (folder / "node_modules" / ".package-lock.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(PARTNER / name, folder / name)
        done = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, f"npm ci failed:\n{done.stderr[-2000:]}"
    assert node
    return folder / "node_modules"


def node(modules: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODE_PATH": str(modules)}
    return subprocess.run(
        ["node", *args], env=env, capture_output=True, text=True, check=False, timeout=30
    )


@pytest.fixture(scope="module")
def eco(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ecosystem]:
    """Every in-house unit and a gateway; FastShip is not started: the Node partner serves."""
    modules = node_modules()
    ecosystem = Ecosystem(kafka_bootstrap, tmp_path_factory.mktemp("eco-node"))
    ecosystem.extra_env["NODE_PATH"] = str(modules)
    try:
        ecosystem.start_units(*(u for u in UNITS if u != "fastship"))
        ecosystem.start_gateway()
        yield ecosystem
    finally:
        ecosystem.stop()


@pytest.fixture(scope="module")
def partner(eco: Ecosystem) -> Iterator[Path]:
    """The Node partner, serving once its consumer group holds the request topics (created
    first, as `mbs partners add` does: a partner creates no topics)."""
    offered = [Contract.model_validate(c) for c in json.loads(FASTSHIP.read_text())]
    topics = [t for c in offered for t in (c.request_topic, c.dlq_topic, c.reply_topic)]
    asyncio.run(ensure_topics(Connection(eco.bootstrap), topics))
    log = eco.log_dir / "partner-node.log"
    env = {
        **os.environ,
        "NODE_PATH": eco.extra_env["NODE_PATH"],
        "KAFKAJS_NO_PARTITIONER_WARNING": "1",
        "MBS_KAFKA_BOOTSTRAP": eco.bootstrap,
        "MBS_PUBLISHED": str(PUBLISHED),
        "MBS_UNIT": "fastship",
        "MBS_STATE_FILE": str(eco.log_dir / "fastship-node.jsonl"),
        "MBS_GROUP_SUFFIX": f"node-{uuid.uuid4().hex[:8]}",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            ["node", str(PARTNER / "partner.js")], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        # joined, and fetching: the new group's offsets (the topics' ends) are taken by then
        while not all(word in log.read_text() for word in ("serving", "fetching")):
            assert process.poll() is None, f"the partner exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the partner never joined:\n{log.read_text()}"
            time.sleep(0.1)
        yield log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_contract_built_from_the_published_files_is_the_registered_one(
    eco: Ecosystem,
) -> None:
    built = node(
        Path(eco.extra_env["NODE_PATH"]),
        str(PARTNER / "contract.js"),
        str(PUBLISHED),
        "fastship",
    )
    assert built.returncode == 0, built.stderr
    mine = [Contract.model_validate(c) for c in json.loads(built.stdout)]
    declared = json.loads(FASTSHIP.read_text())
    assert [c.model_dump() for c in mine] == [
        Contract.model_validate(c).model_dump() for c in declared
    ]
    url = eco.gateways["gateway"]
    response = httpx.post(
        f"{url}/contracts",
        content=built.stdout,
        headers={**PARTNER_KEY, "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code in (200, 201), response.text


def test_the_node_partner_passes_the_conformance_kit(eco: Ecosystem, partner: Path) -> None:
    topic = f"test.certifications.{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        **eco.topics,
        "MBS_KAFKA_BOOTSTRAP": eco.bootstrap,
        "MBS_CERTIFICATIONS_TOPIC": topic,
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mbs",
            "contracts",
            "verify",
            "--contract",
            str(FASTSHIP),
            "--samples",
            "10",
            "--timeout",
            "5",
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    report = json.loads(done.stdout)
    assert report["passed"], report["violations"]
    assert "certified shipping.book@1.0.0/fastship" in done.stderr.replace("\n", " ")


def test_the_node_partner_serves_a_live_journey(eco: Ecosystem, partner: Path) -> None:
    response = run_journey(eco.gateways["gateway"], order(1))
    assert response.status_code == 200, response.text
    ship = steps_of(response.json())["ship"]
    assert (ship["status"], ship["unit"]) == ("ok", "fastship"), ship
    assert ship["output"]["carrier"] == "FastShip"
    assert ship["output"]["tracking_number"].startswith("FS-")
