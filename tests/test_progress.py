"""Progress lines: the rendering, throttling and threshold with an injected clock, when they are shown
(``interactive``), the stage counting, ``track`` under Spark Connect with a stand-in session, and one Spark job."""

from __future__ import annotations

import io
import re
import threading
import time
from collections import namedtuple

import pytest

from sparkgmm.errors import InputError
from sparkgmm.progress import (
    Progress, Snapshot, count_tasks, finished, format_seconds, human, interactive, render, render_final,
)
from sparkgmm.spark.progress import track


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn(text: str) -> list[str]:
    """The lines a terminal would have shown, in order: every ``\\r`` starts one again, stripped of the padding."""
    return [part.rstrip() for part in re.split(r"[\r\n]", text) if part.strip()]


# --- numbers and lines ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [
    (0, "0"), (999, "999"), (1000, "1.00k"), (41_000_000, "41.0M"), (100_000_000, "100M"), (999_400, "999k"),
    (999_950, "1.00M"), (2_500_000_000, "2.50G"),
])
def test_human_counts_have_three_significant_digits(value, text):
    assert human(value) == text


@pytest.mark.parametrize("seconds, text", [(7.4, "7 s"), (59.6, "1 min 00 s"), (185, "3 min 05 s"),
                                           (7800, "2 h 10 min")])
def test_format_seconds(seconds, text):
    assert format_seconds(seconds) == text


def test_a_pass_line_shows_rows_share_rate_and_time_left():
    # 41M of 100M rows in 41M / 3.2M rows/s = 12.8 s; the other 59M rows at that rate take 18.4 s more
    elapsed = 41e6 / 3.2e6
    line = render("pass 12 (E-step)", Snapshot(3, 8, 41e6, 100e6), elapsed)
    assert line == "sparkgmm: pass 12 (E-step): 41.0M/100M rows 41% 3.2M rows/s ETA 18 s (3/8 tasks)"


def test_a_conversion_line_shows_rows_read_and_the_time_left_from_the_tasks():
    # 3 of 8 tasks in 8 s: the other 5 take 5 * 8 / 3 = 13.3 s more; 12M rows read in 8 s = 1.5M rows/s
    line = render("sparkgmm: convert features to blocks", Snapshot(3, 8, 12e6, None), 8.0)
    assert line == "sparkgmm: convert features to blocks: 12.0M rows read 37% 1.5M rows/s ETA 13 s (3/8 tasks)"
    assert render("convert", Snapshot(0, 8), 4.2) == "sparkgmm: convert: 0% 4 s so far (0/8 tasks)"
    assert render("convert", Snapshot(0, 0), 1.0) == "sparkgmm: convert: starting, 1 s so far"


def test_a_long_name_is_cut_so_that_the_numbers_stay_on_a_line():
    name = "EM iteration 12; EM iteration 7 x3; k-means|| round 2 x4"
    line = render(name, Snapshot(1, 2), 1.0)
    kept = f"sparkgmm: {name}"[:47] + "..."  # 50 characters in all
    assert line == f"{kept}: 50% ETA 1 s (1/2 tasks)"
    assert render("pass 3 (E-step)", Snapshot(1, 2), 1.0).startswith("sparkgmm: pass 3 (E-step): ")


def test_final_lines():
    assert render_final("pass 3", Snapshot(8, 8, 1e8, 1e8), 31.25) == \
        "sparkgmm: pass 3: 100M rows done in 31 s (3.2M rows/s)"
    assert render_final("convert", Snapshot(8, 8), 65) == "sparkgmm: convert: done in 1 min 05 s"
    assert render_final("pass 3", Snapshot(3, 8, 4e7, 1e8), 12, failed=True) == \
        "sparkgmm: pass 3: stopped after 12 s at 3/8 tasks"


# --- when lines are drawn -------------------------------------------------------------------------------------------


