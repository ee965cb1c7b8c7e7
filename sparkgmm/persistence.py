"""The model directory: its layout, its validation, and its reading and writing on this machine without Spark.
Never pickle.

Layout (format version 2), the same whoever writes it: ``GaussianMixtureModel.write()`` and the jobs through a Spark
session (any Hadoop URI: ``hdfs://``, ``s3a://``, ``file://``, ...; also under Spark Connect), ``Mixture.save``
without Spark on this machine's file system::

    MODEL/metadata/part-*   one JSON line: pyspark.ml's DefaultParams metadata (class, uid, timestamp, sparkVersion,
                            paramMap, defaultParamMap), so that pyspark's Pipeline and CrossValidator readers find
                            the class, and a "sparkgmm" object: format, format_version, covariance_type,
                            n_components, n_features, summary (object or null), log_density_quantiles ([level,
                            value] pairs or null), and for a Bayesian mixture's model "bayesian": its priors
                            and the posterior's other parameters (``bayesian_block``), and for a mixture that
                            remembers the statistics of its rows "seen": rows, weight, batches, and "averaged"
                            when its parameters are an average of stepwise EM's iterates (``seen_block``),
                            numbers as JSON writes them (Python's shortest repr: exact for float64)
    MODEL/data/part-*       Parquet, one row: weights, means, covariances as list<double> (C order; the shapes
                            follow from the metadata), and with "seen", seen_nk, seen_first, seen_second (the
                            remembered statistics, ``sparkgmm.online``): float64, exact. Models written before
                            "seen" existed load without it (an update then needs an effective count).

Both are directories of part files (plus ``_SUCCESS``), as Spark's DataFrame writers make them: that is all a Spark
Connect client can write. Format version 1 (``metadata.json`` + ``params.npz``, with ``spark_params.json`` and
``summary.json`` when the Spark model wrote it) is still read, never written.

This module reads and writes a ``Mixture`` (``Mixture.save`` and ``Mixture.load`` call ``save_mixture`` and
``load_mixture``); the mixture knows nothing of its files. Reading and writing the same layout through a Spark
session is the Spark layer's (``sparkgmm.spark.readwrite``), which encodes and decodes it with the functions here.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .files import LOCAL_FILES, StagedWrite, local_path
from .bayesian import Posterior, Prior
from .gaussian import COVARIANCE_TYPES, covariances_shape
from .mixture import Mixture
from .stats import SeenStats

FORMAT = "sparkgmm.mixture"
ESTIMATOR_FORMAT = "sparkgmm.estimator"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MIXTURE_CLASS = "sparkgmm.mixture.Mixture"
METADATA_DIR, DATA_DIR = "metadata", "data"
ARRAYS = ("weights", "means", "covariances")
# the data row's columns of the statistics a mixture remembers (``SeenStats``), and their attribute names
SEEN_ARRAYS = {"seen_nk": "nk", "seen_first": "first", "seen_second": "second"}
# format version 1
LEGACY_METADATA, LEGACY_PARAMS, LEGACY_SPARK_PARAMS, LEGACY_SUMMARY = (
    "metadata.json", "params.npz", "spark_params.json", "summary.json")


class ModelFormatError(InputError):
    """A model directory is missing, damaged, or not a sparkgmm model."""


@dataclass(frozen=True, eq=False)
class SavedModel:
    """What a model directory holds: the mixture, the training summary (``GaussianMixtureSummary.to_dict()``, or
    None), the training log-density quantiles ({level: value}, or None), and the pyspark.ml params (``params``
    set explicitly, ``default_params``) with the class and uid that wrote them."""

    mixture: Mixture
    summary: dict[str, Any] | None = None
    log_density_quantiles: dict[float, float] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    default_params: dict[str, Any] = field(default_factory=dict)
    class_name: str = MIXTURE_CLASS
    uid: str | None = None
    format_version: int = FORMAT_VERSION
    posterior: Posterior | None = None
    prior: Prior | None = None


# --- the document and the row ----------------------------------------------------------------------------------------

def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def metadata_line(class_name: str, uid: str | None, params: dict, default_params: dict, spark_version: str | None,
                  sparkgmm: dict[str, Any]) -> str:
    """One JSON line as pyspark.ml's ``DefaultParamsWriter`` makes it, with the ``sparkgmm`` object added."""
    document = {"class": class_name, "timestamp": round(time.time() * 1000), "sparkVersion": spark_version,
                "uid": uid, "paramMap": params, "defaultParamMap": default_params, "sparkgmm": sparkgmm}
    return json.dumps(document, separators=(",", ":"), default=_json_default)


