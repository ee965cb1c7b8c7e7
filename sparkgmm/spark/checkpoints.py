"""A fit's checkpoints in a directory of any file system Hadoop knows (local, HDFS, S3A, ...), through the session's
``FileSystem`` (a local directory directly, which is faster): ``DIR/checkpoint-<passes>/`` holds ``state.json`` and
``arrays.npz`` (``sparkgmm.checkpoint``).

A Spark Connect client has no JVM, so no ``FileSystem``: under Connect the directory must be local to the client, which
writes it directly (``connect_local_dir``).

A checkpoint is written to a hidden staging directory beside the others and renamed into place
(``sparkgmm.files.StagedWrite``); only then are the older ones deleted, so an interruption at any moment leaves at
least one whole checkpoint. A store that renames by copying (S3A) could leave a partial newest one: reading tries the
newest first and falls back to older ones.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pyspark.sql import SparkSession

from ..bayesian import Prior
from ..candidates import FitSpec, RestartRun
from ..checkpoint import CheckpointError, check, encode, restore
from ..errors import InputError
from ..files import LOCAL_FILES, LocalFiles, StagedWrite, local_path_of
from ..mixture import Mixture
from .outputs import HadoopFiles
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
         "merge_every": spec.settings.merge_every,
         "init_mode": spec.init_mode, "seed": spec.seed, "n_init": spec.n_init, "init_steps": spec.init_steps,
         "initial_model": None if spec.initial is None else _mixture_digest(spec.initial),
         "prior": None if spec.prior is None else _prior_digest(spec.prior)}
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


def _prior_digest(prior: Prior) -> str:
    """A Bayesian fit's priors (their type and values: the defaults come from the data, which the input's
    fingerprint already pins)."""
    digest = hashlib.sha256(prior.prior_type.encode())
    for value in (prior.weight_concentration, prior.mean_precision, prior.mean, prior.degrees_of_freedom,
                  prior.covariance):
        digest.update(np.ascontiguousarray(value, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def _mixture_digest(mixture: Mixture) -> str:
    digest = hashlib.sha256(mixture.covariance_type.encode())
    for array in (mixture.weights, mixture.means, mixture.covariances):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


class CheckpointStore:
    """The checkpoints of one fit in the directory ``uri``. On the local file system the files are handled directly
    (``LocalFiles``: a checkpoint then costs a few milliseconds); elsewhere through the JVM's Hadoop ``FileSystem``
    (``HadoopFiles``). Either way a checkpoint is published by ``StagedWrite``."""

    def __init__(self, spark: SparkSession, uri: str):
        self.uri = uri
        self._files: LocalFiles | HadoopFiles
        self._root: Any  # a Path for LOCAL_FILES, a URI string for HadoopFiles: each takes its own
        if is_connect(spark):
            self._files, self._root = LOCAL_FILES, connect_local_dir(uri)
            return
        hadoop = HadoopFiles(spark, uri)
        local = hadoop.local_path(hadoop.root)
        self._files, self._root = (hadoop, hadoop.root) if local is None else (LOCAL_FILES, local)

    def _child(self, name: str):
        return self._files.join(self._root, name)

    def _publish(self, local: Path, name: str) -> None:
        """Copy the local directory ``local`` in as ``name``: staged beside it, then renamed into place (replacing a
        checkpoint of the same pass from an earlier, interrupted resume only once the new one is whole)."""
        self._files.mkdirs(self._root)
        with StagedWrite(self._files, self._child(name), overwrite=True) as stage:
            self._files.copy_in(local, stage.staging)

    def _saved(self) -> list[tuple[int, str]]:
        """(passes, name) of every checkpoint, the newest first."""
        found = [(int(name[len(PREFIX):]), name) for name in self._files.list(self._root)
                 if name.startswith(PREFIX) and name[len(PREFIX):].isdigit()]
        return sorted(found, reverse=True)

    def resume(self, key: dict[str, Any], runs: Sequence[RestartRun]) -> int:
        """Restore ``runs`` from the newest readable checkpoint, after checking that it is this fit's; returns the
        passes it had made (0, and ``runs`` untouched, when there is none)."""
        problems = []
        for _, name in self._saved():
            where = f"checkpoint {self._files.uri(self._child(name))}"
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
                self._files.copy_out(self._child(name), local)
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
                # mypy matches **arrays against savez's allow_pickle: bool as well; the keys are array names.
                np.savez(f, **arrays)  # type: ignore[arg-type]
            self._publish(local, f"{PREFIX}{passes:08d}")
        for older, name in self._saved():
            if older < passes:
                self._files.delete(self._child(name))

    def remove(self) -> None:
        """Delete every checkpoint (and staged or replaced one) here, and the directory if nothing else is left in
        it."""
        for name in self._files.list(self._root):
            if name.startswith((PREFIX, "." + PREFIX)):
                self._files.delete(self._child(name))
        if not self._files.list(self._root):
            self._files.delete(self._root)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
