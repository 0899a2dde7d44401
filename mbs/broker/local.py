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
from dataclasses import dataclass
from pathlib import Path
from string import Template

from mbs.broker import jars
from mbs.broker.jars import DEPLOY_DIR, KAFKA_VERSION, MARKER_JAR, Progress, require_tool
from mbs.errors import BrokerError
from mbs.settings import Settings

# Below 1024 a port needs root (a developer's broker should never run as root), and the
# controller listens on port + 1, so the broker's port is at most 65534.
MIN_PORT, MAX_PORT = 1024, 65534


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
    secure: bool = False


class LocalBroker:
    """Fetches, formats, starts and stops one local Kafka broker on 127.0.0.1."""

    def __init__(self, settings: Settings, *, secure: bool = False) -> None:
        self.settings = settings
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
        return (self.libs_dir / MARKER_JAR).is_file()

    def fetch_jars(self, progress: Progress = _quiet) -> None:
        """Download Kafka and its runtime jars through Maven, once; later calls reuse them."""
        if not self.jars_cached():
            jars.fetch_jars(self.libs_dir, progress)

    # -- lifecycle --------------------------------------------------------------------------

    @classmethod
    def on_port(cls, settings: Settings, secure: bool | None = None) -> LocalBroker:
        """The broker on the settings' port in the mode asked; `None`: whichever runs there
        (plain and secure keep separate state, but share the port)."""
        if secure is not None:
            return cls(settings, secure=secure)
        plain = cls(settings)
        other = cls(settings, secure=True)
        return other if plain._live_pid() is None and other._live_pid() is not None else plain

    @property
    def mode(self) -> str:
        return "secure" if self.secure else "plain"

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        return BrokerStatus(
            running=pid is not None,
            address=self.address,
            version=KAFKA_VERSION,
            data_dir=self.data_dir,
            log_file=self.log_file,
            pid=pid,
            secure=self.secure,
        )

    def up(self, progress: Progress = _quiet) -> BrokerStatus:
        """Start the broker and return once it accepts connections; a running one is kept.
        Interrupted or failed during start-up, it leaves no java process behind."""
        if (pid := self._live_pid()) is not None:
            progress(f"broker already running (pid {pid}) on {self.address}")
            return self.status()
        self._check_ports_free()
        java = require_tool("java", "a JDK 17+ (Debian: apt-get install openjdk-17-jre-headless)")
        self.fetch_jars(progress)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._render_properties()
        if not (self.data_dir / "meta.properties").is_file():
            # principals live in the data: credentials of an older data dir are void
            shutil.rmtree(self.run_dir / "credentials", ignore_errors=True)
            self._format_storage(java)
        progress(f"starting Kafka {KAFKA_VERSION} on {self.address}")
        started = time.monotonic()
        proc: subprocess.Popen[bytes] | None = None
        try:
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
        except BaseException:  # Ctrl-C or a failed start: no half-started broker stays
            # Ctrl-C may land inside Popen, after the JVM started but before `proc` is set:
            # it is then found by the properties file on its command line.
            for pid in {proc.pid} if proc is not None else _started_with(self.props_file):
                _stop(pid)
            if proc is not None:
                proc.wait()
            self.pid_file.unlink(missing_ok=True)
            raise
        progress(f"broker ready on {self.address} in {time.monotonic() - started:.1f}s")
        return self.status()

    def down(self, progress: Progress = _quiet) -> bool:
        """Stop the broker (SIGTERM, then SIGKILL after 30 s); True if one was running."""
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            progress("broker not running")
            return False
        progress(f"stopping the {self.mode} broker (pid {pid})")
        _stop(pid)
        self.pid_file.unlink(missing_ok=True)
        progress("broker stopped")
        return True

    def _check_ports_free(self) -> None:
        twin = LocalBroker(self.settings, secure=not self.secure)
        if (pid := twin._live_pid()) is not None:
            raise BrokerError(
                f"a {twin.mode} broker already runs on {self.address} (pid {pid}). Stop it "
                f"with `mbs broker down --port {self.port}`, or pick another port with --port "
                "or MBS_BROKER_PORT."
            )
        for port, what in ((self.port, "port"), (self.controller_port, "controller port")):
            if _port_open(port):
                raise BrokerError(
                    f"{what} {port} is taken by another process. Stop it, pick another port "
                    "with MBS_BROKER_PORT (the controller uses port + 1), or point at that "
                    "cluster with MBS_KAFKA_BOOTSTRAP."
                )

    def logs(self, lines: int) -> list[str]:
        if not self.log_file.is_file():
            return []
        return self.log_file.read_text(errors="replace").splitlines()[-lines:]

    # -- internals --------------------------------------------------------------------------

    def _java_cmd(self, java: str) -> list[str]:
        return java_cmd(java, self.libs_dir)

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
            f"the broker did not accept connections within {self.start_timeout:g}s "
            f"(port {self.port} {'open' if _port_open(self.port) else 'closed'}); raise "
            f"MBS_BROKER_START_TIMEOUT on a slow machine. Last log lines ({self.log_file}):\n"
            + "\n".join(self.logs(25))
        )

    def _log_says_started(self) -> bool:
        return any("Kafka Server started" in line for line in self.logs(200))

    def _live_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) and _is_kafka(pid) else None


def java_cmd(java: str, libs_dir: Path) -> list[str]:
    """The JVM command line up to the main class, shared by the single broker and a cluster."""
    return [
        java,
        "-cp",
        f"{libs_dir}/*",
        f"-Dlog4j.configuration=file:{DEPLOY_DIR / 'log4j.properties'}",
        "-Djava.awt.headless=true",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
    ]


def _started_with(props_file: Path, settle_s: float = 0.5) -> set[int]:
    """Java processes started with this properties file (looked for a little while: one
    just forked may not have exec'd yet)."""
    wanted = str(props_file).encode()
    found: set[int] = set()
    deadline = time.monotonic() + settle_s
    while True:
        for proc in Path("/proc").iterdir():
            if proc.name.isdigit():
                with contextlib.suppress(OSError):
                    if wanted in (proc / "cmdline").read_bytes():
                        found.add(int(proc.name))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def _stop(pid: int, grace_s: float = 30.0) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; returns once the process is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid):
            time.sleep(0.1)


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
