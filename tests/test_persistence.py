"""Saving and loading ``Mixture``: JSON + npz, round trips exactly, refuses damaged or foreign directories."""

import json

import numpy as np
import pytest

from conftest import make_mixture
from sparkgmm import Mixture, ModelFormatError


def test_round_trip_is_exact(tmp_path, covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4)
    mixture.save(tmp_path / "model")
    loaded = Mixture.load(tmp_path / "model")
    assert loaded.covariance_type == covariance_type
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(mixture, name))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["metadata.json", "params.npz"]


def test_existing_path_needs_overwrite(tmp_path):
    mixture = make_mixture("diag")
    mixture.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match="overwrite"):
        mixture.save(tmp_path / "model")
    other = make_mixture("spherical")
    other.save(tmp_path / "model", overwrite=True)
    assert Mixture.load(tmp_path / "model").covariance_type == "spherical"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging directory left behind


def damage(path, how):
    if how == "no metadata":
        (path / "metadata.json").unlink()
    elif how == "garbage metadata":
        (path / "metadata.json").write_text("{not json")
    elif how == "foreign format":
        (path / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    elif how == "future version":
        meta = json.loads((path / "metadata.json").read_text())
        meta["format_version"] = 99
        (path / "metadata.json").write_text(json.dumps(meta))
    elif how == "no params":
        (path / "params.npz").unlink()
    elif how == "truncated params":
        data = (path / "params.npz").read_bytes()
        (path / "params.npz").write_bytes(data[: len(data) // 2])
    elif how == "wrong shape":
        with np.load(path / "params.npz") as npz:
            arrays = dict(npz)
        arrays["means"] = arrays["means"][:, :2]
        np.savez(path / "params.npz", **arrays)
    elif how == "wrong dtype":
        with np.load(path / "params.npz") as npz:
            arrays = dict(npz)
        arrays["weights"] = arrays["weights"].astype(np.float32)
        np.savez(path / "params.npz", **arrays)
    elif how == "pickled object array":
        with np.load(path / "params.npz") as npz:
            arrays = dict(npz)
        arrays["weights"] = np.array([object()] * 3, dtype=object)
        np.savez(path / "params.npz", **arrays)
    elif how == "not positive definite":
        with np.load(path / "params.npz") as npz:
            arrays = dict(npz)
        arrays["covariances"] = -arrays["covariances"]
        np.savez(path / "params.npz", **arrays)


@pytest.mark.parametrize(
    "how",
    ["no metadata", "garbage metadata", "foreign format", "future version", "no params", "truncated params",
     "wrong shape", "wrong dtype", "pickled object array", "not positive definite"],
)
def test_damaged_model_fails_clearly(tmp_path, how):
    make_mixture("full", n_components=3, n_features=4).save(tmp_path / "model")
    damage(tmp_path / "model", how)
    with pytest.raises(ModelFormatError, match=str(tmp_path / "model")):
        Mixture.load(tmp_path / "model")


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="not a directory"):
        Mixture.load(tmp_path / "nowhere")
