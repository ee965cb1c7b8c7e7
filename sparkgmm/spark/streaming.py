"""Structured Streaming: a model that learns from every micro-batch of a stream, one versioned model directory per
micro-batch, exactly once.

``train_on(stream_df, model, model_dir, checkpoint_location)`` starts a query whose ``foreachBatch`` updates the
current model with each micro-batch (``GaussianMixtureModel.update``: the rows converted to blocks, one E-step pass,
the statistics blended in by the model's update rule, one M-step) and writes the new model as
``model_dir/version-<batchId>``, staged and renamed into place, then ``model_dir/LATEST`` (the name of the newest
version, one line), then prunes all but the newest ``keep`` versions.

Exactly once: a version directory appears whole or not at all, and a micro-batch whose id is not above the newest
version's is skipped. Spark replays, after a restart from ``checkpoint_location``, the micro-batch that was running
(with the same rows), so a query killed at any point and restarted ends at the same model, bit for bit, as one never
interrupted (the update is deterministic, and a version read back is exactly the model written). A restarted
``train_on`` continues from the newest version in ``model_dir``; its ``model`` argument is used only while there is
none.

A micro-batch that cannot be learnt from (its schema is not the stream's, its rows have another number of features
than the model, invalid rows with ``handleInvalid="error"``) stops the query with one line naming the problem
(``ModelStream.error``, and ``await_termination`` raises it as an ``InputError``); the newest good version stays in
place.

Scoring a stream: ``latest_model(spark, model_dir).transform(stream_df)`` (``outlierQuantile`` included) scores with
the newest version at the time of the call.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.streaming import StreamingQuery

from ..errors import InputError
from ..files import LOCAL_FILES, StagedWrite, local_path_of
from ..persistence import write_model_dir
from .model import GaussianMixtureModel
from .online import update_model_unless_empty, update_rule
from .outputs import HadoopFiles
from .readwrite import saved_model
from .session import is_connect

logger = logging.getLogger("sparkgmm")

VERSION_PREFIX = "version-"
LATEST_FILE = "LATEST"
DEFAULT_KEEP = 5
_VERSION = re.compile(rf"^{VERSION_PREFIX}(\d+)$")
_INPUT_ERROR_LINE = re.compile(r"(?:InputError|ModelFormatError|ConfigError): (?P<line>[^\n]+)")


class ModelDirectory:
    """The versions of ``model_dir``: through Python's own file functions when it is on this machine, else through
    the session's Hadoop file system."""

    def __init__(self, spark: SparkSession, model_dir: str):
        self.spark = spark
        self.uri = model_dir
        local = local_path_of(model_dir)
        if local is not None:
            self.files: Any = LOCAL_FILES
            self.root: Any = local
        else:
            hadoop = HadoopFiles(spark, model_dir)
            self.files, self.root = hadoop, hadoop.root

    def path(self, name: str) -> Any:
        return self.files.join(self.root, name)

    def versions(self) -> list[int]:
        """The batch ids of the versions in the directory, oldest first (only whole ones exist: each was renamed
        into place)."""
        return sorted(int(m[1]) for m in map(_VERSION.match, self.files.list(self.root)) if m)

    def newest(self) -> int | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def pointer(self) -> str | None:
        """What ``LATEST`` names, or None."""
        path = self.path(LATEST_FILE)
        if not self.files.exists(path):
            return None
        if self.files is LOCAL_FILES:
            return path.read_text().strip()
        row = self.spark.read.text(self.files.uri(path)).first()
        return None if row is None else str(row[0]).strip()

    def write_version(self, batch_id: int, model: GaussianMixtureModel) -> None:
        """``version-<batch_id>``, staged and renamed into place (one left by an attempt that died before its
        pointer is replaced: the replay writes the same model)."""
        target = self.path(f"{VERSION_PREFIX}{batch_id}")
        if self.files is LOCAL_FILES:
            write_model_dir(target, saved_model(model), overwrite=True)
        else:
            model.write().session(self.spark).overwrite().save(self.files.uri(target))

    def write_pointer(self, batch_id: int) -> None:
        with StagedWrite(self.files, self.path(LATEST_FILE), overwrite=True, subject=f"{self.uri}/{LATEST_FILE}") \
                as stage:
            self.files.write_text(stage.staging, f"{VERSION_PREFIX}{batch_id}\n")

    def prune(self, keep: int) -> None:
        for batch_id in self.versions()[:-keep]:
            self.files.delete(self.path(f"{VERSION_PREFIX}{batch_id}"))

    def load(self, batch_id: int) -> GaussianMixtureModel:
        return GaussianMixtureModel.read().session(self.spark).load(
            self.files.uri(self.path(f"{VERSION_PREFIX}{batch_id}")))