def test_nothing_before_the_threshold_then_at_most_one_update_per_interval():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("pass 1", out, threshold=2.0, interval=0.5, redraw=True, clock=clock)
    for t, expect in [(0.0, False), (1.0, False), (1.99, False), (2.0, True), (2.3, False), (2.49, False),
                      (2.7, True), (2.8, False), (3.6, True)]:
        clock.now = 100.0 + t
        assert progress.update(Snapshot(int(t), 8)) is expect, t
    assert out.getvalue().count("\r") == 3 and "\n" not in out.getvalue()
    clock.now = 104.0
    progress.finish(Snapshot(8, 8))
    assert drawn(out.getvalue()) == [
        "sparkgmm: pass 1: 25% ETA 6 s (2/8 tasks)", "sparkgmm: pass 1: 25% ETA 8 s (2/8 tasks)",
        "sparkgmm: pass 1: 37% ETA 6 s (3/8 tasks)", "sparkgmm: pass 1: done in 4 s",
    ]
    # the final line is drawn over the longer one before it: padded with blanks to its length, then a newline
    last = out.getvalue().rsplit("\r", 1)[1]
    assert last.endswith("\n") and len(last) - 1 == len("sparkgmm: pass 1: 37% ETA 6 s (3/8 tasks)")
    progress.update(Snapshot(8, 8))
    progress.finish()
    assert out.getvalue().endswith(" \n")  # nothing after the final line


def test_work_shorter_than_the_threshold_prints_nothing():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("pass 1", out, threshold=2.0, redraw=True, clock=clock)
    for t in (0.5, 1.0, 1.5):
        clock.now = 100.0 + t
        progress.update(Snapshot(4, 8))
    clock.now = 101.9
    progress.finish(Snapshot(8, 8))
    assert out.getvalue() == ""


def test_without_a_terminal_each_update_is_a_line_of_its_own_and_rarer():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress("pass 1", out, threshold=2.0, clock=clock, environ={})
    assert not progress.redraw and progress.interval == 10.0
    for t in (2.0, 5.0, 12.0, 13.0):
        clock.now = 100.0 + t
        progress.update(Snapshot(1, 8))
    progress.finish()
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == ["sparkgmm: pass 1: 12% ETA 14 s (1/8 tasks)",
                                           "sparkgmm: pass 1: 12% ETA 1 min 24 s (1/8 tasks)",
                                           "sparkgmm: pass 1: done in 13 s"]


def test_a_dumb_terminal_gets_lines_too():
    assert Progress("x", FakeTty(), environ={"TERM": "xterm"}).redraw
    assert not Progress("x", FakeTty(), environ={"TERM": "dumb"}).redraw


@pytest.mark.parametrize("environ, tty, shown", [
    ({}, True, True),
    ({}, False, False),
    ({"TERM": "dumb"}, True, False),
    ({"CI": "true"}, True, False),
    ({"CI": "false"}, True, True),
    ({"GITHUB_ACTIONS": "true"}, True, False),
    ({"BUILD_NUMBER": "17"}, True, False),
    ({"AIRFLOW_CTX_DAG_ID": "nightly_fit"}, True, False),
    ({"SPARKGMM_PROGRESS": "always", "CI": "true"}, False, True),
    ({"SPARKGMM_PROGRESS": "ON"}, False, True),
    ({"SPARKGMM_PROGRESS": "never"}, True, False),
    ({"SPARKGMM_PROGRESS": "auto", "CI": "1"}, True, False),
    ({"SPARKGMM_PROGRESS": ""}, True, True),
])
def test_interactive(environ, tty, shown):
    assert interactive(FakeTty() if tty else io.StringIO(), environ) is shown


def test_a_pipe_that_ends_on_a_terminal_counts_as_one_but_is_not_asked_in_ci():
    asked = []

    def reaches_terminal() -> bool:
        asked.append(True)
        return True

    assert interactive(io.StringIO(), {}, reaches_terminal=reaches_terminal)
    assert not interactive(io.StringIO(), {"CI": "true"}, reaches_terminal=reaches_terminal)
    assert not interactive(io.StringIO(), {}, reaches_terminal=lambda: False)
    assert asked == [True]


def test_an_unknown_progress_setting_is_an_input_error():
    with pytest.raises(InputError, match="SPARKGMM_PROGRESS='sometimes'"):
        interactive(FakeTty(), {"SPARKGMM_PROGRESS": "sometimes"})


# --- counting a job's tasks ------------------------------------------------------------------------------------------


def test_skipped_stages_are_not_counted_and_the_first_started_stage_reads_the_rows():
    # stage 4: a shuffle an earlier job computed (never starts); 5 reads the rows (3 of 8 done); 6 reduces (pending)
    stages = [(6, 2, 0, False), (4, 16, 0, False), (5, 8, 3, True)]
    count = count_tasks(stages)
    assert (count.done, count.total, count.reading_done, count.reading_total) == (3, 10, 3, 8)
    assert count.rows_done(1000) == 375.0
    # before anything started nothing can be told skipped
    assert count_tasks([(4, 16, 0, False), (5, 8, 0, False)])[:2] == (0, 24)
    # once the job has ended well, every stage that was not skipped ran all its tasks
    assert count_tasks(finished(stages))[:2] == (10, 10)


