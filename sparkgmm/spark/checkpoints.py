"""A fit's checkpoints in a directory of any file system Hadoop knows (local, HDFS, S3A, ...), through the session's
``FileSystem`` (a local directory directly, which is faster): ``DIR/checkpoint-<passes>/`` holds ``state.json`` and
``arrays.npz`` (``sparkgmm.checkpoint``).

A Spark Connect client has no JVM, so no ``FileSystem``: under Connect the directory must be local to the client, which
writes it directly (``connect_local_dir``).

A checkpoint is written to a hidden temporary directory beside the others and renamed into place; only then are the
older ones deleted, so an interruption at any moment leaves at least one whole checkpoint. A store that renames by
copying (S3A) could leave a partial newest one: reading tries the newest first and falls back to older ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pyspark.sql import SparkSession

from ..candidates import FitSpec, RestartRun
from ..checkpoint import CheckpointError, check, encode, restore
from ..errors import InputError
from ..mixture import Mixture
from ..persistence import local_path_of
from .outputs import _HadoopPaths
from .session import is_connect

logger = logging.getLogger("sparkgmm")

PREFIX = "checkpoint-"
STATE_FILE = "state.json"
ARRAYS_FILE = "arrays.npz"


def fit_key(input_description: dict[str, Any], specs: Sequence[FitSpec], dtype: str) -> dict[str, Any]:
    """What a checkpoint must match to be resumed: the input (its rows' fingerprint, the columns read) and every
    setting that changes the fit. Storage settings and the partitioning are left out: they change no result."""
    fits = [
        {"k": spec.n_components, "covariance_type": spec.covariance_type, "max_iter": spec.settings.max_iter,
         "tol": spec.settings.tol, "reg_covar": spec.settings.reg_covar, "acceleration": spec.settings.acceleration,
         "init_mode": spec.init_mode, "seed": spec.seed, "n_init": spec.n_init, "init_steps": spec.init_steps,
         "initial_model": None if spec.initial is None else _mixture_digest(spec.initial)}
        for spec in specs
    ]
    return {"input": input_description, "dtype": dtype, "fits": fits}


def connect_local_dir(uri: str) -> Path:
    """The client-side directory a checkpointDir names under Spark Connect: a path or a ``file:`` URI; any other
    file system is refused (the client cannot reach Hadoop's, and the server's local disk is not the client's)."""
    local = local_path_of(uri)
    if local is not None:
        return local.absolute()
    raise InputError(f"checkpointDir={uri!r}: under Spark Connect the checkpoints are written by the client, which "
                     "reaches no Hadoop file system; give a directory on the client's disk (a path or a file: URI)")


def _mixture_digest(mixture: Mixture) -> str:
    digest = hashlib.sha256(mixture.covariance_type.encode())
    for array in (mixture.weights, mixture.means, mixture.covariances):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


class CheckpointStore:
    """The checkpoints of one fit in the directory ``uri``. On the local file system the files are handled directly
    (a checkpoint then costs a few milliseconds); elsewhere through the JVM's Hadoop ``FileSystem``."""

    def __init__(self, spark: SparkSession, uri: str):
        self.uri = uri
        if is_connect(spark):
            self._paths = None
            self._local = connect_local_dir(uri)
            return
        self._paths = _HadoopPaths(spark, uri)
        self._local = Path(self._paths.local_path()) if self._paths.is_local else None

    # --- the directory, on either kind of file system -------------------------------------------------------------

    def _names(self) -> list[str]:
        if self._local is not None:
            return sorted(p.name for p in self._local.iterdir()) if self._local.is_dir() else []
        paths = self._paths
        if not paths.exists():
            return []
        return sorted(status.getPath().getName() for status in paths.fs.listStatus(paths.path))

    def _delete(self, name: str) -> None:
        if self._local is not None:
            shutil.rmtree(self._local / name, ignore_errors=True)
        else:
            self._paths.delete(self._child(name))

    def _child(self, name: str):
        return self._paths._Path(self._paths.path, name)

    def _where(self, name: str) -> str:
        return self._child(name).toString() if self._paths is not None else str(self._local / name)

    def _publish(self, local: Path, name: str) -> None:
        """Move the local directory ``local`` in as ``name``: under a temporary name first, then renamed."""
        temporary = f".{name}.{uuid.uuid4().hex[:12]}.tmp"
        self._delete(name)  # a checkpoint of the same pass from an earlier, interrupted resume
        if self._local is not None:
            self._local.mkdir(parents=True, exist_ok=True)
            shutil.copytree(local, self._local / temporary)
            os.replace(self._local / temporary, self._local / name)
            return
        paths = self._paths
        paths.fs.mkdirs(paths.path)
        paths.fs.copyFromLocalFile(False, True, paths._Path(local.resolve().as_uri()), self._child(temporary))
        paths.rename(self._child(temporary), self._child(name))

    def _fetch(self, name: str, local: Path) -> None:
        if self._local is not None:
            shutil.copytree(self._local / name, local)
        else:
            paths = self._paths
            paths.fs.copyToLocalFile(False, self._child(name), paths._Path(local.as_uri()), True)

    # --- checkpoints ------------------------------------------------------------------------------------------------

    def _saved(self) -> list[tuple[int, str]]:
        """(passes, name) of every checkpoint, the newest first."""
        found = [(int(name[len(PREFIX):]), name) for name in self._names()
                 if name.startswith(PREFIX) and name[len(PREFIX):].isdigit()]
        return sorted(found, reverse=True)

    def resume(self, key: dict[str, Any], runs: Sequence[RestartRun]) -> int:
        """Restore ``runs`` from the newest readable checkpoint, after checking that it is this fit's; returns the
        passes it had made (0, and ``runs`` untouched, when there is none)."""
        problems = []
        for _, name in self._saved():
            where = f"checkpoint {self._where(name)}"
            try:
                document, arrays = self._read(name, where)
            except CheckpointError as e:
                problems.append(str(e))
                logger.warning("%s; trying an older one", e)
                continue
            check(document, key, where)
            restored = restore(document, arrays, runs, where)
            logger.info("resuming from %s: %d passes and %d EM iterations made", where, restored,
                        document.get("iterations", 0))
            return restored
        if problems:
            raise CheckpointError(f"no readable checkpoint in {self.uri}: {problems[0]}")
        return 0

    def _read(self, name: str, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        with tempfile.TemporaryDirectory(prefix="sparkgmm-checkpoint-") as tmp:
            local = Path(tmp) / "checkpoint"
            try:
                self._fetch(name, local)
                document = json.loads((local / STATE_FILE).read_text())
                with np.load(local / ARRAYS_FILE, allow_pickle=False) as npz:
                    arrays = {array: npz[array] for array in npz.files}
            except (OSError, ValueError, zipfile.BadZipFile) as e:  # JSONDecodeError and pickled arrays included
                raise CheckpointError(f"{where} is damaged: {type(e).__name__}: {_first_line(e)}") from None
            except Exception as e:  # the JVM's IOException, through py4j
                raise CheckpointError(f"{where} is unreadable: {_first_line(e)}") from None
        if not isinstance(document, dict):
            raise CheckpointError(f"{where} is damaged: {STATE_FILE} does not hold a JSON object")
        return document, arrays

    def save(self, key: dict[str, Any], runs: Sequence[RestartRun], passes: int) -> None:
        """Write the checkpoint after ``passes`` passes; then remove the older ones."""
        document, arrays = encode(key, runs, passes)
        with tempfile.TemporaryDirectory(prefix="sparkgmm-checkpoint-") as tmp:
            local = Path(tmp) / "checkpoint"
            local.mkdir()
            (local / STATE_FILE).write_text(json.dumps(document, allow_nan=False) + "\n")
            with open(local / ARRAYS_FILE, "wb") as f:
                np.savez(f, **arrays)
            self._publish(local, f"{PREFIX}{passes:08d}")
        for older, name in self._saved():
            if older < passes:
                self._delete(name)

    def remove(self) -> None:
        """Delete every checkpoint (and temporary one) here, and the directory if nothing else is left in it."""
        for name in self._names():
            if name.startswith(PREFIX) or (name.startswith("." + PREFIX) and name.endswith(".tmp")):
                self._delete(name)
        if not self._names():
            if self._local is not None:
                with contextlib.suppress(OSError):
                    self._local.rmdir()
            elif self._paths.exists():
                self._paths.delete(self._paths.path)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
