"""The model directory without Spark: exact round trips, pyspark.ml's metadata shape, the old layout still read,
damaged or foreign directories refused by name, and URIs that need Spark refused."""

import ast
import json
import pathlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import make_mixture, write_format_1_model_dir
from sparkgmm import InputError, Mixture, ModelFormatError
from sparkgmm.persistence import SavedModel, read_model_dir, write_model_dir

DEFAULT_PARAMS_KEYS = {"class", "timestamp", "sparkVersion", "uid", "paramMap", "defaultParamMap"}


def metadata_of(path: pathlib.Path) -> dict:
    (part,) = [p for p in (path / "metadata").iterdir() if p.name.startswith("part-")]
    (line,) = part.read_text().splitlines()
    return json.loads(line)


def test_round_trip_is_exact(tmp_path, covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4)
    mixture.save(tmp_path / "model")
    loaded = Mixture.load(tmp_path / "model")
    assert loaded.covariance_type == covariance_type
    for name in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(mixture, name))
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["data", "metadata"]
    # pyspark.ml's DefaultParams metadata (what its Pipeline reader looks for), and ours in it
    metadata = metadata_of(tmp_path / "model")
    assert DEFAULT_PARAMS_KEYS <= set(metadata) and metadata["class"] == "sparkgmm.mixture.Mixture"
    assert metadata["sparkgmm"]["format_version"] == 2
    # the data row: float64 lists in C order, readable by any Parquet reader
    (part,) = [p for p in (tmp_path / "model" / "data").iterdir() if p.name.startswith("part-")]
    row = pq.read_table(part).to_pylist()
    assert len(row) == 1 and row[0]["covariances"] == mixture.covariances.ravel().tolist()


def test_summary_quantiles_and_params_round_trip(tmp_path):
    mixture = make_mixture("diag")
    summary = {"logLikelihood": -3.25, "clusterSizes": [10, 20, 30], "restarts": [{"numIter": 4}]}
    saved = SavedModel(mixture, summary, {0.01: -9.5, 0.5: -2.0}, {"k": 3, "inputCols": ["a", "b", "c"]},
                       {"tol": 0.001}, "sparkgmm.spark.model.GaussianMixtureModel", "GaussianMixtureModel_abc")
    write_model_dir(tmp_path / "model", saved)
    back = read_model_dir(tmp_path / "model")
    assert (back.summary, back.log_density_quantiles, back.params, back.default_params, back.class_name, back.uid) == (
        summary, {0.01: -9.5, 0.5: -2.0}, {"k": 3, "inputCols": ["a", "b", "c"]}, {"tol": 0.001},
        "sparkgmm.spark.model.GaussianMixtureModel", "GaussianMixtureModel_abc")
    np.testing.assert_array_equal(back.mixture.covariances, mixture.covariances)
    assert metadata_of(tmp_path / "model")["sparkgmm"]["log_density_quantiles"] == [[0.01, -9.5], [0.5, -2.0]]


def test_existing_path_needs_overwrite(tmp_path):
    mixture = make_mixture("diag")
    mixture.save(tmp_path / "model")
    with pytest.raises(FileExistsError, match="overwrite"):
        mixture.save(tmp_path / "model")
    other = make_mixture("spherical")
    other.save(tmp_path / "model", overwrite=True)
    assert Mixture.load(tmp_path / "model").covariance_type == "spherical"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging or replaced directory left behind


def test_file_uris_are_local_and_other_schemes_need_spark(tmp_path):
    mixture = make_mixture("tied")
    mixture.save(f"file://{tmp_path}/a")
    mixture.save(f"file:{tmp_path}/b")
    np.testing.assert_array_equal(Mixture.load(tmp_path / "a").means, Mixture.load(f"file://{tmp_path}/b").means)
    for uri in ("hdfs://namenode/models/gmm", "s3a://bucket/gmm", "foo://x"):
        with pytest.raises(InputError, match="GaussianMixtureModel"):
            mixture.save(uri)
        with pytest.raises(InputError, match=r"GaussianMixtureModel\.load"):
            Mixture.load(uri)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # nothing named hdfs:, s3a: or foo:
    assert not pathlib.Path("hdfs:").exists()


def test_format_version_1_is_still_read(tmp_path):
    mixture = make_mixture("full", n_components=2, n_features=3)
    write_format_1_model_dir(tmp_path / "old", mixture, spark_params={"k": 2, "inputCols": ["a", "b", "c"]},
                             summary={"logLikelihood": -1.5, "numIter": 3})
    np.testing.assert_array_equal(Mixture.load(tmp_path / "old").covariances, mixture.covariances)
    saved = read_model_dir(tmp_path / "old")
    assert (saved.format_version, saved.params, saved.summary) == (
        1, {"k": 2, "inputCols": ["a", "b", "c"]}, {"logLikelihood": -1.5, "numIter": 3})


def set_data(path, **columns):
    """Rewrite the data row with some columns replaced (arrays or Arrow arrays)."""
    (part,) = [p for p in (path / "data").iterdir() if p.name.startswith("part-")]
    table = pq.read_table(part)
    for name, value in columns.items():
        array = value if isinstance(value, pa.Array) else pa.array([np.asarray(value).ravel().tolist()])
        table = table.set_column(table.column_names.index(name), name, array)
    pq.write_table(table, part)