def model_metadata_line(saved: SavedModel, spark_version: str | None = None) -> str:
    mixture = saved.mixture
    quantiles = saved.log_density_quantiles
    block = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "covariance_type": mixture.covariance_type,
        "n_components": mixture.n_components, "n_features": mixture.n_features, "summary": saved.summary,
        "log_density_quantiles": (
            None if quantiles is None else [[float(q), float(v)] for q, v in sorted(quantiles.items())]),
    }
    if saved.posterior is not None and saved.prior is not None:
        block["bayesian"] = bayesian_block(saved.posterior, saved.prior)
    if mixture.seen is not None:
        block["seen"] = seen_block(mixture.seen)
    return metadata_line(saved.class_name, saved.uid, saved.params, saved.default_params, spark_version, block)


def bayesian_block(posterior: Posterior, prior: Prior) -> dict[str, Any]:
    """A Bayesian mixture's priors and the posterior parameters its mixture does not hold (the posterior's means
    and covariances are the mixture's), as JSON values."""
    return {
        "prior": {"prior_type": prior.prior_type, "weight_concentration": prior.weight_concentration,
                  "mean_precision": prior.mean_precision, "mean": prior.mean.tolist(),
                  "degrees_of_freedom": prior.degrees_of_freedom, "covariance": prior.covariance.tolist()},
        "posterior": {"weight_concentration": posterior.weight_concentration.tolist(),
                      "mean_precision": posterior.mean_precision.tolist(),
                      "degrees_of_freedom": posterior.degrees_of_freedom.tolist()},
    }


def _bayesian(block: Any, mixture: Mixture, where: str) -> tuple[Posterior, Prior] | tuple[None, None]:
    """The posterior and priors of a model's "bayesian" block (None, None when it has none), checked."""
    if block is None:
        return None, None
    try:
        prior, posterior = block["prior"], block["posterior"]
        read_prior = Prior(prior["prior_type"], mixture.covariance_type, mixture.n_components,
                           float(prior["weight_concentration"]), float(prior["mean_precision"]),
                           np.asarray(prior["mean"], dtype=np.float64), float(prior["degrees_of_freedom"]),
                           np.asarray(prior["covariance"], dtype=np.float64))
        read_posterior = Posterior(
            read_prior.prior_type, np.asarray(posterior["weight_concentration"], dtype=np.float64),
            np.asarray(posterior["mean_precision"], dtype=np.float64), mixture.means,
            np.asarray(posterior["degrees_of_freedom"], dtype=np.float64), mixture.covariances,
            mixture.covariance_type)
    except (KeyError, TypeError, ValueError) as e:  # InputError is a ValueError: a shape or value the checks refuse
        raise ModelFormatError(f"model metadata in {where!r} has a damaged Bayesian block: {e}") from None
    if not np.allclose(read_posterior.mixture.weights, mixture.weights, rtol=1e-12, atol=1e-15):
        raise ModelFormatError(f"model metadata in {where!r} has a Bayesian block whose weights are not the model's")
    return read_posterior, read_prior


def data_table(mixture: Mixture):
    """The data row as an Arrow table: each array flattened in C order into a list<double>; with the statistics the
    mixture remembers (``seen``), those too (``SEEN_ARRAYS``)."""
    import pyarrow as pa

    arrays = {name: getattr(mixture, name) for name in ARRAYS}
    if mixture.seen is not None:
        arrays.update({column: getattr(mixture.seen, name) for column, name in SEEN_ARRAYS.items()})
    columns = {}
    for name, array in arrays.items():
        values = np.ascontiguousarray(array, dtype=np.float64).ravel()
        columns[name] = pa.ListArray.from_arrays(pa.array([0, values.size], pa.int32()), pa.array(values))
    return pa.table(columns)


