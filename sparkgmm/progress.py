"""Progress lines for long Spark jobs (the conversion, every pass): rows done, rows/s and the time left.

Shown only to a person watching: ``interactive()`` is true when stderr is a terminal, no CI or scheduler says it
runs the job, and ``TERM`` is not ``dumb``; the environment variable ``SPARKGMM_PROGRESS`` overrides it:

- ``auto`` (the default, also when unset or empty): as above;
- ``always`` (or ``on``, ``1``, ``true``, ``yes``): also to a file or a pipe, one line per update (at most one
  every LINE_INTERVAL_SECONDS);
- ``never`` (or ``off``, ``0``, ``false``, ``no``): nothing, ever.

A ``Progress`` draws nothing until its work has run for ``threshold`` seconds (a short pass stays silent), then at
most one update per ``interval`` seconds: redrawn in place with ``\\r`` on a terminal, one line each otherwise
(``always`` into a log), and a final line when the work ends. This module knows nothing of Spark: the Spark layer
(``sparkgmm.spark.progress``) counts the tasks and feeds them in.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, TextIO

from .errors import InputError

PROGRESS_ENV = "SPARKGMM_PROGRESS"
_ALWAYS = frozenset({"always", "on", "1", "true", "yes"})
_NEVER = frozenset({"never", "off", "0", "false", "no"})
_AUTO = frozenset({"auto", ""})

# Set by CI services (CI by most of them; the others by Jenkins, TeamCity, Azure Pipelines, ...) and by Airflow in
# its task processes. A value of "false" or "0" does not count: some set CI=false to mean "not CI".
_NON_INTERACTIVE_ENV = ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "BUILDKITE", "CIRCLECI", "TRAVIS", "TF_BUILD",
                        "BUILD_NUMBER", "JENKINS_URL", "TEAMCITY_VERSION", "AIRFLOW_CTX_DAG_ID")

THRESHOLD_SECONDS = 2.0
INTERVAL_SECONDS = 0.5
LINE_INTERVAL_SECONDS = 10.0  # one line per update into a file or a pipe: fewer of them


def progress_mode(environ: Mapping[str, str] | None = None) -> str:
    """``"always"``, ``"never"`` or ``"auto"``, from ``SPARKGMM_PROGRESS``; anything else is an InputError."""
    environ = os.environ if environ is None else environ
    value = environ.get(PROGRESS_ENV, "").strip().lower()
    if value in _ALWAYS:
        return "always"
    if value in _NEVER:
        return "never"
    if value in _AUTO:
        return "auto"
    raise InputError(f"{PROGRESS_ENV}={environ[PROGRESS_ENV]!r} must be always, never or auto (or unset)")


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _set(value: str | None) -> bool:
    return value is not None and value.strip().lower() not in ("", "0", "false", "no")


def interactive(stream: TextIO | None = None, environ: Mapping[str, str] | None = None,
                reaches_terminal: Callable[[], bool] | None = None) -> bool:
    """Whether to show progress on ``stream`` (stderr by default): see the module's docstring.
    ``reaches_terminal``, asked last, tells whether a stream that is no terminal itself ends up on one (the Python
    driver's stderr under spark-submit is a pipe into the JVM's stdout)."""
    environ = os.environ if environ is None else environ
    mode = progress_mode(environ)
    if mode != "auto":
        return mode == "always"
    if environ.get("TERM", "") == "dumb" or any(_set(environ.get(name)) for name in _NON_INTERACTIVE_ENV):
        return False
    if is_terminal(sys.stderr if stream is None else stream):
        return True
    return reaches_terminal is not None and reaches_terminal()


def human(value: float) -> str:
    """A count with three significant digits and an SI suffix: 999, 1.50k, 41.0M, 100M, 2.35G."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale * 0.9995:  # what rounds up to 1.00 of this unit belongs to it
            return _three_digits(value / scale) + suffix
    return f"{value:.0f}"


def _three_digits(x: float) -> str:
    if abs(x) < 9.995:
        return f"{x:.2f}"
    if abs(x) < 99.95:
        return f"{x:.1f}"
    return f"{x:.0f}"


