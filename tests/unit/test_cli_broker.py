"""`mbs broker` without starting Kafka (issue 17): port checks, exit codes, a secure broker
seen without --secure, and progress while the jars download."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mbs.broker import LocalBroker, jars
from mbs.settings import Settings
from mbs.testing import free_port


def mbs(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MBS_")}
    return subprocess.run(
        [sys.executable, "-m", "mbs", *args],
        capture_output=True,
        text=True,
        env={**environ, "MBS_HOME": str(home), **env},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("port", ["70000", "-5", "0", "1", "1023", "65535"])
def test_a_port_out_of_range_is_a_usage_error(tmp_path: Path, port: str) -> None:
    shown = mbs("broker", "up", "--port", port, home=tmp_path)
    assert shown.returncode == 2, shown.stderr
    assert "Invalid value for '--port'" in shown.stderr
    assert "1024" in shown.stderr or "65534" in shown.stderr
    assert "Traceback" not in shown.stderr
    assert list(tmp_path.iterdir()) == [], "nothing may start or be written"


@pytest.mark.parametrize("port", ["70000", "80"])
def test_a_port_out_of_range_from_the_environment_is_a_usage_error(
    tmp_path: Path, port: str
) -> None:
    shown = mbs("broker", "status", home=tmp_path, MBS_BROKER_PORT=port)
    assert shown.returncode == 2, shown.stderr
    assert "MBS_BROKER_PORT" in shown.stderr
    assert "Traceback" not in shown.stderr


def test_status_of_no_broker_is_exit_4_also_as_json(tmp_path: Path) -> None:
    port = str(free_port())
    shown = mbs("broker", "status", "-o", "json", "--port", port, home=tmp_path)
    assert shown.returncode == 4, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "stopped"
    assert status["address"] == f"127.0.0.1:{port}"


@pytest.fixture
def fake_secure_broker(tmp_path: Path) -> Iterator[tuple[Path, int, subprocess.Popen[bytes]]]:
    """A process that looks like a secure broker on a free port (its command line names
    kafka.Kafka, its pid is in the secure state directory)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "kafka.Kafka"]
    )
    run_dir = tmp_path / f"broker-{port}-secure"
    run_dir.mkdir()
    (run_dir / "broker.pid").write_text(str(process.pid))
    try:
        yield tmp_path, port, process
    finally:
        process.kill()
        process.wait()


def test_status_and_down_find_the_secure_broker_without_being_told(
    fake_secure_broker: tuple[Path, int, subprocess.Popen[bytes]],
) -> None:
    home, port, process = fake_secure_broker
    status = mbs("broker", "status", "--port", str(port), "-o", "json", home=home)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout) | {"state": "running", "mode": "secure"} == json.loads(
        status.stdout
    )
    plain_only = mbs("broker", "status", "--port", str(port), "--plain", home=home)
    assert plain_only.returncode == 4

    refused = mbs("broker", "up", "--port", str(port), home=home)
    assert refused.returncode == 3, refused.stderr
    assert "a secure broker already runs" in refused.stderr
    assert f"mbs broker down --port {port}" in refused.stderr

    down = mbs("broker", "down", "--port", str(port), home=home)
    assert down.returncode == 0, down.stderr
    assert "stopping the secure broker" in down.stderr
    assert process.wait(10) is not None


def test_jar_download_reports_progress_in_bytes_and_percent() -> None:
    said: list[str] = []
    now = [0.0]
    meter = jars.DownloadProgress(
        said.append, every_s=2.0, expected_bytes=10_000_000, clock=lambda: now[0]
    )
    lines = [
        "[INFO] Downloading from central: https://repo/x.jar",
        "[INFO] Downloaded from central: https://repo/a.pom (2.1 kB at 10 kB/s)",
        "[INFO] Downloaded from central: https://repo/kafka.jar (6.2 MB at 3.1 MB/s)",
        "[INFO] Downloaded from central: https://repo/b.jar (1,024 B at 1 kB/s)",
    ]
    for line in lines:
        now[0] += 0.7
        meter.feed(line)
    assert meter.files == 3
    assert meter.bytes == 2_100 + 6_200_000 + 1_024
    assert said == ["  2 files, 6.2 MB downloaded (~62% of about 10 MB)"]


def test_fetching_the_jars_shows_progress_and_caches_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bin" / "mvn"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -DoutputDirectory=*) out="${a#*=}";; esac; done\n'
        'mkdir -p "$out" && touch "$out/' + jars.MARKER_JAR + '"\n'
        "echo 'Downloaded from central: https://repo/k.jar (20 MB at 9 MB/s)'\n"
        "echo 'Downloaded from central: https://repo/c.jar (3 MB at 9 MB/s)'\n"
    )
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    said: list[str] = []
    broker = LocalBroker(Settings(home=tmp_path, cache_dir=tmp_path / "cache"))
    jars.fetch_jars(broker.libs_dir, said.append, every_s=0)
    assert broker.jars_cached()
    assert any("files," in line and "MB downloaded" in line for line in said), said
    assert "23.0 MB downloaded" in said[-1]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("up", "--nodes", "3", "--port", "65531"), "at most 65530"),
        (("up", "--nodes", "3", "--secure"), "--secure runs on a single node"),
        (("logs", "--node", "2"), "--node is for a local cluster"),
    ],
)
def test_cluster_options_that_cannot_work_are_usage_errors(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    shown = mbs("broker", *args, home=tmp_path, MBS_BROKER_PORT=str(free_port()))
    assert shown.returncode == 2, shown.stderr
    assert says in shown.stderr
    assert "Traceback" not in shown.stderr


def test_a_cluster_status_lists_each_node_on_its_ports(tmp_path: Path) -> None:
    """Node K takes base + 2(K-1) and its controller the port after; none runs: exit 4."""
    base = free_port(6)
    run_dir = tmp_path / f"cluster-{base}"
    run_dir.mkdir()
    (run_dir / "cluster.json").write_text(json.dumps({"cluster_id": "x", "nodes": 3}))
    shown = mbs("broker", "status", "-o", "json", "--port", str(base), home=tmp_path)
    assert shown.returncode == 4, shown.stderr
    status = json.loads(shown.stdout)
    assert status["state"] == "stopped"
    assert status["bootstrap"] == f"127.0.0.1:{base},127.0.0.1:{base + 2},127.0.0.1:{base + 4}"
    assert [n["controller"] for n in status["nodes"]] == [
        f"127.0.0.1:{base + 1}",
        f"127.0.0.1:{base + 3}",
        f"127.0.0.1:{base + 5}",
    ]


def test_free_ports_come_in_a_bindable_block_below_the_ephemeral_range() -> None:
    """A broker needs port and port + 1; ports handed to outgoing connections (the kernel's
    ephemeral range) could be taken between the pick and the bind, as once in CI."""
    floor = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        base = free_port(6)
        assert base + 6 <= floor
        for port in range(base, base + 6):
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port))