def set_block(path, **changes):
    part = next(p for p in (path / "metadata").iterdir() if p.name.startswith("part-"))
    document = json.loads(part.read_text())
    document["sparkgmm"].update(changes)
    part.write_text(json.dumps(document))


def damage(path, how):
    arrays = {name: getattr(Mixture.load(path), name) for name in ("weights", "means", "covariances")}
    part = next(p for p in (path / "metadata").iterdir() if p.name.startswith("part-"))
    if how == "no metadata":
        for p in (path / "metadata").iterdir():
            p.unlink()
        (path / "metadata").rmdir()
    elif how == "garbage metadata":
        part.write_text("{not json")
    elif how == "two metadata lines":
        part.write_text(part.read_text() + part.read_text())
    elif how == "foreign format":  # what pyspark's own KMeans writes there
        part.write_text(json.dumps({"class": "org.apache.spark.ml.clustering.KMeansModel", "paramMap": {}}))
    elif how == "future version":
        set_block(path, format_version=99)
    elif how == "damaged shape metadata":
        set_block(path, n_components=0)
    elif how == "no data":
        for p in (path / "data").iterdir():
            p.unlink()
    elif how == "truncated data":
        data = next(p for p in (path / "data").iterdir() if p.name.startswith("part-"))
        data.write_bytes(data.read_bytes()[:40])
    elif how == "wrong shape":
        set_data(path, means=arrays["means"][:, :2])
    elif how == "wrong dtype":
        set_data(path, weights=pa.array([arrays["weights"].tolist()], pa.list_(pa.float32())))
    elif how == "null value":
        set_data(path, weights=pa.array([[None] + arrays["weights"][1:].tolist()], pa.list_(pa.float64())))
    elif how == "not positive definite":
        set_data(path, covariances=-arrays["covariances"])
    elif how == "summary not an object":
        set_block(path, summary=[1, 2])
    elif how == "quantile level outside [0, 1]":
        set_block(path, log_density_quantiles=[[1.5, -3.0]])


@pytest.mark.parametrize(
    "how, message",
    [("no metadata", "no metadata/"), ("garbage metadata", "not valid JSON"), ("two metadata lines", "one JSON line"),
     ("foreign format", "not a sparkgmm directory \\(it holds a org.apache.spark.ml.clustering.KMeansModel\\)"),
     ("future version", "format version 99"), ("damaged shape metadata", "n_components=0"),
     ("no data", "must be one row; found 0"), ("truncated data", "unreadable"), ("wrong shape", "expected \\(3, 4\\)"),
     ("wrong dtype", "list<element: float>; expected list<double>"), ("null value", "has nulls"),
     ("not positive definite", "damaged"),
     ("summary not an object", "summary"), ("quantile level outside [0, 1]", "outside \\[0, 1\\]")],
)
def test_damaged_model_fails_clearly(tmp_path, how, message):
    make_mixture("full", n_components=3, n_features=4).save(tmp_path / "model")
    damage(tmp_path / "model", how)
    with pytest.raises(ModelFormatError, match=message) as raised:
        Mixture.load(tmp_path / "model")
    assert str(tmp_path / "model") in str(raised.value)


def damage_format_1(path, how):
    with np.load(path / "params.npz") as npz:
        arrays = dict(npz)
    if how == "garbage metadata":
        (path / "metadata.json").write_text("{not json")
    elif how == "foreign format":
        (path / "metadata.json").write_text(json.dumps({"format": "something-else"}))
    elif how == "no params":
        (path / "params.npz").unlink()
    elif how == "truncated params":
        data = (path / "params.npz").read_bytes()
        (path / "params.npz").write_bytes(data[: len(data) // 2])
    elif how == "wrong dtype":
        np.savez(path / "params.npz", **{**arrays, "weights": arrays["weights"].astype(np.float32)})
    elif how == "pickled object array":
        np.savez(path / "params.npz", **{**arrays, "weights": np.array([object()] * 3, dtype=object)})


@pytest.mark.parametrize("how", ["garbage metadata", "foreign format", "no params", "truncated params", "wrong dtype",
                                 "pickled object array"])
def test_damaged_format_1_model_fails_clearly(tmp_path, how):
    write_format_1_model_dir(tmp_path / "model", make_mixture("full", n_components=3, n_features=4))
    damage_format_1(tmp_path / "model", how)
    with pytest.raises(ModelFormatError, match=str(tmp_path / "model")):
        Mixture.load(tmp_path / "model")


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFormatError, match="not a directory"):
        Mixture.load(tmp_path / "nowhere")


def test_the_mixture_does_not_inherit_its_file_format():
    """persistence reads and writes Mixtures; the mixture is no subclass of anything of persistence's and imports it
    only inside ``save`` and ``load``, never at module level."""
    source = pathlib.Path(__file__).resolve().parent.parent / "sparkgmm" / "mixture.py"
    top_level = {node.module for node in ast.parse(source.read_text()).body if isinstance(node, ast.ImportFrom)}
    assert not any(module and module.split(".")[-1] == "persistence" for module in top_level)
    assert Mixture.__bases__ == (object,)