def _rate(value: float) -> str:
    """A rate with two significant digits: 3.2M, 12M, 850k, 7.5."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale * 0.995:
            x = value / scale
            return (f"{x:.1f}" if x < 9.95 else f"{x:.0f}") + suffix
    return f"{value:.1f}" if value < 9.95 else f"{value:.0f}"


def format_seconds(seconds: float) -> str:
    """``7 s``, ``3 min 05 s``, ``2 h 10 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


class Snapshot(NamedTuple):
    """Where some work stands: tasks done of the tasks known, and rows when they are known."""

    tasks_done: int
    tasks_total: int
    rows_done: float | None = None  # rows processed (or read) so far
    rows_total: float | None = None  # all the rows the work will process, when known beforehand

    @property
    def fraction(self) -> float | None:
        """Share of the work done, from the rows when their total is known, else from the tasks."""
        if self.rows_total and self.rows_done is not None:
            return min(1.0, self.rows_done / self.rows_total)
        if self.tasks_total > 0:
            return min(1.0, self.tasks_done / self.tasks_total)
        return None


def render(what: str, snap: Snapshot, elapsed: float) -> str:
    """One progress line, e.g. ``sparkgmm: pass 12 (E-step): 41.0M/100M rows 41% 3.2M rows/s ETA 18 s (3/8
    tasks)``. Without a row total the rows are those ``read`` so far; without any rows there is no rate; without
    progress there is no ETA, but the time so far. The tasks come last: on a narrow terminal they are cut first."""
    if not snap.tasks_total:
        return f"{_prefixed(what)}: starting, {format_seconds(elapsed)} so far"
    parts = []
    if snap.rows_done is not None:
        if snap.rows_total:
            parts.append(f"{human(snap.rows_done)}/{human(snap.rows_total)} rows")
        else:
            parts.append(f"{human(snap.rows_done)} rows read")
    fraction = snap.fraction
    if fraction is not None:
        parts.append(f"{int(fraction * 100)}%")
    if snap.rows_done and elapsed > 0:
        parts.append(f"{_rate(snap.rows_done / elapsed)} rows/s")
    if fraction and elapsed > 0 and fraction < 1.0:
        parts.append(f"ETA {format_seconds(elapsed * (1.0 - fraction) / fraction)}")
    else:
        parts.append(f"{format_seconds(elapsed)} so far")
    parts.append(f"({snap.tasks_done}/{snap.tasks_total} tasks)")
    return f"{_prefixed(what)}: {' '.join(parts)}"


def render_final(what: str, snap: Snapshot, elapsed: float, failed: bool = False) -> str:
    """The last line: ``sparkgmm: pass 12 (E-step): 100M rows done in 31 s (3.2M rows/s)``, or ``stopped after 31 s
    at 3/8 tasks`` when the work failed. (No task count when it ended well: Spark's status lags the end of a job,
    and all of them ran.)"""
    if failed:
        tasks = f"{snap.tasks_done}/{snap.tasks_total} tasks"
        return f"{_prefixed(what)}: stopped after {format_seconds(elapsed)} at {tasks}"
    if not snap.rows_done:
        return f"{_prefixed(what)}: done in {format_seconds(elapsed)}"
    rate = f" ({_rate(snap.rows_done / elapsed)} rows/s)" if elapsed > 0 else ""
    return f"{_prefixed(what)}: {human(snap.rows_done)} rows done in {format_seconds(elapsed)}{rate}"


MAX_WHAT = 50  # a pass serving many candidates side by side has a long name: the numbers after it matter more


def _prefixed(what: str) -> str:
    what = what if what.startswith("sparkgmm:") else f"sparkgmm: {what}"
    return what if len(what) <= MAX_WHAT else what[: MAX_WHAT - 3] + "..."