def seen_block(seen: SeenStats) -> dict[str, Any]:
    """The counts of a mixture's remembered statistics (their arrays are in the data row)."""
    block = {"rows": seen.rows, "weight": seen.weight, "batches": seen.batches}
    return {**block, "averaged": seen.averaged} if seen.averaged else block


def _seen(block: dict[str, Any], table, where: str) -> SeenStats | None:
    """The remembered statistics of a model's metadata block and data row (None when it has none), checked."""
    counts = block.get("seen")
    if counts is None:
        return None
    covariance_type, k, d = block["covariance_type"], block["n_components"], block["n_features"]
    second = (k, d, d) if covariance_type in ("full", "tied") else (k, d)
    arrays = _arrays_from_table(table, {"seen_nk": (k,), "seen_first": (k, d), "seen_second": second}, where)
    try:
        return SeenStats(arrays["seen_nk"], arrays["seen_first"], arrays["seen_second"], int(counts["rows"]),
                         float(counts["weight"]), int(counts["batches"]), int(counts.get("averaged", 0)))
    except (KeyError, TypeError, ValueError) as e:  # InputError is a ValueError
        raise ModelFormatError(f"model metadata in {where!r} has damaged seen statistics: {e}") from None


_WHAT = {FORMAT: "a model (GaussianMixtureModel.load or Mixture.load reads it)",
         ESTIMATOR_FORMAT: "a GaussianMixture estimator (GaussianMixture.load reads it)"}


def parse_metadata(lines: list[str], where: str, expected_format: str = FORMAT) -> dict[str, Any]:
    """The metadata document of the directory ``where`` from its text lines; checks the format and its version."""
    lines = [line for line in lines if line.strip()]
    if len(lines) != 1:
        raise ModelFormatError(f"model metadata in {where!r} must be one JSON line; found {len(lines)} lines")
    try:
        document = json.loads(lines[0])
    except json.JSONDecodeError as e:
        raise ModelFormatError(f"model metadata in {where!r} is not valid JSON ({e})") from None
    block = document.get("sparkgmm") if isinstance(document, dict) else None
    if not isinstance(block, dict) or block.get("format") not in (FORMAT, ESTIMATOR_FORMAT):
        named = document.get("class") if isinstance(document, dict) else None
        raise ModelFormatError(f"{where!r} is not a sparkgmm directory" + (f" (it holds a {named})" if named else ""))
    if block["format"] != expected_format:
        raise ModelFormatError(f"{where!r} holds {_WHAT[block['format']]}, not {_WHAT[expected_format]}")
    if block.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(f"{where!r} has format version {block.get('format_version')!r}; this sparkgmm reads "
                               f"versions {', '.join(map(str, READ_VERSIONS))}: a newer sparkgmm wrote it")
    for key in ("paramMap", "defaultParamMap"):
        if not isinstance(document.get(key, {}), dict):
            raise ModelFormatError(f"model metadata in {where!r} is damaged: {key} is not an object")
    return document


def _shapes(block: dict[str, Any], where: str) -> dict[str, tuple[int, ...]]:
    covariance_type = block.get("covariance_type")
    k, d = block.get("n_components"), block.get("n_features")
    if (covariance_type not in COVARIANCE_TYPES or not isinstance(k, int) or not isinstance(d, int)
            or isinstance(k, bool) or isinstance(d, bool) or min(k, d) < 1):
        raise ModelFormatError(f"model metadata in {where!r} is damaged: covariance_type={covariance_type!r}, "
                               f"n_components={k!r}, n_features={d!r}")
    return {"weights": (k,), "means": (k, d), "covariances": covariances_shape(covariance_type, k, d)}


def _arrays_from_table(table, shapes: dict[str, tuple[int, ...]], where: str) -> dict[str, np.ndarray]:
    import pyarrow as pa

    if table.num_rows != 1:
        raise ModelFormatError(f"model data in {where!r} must be one row; found {table.num_rows}")
    arrays = {}
    for name, shape in shapes.items():
        if name not in table.column_names:
            raise ModelFormatError(f"model data in {where!r} lacks {name!r}")
        column = table.column(name).combine_chunks()
        kind = column.type
        if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)) or kind.value_type != pa.float64():
            raise ModelFormatError(f"model data {name!r} in {where!r} has type {kind}; expected list<double>")
        values = column.flatten()
        if column.null_count or values.null_count:
            raise ModelFormatError(f"model data {name!r} in {where!r} has nulls")
        if len(values) != int(np.prod(shape)):
            raise ModelFormatError(f"model data {name!r} in {where!r} has {len(values)} values; expected {shape} "
                                   f"({int(np.prod(shape))} values)")
        arrays[name] = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(shape)
    return arrays


