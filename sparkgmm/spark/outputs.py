"""Job outputs that appear whole or not at all, on any file system Spark can write (local, HDFS, S3A, ...).

An output is first written to a hidden staging directory beside its destination, completed with a ``_SUCCESS``
marker, then renamed into place. With ``overwrite``, the old output is moved aside first and deleted only after the
new one is in place, so a failed run never leaves the destination empty or half-written. That is
``sparkgmm.files.StagedWrite``, here on ``HadoopFiles``: Hadoop's ``FileSystem`` of the running session, which is what
Spark itself reads and writes with.

``save_directory`` gives pyspark.ml's ``MLWriter`` semantics (refuse an existing path unless overwriting) to a
directory written by Spark's DataFrame writers: staged as above on a classic session; under Spark Connect (no JVM in
the client) through pyspark.ml's Connect helper.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from pyspark.sql import SparkSession

from ..errors import InputError, OutputExistsError
from ..files import LOCAL_FILES, StagedWrite, local_path_of
from .session import is_connect

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


class HadoopFiles:
    """The Hadoop ``FileSystem`` of ``uri`` through the session's JVM, with the operations of
    ``sparkgmm.files.LocalFiles`` (so ``StagedWrite`` works on it). Paths are URI strings of that file system;
    ``root`` is ``uri`` qualified (``file:/abs/path``, ``hdfs://nn:8020/path``)."""

    def __init__(self, spark: SparkSession, uri: str):
        jvm = spark.sparkContext._jvm
        if jvm is None:
            raise RuntimeError("the session's SparkContext has no JVM (it was stopped)")
        self._Path = jvm.org.apache.hadoop.fs.Path
        path = self._Path(uri)
        hadoop_conf = spark.sparkContext._jsc.hadoopConfiguration()
        fs = path.getFileSystem(hadoop_conf)
        self.is_local = fs.getUri().getScheme() == "file"
        if self.is_local:
            # The checksummed local file system would add a .crc file beside each file the job writes itself.
            fs = jvm.org.apache.hadoop.fs.FileSystem.getLocal(hadoop_conf).getRawFileSystem()
        self.fs = fs
        self.root = fs.makeQualified(path).toString()

    def local_path(self, path: str) -> Path | None:
        """Where ``path`` is on this machine when the file system is the local one (else None): reached without the
        JVM, which may already be gone when a job is stopped."""
        return local_path_of(path) if self.is_local else None

    def join(self, directory: str, name: str) -> str:
        return directory.rstrip("/") + "/" + name

    def parent(self, path: str) -> str:
        return self._Path(path).getParent().toString()

    def name(self, path: str) -> str:
        return self._Path(path).getName()

    def uri(self, path: str) -> str:
        return path

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(self._Path(path)))

    def list(self, directory: str, files_only: bool = False) -> list[str]:
        if not self.exists(directory):
            return []
        return sorted(status.getPath().getName() for status in self.fs.listStatus(self._Path(directory))
                      if not files_only or status.isFile())

    def mkdirs(self, directory: str) -> None:
        self.fs.mkdirs(self._Path(directory))

    def write_text(self, path: str, text: str) -> None:
        stream = self.fs.create(self._Path(path), False)
        try:
            stream.write(bytearray(text.encode("utf-8")))
        finally:
            stream.close()

    def rename(self, source: str, target: str) -> None:
        if not self.fs.rename(self._Path(source), self._Path(target)):
            raise OSError(f"could not rename {source} to {target}")

    def swap_file(self, source: str, target: str) -> bool:
        return False  # a Hadoop rename never replaces: the old file is moved aside instead

    def delete(self, path: str) -> None:
        try:
            if self.exists(path) and not self.fs.delete(self._Path(path), True):
                raise OSError(f"could not delete {path}")
        except Exception:
            local = self.local_path(path)
            if local is None:
                raise
            LOCAL_FILES.delete(local)  # the JVM may be gone (SIGTERM reaches it too); the files are here

    def copy_in(self, local: Path, path: str) -> None:
        self.fs.copyFromLocalFile(False, True, self._Path(local.resolve().as_uri()), self._Path(path))

    def copy_out(self, path: str, local: Path) -> None:
        self.fs.copyToLocalFile(False, self._Path(path), self._Path(local.as_uri()), True)


class StagedOutput(StagedWrite):
    """A ``StagedWrite`` through the session's Hadoop file system: Spark's writers write into ``staging`` (a URI);
    on failure the session's jobs are cancelled before the staging directory is removed."""

    def __init__(self, spark: SparkSession, uri: str, overwrite: bool, success_marker: bool = True,
                 what: str = "output", how_to_overwrite: str = JOB_OVERWRITE):
        self.spark = spark
        self.uri = uri
        with known_file_system(uri, what):
            files = HadoopFiles(spark, uri)
        super().__init__(files, files.root, overwrite, subject=f"{what} {uri}", how_to_overwrite=how_to_overwrite,
                         success_marker=success_marker, on_failure=spark.sparkContext.cancelAllJobs)

    def put_text(self, name: str, text: str) -> None:
        """Write the file ``name`` (a path relative to the staging directory) holding ``text``, as UTF-8."""
        self.files.write_text(self.files.join(self.staging, name), text)

    def staged_files(self, prefix: str = "part-") -> list[str]:
        """URIs of the files in the staging directory whose names start with ``prefix`` (Spark's ``part-*`` by
        default): what to read back from it, as Spark ignores a directory whose name starts with '.' (and warns)."""
        return [self.files.join(self.staging, name) for name in self.files.list(self.staging, files_only=True)
                if name.startswith(prefix)]


def staged_output(spark: SparkSession, uri: str, overwrite: bool, success_marker: bool = True, what: str = "output",
                  how_to_overwrite: str = JOB_OVERWRITE) -> StagedOutput:
    """``with staged_output(...) as out:`` write to ``out.staging`` (and ``out.put_text``); committed when the block
    ends normally, removed when it raises. ``what`` and ``how_to_overwrite`` word the error for an existing
    output."""
    return StagedOutput(spark, uri, overwrite, success_marker, what, how_to_overwrite)


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
