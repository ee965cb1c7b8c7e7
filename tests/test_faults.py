"""Real faults in the middle of a fit (not mocks): a Python worker SIGKILLed, a task raising. Spark retries the task,
and the fit must end with the model of the same fit without the fault.

tests/faults/probe_local_faults.py runs every case in one subprocess, one local[2,4] JVM (a task may fail 4 times),
and injects each fault into the pass of "EM iteration 3" (an extra request in that pass faults on the first block of
task 0, exactly once: tests/faults/injection.py). A worker lost on a standalone cluster is in test_cluster.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = [pytest.mark.spark, pytest.mark.slow]

PROBE = Path(__file__).resolve().parent / "faults" / "probe_local_faults.py"
TRIGGER = "EM iteration 3"
STORAGES = ("local-files", "spark-cache")
# what Spark logs (WARN TaskSetManager: Lost task ...) for the failed attempt of each fault
FAILURE_TEXT = {
    "python-worker-killed": "Python worker exited unexpectedly (crashed)",
    "task-raised": "RuntimeError: injected fault: task-raised",
}


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> tuple[dict, str, Path]:
    """Every fit of the probe: (its JSON report, its stderr with Spark's log, its working directory)."""
    workdir = tmp_path_factory.mktemp("faults")
    result = subprocess.run([sys.executable, str(PROBE), "--workdir", str(workdir), "--trigger", TRIGGER],
                            capture_output=True, text=True, timeout=1200, cwd=workdir)
    assert result.returncode == 0, result.stderr[-6000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr, workdir


def lost_task_log(stderr: str, stage: int, tid: int) -> str:
    """Spark's log entry for the failed attempt (stage, task id), up to the next log line."""
    found = re.search(rf"Lost task \d+\.\d+ in stage {stage}\.\d+ \(TID {tid}\).*?(?=^\d\d/\d\d/\d\d |\Z)", stderr,
                      re.S | re.M)
    assert found, f"no 'Lost task' entry for stage {stage}, TID {tid} in the probe's log"
    return found.group(0)


def test_the_probe_ran_in_local_mode_with_task_retries_and_cleaned_up(probe):
    report, _, _ = probe
    assert report["master"] == "local[2,4]"
    assert report["persisted_rdds"] == 0 and report["block_files_left"] == []
    for storage in STORAGES:
        baseline = report["fits"][f"baseline/{storage}"]
        # the fault lands mid-fit: iteration 3 is neither the first EM pass nor the last
        assert baseline["model"]["n_iter"] > 3 and baseline["model"]["converged"]
        assert all(p["failed"] == 0 for p in baseline["passes"])
        assert baseline["model"]["block_storage"] == storage


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("fault", sorted(FAILURE_TEXT))
def test_a_fit_survives_a_fault_and_ends_with_the_model_without_it(probe, fault, storage):
    report, stderr, workdir = probe
    baseline, faulted = report["fits"][f"baseline/{storage}"], report["fits"][f"{fault}/{storage}"]

    # The fault happened, once: the marker of task 0's first attempt, in the pass of EM iteration 3 ...
    assert (workdir / f"{fault}-{storage}.marker").exists()
    marker = faulted["marker"]
    assert marker is not None, f"no fault was injected (passes: {[p['description'] for p in faulted['passes']]})"
    assert marker["kind"] == fault and marker["partition"] == 0 and marker["attempt"] == 0
    assert not faulted["faulted_process_alive"]  # the Python worker that ran it is gone
    (injected,) = faulted["injected_passes"]
    passes = {p["number"]: p for p in faulted["passes"]}
    assert passes[injected]["description"] == TRIGGER
    # ... Spark's status tracker saw exactly that one attempt fail (and retried it), no other in the whole fit ...
    assert passes[injected]["failed"] == 1
    assert all(p["failed"] == 0 for number, p in passes.items() if number != injected)
    assert [p["tasks"] for p in faulted["passes"]] == [p["tasks"] for p in baseline["passes"]]
    # ... and its log says why: the worker crashed, or the task raised.
    assert FAILURE_TEXT[fault] in lost_task_log(stderr, marker["stage"], marker["task_attempt_id"])

    # The retried task read the same blocks and the answers were reduced in the same order: the same model, bit for
    # bit (tighter than any rtol), after the same iterations.
    model, expected = faulted["model"], baseline["model"]
    assert model["n_iter"] == expected["n_iter"] and model["converged"] == expected["converged"]
    assert model["passes"] == expected["passes"]
    for key in ("weights", "means", "covariances", "history"):
        np.testing.assert_array_equal(np.array(model[key]), np.array(expected[key]), err_msg=key)
    assert model["log_likelihood"] == expected["log_likelihood"]
