"""Fetching the Kafka jars through Maven once, with progress a person can watch: the first
download takes a minute and should not look like a hang."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mbs.errors import BrokerError

KAFKA_VERSION = "3.9.1"
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
EXPECTED_BYTES = 46_000_000  # the runtime jars of Kafka 3.9.1, as Maven Central serves them
PROGRESS_EVERY_S = 2.0

Progress = Callable[[str], None]
_DOWNLOADED = re.compile(r"Downloaded from [^:]+: (\S+) \(([\d.,]+) (B|kB|KB|MB|GB)")
_UNIT = {"B": 1, "kB": 1_000, "KB": 1_000, "MB": 1_000_000, "GB": 1_000_000_000}


class DownloadProgress:
    """Reads Maven's output; every `every_s` seconds with something new, one line of files,
    megabytes and an estimated percentage of the expected total."""

    def __init__(
        self,
        progress: Progress,
        *,
        every_s: float = PROGRESS_EVERY_S,
        expected_bytes: int = EXPECTED_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.progress = progress
        self.every_s = every_s
        self.expected = expected_bytes
        self.clock = clock
        self.files = 0
        self.bytes = 0
        self._said_at = clock()
        self._said_bytes = 0

    def feed(self, line: str) -> None:
        found = _DOWNLOADED.search(line)
        if found is None:
            return
        self.files += 1
        self.bytes += int(float(found[2].replace(",", "")) * _UNIT[found[3]])
        now = self.clock()
        if now - self._said_at >= self.every_s and self.bytes > self._said_bytes:
            self.progress(self.line())
            self._said_at, self._said_bytes = now, self.bytes

    def line(self) -> str:
        percent = min(99, self.bytes * 100 // self.expected)
        return (
            f"  {self.files} files, {self.bytes / 1e6:.1f} MB downloaded "
            f"(~{percent}% of about {self.expected / 1e6:.0f} MB)"
        )


def require_tool(name: str, what: str) -> str:
    """The tool's path, or an error saying what to install."""
    path = shutil.which(name)
    if path is None:
        raise BrokerError(
            f"`{name}` was not found on PATH. The local broker needs {what}. "
            "Install it, or set MBS_KAFKA_BOOTSTRAP to use an existing Kafka cluster."
        )
    return path


def fetch_jars(libs_dir: Path, progress: Progress, *, every_s: float = PROGRESS_EVERY_S) -> None:
    """Download Kafka and its runtime jars into `libs_dir` through Maven; an interrupted or
    failed download leaves nothing half-written there."""
    mvn = require_tool("mvn", "Maven 3.6+ (Debian: apt-get install maven)")
    staging = libs_dir.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    cmd = [
        mvn,
        "-B",
        "-f",
        str(DEPLOY_DIR / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]
    progress(
        f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central "
        f"(first run only, about {EXPECTED_BYTES / 1e6:.0f} MB)"
    )
    started = time.monotonic()
    meter = DownloadProgress(progress, every_s=every_s)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            meter.feed(line)
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if code != 0 or not (staging / MARKER_JAR).is_file():
        raise BrokerError(
            "Maven could not fetch the Kafka jars. Last output:\n"
            + "\n".join(tail)
            + "\nCheck that Maven Central is reachable, or set MBS_KAFKA_BOOTSTRAP "
            "to use an existing cluster."
        )
    shutil.rmtree(libs_dir, ignore_errors=True)
    staging.rename(libs_dir)
    jars = len(list(libs_dir.glob("*.jar")))
    progress(
        f"  {jars} jars cached in {libs_dir} ({meter.bytes / 1e6:.1f} MB downloaded "
        f"in {time.monotonic() - started:.0f}s)"
    )