def _quantiles(value: Any, where: str) -> dict[float, float] | None:
    if value is None:
        return None
    try:
        pairs = {float(level): float(v) for level, v in value}
    except (TypeError, ValueError):
        raise ModelFormatError(
            f"log_density_quantiles in {where!r} must be [level, value] pairs; got {value!r}") from None
    if not all(0.0 <= level <= 1.0 for level in pairs):
        raise ModelFormatError(f"log_density_quantiles in {where!r} have levels outside [0, 1]: {sorted(pairs)}")
    return pairs


def _build(arrays: dict[str, np.ndarray], covariance_type: str, where: str, seen: SeenStats | None = None) -> Mixture:
    try:
        return Mixture(covariance_type=covariance_type, seen=seen, **arrays)
    except ValueError as e:
        raise ModelFormatError(f"model in {where!r} is damaged: {e}") from None


def decode(lines: list[str], table, where: str) -> SavedModel:
    """The model from its metadata lines and its data table (pyarrow), checked."""
    document = parse_metadata(lines, where)
    block = document["sparkgmm"]
    arrays = _arrays_from_table(table, _shapes(block, where), where)
    summary = block.get("summary")
    if summary is not None and not isinstance(summary, dict):
        raise ModelFormatError(f"model summary in {where!r} must be an object or null")
    mixture = _build(arrays, block["covariance_type"], where, _seen(block, table, where))
    posterior, prior = _bayesian(block.get("bayesian"), mixture, where)
    return SavedModel(
        mixture, summary, _quantiles(block.get("log_density_quantiles"), where),
        document.get("paramMap") or {}, document.get("defaultParamMap") or {}, document.get("class") or MIXTURE_CLASS,
        document.get("uid"), FORMAT_VERSION, posterior, prior,
    )


def _optional_json_object(data: bytes | None, what: str, where: str) -> dict | None:
    return None if data is None else _json_object(data, what, where)


def _json_object(data: bytes | None, what: str, where: str) -> dict:
    if data is None:
        raise ModelFormatError(f"{what} {where!r} is missing: not a sparkgmm model directory")
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{what} {where!r} is not valid JSON ({e})") from None
    if not isinstance(document, dict):
        raise ModelFormatError(f"{what} {where!r} must hold a JSON object")
    return document


def decode_legacy(files: dict[str, bytes], root: str) -> SavedModel:
    """A format version 1 directory from its files' bytes (name -> bytes; absent files left out)."""
    where = f"{root}/{LEGACY_METADATA}"
    metadata = _json_object(files.get(LEGACY_METADATA), "model metadata", where)
    if metadata.get("format") != FORMAT:
        raise ModelFormatError(f"{where!r} is not sparkgmm mixture metadata")
    if metadata.get("format_version") != 1:
        raise ModelFormatError(f"model {root!r} has format version {metadata.get('format_version')!r} in "
                               f"{LEGACY_METADATA}; this sparkgmm reads versions 1 and 2")
    shapes = _shapes(metadata, root)
    if LEGACY_PARAMS not in files:
        raise ModelFormatError(f"model parameters {root}/{LEGACY_PARAMS!s} are missing")
    arrays = {}
    try:
        with np.load(io.BytesIO(files[LEGACY_PARAMS]), allow_pickle=False) as npz:
            for name, shape in shapes.items():
                if name not in npz.files:
                    raise ModelFormatError(f"model parameters in {root!r} lack {name!r}")
                value = npz[name]
                if value.dtype != np.float64 or value.shape != shape:
                    raise ModelFormatError(f"model parameter {name!r} in {root!r} has dtype {value.dtype} and shape "
                                           f"{value.shape}; expected float64 {shape}")
                arrays[name] = value
    except ModelFormatError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ModelFormatError(f"model parameters in {root!r} are unreadable ({e})") from None
    params = _optional_json_object(files.get(LEGACY_SPARK_PARAMS), "model params", f"{root}/{LEGACY_SPARK_PARAMS}")
    summary = _optional_json_object(files.get(LEGACY_SUMMARY), "model summary", f"{root}/{LEGACY_SUMMARY}")
    return SavedModel(_build(arrays, metadata["covariance_type"], root), summary, None, params or {}, {},
                      MIXTURE_CLASS if params is None else "sparkgmm.spark.model.GaussianMixtureModel", None, 1)


