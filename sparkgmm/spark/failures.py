"""Spark's errors for input it cannot read, as ``InputError``: one line naming the path and the problem.

Spark finds an unreadable input at different times: while inferring the schema (``spark.read.parquet``: a missing
path, an empty directory, a file whose footer is not Parquet's) or only inside a job that reads the rows (the
conversion of the features to blocks, predict's write: a damaged page, a truncated file among good ones, files whose
schemas disagree). It says so in a Py4JJavaError or a captured AnalysisException whose text carries Spark's error
condition (``[FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while reading file PATH. ...``) and, in
the Java causes, the reader's own words (``PATH is not a Parquet file. Expected magic number at tail ...``).

``input_error_from`` reads those from the exception's class name and text alone, without importing pyspark, so the
command line can classify a failure cheaply; any other failure, transient I/O errors included, gives None and stays
what it was.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote, urlparse

from ..errors import InputError
from ..files import is_glob, local_path_of

# "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///x/part-1.parquet.  SQLSTATE: KD001";
# Spark URL-encodes the path of a file it was reading rows from (a space is %20).
_FAILED_READ = re.compile(
    r"\[FAILED_READ_FILE\.(?P<kind>[A-Z_]+)\] Encountered error while reading file (?P<path>.+?)\.(?:\s|$)", re.M
)
_PATH_NOT_FOUND = re.compile(r"\[PATH_NOT_FOUND\] Path does not exist: (?P<path>.+?)\.(?:\s|$)", re.M)
_UNABLE_TO_INFER = re.compile(r"\[UNABLE_TO_INFER_SCHEMA\] Unable to infer schema for (?P<format>\w+)")
_TYPE_MISMATCH = re.compile(
    r"Parquet column \[?(?P<column>.+?)\]?\. Expected Spark type (?P<expected>\S+), actual Parquet type "
    r"(?P<actual>\S+?)\.(?:\s|$)", re.M
)
# What the Parquet reader says, in the Java causes, about a file that is not Parquet or is damaged: a bad magic
# number or footer (not Parquet, or truncated), pages or metadata that do not decode (an exception of the Parquet
# library's own, named as a cause: "org.apache.parquet.io.ParquetDecodingException: ..."), decompression failures.
_DAMAGED = re.compile(
    r"is not a Parquet file|Could not read footer|footer is too large|Expected magic number|"
    r"can not read class org\.apache\.parquet|(?:org\.apache|shaded)\.parquet\.[\w.$]*(?:Exception|Error):|"
    r"FAILED_TO_UNCOMPRESS|Corrupt(?:ed)? (?:input|data|block)|Reached the end of stream|java\.io\.EOFException"
)
_PERMISSION = re.compile(r"Permission denied|AccessDenied|AccessControlException")
# A read that failed on the way to the bytes (network, object store, a datanode down, an interrupted task) says
# nothing about the file: such a failure stays what it was (exit 1), and a scheduler may retry it.
_TRANSIENT = re.compile(
    r"java\.net\.|SocketException|SocketTimeoutException|ConnectException|ConnectTimeoutException|"
    r"Connection (?:reset|refused|closed|timed out)|Read timed out|UnknownHostException|NoRouteToHostException|"
    r"InterruptedIOException|ClosedByInterruptException|InterruptedException|Filesystem closed|"
    r"Premature end of Content-Length|SdkClientException|AmazonClientException|AWSClientIOException|"
    r"AWSServiceThrottledException|SdkServiceException|Throttl|Service ?Unavailable|Slow ?Down|"
    r"AbfsRestOperationException|StorageException|BlockMissingException|RetriesExhausted|"
    r"OutOfMemoryError|TaskKilled"
)
_CAUSE = re.compile(r"^Caused by: (?:[\w$]+\.)*(?P<cause>[\w$]+: .*?)\s*$", re.M)
NOT_PARQUET = "is not a Parquet file (or is damaged)"


def input_error_from(exc: BaseException, source: str | None = None) -> InputError | None:
    """An ``InputError`` for ``exc`` when it is Spark's way of saying an input cannot be read, else None.

    ``source`` is the input as the caller named it (a directory, a file, a glob; any URI Spark reads): given, the
    message starts ``input SOURCE:`` and names a file inside it by its relative path. The returned error's cause is
    ``exc``, so ``raise input_error_from(e) or e`` keeps the original for anything else.
    """
    if isinstance(exc, InputError):
        return None
    text = _spark_text(exc)
    if not text:
        return None
    message = _message(text, source)
    if message is None:
        return None
    error = InputError(message)
    error.__cause__ = exc
    return error


def raise_input_error(exc: BaseException, source: str | None = None) -> None:
    """Raise ``input_error_from(exc, source)`` (from ``exc``) when there is one; return otherwise. For an ``except``
    block that re-raises everything else: ``raise_input_error(e)`` then ``raise``."""
    error = input_error_from(exc, source)
    if error is not None:
        raise error from exc


def _spark_text(exc: BaseException) -> str:
    """The text of every Spark or Py4J exception in ``exc``'s chain (a Py4JJavaError's includes its Java causes)."""
    texts = []
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 8:
        seen.add(id(link))
        module = type(link).__module__.split(".")[0]
        if module in ("py4j", "pyspark") or type(link).__name__ in ("Py4JJavaError", "AnalysisException",
                                                                    "SparkException"):
            try:
                texts.append(str(link))  # a Py4JJavaError asks the JVM for its stack trace
            except Exception:  # the JVM may be gone (a SIGTERM reaches it too)
                texts.append(" ".join(str(a) for a in getattr(link, "args", ()) if isinstance(a, str)))
        link = link.__cause__ or link.__context__
    return "\n".join(texts)


def _message(text: str, source: str | None) -> str | None:
    read = _FAILED_READ.search(text)
    if read is not None:
        kind, path = read["kind"], read["path"]
        # The reader's own words are in the Java causes (their stack frames, which name every class on the way,
        # are left out of what is matched).
        causes = "\n".join(line for line in text[read.start():].splitlines() if line.startswith("Caused by:"))
        if kind in ("CANNOT_READ_FILE_FOOTER", "NO_HINT") and _PERMISSION.search(causes):
            problem = "cannot be read: permission denied"
        elif kind in ("CANNOT_READ_FILE_FOOTER", "NO_HINT") and _TRANSIENT.search(causes):
            return None
        elif kind == "CANNOT_READ_FILE_FOOTER":
            problem = NOT_PARQUET
        elif kind == "FILE_NOT_EXIST":
            problem = "no longer exists: the input changed while the job read it"
        elif kind == "PARQUET_COLUMN_DATA_TYPE_MISMATCH":
            mismatch = _TYPE_MISMATCH.search(text)
            problem = ("does not match the schema of the other files" if mismatch is None else
                       f"stores column {mismatch['column']!r} as {mismatch['actual']} but the input's schema (read "
                       f"from another file) says {mismatch['expected']}: the files' schemas disagree")
        elif kind != "NO_HINT":
            return None  # UNSUPPORTED_FILE_SYSTEM and whatever comes later: about the set-up, not the file
        elif _DAMAGED.search(causes):
            problem = NOT_PARQUET
        else:  # the reader choked on what it found: say on what
            roots = _CAUSE.findall(causes)
            problem = f"is damaged: reading it failed with {roots[-1][:200]}" if roots else "is damaged: unreadable"
        return _about_file(unquote(path), source, problem)
    missing = _PATH_NOT_FOUND.search(text)
    if missing is not None:
        path = _display(missing["path"])
        return f"input {path} matches no files" if is_glob(path) else f"input {path} does not exist"
    empty = _UNABLE_TO_INFER.search(text)
    if empty is not None:
        where = f"input {source}" if source else "the input"
        return (f"{where} has no rows: there is no {empty['format']} file in it (only empty or hidden files, "
                "or none at all)")
    return None


def _about_file(file_uri: str, source: str | None, problem: str) -> str:
    """``input SOURCE: file REL PROBLEM``, ``input SOURCE PROBLEM`` (the input is that file), else
    ``input file PATH PROBLEM``."""
    file_path = _display(file_uri)
    if not source:
        return f"input file {file_path} {problem}"
    relative = _relative(file_uri, source)
    if relative == ".":
        return f"input {source} {problem}"
    return f"input {source}: file {relative or file_path} {problem}"


def _display(uri: str) -> str:
    """A local URI as a plain path (``file:///x/y`` -> ``/x/y``); any other as it is."""
    local = local_path_of(uri)
    return uri if local is None else str(local)


def _comparable(uri: str) -> str | None:
    """The path part of ``uri`` to compare with another's, absolute for a local path; None for a glob."""
    if is_glob(uri):
        return None
    local = local_path_of(uri)
    if local is not None:
        return os.path.normpath(os.path.abspath(local))
    return os.path.normpath(urlparse(uri).path or "/")


def _relative(file_uri: str, source: str) -> str | None:
    """``file_uri``'s path relative to the input ``source`` ('.' when it is the input), or None when it is not
    inside it (or the input is a glob)."""
    root, path = _comparable(source), _comparable(file_uri)
    if root is None or path is None:
        return None
    if path == root:
        return "."
    prefix = root.rstrip("/") + "/"
    return path[len(prefix):] if path.startswith(prefix) else None
