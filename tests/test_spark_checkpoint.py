"""Checkpoints through Spark: a fit interrupted mid-way resumes from its checkpoint directory (through Hadoop's
FileSystem) and ends with the model of an uninterrupted fit; a checkpoint of another input or config is refused; a
finished fit removes its checkpoint unless asked to keep it; nothing sparkgmm reads can run code when loaded."""

import json
from pathlib import Path

import numpy as np
import pytest

from helpers import Interrupted, frame, interrupt_after, make_mixture, write_format_1_model_dir, write_points
from sparkgmm import GaussianMixture, Mixture
from sparkgmm.checkpoint import CheckpointError

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def data():
    # 1,000 rows: the fit of estimator() below makes 24 passes; its first restart converges after 10 iterations (12
    # passes), its second after 22 (23 passes) (measured), so an interruption after 15 passes falls after one
    # restart's end and in the middle of the other's. (3,000 rows took 62 passes, to maxIter, for the same test.)
    X, _ = make_mixture("full", n_components=4, n_features=3, seed=2, separation=2.5).sample(1000, seed=1)
    return X


def estimator(checkpoint_dir, **params):
    settings = dict(k=4, seed=9, nInit=2, tol=1e-7, maxIter=60, checkpointDir=str(checkpoint_dir))
    settings.update(params)
    return GaussianMixture(**settings)


