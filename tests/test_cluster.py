"""The jobs on a real Spark standalone cluster (scripts/local_cluster.py: a master and two workers, each its own JVM,
on 127.0.0.1), submitted with spark-submit and the zip from scripts/package.py, against local runs of the same jobs.

The driver and executors run a Python that has sparkgmm's dependencies but not sparkgmm itself, so the jobs only
work if the shipped zip reaches every process; a probe shows where each one imported it from.

Every spark-submit costs a driver JVM, a SparkContext and an executor JVM on each worker to start (~10 s of this
machine's CPU), so the module submits ONE application (tests/cluster/probe_application.py): the imports and
parallelism probe, then the three job scripts run in its driver as spark-submit runs them, then the worker-lost probe,
which kills a worker, last. Each test reads its part of the report; the local runs to compare with go on in this
process while the application runs. tests/test_example.py spark-submits each job script on its own (locally).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pyspark
import pytest

from helpers import TEST_JVM_OPTIONS, Background, make_mixture, write_points
from sparkgmm import Mixture
from sparkgmm.cli import run

pytestmark = [pytest.mark.spark, pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"
FEATURES = "x0,x1,x2"
LOCAL_DIRS = "spark-local-dirs"  # in the cluster's state directory
# The fit on the cluster loses worker 1 in the pass of TRIGGER: after the initialisation, so both fits start from the
# same draws on the same partitions. "spark-cache" block storage passes too, but costs another cluster and submit
# (~90 s here); local files are the storage whose blocks sparkgmm itself has to write again after the loss.
TRIGGER, BLOCK_STORAGE = "EM iteration 3", "local-files"


@pytest.fixture(scope="module")
def shipped_only_python(tmp_path_factory) -> str:
    """A virtualenv whose site-packages points at this environment's packages by a plain path entry: numpy, pyspark
    and the rest import, but the editable install of sparkgmm (an import hook registered by a .pth file there) is
    never activated, so sparkgmm does not import."""
    venv = tmp_path_factory.mktemp("shipped-only") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "test-environment-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    # as start() runs the jobs: without the PYTHONPATH a test run may set (to this checkout)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    deps = subprocess.run([python, "-c", "import numpy, scipy, pyarrow, pandas, pyspark"], capture_output=True,
                          text=True, cwd="/", env=env)
    assert deps.returncode == 0, deps.stderr
    own = subprocess.run([python, "-c", "import sparkgmm"], capture_output=True, text=True, cwd="/", env=env)
    assert own.returncode != 0 and "No module named 'sparkgmm'" in own.stderr
    return python


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("dist") / "sparkgmm.zip"
    built = subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), "--output", str(out)],
                           capture_output=True, text=True, check=True)
    assert built.stdout.strip() == str(out)
    return str(out)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module: a master and two workers of two cores each, with their own Spark local
    directories (a worker killed by a test never removes its own); yields (master URL, state directory). With two
    cores per worker a pass's task count can follow the cores registered (Spark's default parallelism is at least 2
    whatever the cores, so one-core workers could not show it). The module's last test kills one of its workers."""
    state = tmp_path_factory.mktemp("cluster")
    (state / LOCAL_DIRS).mkdir()
    script = [str(ROOT / "scripts" / "local-cluster")]
    env = {**os.environ, "SPARKGMM_PYTHON": sys.executable, "SPARK_LOCAL_DIRS": str(state / LOCAL_DIRS)}
    started = subprocess.run([*script, "start", "--state-dir", str(state), "--workers", "2", "--worker-cores", "2",
                              "--worker-memory", "2g"], capture_output=True, text=True, timeout=300, env=env)
    assert started.returncode == 0, started.stderr
    try:
        yield started.stdout.strip(), state
    finally:
        stopped = subprocess.run([*script, "stop", "--state-dir", str(state)], capture_output=True, text=True,
                                 timeout=120, env=env)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(scope="module")
