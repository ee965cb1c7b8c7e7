"""Job outputs that appear whole or not at all, on any file system Spark can write (local, HDFS, S3A, ...).

An output is first written to a hidden staging directory beside its destination, completed with a ``_SUCCESS``
marker, then renamed into place. With ``overwrite``, the old output is moved aside first and deleted only after the
new one is in place, so a failed run never leaves the destination empty or half-written. Paths go through Hadoop's
``FileSystem`` of the running session, which is what Spark itself reads and writes with.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

from pyspark.sql import SparkSession

from ..errors import OutputExistsError

SUCCESS_MARKER = "_SUCCESS"


class _HadoopPaths:
    """The Hadoop file system behind one path, through the session's JVM."""

    def __init__(self, spark: SparkSession, uri: str):
        jvm = spark.sparkContext._jvm
        self._jvm = jvm
        self._Path = jvm.org.apache.hadoop.fs.Path
        path = self._Path(uri)
        hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
        fs = path.getFileSystem(hadoop_conf)
        self.is_local = fs.getUri().getScheme() == "file"
        if self.is_local:
            # The checksummed local file system would add a .crc file beside each file the job writes itself.
            fs = jvm.org.apache.hadoop.fs.FileSystem.getLocal(hadoop_conf).getRawFileSystem()
        self.fs = fs
        self.path = self.fs.makeQualified(path)

    def sibling(self, name: str):
        return self._Path(self.path.getParent(), name)

    def exists(self, path=None) -> bool:
        return bool(self.fs.exists(path if path is not None else self.path))

    def delete(self, path) -> None:
        if self.fs.exists(path) and not self.fs.delete(path, True):
            raise OSError(f"could not delete {path.toString()}")

    def rename(self, source, target) -> None:
        if not self.fs.rename(source, target):
            raise OSError(f"could not rename {source.toString()} to {target.toString()}")

    def local_path(self, path=None) -> str:
        return (path if path is not None else self.path).toUri().getPath()


class StagedOutput:
    """Write into ``staging`` (a URI that does not exist yet), then ``commit()`` it to the destination."""

    def __init__(self, spark: SparkSession, uri: str, overwrite: bool):
        self.uri = uri
        self.overwrite = overwrite
        self._paths = _HadoopPaths(spark, uri)
        tag = uuid.uuid4().hex[:12]
        name = self._paths.path.getName()
        self._staging = self._paths.sibling(f".{name}.sparkgmm-staging-{tag}")
        self._backup = self._paths.sibling(f".{name}.sparkgmm-replaced-{tag}")
        self.staging = self._staging.toString()
        # Where the staging directory is on this machine, to remove it even if the JVM is already gone (SIGTERM).
        self._local_staging = Path(self._paths.local_path(self._staging)) if self._paths.is_local else None

    def put_local_dir(self, local_dir: str | Path) -> None:
        """Copy a directory on the driver's disk to the staging location."""
        source = self._paths._Path(Path(local_dir).resolve().as_uri())
        self._paths.fs.copyFromLocalFile(False, False, source, self._staging)

    def staged_files(self, prefix: str = "part-") -> list[str]:
        """URIs of the files in the staging directory whose names start with ``prefix`` (Spark's ``part-*`` by
        default): what to read back from it, as Spark ignores a directory whose name starts with '.' (and warns)."""
        if not self._paths.exists(self._staging):
            return []
        return sorted(status.getPath().toString() for status in self._paths.fs.listStatus(self._staging)
                      if status.isFile() and status.getPath().getName().startswith(prefix))

    def commit(self) -> None:
        paths = self._paths
        marker = paths._Path(self._staging, SUCCESS_MARKER)
        if not paths.exists(marker):
            paths.fs.create(marker, True).close()
        if paths.exists():
            if not self.overwrite:
                raise OutputExistsError(f"output {self.uri} appeared while the job ran; pass --overwrite to replace it")
            paths.rename(paths.path, self._backup)
            try:
                paths.rename(self._staging, paths.path)
            except BaseException:
                paths.rename(self._backup, paths.path)
                raise
            paths.delete(self._backup)
        else:
            paths.rename(self._staging, paths.path)

    def abort(self) -> None:
        try:
            self._paths.delete(self._staging)
        except Exception:
            if self._local_staging is None:
                raise
            shutil.rmtree(self._local_staging, ignore_errors=True)


@contextlib.contextmanager
def staged_output(spark: SparkSession, uri: str, overwrite: bool) -> Iterator[StagedOutput]:
    """``with staged_output(...) as out:`` write to ``out.staging`` (or ``out.put_local_dir``); committed when the
    block ends normally, removed when it raises."""
    output = StagedOutput(spark, uri, overwrite)
    if not overwrite and output._paths.exists():
        raise OutputExistsError(f"output {uri} already exists; pass --overwrite to replace it")
    try:
        yield output
        output.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # on SIGTERM a write may still be running into the staging directory
            spark.sparkContext.cancelAllJobs()
        output.abort()
        raise


@contextlib.contextmanager
def local_copy_of_dir(spark: SparkSession, uri: str) -> Iterator[str]:
    """A driver-local path holding the directory ``uri``: the directory itself when it is on the local file system,
    else a temporary copy, removed afterwards."""
    paths = _HadoopPaths(spark, uri)
    if not paths.exists():
        raise FileNotFoundError(f"model directory {uri} does not exist")
    if paths.is_local:
        yield paths.local_path()
        return
    with tempfile.TemporaryDirectory(prefix="sparkgmm-model-") as tmp:
        target = Path(tmp) / "model"
        paths.fs.copyToLocalFile(False, paths.path, paths._Path(target.as_uri()), True)
        yield str(target)
