"""The gateway over real Kafka, in-process: a reply that never comes is a 504 naming the step."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.catalog import Catalog
from mbs.settings import Settings
from tests.unit_kit_cases import contract_for

pytestmark = pytest.mark.kafka


def test_step_without_reply_times_out_with_504(
    settings: Settings, uid: str, tmp_path: Path
) -> None:
    silent = contract_for(uid)  # nobody serves this capability
    journeys = tmp_path / "journeys"
    journeys.mkdir()
    doc: dict[str, Any] = {
        "name": "lonely",
        "version": 1,
        "steps": [
            {
                "id": "ask",
                "capability": silent.capability,
                "timeout": 1.5,
                "input": {"sku": "$input.sku", "quantity": 1},
            }
        ],
    }
    (journeys / "lonely.yaml").write_text(yaml.safe_dump(doc))
    app = create_app(settings.model_copy(update={"journeys_dir": journeys}), Catalog([silent]))
    with TestClient(app, headers={"X-API-Key": "dev-caller-key"}) as client:
        deadline = time.monotonic() + 30  # ready once the journey log is replayed
        while (ready := client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, ready.json()
            time.sleep(0.1)
        assert ready.json() == {
            "ready": True,
            "started": True,
            "kafka_reachable": True,
            "journeys_replayed": True,
        }
        response = client.post("/journeys/lonely", json={"sku": "grinder-c40"})
        assert response.status_code == 504
        run = response.json()
        assert run["status"] == "timed_out"
        assert run["error"]["step"] == "ask"
        assert run["error"]["code"] == "timeout"
        assert run["error"]["detail"] == f"no reply from {silent.unit} within 1.5s"
        assert run["steps"][0]["status"] == "timeout"
        follow_up = client.get(response.headers["location"])
        assert follow_up.status_code == 200
        assert follow_up.json()["status"] == "timed_out"
