"""Saving and loading models: JSON metadata plus an ``.npz`` of arrays, never pickle.

A model directory holds ``metadata.json`` and ``params.npz``; a directory written by the Spark model adds its own
JSON files beside them, and ``Mixture.load`` reads it all the same. Writes go to a temporary sibling directory that
is renamed into place, so a reader never sees half a model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
import numpy as np

from .errors import InputError, OutputExistsError
from .gaussian import COVARIANCE_TYPES, covariances_shape
from .mixture import Mixture

FORMAT = "sparkgmm.mixture"
FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
PARAMS_FILE = "params.npz"


class ModelFormatError(InputError):
    """A model directory is missing, damaged, or not a sparkgmm model."""


def write_model_dir(
    path: str | os.PathLike, mixture: Mixture, overwrite: bool, extra_files: dict[str, dict] | None = None
) -> None:
    """Write ``mixture`` (and any extra JSON documents) as a model directory at ``path``, atomically."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"model path {str(target)!r} already exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "covariance_type": mixture.covariance_type,
            "n_components": mixture.n_components,
            "n_features": mixture.n_features,
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, indent=2) + "\n")
        with open(staging / PARAMS_FILE, "wb") as f:
            np.savez(f, weights=mixture.weights, means=mixture.means, covariances=mixture.covariances)
        for name, document in (extra_files or {}).items():
            (staging / name).write_text(json.dumps(document, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def save_mixture(mixture: Mixture, path: str | os.PathLike, overwrite: bool = False) -> None:
    write_model_dir(path, mixture, overwrite)


def read_json(path: Path, what: str) -> dict:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{what} {str(path)!r} is missing: not a sparkgmm model directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{what} {str(path)!r} is not valid JSON ({e})") from None
    if not isinstance(document, dict):
        raise ModelFormatError(f"{what} {str(path)!r} must hold a JSON object")
    return document


def load_mixture(path: str | os.PathLike) -> Mixture:
    root = Path(path)
    if not root.is_dir():
        raise ModelFormatError(f"model path {str(root)!r} is not a directory")
    metadata = read_json(root / METADATA_FILE, "model metadata")
    if metadata.get("format") != FORMAT:
        raise ModelFormatError(f"{str(root / METADATA_FILE)!r} is not sparkgmm mixture metadata")
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"model {str(root)!r} has format version {metadata.get('format_version')!r}; this sparkgmm reads "
            f"version {FORMAT_VERSION}"
        )
    covariance_type = metadata.get("covariance_type")
    k, d = metadata.get("n_components"), metadata.get("n_features")
    if covariance_type not in COVARIANCE_TYPES or not all(isinstance(v, int) and v >= 1 for v in (k, d)):
        raise ModelFormatError(f"model metadata in {str(root)!r} is damaged: {metadata!r}")
    expected = {"weights": (k,), "means": (k, d), "covariances": covariances_shape(covariance_type, k, d)}
    arrays = {}
    try:
        with np.load(root / PARAMS_FILE, allow_pickle=False) as npz:
            for name, shape in expected.items():
                if name not in npz.files:
                    raise ModelFormatError(f"model parameters in {str(root)!r} lack {name!r}")
                value = npz[name]
                if value.dtype != np.float64 or value.shape != shape:
                    raise ModelFormatError(
                        f"model parameter {name!r} in {str(root)!r} has dtype {value.dtype} and shape {value.shape}; "
                        f"expected float64 {shape}"
                    )
                arrays[name] = value
    except FileNotFoundError:
        raise ModelFormatError(f"model parameters {str(root / PARAMS_FILE)!r} are missing") from None
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        if isinstance(e, ModelFormatError):
            raise
        raise ModelFormatError(f"model parameters in {str(root)!r} are unreadable ({e})") from None
    try:
        return Mixture(covariance_type=covariance_type, **arrays)
    except ValueError as e:
        raise ModelFormatError(f"model in {str(root)!r} is damaged: {e}") from None
