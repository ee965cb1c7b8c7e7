"""Job outputs that appear whole or not at all, on any file system Spark can write (local, HDFS, S3A, ...).

An output is first written to a hidden staging directory beside its destination, completed with a ``_SUCCESS``
marker, then renamed into place. With ``overwrite``, the old output is moved aside first and deleted only after the
new one is in place, so a failed run never leaves the destination empty or half-written. Paths go through Hadoop's
``FileSystem`` of the running session, which is what Spark itself reads and writes with.

``save_directory`` gives pyspark.ml's ``MLWriter`` semantics (refuse an existing path unless overwriting) to a
directory written by Spark's DataFrame writers: staged as above on a classic session; under Spark Connect (no JVM in
the client) through pyspark.ml's Connect helper.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import uuid
from pathlib import Path
from typing import Callable, Iterator

from pyspark.sql import SparkSession

from ..errors import InputError, OutputExistsError
from .session import is_connect

SUCCESS_MARKER = "_SUCCESS"
JOB_OVERWRITE = "pass --overwrite"
_NO_FILE_SYSTEM = re.compile(r'No FileSystem for scheme "?(?P<scheme>[^"\s]*)"?')


@contextlib.contextmanager
def known_file_system(uri: str, what: str) -> Iterator[None]:
    """Turn Hadoop's "No FileSystem for scheme" (a URI it cannot write or read) into an ``InputError`` naming
    ``what`` and ``uri``."""
    try:
        yield
    except InputError:
        raise
    except Exception as error:
        try:
            match = _NO_FILE_SYSTEM.search(str(error))  # a Py4JJavaError's text comes from the JVM
        except Exception:
            match = None
        if match is None:
            raise
        raise InputError(f"{what} {uri}: no Hadoop file system for scheme {match['scheme']!r}; use a path or a URI "
                         "of a file system Spark is set up for (file://, hdfs://, s3a://, ...)") from error


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

    def __init__(self, spark: SparkSession, uri: str, overwrite: bool, success_marker: bool = True,
                 what: str = "output", how_to_overwrite: str = JOB_OVERWRITE):
        self.spark = spark
        self.uri = uri
        self.overwrite = overwrite
        self.success_marker = success_marker
        self.what, self.how_to_overwrite = what, how_to_overwrite
        with known_file_system(uri, what):
            self._paths = _HadoopPaths(spark, uri)
        tag = uuid.uuid4().hex[:12]
        name = self._paths.path.getName()
        self._staging = self._paths.sibling(f".{name}.sparkgmm-staging-{tag}")
        self._backup = self._paths.sibling(f".{name}.sparkgmm-replaced-{tag}")
        self.staging = self._staging.toString()
        # Where the staging directory is on this machine, to remove it even if the JVM is already gone (SIGTERM).
        self._local_staging = Path(self._paths.local_path(self._staging)) if self._paths.is_local else None

    def put_text(self, name: str, text: str) -> None:
        """Write the file ``name`` (a path relative to the staging directory) holding ``text``, as UTF-8."""
        stream = self._paths.fs.create(self._paths._Path(self._staging, name), False)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

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
        if self.success_marker and not paths.exists(marker):
            paths.fs.create(marker, True).close()
        if paths.exists():
            if not self.overwrite:
                raise OutputExistsError(f"{self.what} {self.uri} appeared while it was written; "
                                        f"{self.how_to_overwrite} to replace it")
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
def staged_output(spark: SparkSession, uri: str, overwrite: bool, success_marker: bool = True, what: str = "output",
                  how_to_overwrite: str = JOB_OVERWRITE) -> Iterator[StagedOutput]:
    """``with staged_output(...) as out:`` write to ``out.staging`` (and ``out.put_text``); committed when the block
    ends normally, removed when it raises. ``what`` and ``how_to_overwrite`` word the error for an existing
    output."""
    output = StagedOutput(spark, uri, overwrite, success_marker, what, how_to_overwrite)
    if not overwrite and output._paths.exists():
        raise OutputExistsError(f"{what} {uri} already exists; {how_to_overwrite} to replace it")
    try:
        yield output
        output.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # on SIGTERM a write may still be running into the staging directory
            spark.sparkContext.cancelAllJobs()
        output.abort()
        raise


def save_directory(spark, uri: str, overwrite: bool, write: Callable[[str], None], what: str,
                   how_to_overwrite: str) -> None:
    """``write(target)`` writes a directory that must not exist yet (with Spark's DataFrame writers); this makes it
    ``uri``, refusing an existing ``uri`` unless ``overwrite`` (an ``OutputExistsError`` worded with ``what`` and
    ``how_to_overwrite``), with a clear ``InputError`` for a URI scheme Hadoop does not know.

    On a classic session the directory is staged beside ``uri`` and renamed into place (``staged_output``): a failed
    save leaves no half directory and, with ``overwrite``, the old one untouched. Under Spark Connect the client can
    only ask the server to delete an existing ``uri`` (pyspark.ml's own Connect helper, as its writers do) and then
    write into it: a save that fails midway there leaves a partial directory behind, and with ``overwrite`` the old
    one is already gone."""
    with known_file_system(uri, what):
        if not is_connect(spark):
            with staged_output(spark, uri, overwrite, success_marker=False, what=what,
                               how_to_overwrite=how_to_overwrite) as output:
                write(output.staging)
            return
        from pyspark.ml.util import ML_CONNECT_HELPER_ID
        from pyspark.ml.wrapper import JavaWrapper

        try:  # deletes uri when overwriting; otherwise fails if it exists
            JavaWrapper(java_obj=ML_CONNECT_HELPER_ID)._call_java("handleOverwrite", uri, overwrite)
        except Exception as error:
            if "already exists" in str(error):
                raise OutputExistsError(f"{what} {uri} already exists; {how_to_overwrite} to replace it") from None
            raise
        write(uri)