# --- this machine's file system, no Spark ----------------------------------------------------------------------------

def _local_model_path(path: str | os.PathLike, with_spark: str) -> Path:
    """``path`` on this machine; a URI of another file system says how to do it ``with_spark`` instead."""
    return local_path(path, f"model path {path!r} is a URI of another file system than this machine's, and without "
                            f"Spark only this machine's files are read and written: {with_spark}")


def _part_files(directory: Path) -> list[Path]:
    """The data files of a directory Spark (or this module) wrote: what Hadoop does not count as hidden."""
    return sorted(p for p in directory.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))


def read_model_dir(path: str | os.PathLike) -> SavedModel:
    """Read the model directory ``path`` on this machine, either format version, without Spark."""
    root = _local_model_path(path, "load it with Spark: GaussianMixtureModel.load(uri)")
    if not root.is_dir():
        raise ModelFormatError(f"model path {str(root)!r} is not a directory")
    if not (root / METADATA_DIR).is_dir() and (root / LEGACY_METADATA).exists():
        names = (LEGACY_METADATA, LEGACY_PARAMS, LEGACY_SPARK_PARAMS, LEGACY_SUMMARY)
        return decode_legacy({name: (root / name).read_bytes() for name in names if (root / name).is_file()}, str(root))
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not (root / METADATA_DIR).is_dir():
        raise ModelFormatError(f"model path {str(root)!r} is not a sparkgmm model directory: it has no "
                               f"{METADATA_DIR}/ (nor {LEGACY_METADATA})")
    lines = [line for part in _part_files(root / METADATA_DIR) for line in part.read_text().splitlines()]
    if not (root / DATA_DIR).is_dir():
        raise ModelFormatError(f"model data {str(root / DATA_DIR)!r} is missing")
    try:
        tables = [pq.read_table(part) for part in _part_files(root / DATA_DIR)]
        table = pa.concat_tables(tables) if tables else pa.table({})
    except (OSError, pa.ArrowException) as e:
        raise ModelFormatError(f"model data in {str(root)!r} is unreadable ({e})") from None
    return decode(lines, table, str(root))


def write_model_dir(path: str | os.PathLike, saved: SavedModel, overwrite: bool = False) -> None:
    """Write ``saved`` as the model directory ``path`` on this machine, staged (``files.StagedWrite``): into a hidden
    sibling first, then renamed into place (with ``overwrite``, the old directory is moved aside and deleted only once
    the new one is there)."""
    import pyarrow.parquet as pq

    target = _local_model_path(path, "save it with Spark: GaussianMixtureModel(mixture).write().save(uri)")
    target.parent.mkdir(parents=True, exist_ok=True)
    with StagedWrite(LOCAL_FILES, target, overwrite, subject=f"model path {str(target)!r}",
                     how_to_overwrite="pass overwrite=True") as stage:
        for name in (METADATA_DIR, DATA_DIR):
            (stage.staging / name).mkdir(parents=True)
            (stage.staging / name / "_SUCCESS").touch()
        (stage.staging / METADATA_DIR / "part-00000.txt").write_text(model_metadata_line(saved) + "\n")
        pq.write_table(data_table(saved.mixture), stage.staging / DATA_DIR / "part-00000.parquet")


def save_mixture(mixture: Mixture, path: str | os.PathLike, overwrite: bool = False) -> None:
    """``Mixture.save``: ``mixture`` alone as the model directory ``path`` on this machine (``write_model_dir``)."""
    write_model_dir(path, SavedModel(mixture), overwrite)


def load_mixture(path: str | os.PathLike) -> Mixture:
    """``Mixture.load``: the mixture of the model directory ``path`` on this machine (``read_model_dir``)."""
    return read_model_dir(path).mixture
