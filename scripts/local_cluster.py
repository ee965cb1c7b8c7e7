"""Start, inspect and stop a Spark standalone cluster on 127.0.0.1: one master and N workers, each its own JVM,
launched with the ``spark-class`` that ships inside the pyspark package (no separate Spark install).

    scripts/local-cluster start [--workers 2] [--worker-cores 1] [--worker-memory 2g]
    scripts/local-cluster status
    scripts/local-cluster stop

(``scripts/local-cluster`` runs this file with the project's Python.)

``start`` prints the master URL (``spark://127.0.0.1:PORT``) on stdout once every worker has registered, and keeps
the process ids, ports and logs under ``--state-dir`` (default ``.local-cluster``); ``stop`` ends them. Ports are
picked free at start, so two clusters (or a CI run beside a developer's) do not collide. Nothing listens on any
address but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
HOST = "127.0.0.1"
STATE_FILE = "cluster.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _cluster_env(state_dir: Path) -> dict[str, str]:
    """The JVMs' environment: this machine's, minus anything that would let executors import code that was not
    shipped to them (PYTHONPATH, an active virtualenv)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYSPARK_SUBMIT_ARGS")}
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        SPARK_LOCAL_IP=HOST,
        SPARK_LOG_DIR=str(state_dir / "logs"),
        SPARK_NO_DAEMONIZE="1",
    )
    return env


def _spawn(args: list[str], log: Path, env: dict[str, str]) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    return process.pid


def _master_state(web_ui: str) -> dict | None:
    try:
        with urllib.request.urlopen(f"{web_ui}/json/", timeout=2) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, ValueError):
        return None


def _wait_for(condition, what: str, timeout: float, pids: list[int], logs: list[Path]) -> dict:
    """Poll the master's JSON status until ``condition`` holds; fail early if one of the JVMs has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = condition()
        if state is not None:
            return state
        for pid, log in zip(pids, logs, strict=True):
            if not _alive(pid):
                raise RuntimeError(f"{what}: process {pid} exited; see {log}:\n{_tail(log)}")
        time.sleep(0.25)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s; logs: {', '.join(map(str, logs))}")


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start(state_dir: Path, workers: int, worker_cores: int, worker_memory: str, timeout: float) -> dict:
    state_path = state_dir / STATE_FILE
    if state_path.exists():
        state = json.loads(state_path.read_text())
        if any(_alive(pid) for pid in state["pids"]):
            raise RuntimeError(
                f"a cluster is already running at {state['master_url']} (state in {state_dir}); stop it first")
        state_path.unlink()
    state_dir.mkdir(parents=True, exist_ok=True)
    env = _cluster_env(state_dir)
    port, web_port = _free_port(), _free_port()
    master_url, web_ui = f"spark://{HOST}:{port}", f"http://{HOST}:{web_port}"
    logs = [state_dir / "logs" / "master.out"]
    pids = [_spawn(
        ["org.apache.spark.deploy.master.Master", "--host", HOST, "--port", str(port), "--webui-port", str(web_port)],
        logs[0], env,
    )]
    try:
        _wait_for(
            lambda: ((s := _master_state(web_ui)) and s.get("status") == "ALIVE" and s) or None,
            "master", timeout, pids, logs,
        )
        for i in range(workers):
            logs.append(state_dir / "logs" / f"worker-{i}.out")
            pids.append(_spawn(
                [
                    "org.apache.spark.deploy.worker.Worker", "--host", HOST, "--port", str(_free_port()),
                    "--webui-port", str(_free_port()), "--cores", str(worker_cores), "--memory", worker_memory,
                    "--work-dir", str(state_dir / f"work-{i}"), master_url,
                ],
                logs[-1], env,
            ))
        _wait_for(
            lambda: ((s := _master_state(web_ui)) and s.get("aliveworkers", 0) >= workers and s) or None,
            f"{workers} workers", timeout, pids, logs,
        )
    except BaseException:
        _terminate(pids)
        raise
    state = {"master_url": master_url, "web_ui": web_ui, "pids": pids, "workers": workers}
    state_path.write_text(json.dumps(state, indent=2))
    return state


def _terminate(pids: list[int], grace: float = 15.0) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def stop(state_dir: Path) -> bool:
    state_path = state_dir / STATE_FILE
    if not state_path.exists():
        return False
    _terminate(json.loads(state_path.read_text())["pids"])
    state_path.unlink()
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", type=Path, default=Path(".local-cluster"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-cores", type=int, default=1)
    parser.add_argument("--worker-memory", default="2g")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the JVMs to come up")
    args = parser.parse_args(argv)
    state_dir = args.state_dir.resolve()
    try:
        if args.command == "start":
            print(start(state_dir, args.workers, args.worker_cores, args.worker_memory, args.timeout)["master_url"])
        elif args.command == "stop":
            if not stop(state_dir):
                print(f"local-cluster: no cluster recorded in {state_dir}", file=sys.stderr)
        else:
            path = state_dir / STATE_FILE
            if not path.exists():
                print(f"local-cluster: no cluster recorded in {state_dir}", file=sys.stderr)
                return 1
            state = json.loads(path.read_text())
            master = _master_state(state["web_ui"]) or {}
            print(json.dumps({**state, "status": master.get("status", "DOWN"),
                              "aliveworkers": master.get("aliveworkers", 0)}, indent=2))
    except RuntimeError as e:
        print(f"local-cluster: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
