"""A local Spark Connect server for tests and benchmarks: ``sbin/start-connect-server.sh`` from the pyspark package,
bound to 127.0.0.1 on a free port, its Python workers running this interpreter, stopped when done.

    with LocalConnectServer("local[2]") as server:
        spark = SparkSession.builder.remote(server.url).create()

Its log (and the daemon's pid file, if any) goes to a directory of its own, ``server.log_dir``: removed on stop
unless the caller gave one.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from .session import WORKER_ENV, speed_settings

logger = logging.getLogger("sparkgmm")

_SERVER_CLASS = "org.apache.spark.sql.connect.service.SparkConnectServer"


def pyspark_home() -> Path:
    """The pyspark package directory: a Spark distribution (``bin``, ``sbin``, ``jars``), the server's SPARK_HOME."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the server binds it a few seconds later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def accepts_connections(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalConnectServer:
    """A Spark Connect server on ``master`` (a local master: everything stays on this machine) listening on
    127.0.0.1; ``conf`` adds Spark settings (``spark.driver.memory``, ...). ``start`` returns once the port accepts
    connections (``launch`` and ``wait`` are its two halves); ``stop`` (or leaving the ``with`` block) ends the server's
    whole process group."""

    def __init__(self, master: str = "local[2]", conf: dict[str, str] | None = None, log_dir: str | None = None,
                 startup_seconds: float = 180.0):
        self.master = master
        self.conf = dict(conf or {})
        self.port = 0
        self.startup_seconds = startup_seconds
        self._own_log_dir = log_dir is None
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sparkgmm-connect-"))
        self._process: subprocess.Popen | None = None
        self._log: BinaryIO | None = None
        self._launched = 0.0

    @property
    def url(self) -> str:
        return f"sc://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "connect-server.log"

    def _command(self) -> list[str]:
        conf = {
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
            **speed_settings(),
            **self.conf,
        }
        command = [str(pyspark_home() / "sbin" / "start-connect-server.sh"), "--wait", "--master", self.master]
        for key, value in conf.items():
            command += ["--conf", f"{key}={value}"]
        return command

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        for name in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED", "SPARK_LOCAL_REMOTE", "MASTER"):
            env.pop(name, None)  # this process's own session settings are not the server's
        env.update({
            "SPARK_HOME": str(pyspark_home()),
            "PYSPARK_PYTHON": sys.executable,  # the workers import numpy and sparkgmm from this interpreter
            "SPARK_LOCAL_IP": "127.0.0.1",
            "SPARK_LOG_DIR": str(self.log_dir),
            "SPARK_PID_DIR": str(self.log_dir),
            "SPARK_IDENT_STRING": f"sparkgmm-{os.getpid()}",
            **WORKER_ENV,
        })
        return env

    def launch(self) -> LocalConnectServer:
        """Start the server and return at once (``wait`` for it later: the caller may do other work meanwhile)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._log = open(self.log_file, "ab")
        self._launched = time.monotonic()
        # --wait keeps the server in the foreground: its process group is ours to stop (no pid file to trust).
        self._process = subprocess.Popen(self._command(), env=self._environment(), stdout=self._log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def wait(self) -> LocalConnectServer:
        """Poll the port until it accepts connections; an error (with the end of the server's log) if the server
        exits first or is not up within ``startup_seconds``."""
        while not accepts_connections(self.port):
            if self._process is None or self._process.poll() is not None or \
                    time.monotonic() - self._launched > self.startup_seconds:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"the Spark Connect server did not start on port {self.port}; "
                                   f"the end of its log ({self.log_file}):\n{tail}")
            time.sleep(0.1)
        logger.info("Spark Connect server up at %s after %.1f s (log %s)", self.url,
                    time.monotonic() - self._launched, self.log_file)
        return self

    def start(self) -> LocalConnectServer:
        return self.launch().wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> None:
        """End the server: SIGTERM to its process group (the launcher, the JVM, its Python workers; the JVM stops its
        session first), SIGKILL to whatever is left of it after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is not None:
            group = process.pid  # start_new_session: the group's id is the launcher's pid
            _signal_group(group, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _group_alive(group, process) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _group_alive(group, process):
                _signal_group(group, signal.SIGKILL)
            process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> LocalConnectServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal_group(group: int, signum: int) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass


def _group_alive(group: int, launcher: subprocess.Popen) -> bool:
    """Whether any process of the group is left (the launcher is reaped first, so that it does not count)."""
    launcher.poll()
    try:
        os.killpg(group, 0)
        return True
    except ProcessLookupError:
        return False
