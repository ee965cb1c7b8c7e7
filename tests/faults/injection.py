"""Real faults injected into one pass of a fit, deterministically (no sleeps as synchronisation).

``PassHook`` wraps ``RddBlocks._run_pass`` (in the probe's own process) for the length of a ``with``: every pass
then runs in its own Spark job group, so that Spark's status tracker can say afterwards how many tasks each pass ran
and how many attempts failed; and the pass whose description names ``trigger`` (an EM iteration, e.g. "EM iteration
3") gets one extra request appended, whose answer is stripped before the fit sees it. The extra request's
``on_block`` does the fault, exactly once in the whole run: ``claim`` creates a marker file with ``O_CREAT|O_EXCL``,
so the retried task (or a second call of the pass) does not fault again.

PySpark pickles a broadcast with the plain ``pickle`` module, which pickles a class by reference: an executor could not
import a request class defined in a probe script (``AttributeError: Can't get attribute ... on <module
'pyspark.daemon'>``). ``ByValue`` stands in for the request in the broadcast and pickles as ``pickle.loads(<the
request pickled by cloudpickle>)``, and cloudpickle pickles classes of ``__main__`` (and of this module, registered
below) by value, so the executors get the request itself, class and all. Answers come back through PySpark's
CloudPickleSerializer, which ships such classes by value too.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

from pyspark import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])

JOB_GROUP = "spark.jobGroup.id"


class Untouched:
    """The extra request's answer: merges to itself."""

    def merge(self, other: Untouched) -> Untouched:
        return self


class ByValue:
    """A request in a pass's broadcast that reaches the executors by value (see the module docstring). On the
    driver it reads as the request it wraps."""

    def __init__(self, request: Any):
        self.__dict__["request"] = request

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["request"], name)

    def __reduce__(self):
        return pickle.loads, (cloudpickle.dumps(self.__dict__["request"]),)


def claim(marker: str, **details: Any) -> bool:
    """Create ``marker`` if nobody has yet (atomically: ``O_CREAT|O_EXCL``) and write ``details`` into it, with
    this task's identity; False if it exists already. The bytes are in the page cache when this returns, so a
    process killed right after still leaves them."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps({**task_identity(), **details}).encode())
    finally:
        os.close(fd)
    return True


def task_identity() -> dict:
    """Which task, attempt and process this is (on an executor's Python worker)."""
    from pyspark import TaskContext

    context = TaskContext.get()
    found = {"pid": os.getpid(), "cwd": os.getcwd()}
    if context is not None:
        found.update(partition=context.partitionId(), attempt=context.attemptNumber(), stage=context.stageId(),
                     task_attempt_id=context.taskAttemptId())
    return found


def read_marker(marker: str) -> dict | None:
    try:
        with open(marker) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` in /proc (``Z`` for a zombie), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def alive(pid: int) -> bool:
    return process_state(pid) not in (None, "Z", "X")


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [part.decode(errors="replace") for part in f.read().split(b"\0") if part]
    except (FileNotFoundError, ProcessLookupError):
        return []


def parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def wait_until(condition: Callable[[], bool], timeout: float, poll: float = 0.05) -> bool:
    """Poll ``condition`` (a fact about processes or files) until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def kill_and_wait(pid: int, timeout: float = 60.0) -> bool:
    """SIGKILL ``pid`` and wait until it is gone (or a zombie); True if it went."""
    os.kill(pid, signal.SIGKILL)
    return wait_until(lambda: not alive(pid), timeout)


@dataclass
class PassRecord:
    number: int
    description: str
    group: str
    injected: bool = False


@dataclass
class PassHook:
    """For the length of a ``with``: every pass of ``RddBlocks`` in its own job group, and ``request`` appended to
    the passes whose description names ``trigger`` (a whole phrase: "EM iteration 3" is not "EM iteration 30")."""

    sc: Any
    name: str
    trigger: str | None = None
    request: Any = None
    passes: list[PassRecord] = field(default_factory=list)

    def __enter__(self) -> PassHook:
        from sparkgmm.spark.engine.rdd import RddBlocks

        self._blocks_class = RddBlocks
        self._original = original = RddBlocks._run_pass
        hook = self

        def _run_pass(blocks, requests, description, *args, **kwargs):
            return hook._run(original, blocks, requests, description, *args, **kwargs)

        RddBlocks._run_pass = _run_pass
        return self

    def __exit__(self, *exc) -> None:
        self._blocks_class._run_pass = self._original

    def _matches(self, description: str, requests) -> bool:
        if self.trigger is None or self.request is None:
            return False
        pattern = rf"(?<!\w){re.escape(self.trigger)}(?!\w)"
        names = [description, *(str(getattr(request, "description", "")) for request in requests)]
        return any(re.search(pattern, name) for name in names)

    def _run(self, original, blocks, requests, description, *args, **kwargs):
        requests = list(requests)
        record = PassRecord(len(self.passes) + 1, description, f"{self.name}-pass-{len(self.passes) + 1}")
        self.passes.append(record)
        record.injected = self._matches(description, requests)
        if record.injected:
            requests.append(ByValue(self.request))
        previous = self.sc.getLocalProperty(JOB_GROUP)
        self.sc.setLocalProperty(JOB_GROUP, record.group)
        try:
            answers = original(blocks, requests, description, *args, **kwargs)
        finally:
            self.sc.setLocalProperty(JOB_GROUP, previous)
        if record.injected:
            # (by name: the class came back by value from the executors)
            if len(answers) != len(requests) or type(answers[-1]).__name__ != Untouched.__name__:
                raise AssertionError(f"the pass answered {len(answers)} requests of {len(requests)}, the last "
                                     f"{answers[-1]!r}: not the injected request's")
            answers = answers[:-1]
        return answers

    @property
    def injected(self) -> list[PassRecord]:
        return [record for record in self.passes if record.injected]

    def report(self) -> list[dict]:
        """Per pass: its description and, from Spark's status tracker, the tasks of its stages and how many
        attempts failed (after the listener bus has caught up)."""
        drain_listener_bus(self.sc)
        tracker = self.sc.statusTracker()
        out = []
        for record in self.passes:
            stages = []
            for job in sorted(tracker.getJobIdsForGroup(record.group)):
                info = tracker.getJobInfo(job)
                for stage in sorted(info.stageIds if info else []):
                    s = tracker.getStageInfo(stage)
                    if s is not None:
                        stages.append({"job": job, "stage": stage, "attempt": s.currentAttemptId,
                                       "tasks": s.numTasks, "completed": s.numCompletedTasks,
                                       "failed": s.numFailedTasks})
            out.append({"number": record.number, "description": record.description, "injected": record.injected,
                        "stages": stages, "tasks": sum(s["tasks"] for s in stages),
                        "failed": sum(s["failed"] for s in stages)})
        return out


def drain_listener_bus(sc, timeout_ms: int = 30_000) -> None:
    """Wait until Spark's listener bus has delivered every event so far, so the status tracker is up to date."""
    sc._jsc.sc().listenerBus().waitUntilEmpty(timeout_ms)


def model_report(model) -> dict:
    summary = model.summary
    return {
        "weights": model.weights.tolist(),
        "means": model.means.tolist(),
        "covariances": model.covariances.tolist(),
        "log_likelihood": summary.logLikelihood,
        "history": list(summary.logLikelihoodHistory),
        "n_iter": summary.numIter,
        "converged": summary.converged,
        "passes": summary.numPasses,
        "block_storage": summary.blockStorage,
    }