# --- track ----------------------------------------------------------------------------------------------------------


def test_track_costs_nothing_when_not_interactive(monkeypatch):
    monkeypatch.setenv("SPARKGMM_PROGRESS", "never")
    threads = threading.active_count()
    with track(object(), "pass 1", total_rows=10) as tracker:  # not a session: it must not be touched
        assert threading.active_count() == threads
        tracker.set_rows(10)


StageInfo = namedtuple("StageInfo", "stage_id num_tasks num_completed_tasks num_bytes_read done")


class FakeConnectSession:
    """Stands in for a Connect session: what ``track`` uses of it is the progress handler registry."""

    def __init__(self) -> None:
        self.handlers = []

    def registerProgressHandler(self, handler) -> None:
        self.handlers.append(handler)

    def removeProgressHandler(self, handler) -> None:
        self.handlers.remove(handler)


FakeConnectSession.__module__ = "pyspark.sql.connect.session"  # how sparkgmm tells a Connect session


def test_track_under_connect_follows_the_servers_reports(monkeypatch):
    monkeypatch.setenv("SPARKGMM_PROGRESS", "always")
    monkeypatch.setenv("TERM", "xterm")
    spark, out = FakeConnectSession(), FakeTty()
    with track(spark, "pass 2", total_rows=4000, stream=out, threshold=0.0):
        [handler] = spark.handlers
        handler(stages=[StageInfo(0, 4, 1, 0, False)], inflight_tasks=2, operation_id="op", done=False)
        # the last report, as the client sends it when the query ends: stage 1 (1 task) ran after the report before
        handler(stages=[StageInfo(0, 4, 4, 0, True), StageInfo(1, 1, 0, 0, False)], inflight_tasks=0,
                operation_id="op", done=True)
    assert spark.handlers == []
    lines = drawn(out.getvalue())
    assert lines[0].startswith("sparkgmm: pass 2: 1.00k/4.00k rows 25% ") and lines[0].endswith(" (1/4 tasks)")
    assert re.fullmatch(r"sparkgmm: pass 2: 4\.00k rows done in 0 s \(.* rows/s\)", lines[-1])


def test_track_under_connect_reports_where_failed_work_stopped(monkeypatch):
    monkeypatch.setenv("SPARKGMM_PROGRESS", "always")
    spark, out = FakeConnectSession(), FakeTty()
    with pytest.raises(RuntimeError, match="lost"):
        with track(spark, "pass 2", stream=out, threshold=0.0):
            spark.handlers[0](stages=[StageInfo(0, 4, 1, 0, False)], inflight_tasks=2, operation_id="op", done=False)
            raise RuntimeError("executor lost")
    assert spark.handlers == []
    assert drawn(out.getvalue())[-1] == "sparkgmm: pass 2: stopped after 0 s at 1/4 tasks"


@pytest.mark.spark
def test_track_shows_a_spark_jobs_tasks_as_they_complete(spark, monkeypatch):
    monkeypatch.setenv("SPARKGMM_PROGRESS", "always")
    monkeypatch.setenv("TERM", "xterm")
    sc, out = spark.sparkContext, FakeTty()

    def slow_count(rows):  # nested: pickled by value, the workers cannot import this test module
        time.sleep(0.4)  # the workload: two waves of tasks on two cores take most of a second
        yield sum(1 for _ in rows)

    with track(spark, "pass 1 (E-step)", total_rows=4000, stream=out, threshold=0.2):
        total = sc.parallelize(range(4000), 4).mapPartitions(slow_count).sum()
    assert total == 4000
    lines = drawn(out.getvalue())
    counted = [line for line in lines if re.search(r"/4\.00k rows \d+% .*\([0-3]/4 tasks\)", line)]
    assert counted, lines
    assert re.fullmatch(r"sparkgmm: pass 1 \(E-step\): 4\.00k rows done in \d+ s \(.* rows/s\)", lines[-1]), lines
    assert out.getvalue().endswith("\n")
    assert not any(tag.startswith("sparkgmm-progress") for tag in sc.getJobTags())
    assert not any(thread.name == "sparkgmm-progress" for thread in threading.enumerate())
