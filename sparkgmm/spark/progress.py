"""Progress of sparkgmm's Spark jobs on stderr, for a person watching: ``with track(spark, "pass 3 (E-step)",
total_rows=n): ...`` around the code that runs the job.

Nothing happens unless ``sparkgmm.progress.interactive()`` says so (a terminal, no CI, no scheduler, or
``SPARKGMM_PROGRESS=always``): no thread, no polling, no call to Spark (but for one question to the JVM, once per
process, in a driver started by spark-submit: whether the pipe of its stderr ends on a terminal). When it does:

- classic session: the block's jobs carry a job tag of their own (``SparkContext.addJobTag``: added to the calling
  thread's tags, so a job group or tags the caller set stay as they were), and a daemon thread polls the status
  tracker for the jobs with that tag, their stages and tasks, every POLL_SECONDS. Tags, like job groups, are
  thread-local: only the jobs submitted by the thread that entered the block are followed;
- Spark Connect: a progress handler on the session receives the server's stage reports (the server sends one
  every ``spark.connect.progress.reportInterval``, 2 s by default), in the thread that runs the query; the handler
  is removed on exit, and the session's other handlers are left alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from ..progress import (
    THRESHOLD_SECONDS, Progress, Snapshot, TaskCount, count_tasks, finished, interactive, is_terminal,
)
from .session import is_connect

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.25


class Tracker:
    """What ``track`` yields. ``set_rows(n)``: the rows the job processed, when they are learned only at its end
    (the conversion), for the final line."""

    def __init__(self) -> None:
        self.rows: int | None = None

    def set_rows(self, rows: int) -> None:
        self.rows = int(rows)


@contextlib.contextmanager
def track(spark, description: str, total_rows: int | None = None, *, stream: TextIO | None = None,
          threshold: float = THRESHOLD_SECONDS) -> Iterator[Tracker]:
    """Show the progress of the Spark jobs run inside the block as ``description`` (``"pass 12 (E-step)"``; a
    leading ``sparkgmm:`` is kept, not doubled) on ``stream`` (stderr). With ``total_rows`` the rows done are the
    completed tasks' share of them, with a rate and the time left; without, the tasks, and the rows read from the
    input where Spark counts them. Nothing is shown for work that ends within ``threshold`` seconds."""
    tracker = Tracker()
    behind_pipe = None if stream is not None else (lambda: _driver_output_reaches_terminal(spark))
    if not interactive(stream, reaches_terminal=behind_pipe):
        yield tracker
        return
    out = sys.stderr if stream is None else stream
    redraw = (is_terminal(out) or (behind_pipe is not None and behind_pipe())) and os.environ.get("TERM") != "dumb"
    progress = Progress(description, out, threshold=threshold, redraw=redraw)
    follow = _follow_connect if is_connect(spark) else _follow_classic
    with follow(spark, progress, tracker, total_rows):
        yield tracker


_jvm_console: bool | None = None


def _driver_output_reaches_terminal(spark) -> bool:
    """Under spark-submit (client mode) the Python driver's stdout and stderr are pipes that the JVM copies onto its
    own stdout, which is a terminal when spark-submit was started from one: then Java's ``System.console()`` exists
    (Java 17: stdin and stdout are both terminals). Asked of the JVM once per process, and only for a driver that
    spark-submit started (it hands the driver ``PYSPARK_GATEWAY_PORT``; a Python that starts its own JVM has none)."""
    global _jvm_console
    if "PYSPARK_GATEWAY_PORT" not in os.environ or is_connect(spark):
        return False
    if _jvm_console is None:
        try:
            _jvm_console = spark.sparkContext._jvm.java.lang.System.console() is not None
        except Exception as error:
            logger.debug("progress: cannot ask the JVM for a console: %s", error)
            _jvm_console = False
    return _jvm_console


def _final(snap: Snapshot, tracker: Tracker) -> Snapshot:
    if tracker.rows is None:
        return snap
    return snap._replace(rows_done=tracker.rows, rows_total=tracker.rows)


@contextlib.contextmanager
def _finishing(progress: Progress, tracker: Tracker, release: Callable[[bool], Snapshot]) -> Iterator[None]:
    """Run the block; then ``release(failed)`` (stop following the jobs, and return the last snapshot) and finish
    the progress line, as failed when the block raised."""
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        progress.finish(_final(release(failed), tracker), failed=failed)


# --- classic session: poll the status tracker from a thread of our own --------------------------------------------


@contextlib.contextmanager
def _follow_classic(spark, progress: Progress, tracker: Tracker, total_rows: int | None) -> Iterator[None]:
    sc = spark.sparkContext
    tag = f"sparkgmm-progress-{uuid.uuid4().hex}"
    try:
        poller = _JobPoller(sc, tag, total_rows, progress)
        sc.addJobTag(tag)
    except Exception as error:  # no status tracker to read (an unusual context): show nothing
        logger.debug("progress: cannot follow the jobs: %s", error)
        yield
        return
    def release(failed: bool) -> Snapshot:
        poller.stop()
        try:
            sc.removeJobTag(tag)
            return poller.snapshot(ended=not failed)
        except Exception as error:  # a stopped context: the work's own error says what happened
            logger.debug("progress: no final status: %s", error)
            return progress.snapshot

    poller.start()
    with _finishing(progress, tracker, release):
        yield


class _JobPoller:
    """Reads the status of the jobs tagged ``tag`` in a daemon thread and feeds ``progress``; ``stop`` ends the
    thread and joins it. Any error from Spark (the context stopping under it) ends the polling quietly."""

    def __init__(self, sc, tag: str, total_rows: int | None, progress: Progress):
        self._tag = tag
        self._total_rows = total_rows
        self._progress = progress
        jsc = sc._jsc
        self._tags = jsc.sc().statusTracker()  # the Scala tracker: the Java one has no getJobIdsForTag
        self._status = jsc.statusTracker()  # the Java one: plain values, null for unknown ids
        self._store = jsc.sc().statusStore() if total_rows is None else None  # rows read, for the conversion
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sparkgmm-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopping.wait(POLL_SECONDS):
            try:
                snap = self.snapshot()
            except Exception as error:
                logger.debug("progress: polling stopped: %s", error)
                return
            self._progress.update(snap)

    def snapshot(self, ended: bool = False) -> Snapshot:
        """Where the tagged jobs stand; ``ended``: they have all ended well."""
        counts = []
        read = 0
        for job_id in sorted(self._tags.getJobIdsForTag(self._tag)):
            job = self._status.getJobInfo(job_id)
            if job is None:
                continue
            stages = []
            for stage_id in job.stageIds():
                stage = self._status.getStageInfo(stage_id)
                if stage is None:
                    continue
                started = stage.submissionTime() >= 0 or stage.numActiveTasks() > 0 or stage.numCompletedTasks() > 0
                stages.append((stage_id, stage.numTasks(), stage.numCompletedTasks(), started))
                if self._store is not None and started:
                    read += self._input_records(stage_id)
            counts.append(count_tasks(finished(stages) if ended else stages))
        return _snapshot(counts, self._total_rows, read)

    def _input_records(self, stage_id: int) -> int:
        """Records the stage read from its input (files, tables), as Spark's UI shows them: updated when a task ends
        and with every executor heartbeat. Zero for input that Spark does not count (local collections)."""
        store = self._store
        if store is None:
            return 0
        try:
            return int(store.lastStageAttempt(stage_id).inputRecords())
        except Exception:  # an internal API: without it the line just has no rows
            self._store = None
            return 0


def _snapshot(counts: list[TaskCount], total_rows: int | None, rows_read: int = 0) -> Snapshot:
    """Tasks summed over the jobs; rows from the first job that has started a stage: the one that reads them (under
    adaptive query execution a query runs as several jobs, the later ones on the shuffles of the first)."""
    done = sum(c.done for c in counts)
    total = sum(c.total for c in counts)
    if total_rows is not None:
        reading = [c for c in counts if c.reading_total]
        rows = reading[0].rows_done(total_rows) if reading else 0.0
        return Snapshot(done, total, rows, total_rows)
    return Snapshot(done, total, rows_read or None)


# --- Spark Connect: the session's progress handlers ----------------------------------------------------------------


@contextlib.contextmanager
def _follow_connect(spark, progress: Progress, tracker: Tracker, total_rows: int | None) -> Iterator[None]:
    handler = _ConnectHandler(progress, total_rows)
    try:
        spark.registerProgressHandler(handler)
    except Exception as error:  # a Connect client without progress handlers: show nothing
        logger.debug("progress: no progress handlers on this session: %s", error)
        yield
        return
    def release(failed: bool) -> Snapshot:
        try:
            spark.removeProgressHandler(handler)
        except Exception as error:
            logger.debug("progress: could not remove the handler: %s", error)
        return handler.snapshot()

    with _finishing(progress, tracker, release):
        yield


class _ConnectHandler:
    """A Connect progress handler (pyspark.sql.connect.shell.progress.ProgressHandler's signature): the latest
    stages of every operation run inside the block, counted as the classic tracker counts them."""

    def __init__(self, progress: Progress, total_rows: int | None):
        self._progress = progress
        self._total_rows = total_rows
        self._operations: dict[str, list[tuple[int, int, int, bool]]] = {}

    def __call__(self, stages: Any = None, inflight_tasks: int = 0, operation_id: str | None = None,
                 done: bool = False, **_: Any) -> None:
        listed = [(s.stage_id, s.num_tasks, s.num_completed_tasks, bool(s.done or s.num_completed_tasks))
                  for s in stages or ()]
        if done:  # the last report may predate the end
            listed = finished(listed)
        key = operation_id or ""
        if listed or key not in self._operations:  # a report without stages keeps what the last one said
            self._operations[key] = listed
        self._progress.update(self.snapshot())

    def snapshot(self) -> Snapshot:
        return _snapshot([count_tasks(stages) for stages in self._operations.values()], self._total_rows)

