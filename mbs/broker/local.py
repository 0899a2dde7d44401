"""A local single-node Apache Kafka (KRaft) run from jars that Maven fetches into a cache."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mbs.errors import BrokerError
from mbs.settings import Settings

KAFKA_VERSION = "3.9.1"
DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
_MARKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"

Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True)
class BrokerStatus:
    """What `mbs broker status` reports."""

    running: bool
    address: str
    version: str
    data_dir: Path
    log_file: Path
    pid: int | None


class LocalBroker:
    """Fetches, formats, starts and stops one local Kafka broker on 127.0.0.1."""

    def __init__(self, settings: Settings, *, secure: bool = False) -> None:
        self.secure = secure
        self.port = settings.broker_port
        self.controller_port = settings.broker_port + 1
        self.heap = settings.broker_heap
        self.start_timeout = settings.broker_start_timeout
        self.libs_dir = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self.run_dir = settings.home / (f"broker-{self.port}" + ("-secure" if secure else ""))
        self.data_dir = self.run_dir / "data"
        self.pid_file = self.run_dir / "broker.pid"
        self.log_file = self.run_dir / "broker.log"
        self.props_file = self.run_dir / "server.properties"
        self.admin_file = self.run_dir / "admin.secret"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # -- jars -------------------------------------------------------------------------------

    def jars_cached(self) -> bool:
        return (self.libs_dir / _MARKER_JAR).is_file()

    def fetch_jars(self, progress: Progress = _quiet) -> None:
        """Download Kafka and its runtime jars through Maven, once; later calls reuse them."""
        if self.jars_cached():
            return
        mvn = _require_tool("mvn", "Maven 3.6+ (Debian: apt-get install maven)")
        staging = self.libs_dir.with_name("libs.partial")
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
        progress(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (first run only)")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert proc.stdout is not None
        tail: list[str] = []
        downloaded = 0
        for line in proc.stdout:
            tail = [*tail[-30:], line.rstrip()]
            if "Downloaded from" in line:
                downloaded += 1
                if downloaded % 25 == 0:
                    progress(f"  {downloaded} artifacts downloaded")
        if proc.wait() != 0 or not (staging / _MARKER_JAR).is_file():
            raise BrokerError(
                "Maven could not fetch the Kafka jars. Last output:\n"
                + "\n".join(tail)
                + "\nCheck that Maven Central is reachable, or set MBS_KAFKA_BOOTSTRAP "
                "to use an existing cluster."
            )
        shutil.rmtree(self.libs_dir, ignore_errors=True)
        staging.rename(self.libs_dir)
        progress(f"  {len(list(self.libs_dir.glob('*.jar')))} jars cached in {self.libs_dir}")

    # -- lifecycle --------------------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(
            running=pid is not None,
            address=self.address,
            version=KAFKA_VERSION,
            data_dir=self.data_dir,
            log_file=self.log_file,
            pid=pid,
        )

    def up(self, progress: Progress = _quiet) -> BrokerStatus:
        """Start the broker and return once it accepts connections; a running one is kept."""
        if (pid := self._live_pid()) is not None:
            progress(f"broker already running (pid {pid}) on {self.address}")
            return self.status()
        if _port_open(self.port):
            raise BrokerError(
                f"port {self.port} is taken by another process. Stop it, pick another port "
                "with MBS_BROKER_PORT, or point at that cluster with MBS_KAFKA_BOOTSTRAP."
            )
        java = _require_tool("java", "a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
        self.fetch_jars(progress)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._render_properties()
        if not (self.data_dir / "meta.properties").is_file():
            self._format_storage(java)
        progress(f"starting Kafka {KAFKA_VERSION} on {self.address}")
        started = time.monotonic()
        with self.log_file.open("ab") as log:
            proc = subprocess.Popen(
                [
                    *self._java_cmd(java),
                    f"-Xmx{self.heap}",
                    f"-Xms{self.heap}",
                    "kafka.Kafka",
                    str(self.props_file),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        self._wait_ready(proc)
        progress(f"broker ready on {self.address} in {time.monotonic() - started:.1f}s")
        return self.status()

    def down(self, progress: Progress = _quiet) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s); True if one was running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            progress("broker not running")
            return False
        progress(f"stopping broker (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        progress("broker stopped")
        return True

    def logs(self, lines: int) -> list[str]:
        if not self.log_file.is_file():
            return []
        return self.log_file.read_text(errors="replace").splitlines()[-lines:]

    # -- internals --------------------------------------------------------------------------

    def _java_cmd(self, java: str) -> list[str]:
        return [
            java,
            "-cp",
            f"{self.libs_dir}/*",
            f"-Dlog4j.configuration=file:{DEPLOY_DIR / 'log4j.properties'}",
            "-Djava.awt.headless=true",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
        ]

    def admin_password(self) -> str:
        """The broker's super user password (secure mode), made on first start, kept 0600."""
        if not self.admin_file.is_file():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.admin_file.touch(mode=0o600)
            self.admin_file.write_text(secrets.token_urlsafe(24))
        return self.admin_file.read_text().strip()

    def _render_properties(self) -> None:
        text = (DEPLOY_DIR / "server.properties").read_text()
        if self.secure:  # later keys win in a Java properties file
            text += "\n" + (DEPLOY_DIR / "secure.properties").read_text()
        values = {
            "port": self.port,
            "controller_port": self.controller_port,
            "data_dir": self.data_dir,
        }
        if self.secure:
            values["admin_password"] = self.admin_password()
        self.props_file.write_text(Template(text).substitute(values))

    def _format_storage(self, java: str) -> None:
        base = self._java_cmd(java)
        cluster_id = (
            subprocess.run(
                [*base, "kafka.tools.StorageTool", "random-uuid"],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        done = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.props_file),
                *self._scram_args(),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BrokerError(f"formatting {self.data_dir} failed:\n{done.stdout}{done.stderr}")

    def _scram_args(self) -> list[str]:
        if not self.secure:
            return []
        return ["--add-scram", f"SCRAM-SHA-256=[name=admin,password={self.admin_password()}]"]

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise BrokerError(
                    f"the broker exited with code {proc.returncode} during start-up. "
                    f"Last log lines ({self.log_file}):\n" + "\n".join(self.logs(25))
                )
            if _port_open(self.port) and self._log_says_started():
                return
            time.sleep(0.2)
        raise BrokerError(
            f"the broker did not accept connections within {self.start_timeout:g}s; "
            f"see {self.log_file} or raise MBS_BROKER_START_TIMEOUT"
        )

    def _log_says_started(self) -> bool:
        return any("Kafka Server started" in line for line in self.logs(200))

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_kafka(pid) else None


def _require_tool(name: str, what: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(
            f"`{name}` was not found on PATH. The local broker needs {what}. "
            "Install it, or set MBS_KAFKA_BOOTSTRAP to use an existing Kafka cluster."
        )
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if state == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
    return True


def _is_kafka(pid: int) -> bool:
    try:
        return b"kafka.Kafka" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0