def latest_model(spark: SparkSession, model_dir: str) -> GaussianMixtureModel:
    """The newest version in ``model_dir`` (``InputError`` when it has none)."""
    directory = ModelDirectory(spark, model_dir)
    newest = directory.newest()
    if newest is None:
        raise InputError(f"model directory {model_dir} holds no {VERSION_PREFIX}<batchId> version yet")
    return directory.load(newest)


class BatchTrainer:
    """The ``foreachBatch`` function of ``train_on``: it keeps the current model between micro-batches (reading it
    back only after a restart)."""

    def __init__(self, model: GaussianMixtureModel, model_dir: str, keep: int, schema):
        self.initial = model
        self.model_dir = model_dir
        self.keep = keep
        self.schema = schema
        self.current: tuple[int, GaussianMixtureModel] | None = None
        self.error: str | None = None

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        try:
            self._apply(batch_df, int(batch_id))
        except InputError as e:
            self.error = f"micro-batch {batch_id}: {e}"
            logger.error("%s; the query stops, and the newest good version stays in %s", self.error, self.model_dir)
            raise InputError(self.error) from None

    def _apply(self, batch_df: DataFrame, batch_id: int) -> None:
        directory = ModelDirectory(batch_df.sparkSession, self.model_dir)
        newest = directory.newest()
        if newest is not None and directory.pointer() != f"{VERSION_PREFIX}{newest}":
            directory.write_pointer(newest)  # a run that died between the version and its pointer
        if newest is not None and batch_id <= newest:
            logger.info("micro-batch %d: already learnt (the newest version is %d); skipped", batch_id, newest)
            return
        if batch_df.schema != self.schema:
            raise InputError(f"its schema ({batch_df.schema.simpleString()}) is not the stream's "
                             f"({self.schema.simpleString()})")
        if newest is None:
            base = self.initial
        elif self.current is not None and self.current[0] == newest:
            base = self.current[1]
        else:
            base = directory.load(newest)
        update = update_model_unless_empty(base, batch_df, label=f"micro-batch {batch_id}")
        if update is None:
            logger.info("micro-batch %d: no rows; nothing learnt", batch_id)
            return
        directory.write_version(batch_id, update.model)
        directory.write_pointer(batch_id)
        directory.prune(self.keep)
        self.current = (batch_id, update.model)


class ModelStream:
    """A running ``train_on`` query: ``query`` (pyspark's ``StreamingQuery``), ``error`` (the one line that stopped
    it, or None), ``await_termination``, ``stop`` and ``latest``."""

    def __init__(self, query: StreamingQuery, trainer: BatchTrainer, spark: SparkSession):
        self.query = query
        self._trainer = trainer
        self._spark = spark

    @property
    def error(self) -> str | None:
        if self._trainer.error is not None:
            return self._trainer.error
        exception = self.query.exception()
        if exception is None:
            return None
        match = _INPUT_ERROR_LINE.search(str(exception))
        return match["line"] if match else str(exception).strip().splitlines()[0]

    def await_termination(self, timeout: int | None = None) -> bool | None:
        """``query.awaitTermination``; a query stopped by a micro-batch it could not learn from raises that one line
        as an ``InputError``."""
        try:
            return self.query.awaitTermination(timeout)
        except Exception:
            error = self.error
            if error is not None and (self._trainer.error is not None or _INPUT_ERROR_LINE.search(
                    str(self.query.exception()))):
                raise InputError(error) from None
            raise

    def stop(self) -> None:
        self.query.stop()

    def latest(self) -> GaussianMixtureModel:
        return latest_model(self._spark, self._trainer.model_dir)


def train_on(stream_df: DataFrame, model: GaussianMixtureModel, model_dir: str, checkpoint_location: str, *,
             keep: int = DEFAULT_KEEP, trigger: dict[str, Any] | None = None, query_name: str | None = None
             ) -> ModelStream:
    """Start a query that updates ``model`` with every micro-batch of ``stream_df`` (see the module's docstring).
    ``keep`` (>= 1) versions are kept; ``trigger`` is ``DataStreamWriter.trigger``'s keywords (``{"availableNow":
    True}``, ``{"processingTime": "10 seconds"}``, ...). The update rule, features, weights and invalid rows are the
    model's Params."""
    if not stream_df.isStreaming:
        raise InputError("train_on needs a streaming DataFrame (spark.readStream...); for a DataFrame, use "
                         "model.update(df)")
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise InputError(f"keep={keep!r} must be an integer >= 1")
    if is_connect(stream_df.sparkSession):
        raise InputError("train_on runs in a classic Spark session: under Spark Connect the foreachBatch function "
                         "runs on the server, away from this process")
    model._validated()
    update_rule(model)  # refuses a bad rule before the query starts
    trainer = BatchTrainer(model, model_dir, keep, stream_df.schema)
    writer = stream_df.writeStream.foreachBatch(trainer).option("checkpointLocation", checkpoint_location)
    if trigger:
        writer = writer.trigger(**trigger)
    if query_name:
        writer = writer.queryName(query_name)
    return ModelStream(writer.start(), trainer, stream_df.sparkSession)