def checkpoints(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def assert_same_model(a, b):
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.summary.logLikelihoodHistory == b.summary.logLikelihoodHistory
    assert (a.summary.numIter, a.summary.converged, a.summary.clusterSizes, a.summary.bestRestart) == (
        b.summary.numIter, b.summary.converged, b.summary.clusterSizes, b.summary.bestRestart)


@pytest.fixture(params=["direct", "hadoop"])
def file_system(request, monkeypatch):
    """Checkpoints in a local directory go through Python's file functions; anywhere else, through the JVM's Hadoop
    FileSystem: "hadoop" sends the local directory that way too, so both code paths are exercised here."""
    if request.param == "hadoop":
        from sparkgmm.spark.outputs import HadoopFiles

        monkeypatch.setattr(HadoopFiles, "local_path", lambda self, path: None)  # as if the directory were remote
    return request.param


@pytest.fixture(scope="module")
def uninterrupted(spark, data, tmp_path_factory):
    """The fit that no interruption stops, made once for both file systems (checkpoints never change a model)."""
    unused = tmp_path_factory.mktemp("uninterrupted") / "unused"
    model = estimator(unused).fit(frame(spark, data, 3))
    assert model.summary.resumedFromPass == 0 and not unused.exists()  # removed at the end
    return model


@pytest.mark.slow
def test_an_interrupted_fit_resumes_from_its_checkpoint_and_ends_with_the_uninterrupted_model(spark, data, tmp_path,
                                                                                              monkeypatch, file_system,
                                                                                              uninterrupted):
    import shutil

    df = frame(spark, data, 3)
    directory = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        made = interrupt_after(patch, 15)
        with pytest.raises(Interrupted):
            estimator(directory).fit(df)
    assert len(made) == 15 and any(name.startswith("EM iteration") for name in made)
    assert checkpoints(directory) == ["checkpoint-00000015"]  # the older ones were removed as each new one landed
    state = json.loads((directory / "checkpoint-00000015" / "state.json").read_text())
    assert state["passes"] == 15 and state["iterations"] >= 5
    assert uninterrupted.summary.numPasses > 15  # the interruption came before the end of the fit
    if file_system == "direct":  # kept for the resume over another partitioning, below
        shutil.copytree(directory, tmp_path / "copy")

    resumed = estimator(directory).fit(df)
    assert resumed.summary.resumedFromPass == 15
    # The same partitioning and session: the resumed fit adds the same sums in the same order, so it is not just
    # close to the uninterrupted one, it is identical.
    assert_same_model(resumed, uninterrupted)
    assert resumed.summary.numPasses == uninterrupted.summary.numPasses
    assert not directory.exists()

    if file_system == "hadoop":
        return  # the rest is about the partitioning, not the file system
    # A resume over another partitioning of the same rows, from the same checkpoint (a copy of the interrupted fit's
    # directory, taken before the resume above removed it): only the summation order differs.
    elsewhere = estimator(tmp_path / "copy").fit(frame(spark, data, 7))
    assert elsewhere.summary.resumedFromPass == 15
    np.testing.assert_allclose(elsewhere.means, uninterrupted.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(elsewhere.covariances, uninterrupted.covariances, rtol=1e-9, atol=1e-9)


@pytest.mark.slow
def test_model_selection_resumes_every_candidate(spark, tmp_path, monkeypatch):
    import sparkgmm.candidates as candidates
    from sparkgmm import select_model

    # Its own 3,000 rows of the module's mixture: on the 1,000 of ``data`` the candidates take more passes (measured:
    # 9.0 s against 7.3 s).
    data, _ = make_mixture("full", n_components=4, n_features=3, seed=2, separation=2.5).sample(3000, seed=1)
    df = frame(spark, data, 3)
    params = dict(k=[2, 3, 4], covarianceTypes=["full", "diag"], seed=2, tol=1e-6, maxIter=40)
    whole = select_model(df, **params)
    assert max(row["passes"] for row in whole.candidates) > 12  # the interruption below comes mid-fit
    directory = tmp_path / "selection"
    with monkeypatch.context() as patch:
        interrupt_after(patch, 12)
        with pytest.raises(Interrupted):
            select_model(df, checkpointDir=str(directory), **params)
    with monkeypatch.context() as patch:  # the checkpoint holds every candidate's start: no second sample search
        patch.setattr(candidates, "search_sample", lambda *_: pytest.fail("the sample was searched again"))
        resumed = select_model(df, checkpointDir=str(directory), **params)
    assert all(model.summary.resumedFromPass == 12 for model in resumed.models)
    assert all(model.summary.sampleRows == data.shape[0] and model.summary.sampleSearchSeconds > 0
               for model in resumed.models)
    assert resumed.best == whole.best and not directory.exists()
    for a, b in zip(resumed.models, whole.models, strict=True):
        assert_same_model(a, b)


@pytest.mark.slow
def test_a_checkpoint_of_other_data_or_settings_is_refused_and_one_can_be_kept(spark, data, tmp_path):
    df = frame(spark, data, 3)
    directory = tmp_path / "kept"
    kept = estimator(directory, keepCheckpoint=True).fit(df)
    (last,) = checkpoints(directory)
    # Resuming a finished fit reads no row again: every restart's result is in the checkpoint.
    again = estimator(directory, keepCheckpoint=True).fit(df)
    assert_same_model(again, kept)
    assert again.summary.resumedFromPass == int(last.split("-")[1])

    with pytest.raises(CheckpointError, match=r"its fits\[0\].max_iter is 60, this fit's is 61"):
        estimator(directory, maxIter=61).fit(df)
    with pytest.raises(CheckpointError, match=r"its input.rows is 1000, this fit's is 999"):
        estimator(directory).fit(frame(spark, data[:-1], 3))
    moved = data.copy()
    moved[17, 2] += 1e-9  # the same count of rows, one value changed in its last digits
    with pytest.raises(CheckpointError, match=r"its input.fingerprint is '[0-9a-f]{16}', this fit's is"):
        estimator(directory).fit(frame(spark, moved, 3))
    with pytest.raises(CheckpointError, match=r"its fits\[0\].seed is 9, this fit's is 10"):
        estimator(directory, seed=10).fit(df)
    assert checkpoints(directory) == [last]  # a refused resume leaves the checkpoint as it was


def test_a_checkpoint_rewritten_for_the_same_pass_replaces_the_old_one_only_once_whole(spark, tmp_path, monkeypatch,
                                                                                       file_system):
    """A resume re-saves the pass it resumed from: the checkpoint there stays whole until the new one is in place."""
    from sparkgmm.files import LocalFiles
    from sparkgmm.spark import checkpoints as store_module
    from sparkgmm.spark.outputs import HadoopFiles

    monkeypatch.setattr(store_module, "encode", lambda key, runs, passes: ({"passes": passes, "key": key},
                                                                           {"a0": np.arange(3.0)}))
    directory = tmp_path / "checkpoints"
    store = store_module.CheckpointStore(spark, str(directory))
    store.save("first", [], 5)
    first = (directory / "checkpoint-00000005" / "state.json").read_text()

    copy_in = {files_class: files_class.copy_in for files_class in (LocalFiles, HadoopFiles)}

    def copy_then_fail(self, local, path):
        copy_in[type(self)](self, local, path)
        raise OSError("disk full")

    for files_class in copy_in:
        monkeypatch.setattr(files_class, "copy_in", copy_then_fail)
    with pytest.raises(OSError, match="disk full"):
        store.save("second", [], 5)
    assert checkpoints(directory) == ["checkpoint-00000005"]
    assert (directory / "checkpoint-00000005" / "state.json").read_text() == first


class _Hostile:
    """Unpickling this would create a file: proof that nothing was unpickled when the file is absent."""

    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def hostile_npz(path: Path, marker: Path, replace: str, **arrays) -> None:
    """Rewrite an .npz with the array ``replace`` swapped for a pickled object that would create ``marker``."""
    payload = _Hostile()
    payload.marker = marker
    with open(path, "wb") as f:
        np.savez(f, **{**arrays, replace: np.array([payload], dtype=object)})


def test_a_pickle_in_a_checkpoint_or_a_model_is_never_loaded(spark, data, tmp_path, file_system):
    df = frame(spark, data, 3)
    directory = tmp_path / "checkpoints"
    estimator(directory, keepCheckpoint=True, maxIter=3, nInit=1).fit(df)
    (name,) = checkpoints(directory)
    marker = tmp_path / "code-ran"
    with np.load(directory / name / "arrays.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    hostile_npz(directory / name / "arrays.npz", marker, "a0", **arrays)
    with pytest.raises(CheckpointError, match=f"no readable checkpoint in {directory}: .* is damaged: ValueError: "
                                              "Object arrays cannot be loaded when allow_pickle=False"):
        estimator(directory, keepCheckpoint=True, maxIter=3, nInit=1).fit(df)
    assert not marker.exists()
    # a model directory's parameters (format version 1 kept them in an .npz; version 2 in Parquet): the same refusal
    model_dir = tmp_path / "model"
    write_format_1_model_dir(model_dir, Mixture([1.0], [[0.0]], [[[1.0]]]))
    with np.load(model_dir / "params.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    hostile_npz(model_dir / "params.npz", marker, "means", **arrays)
    with pytest.raises(ValueError, match=r"unreadable .*Object arrays cannot be loaded when allow_pickle=False"):
        Mixture.load(model_dir)
    assert not marker.exists()
    # the payload really is a pickle that runs code: loaded with pickle allowed, it creates the marker
    with np.load(model_dir / "params.npz", allow_pickle=True) as npz:
        npz["means"]
    assert marker.exists()


def newest_checkpoint_iterations(directory: Path) -> int:
    """EM iterations in the newest whole checkpoint (0 if none yet). Checkpoints appear by rename, whole; an older
    one may vanish while it is being read."""
    try:
        newest = max((p for p in directory.iterdir() if p.name.startswith("checkpoint-")), default=None)
        return 0 if newest is None else json.loads((newest / "state.json").read_text())["iterations"]
    except FileNotFoundError:
        return 0


@pytest.mark.slow
def test_the_fit_job_killed_with_sigkill_resumes_from_the_last_iteration_when_run_again(spark, tmp_path, caplog):
    """The fit job is SIGKILLed once its checkpoints hold 5 of its 20 iterations (mid-fit), run again, and ends with
    the model of an uninterrupted run. The uninterrupted run goes on in this process while the job starts and is
    watched, and killed, from a thread. Neither the kill nor the resume depends on the size of the data: 2,000 rows
    keep each pass short, and 20 iterations leave the watcher (polling every 0.05 s) 15 passes of the job's to land
    the kill before the job ends."""
    import logging
    import os
    import signal
    import subprocess
    import sys
    import time
    from concurrent.futures import ThreadPoolExecutor

    from sparkgmm.cli import run

    X, _ = make_mixture("full", n_components=4, n_features=3, seed=5, separation=2.0).sample(2_000, seed=3)
    path = write_points(tmp_path / "in.parquet", X, files=3)
    directory = tmp_path / "checkpoints"
    max_iter = 20
    args = ["--input", path, "--features", "x0,x1,x2", "--k", "4", "--seed", "3", "--tol", "0", "--max-iter",
            str(max_iter), "--acceleration", "none"]
    killed = subprocess.Popen([sys.executable, "-m", "sparkgmm", "fit", *args, "--output", str(tmp_path / "model"),
                               "--checkpoint-dir", str(directory)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def kill_after_5_iterations() -> int:
        try:
            deadline = time.monotonic() + 300
            while newest_checkpoint_iterations(directory) < 5:  # poll what the job wrote; a deadline decides
                assert killed.poll() is None, f"the job ended before it could be killed: {killed.stderr.read()[-2000:]}"
                assert time.monotonic() < deadline, "no checkpoint of 5 iterations within 300 s"
                time.sleep(0.05)
            os.kill(killed.pid, signal.SIGKILL)  # the driver dies at once: no clean-up, no exit code of its own
            return killed.wait(timeout=60)
        finally:
            if killed.poll() is None:
                killed.kill()
                killed.wait()

    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(kill_after_5_iterations)
        try:
            assert run("fit", [*args, "--output", str(tmp_path / "uninterrupted")]) == 0
        finally:
            returncode = watcher.result()
    assert returncode == -signal.SIGKILL
    killed.stderr.close()
    done = newest_checkpoint_iterations(directory)
    assert 5 <= done < max_iter and not (tmp_path / "model").exists()

    with caplog.at_level(logging.INFO, logger="sparkgmm"):
        assert run("fit", [*args, "--output", str(tmp_path / "model"), "--checkpoint-dir", str(directory)]) == 0
    assert "resuming from checkpoint" in caplog.text
    assert not directory.exists()  # the output is written: the checkpoint has served
    resumed_metrics = json.loads((tmp_path / "model" / "metrics.json").read_text())
    whole_metrics = json.loads((tmp_path / "uninterrupted" / "metrics.json").read_text())
    assert resumed_metrics["resumed_from_pass"] > 0 and whole_metrics["resumed_from_pass"] == 0
    assert resumed_metrics["n_iter"] == whole_metrics["n_iter"] == max_iter
    resumed, whole = Mixture.load(tmp_path / "model"), Mixture.load(tmp_path / "uninterrupted")
    # Another JVM and process before the kill, but the same partitioning: the sums are added in the same order.
    difference = max(float(np.max(np.abs(getattr(resumed, name) - getattr(whole, name))))
                     for name in ("weights", "means", "covariances"))
    assert difference <= 1e-12, (
        f"resumed after {done} of {max_iter} iterations; largest parameter difference from the uninterrupted fit: "
        f"{difference:.3g}")
    assert [h["log_likelihood"] for h in resumed_metrics["history"]] == pytest.approx(
        [h["log_likelihood"] for h in whole_metrics["history"]], rel=1e-13)