def points(tmp_path_factory) -> tuple[str, np.ndarray]:
    X, _ = make_mixture("full", n_components=3, n_features=3, seed=8, separation=5.0).sample(6000, seed=2)
    return write_points(tmp_path_factory.mktemp("cluster-data") / "points.parquet", X, files=4), X


def fit_args(path: str) -> list[str]:
    return ["--input", path, "--features", FEATURES, "--k", "3", "--seed", "21", "--tol", "1e-8", "--n-init", "2"]


def select_args(path: str) -> list[str]:
    return ["--input", path, "--features", FEATURES, "--k-range", "2:4", "--covariance-types", "full,diag",
            "--seed", "13"]


class Submitted(Background):
    """The application running in the background; ``report()`` waits for it (once), checks it exited 0 and returns
    the JSON line it printed last."""

    def report(self) -> dict:
        result = self.finish(timeout=900)
        assert result.returncode == 0, result.stderr[-4000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


def start(cluster, python: str, package: str, script: str, *args: str, cwd: Path) -> Submitted:
    """spark-submit ``script`` to the cluster and return at once."""
    master, state = cluster
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYSPARK_SUBMIT_ARGS")}
    # the driver's too: where the worker-lost probe looks for block files left
    env.update(PYSPARK_PYTHON=python, PYSPARK_DRIVER_PYTHON=python, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_LOCAL_DIRS=str(state / LOCAL_DIRS))
    command = [
        str(SPARK_SUBMIT), "--master", master, "--py-files", package,
        "--conf", "spark.log.level=WARN", "--conf", "spark.ui.enabled=false", "--conf", "spark.executor.memory=1g",
        "--conf", f"spark.executor.extraJavaOptions={TEST_JVM_OPTIONS}",
        # both executors registered before the first task, so that work is spread over both workers
        "--conf", "spark.scheduler.minRegisteredResourcesRatio=1.0",
        script, *args,
    ]
    return Submitted(command, env, cwd)


@pytest.fixture(scope="module")
def application(cluster, shipped_only_python, package, points, tmp_path_factory):
    """tests/cluster/probe_application.py submitted once for the module, running while the tests start: yields
    (its working directory, where the jobs write their outputs; the Submitted, whose report() has "parallelism",
    "jobs" and "worker_lost"). Its last step kills worker 1 of the cluster."""
    path, _ = points
    _, state = cluster
    workdir = tmp_path_factory.mktemp("application")
    jobs = [[str(ROOT / "jobs" / "fit_gmm.py"), *fit_args(path), "--output", str(workdir / "cluster-model")],
            [str(ROOT / "jobs" / "predict_gmm.py"), "--model", str(workdir / "cluster-model"), "--input", path,
             "--output", str(workdir / "scores"), "--keep-cols", "id"],
            [str(ROOT / "jobs" / "select_k_gmm.py"), *select_args(path), "--output",
             str(workdir / "cluster-selection")]]
    submitted = start(cluster, shipped_only_python, package, str(ROOT / "tests" / "cluster" / "probe_application.py"),
                      "--state-dir", str(state), "--jobs", json.dumps(jobs), "--block-storage", BLOCK_STORAGE,
                      "--trigger", TRIGGER, cwd=workdir)
    try:
        yield workdir, submitted
    finally:
        submitted.stop()  # a test that failed before waiting for it: not left running when the cluster stops


@pytest.fixture(scope="module")
def probe(application) -> dict:
    """tests/cluster/probe_parallelism.py's report, from the application: where sparkgmm was imported from (under
    "imports") and how passes follow the executors registered (the rest)."""
    return application[1].report()["parallelism"]


def test_fit_predict_and_select_on_four_cores_match_local_runs_on_two(spark, application, points, tmp_path):
    """The jobs give on the cluster what they give locally, and determinism across cores: on two 2-core workers every
    pass runs four tasks over the input's four files, locally two; the initialisation draws the same rows (their
    draws come from their values) and only the order of the tree-reduce's sums differs. The local runs go on while
    the cluster's application runs (the jobs run in its driver, after the parallelism probe)."""
    path, X = points
    outputs, submitted = application
    assert run("fit", [*fit_args(path), "--output", str(tmp_path / "local-model")]) == 0
    assert run("select", [*select_args(path), "--output", str(tmp_path / "local-selection")]) == 0
    jobs = submitted.report()["jobs"]
    assert [(Path(job["script"]).name, job["exit_code"]) for job in jobs] == [
        ("fit_gmm.py", 0), ("predict_gmm.py", 0), ("select_k_gmm.py", 0)]
    on_cluster = json.loads((outputs / "cluster-model" / "metrics.json").read_text())
    local = json.loads((tmp_path / "local-model" / "metrics.json").read_text())
    assert (outputs / "cluster-model" / "_SUCCESS").exists()
    assert on_cluster["n_iter"] == local["n_iter"] and on_cluster["n_rows"] == local["n_rows"] == len(X)
    assert on_cluster["restarts"][0]["initPasses"] == local["restarts"][0]["initPasses"]
    np.testing.assert_allclose(on_cluster["log_likelihood"], local["log_likelihood"], rtol=1e-10)
    cluster_mixture, local_mixture = Mixture.load(outputs / "cluster-model"), Mixture.load(tmp_path / "local-model")
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(getattr(cluster_mixture, name), getattr(local_mixture, name), rtol=1e-9,
                                   atol=1e-12, err_msg=name)
    np.testing.assert_allclose(cluster_mixture.means, local_mixture.means, rtol=1e-8)
    np.testing.assert_allclose(cluster_mixture.covariances, local_mixture.covariances, rtol=1e-8)
    np.testing.assert_allclose(on_cluster["log_likelihood"], cluster_mixture.score(X), rtol=1e-10)

    scores = pq.read_table(outputs / "scores").sort_by("id")
    assert scores.column_names == ["id", "prediction", "probability", "log_density"]
    np.testing.assert_array_equal(scores["id"].to_numpy(), np.arange(len(X)))
    np.testing.assert_array_equal(scores["prediction"].to_numpy(), cluster_mixture.predict(X))
    np.testing.assert_allclose(scores["log_density"].to_numpy(), cluster_mixture.score_samples(X), rtol=1e-12)

    on_cluster = json.loads((outputs / "cluster-selection" / "candidates.json").read_text())
    local = json.loads((tmp_path / "local-selection" / "candidates.json").read_text())
    assert on_cluster["best"] == local["best"] and on_cluster["best"]["k"] == 3
    for a, b in zip(on_cluster["candidates"], local["candidates"], strict=True):
        assert (a["k"], a["covariance_type"], a["n_iter"]) == (b["k"], b["covariance_type"], b["n_iter"])
        np.testing.assert_allclose(a["bic"], b["bic"], rtol=1e-10)
    assert (outputs / "cluster-selection" / "best" / "metrics.json").exists()


def test_driver_and_executors_import_sparkgmm_only_from_the_shipped_zip(cluster, shipped_only_python, package, probe):
    report = probe["imports"]
    assert report["driver"].startswith(package + os.sep) and report["driver_python"] == shipped_only_python
    executors = report["executors"]
    assert len(executors) == 8
    for task in executors:
        assert Path(task["file"]).parts[-3:] == ("sparkgmm.zip", "sparkgmm", "__init__.py"), task
        assert task["python"] == shipped_only_python
        assert task["bare_import_rc"] != 0 and "No module named 'sparkgmm'" in task["bare_import_error"][0]
    _, state = cluster
    workers = {Path(task["cwd"]).relative_to(state).parts[0] for task in executors}
    assert workers == {"work-0", "work-1"}  # tasks ran in both workers' executors


def test_passes_follow_the_executors_registered_and_read_balanced_rows(probe):
    report = probe
    assert report["input_rows"][0] == 7000 and sum(report["input_rows"]) == 10_000  # one partition holds 70%
    assert report["rebalanced"] and report["killed"] and report["requested"]
    both, one, rejoined = report["both executors"], report["one executor"], report["a new executor joined"]
    for snapshot, cores in ((both, 4), (one, 2), (rejoined, 4)):
        # one task per core registered when the pass started, every one reading its share of the rows
        assert snapshot["parallelism"] == snapshot["tasks"] == len(snapshot["task_rows"]) == cores
        assert sum(snapshot["task_rows"]) == 10_000
        assert max(snapshot["task_rows"]) <= 1.25 * 10_000 / cores
    assert len(both["executors"]) == 2 and set(one["executors"]) < set(both["executors"])
    # The files of the executor that left were written again from the input: every pass answers the same.
    for snapshot in (one, rejoined):
        assert snapshot["hard_counts"] == both["hard_counts"]
        np.testing.assert_allclose(snapshot["log_likelihood"], both["log_likelihood"], rtol=1e-12)
        np.testing.assert_allclose(snapshot["second"], both["second"], rtol=1e-10)


# The last part of the application: it kills a worker of cluster.
def test_a_fit_survives_losing_a_worker_and_ends_with_the_model_on_both(cluster, application):
    trigger, block_storage = TRIGGER, BLOCK_STORAGE
    _, state = cluster
    report = application[1].report()["worker_lost"]
    assert report["trigger"] == trigger and report["block_storage"] == block_storage
    before, after, baseline, faulted = report["before"], report["after"], report["baseline"], report["faulted"]
    assert before["parallelism"] == 4 and len(before["executors"]) == 2 and before["master_alive_workers"] == 2
    assert before["workers_running_tasks"] == ["work-0", "work-1"]

    # The fault: in the pass of EM iteration 3, a task on worker 0 SIGKILLed worker 1's JVM while a task of the same
    # pass ran on worker 1; worker 1's executor exited with it.
    marker, held, killed = faulted["marker"], faulted["held"], faulted["killed"]
    assert Path(marker["cwd"]).relative_to(state).parts[0] == "work-0" and marker["victim"] == "work-1"
    assert marker["victim_task_running"] and held["worker"] == "work-1" and held["stage"] == marker["stage"]
    assert killed["gone"] and not faulted["victim_worker_alive"]
    assert held["executor_pid"] in faulted["victim_executor_pids"] and faulted["victim_executors_alive"] == []
    (injected,) = faulted["injected_passes"]
    passes = {p["number"]: p for p in faulted["passes"]}
    assert passes[injected]["description"] == trigger
    assert marker["stage"] in {s["stage"] for s in passes[injected]["stages"]}

    # Then the fit went on with one executor: 4 tasks per pass up to the fault, whose attempts on worker 1 were lost
    # and ran again on worker 0, and one task per core left (2) in every pass after it.
    assert after["parallelism"] == 2 and len(after["executors"]) == 1
    assert set(after["executors"]) < set(before["executors"])
    assert after["workers_running_tasks"] == ["work-0"] and list(after["executor_jvms"]) == ["work-0"]
    assert after["master_alive_workers"] == 1
    assert after["persisted_rdds"] == 0 and after["block_files_left"] == []  # the fit released its blocks
    assert all(p["tasks"] == 4 and p["failed"] == 0 for p in baseline["passes"])
    for number, p in passes.items():
        if number < injected:
            assert (p["tasks"], p["failed"]) == (4, 0), p
        elif number == injected:
            assert p["tasks"] == 4 and p["failed"] >= 1, p
        else:
            assert (p["tasks"], p["failed"]) == (2, 0), p

    # The same model. Not bit for bit: after the fault each task sums two of the baseline's partitions before the
    # tree-reduce does, so the floating-point summation order differs (relative differences ~1e-15 seen; rtol 1e-8).
    model, expected = faulted["model"], baseline["model"]
    assert model["block_storage"] == expected["block_storage"] == block_storage
    assert model["n_iter"] == expected["n_iter"] and model["passes"] == expected["passes"] and model["converged"]
    for key in ("weights", "means", "covariances", "history"):
        np.testing.assert_allclose(model[key], expected[key], rtol=1e-8, err_msg=key)