class Progress:
    """Draws the progress of one piece of work on ``stream``: call ``update`` as often as you like (it throttles),
    then ``finish`` once. ``clock`` (seconds, monotonic) is injectable for tests."""

    def __init__(self, what: str, stream: TextIO | None = None, *, threshold: float = THRESHOLD_SECONDS,
                 interval: float | None = None, redraw: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, environ: Mapping[str, str] | None = None):
        self.what = what
        self.stream = sys.stderr if stream is None else stream
        environ = os.environ if environ is None else environ
        if redraw is None:
            redraw = is_terminal(self.stream) and environ.get("TERM", "") != "dumb"
        self.redraw = redraw
        self.threshold = threshold
        self.interval = interval if interval is not None else (INTERVAL_SECONDS if redraw else LINE_INTERVAL_SECONDS)
        self._clock = clock
        self._started = clock()
        self._last_draw: float | None = None
        self._drawn_width = 0
        self.snapshot = Snapshot(0, 0)
        self.shown = False  # whether any line was written
        self.finished = False

    def elapsed(self) -> float:
        return self._clock() - self._started

    def update(self, snap: Snapshot) -> bool:
        """Record where the work stands; draw it if the work has run past the threshold and the last drawing is
        at least ``interval`` old. Returns whether it drew."""
        self.snapshot = snap
        now = self._clock()
        if self.finished or now - self._started < self.threshold:
            return False
        if self._last_draw is not None and now - self._last_draw < self.interval:
            return False
        self._last_draw = now
        self._write(render(self.what, snap, now - self._started), final=False)
        return True

    def finish(self, snap: Snapshot | None = None, failed: bool = False) -> None:
        """The final line, if the work ran past the threshold (else nothing at all); draws nothing more after it."""
        if self.finished:
            return
        self.finished = True
        if snap is not None:
            self.snapshot = snap
        elapsed = self.elapsed()
        if elapsed < self.threshold and not self.shown:
            return
        self._write(render_final(self.what, self.snapshot, elapsed, failed), final=True)

    def _write(self, line: str, final: bool) -> None:
        if self.redraw:
            if not final:  # a line that wraps could not be drawn over; the final one may wrap
                line = line[: _terminal_width(self.stream) - 1]
            padding = " " * max(0, self._drawn_width - len(line))  # wipe what a longer line left behind
            self._drawn_width = len(line)
            text = f"\r{line}{padding}" + ("\n" if final else "")
        else:
            text = line + "\n"
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not break the work it reports on
            pass
        self.shown = True


def _terminal_width(stream: TextIO) -> int:
    """The width of the terminal ``stream`` is, or else of the controlling terminal (under spark-submit the
    driver's stderr is a pipe to it); 80 when there is none to ask."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        pass
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return 80
    try:
        return os.get_terminal_size(fd).columns or 80
    except OSError:
        return 80
    finally:
        os.close(fd)


class TaskCount(NamedTuple):
    """Tasks done and to do over a job's stages that run, and those of the stage that reads the rows."""

    done: int
    total: int
    reading_done: int
    reading_total: int

    def rows_done(self, rows_total: float) -> float:
        """The completed reading tasks' share of ``rows_total`` (the tasks of a pass read balanced partitions)."""
        return rows_total * self.reading_done / self.reading_total if self.reading_total else 0.0


def count_tasks(stages: Iterable[tuple[int, int, int, bool]]) -> TaskCount:
    """Count the tasks of a job's stages, given as ``(stage_id, num_tasks, num_completed_tasks, started)``.

    A stage that has not started while one with a higher id has was skipped: its output was already there (a
    shuffle computed by an earlier job, as when a pass reads blocks that were dealt out by a shuffle); its tasks
    never run, so they are not counted. Spark numbers parents before their children, so in a chain of stages the
    first one that started reads the input."""
    stages = sorted(stages)
    started = [sid for sid, _, _, began in stages if began]
    first, last = (started[0], started[-1]) if started else (None, None)
    done = total = reading_done = reading_total = 0
    for sid, num_tasks, completed, began in stages:
        if last is not None and sid < last and not began:
            continue
        completed = min(completed, num_tasks)
        done += completed
        total += num_tasks
        if sid == first:
            reading_done, reading_total = completed, num_tasks
    return TaskCount(done, total, reading_done, reading_total)


def finished(stages: Iterable[tuple[int, int, int, bool]]) -> list[tuple[int, int, int, bool]]:
    """The stages of a job that has ended well, all of whose tasks ran: the status Spark reports lags behind the
    job's end (its listeners hear of the last tasks after the action returns). Stages skipped by ``count_tasks``'s
    rule are left out; when none had started, none can be told skipped and all are kept."""
    stages = list(stages)
    last = max((sid for sid, _, _, began in stages if began), default=None)
    return [(sid, n, n, True) for sid, n, _, began in stages if began or last is None or sid > last]
