"""Checkpoints through Spark: a fit interrupted mid-way resumes from its checkpoint directory (through Hadoop's
FileSystem) and ends with the model of an uninterrupted fit; a checkpoint of another input or config is refused; a
finished fit removes its checkpoint unless asked to keep it; nothing sparkgmm reads can run code when loaded."""

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import make_mixture
from test_spark_fit import frame
from sparkgmm import GaussianMixture, Mixture
from sparkgmm.checkpoint import CheckpointError
from sparkgmm.spark.blocks import FeatureBlocks

pytestmark = pytest.mark.spark


class Interrupted(Exception):
    """Stands for the driver dying: raised by the pass runner instead of running a pass."""


@pytest.fixture(scope="module")
def data():
    X, _ = make_mixture("full", n_components=4, n_features=3, seed=2, separation=2.5).sample(3000, seed=1)
    return X


def estimator(checkpoint_dir, **params):
    settings = dict(k=4, seed=9, nInit=2, tol=1e-7, maxIter=60, checkpointDir=str(checkpoint_dir))
    settings.update(params)
    return GaussianMixture(**settings)


def interrupt_after(monkeypatch, passes: int):
    """Let ``passes`` passes run, then fail the next one, as a killed driver would never run it."""
    run_pass = FeatureBlocks.run_pass
    made = []

    def counted(self, requests, description):
        if len(made) == passes:
            raise Interrupted(description)
        made.append(description)
        return run_pass(self, requests, description)

    monkeypatch.setattr(FeatureBlocks, "run_pass", counted)
    return made


def checkpoints(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def assert_same_model(a, b):
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.summary.logLikelihoodHistory == b.summary.logLikelihoodHistory
    assert (a.summary.numIter, a.summary.converged, a.summary.clusterSizes, a.summary.bestRestart) == (
        b.summary.numIter, b.summary.converged, b.summary.clusterSizes, b.summary.bestRestart)


def test_an_interrupted_fit_resumes_from_its_checkpoint_and_ends_with_the_uninterrupted_model(spark, data, tmp_path,
                                                                                              monkeypatch):
    df = frame(spark, data, 3)
    uninterrupted = estimator(tmp_path / "unused").fit(df)
    assert uninterrupted.summary.resumedFromPass == 0 and not (tmp_path / "unused").exists()  # removed at the end
    directory = tmp_path / "checkpoints"
    with monkeypatch.context() as patch:
        made = interrupt_after(patch, 15)
        with pytest.raises(Interrupted):
            estimator(directory).fit(df)
    assert len(made) == 15 and any(name.startswith("EM iteration") for name in made)
    assert checkpoints(directory) == ["checkpoint-00000015"]  # the older ones were removed as each new one landed
    state = json.loads((directory / "checkpoint-00000015" / "state.json").read_text())
    assert state["passes"] == 15 and state["iterations"] >= 5

    resumed = estimator(directory).fit(df)
    assert resumed.summary.resumedFromPass == 15
    # The same partitioning and session: the resumed fit adds the same sums in the same order, so it is not just
    # close to the uninterrupted one, it is identical.
    assert_same_model(resumed, uninterrupted)
    assert resumed.summary.numPasses == uninterrupted.summary.numPasses
    assert not directory.exists()

    # A resume over another partitioning of the same rows: only the summation order differs.
    with monkeypatch.context() as patch:
        interrupt_after(patch, 15)
        with pytest.raises(Interrupted):
            estimator(directory).fit(df)
    elsewhere = estimator(directory).fit(frame(spark, data, 7))
    assert elsewhere.summary.resumedFromPass == 15
    np.testing.assert_allclose(elsewhere.means, uninterrupted.means, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(elsewhere.covariances, uninterrupted.covariances, rtol=1e-9, atol=1e-9)


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
    with pytest.raises(CheckpointError, match=r"its input.rows is 3000, this fit's is 2999"):
        estimator(directory).fit(frame(spark, data[:-1], 3))
    moved = data.copy()
    moved[17, 2] += 1e-9  # the same count of rows, one value changed in its last digits
    with pytest.raises(CheckpointError, match=r"its input.fingerprint is '[0-9a-f]{16}', this fit's is"):
        estimator(directory).fit(frame(spark, moved, 3))
    with pytest.raises(CheckpointError, match=r"its fits\[0\].seed is 9, this fit's is 10"):
        estimator(directory, seed=10).fit(df)
    assert checkpoints(directory) == [last]  # a refused resume leaves the checkpoint as it was


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


def test_a_pickle_in_a_checkpoint_or_a_model_is_never_loaded(spark, data, tmp_path):
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
    # a model directory's parameters: the same refusal
    model_dir = tmp_path / "model"
    Mixture([1.0], [[0.0]], [[[1.0]]]).save(model_dir)
    with np.load(model_dir / "params.npz") as npz:
        arrays = {key: npz[key] for key in npz.files}
    hostile_npz(model_dir / "params.npz", marker, "means", **arrays)
    with pytest.raises(ValueError, match="unreadable .*Object arrays cannot be loaded when allow_pickle=False"):
        Mixture.load(model_dir)
    assert not marker.exists()
    # the payload really is a pickle that runs code: loaded with pickle allowed, it creates the marker
    with np.load(model_dir / "params.npz", allow_pickle=True) as npz:
        npz["means"]
    assert marker.exists()
