"""Paths and outputs that appear whole: which paths are this machine's (``local_path_of``, the one parser of paths and
``file:`` URIs), which are globs, and ``StagedWrite``, the one writer of outputs that appear whole or not at all.

A staged write goes into a hidden sibling of its destination (``.NAME.sparkgmm-staging-TAG``, which the block
creates: a file or a directory), then is renamed into place. With ``overwrite`` the old output is moved aside
(``.NAME.sparkgmm-replaced-TAG``) and deleted only once the new one is in place, so a failed write never leaves the
destination empty or half-written; without it, an existing destination is an ``OutputExistsError``. A block that
raises leaves no staging behind.

The writer works on any file system with the few operations of ``LocalFiles``: this machine's, here (no Spark), and
Hadoop's through a Spark session (``sparkgmm.spark.outputs.HadoopFiles``), which is the same interface.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlparse

from .errors import InputError, OutputExistsError

logger = logging.getLogger("sparkgmm")

STAGING_INFIX = ".sparkgmm-staging-"
REPLACED_INFIX = ".sparkgmm-replaced-"
SUCCESS_MARKER = "_SUCCESS"
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?://|/)")
_GLOB = re.compile(r"[*?\[{]")


def local_path_of(uri: str | os.PathLike) -> Path | None:
    """The path on this machine that ``uri`` names: a path, or a ``file:`` URI (of no host, or localhost); None for
    a URI of any other file system (``hdfs://``, ``s3a://``, ...)."""
    if not isinstance(uri, str):
        return Path(uri)
    match = _SCHEME.match(uri)
    if match is None:
        return Path(uri)
    parsed = urlparse(uri)
    if match["scheme"].lower() != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return Path(parsed.path or "/")


def local_path(uri: str | os.PathLike, refusal: str) -> Path:
    """``uri`` as a path on this machine (``local_path_of``); a URI of any other file system is an ``InputError``
    saying ``refusal``: never a local directory of that name by accident."""
    local = local_path_of(uri)
    if local is None:
        raise InputError(refusal)
    return local


def is_glob(uri: str) -> bool:
    """Whether ``uri`` is a pattern Spark (Hadoop's globber) expands: ``*``, ``?``, ``[...]`` or ``{a,b}``."""
    return _GLOB.search(uri) is not None


class LocalFiles:
    """This machine's file system, through Python's own functions: the operations a staged write and a checkpoint
    store need (``sparkgmm.spark.outputs.HadoopFiles`` has the same ones). Paths are ``pathlib.Path``."""

    def join(self, directory: Path, name: str) -> Path:
        return Path(directory) / name

    def parent(self, path: Path) -> Path:
        return Path(path).parent

    def name(self, path: Path) -> str:
        return Path(path).name

    def uri(self, path: Path) -> str:
        return str(path)

    def exists(self, path: Path) -> bool:
        return os.path.lexists(path)

    def list(self, directory: Path, files_only: bool = False) -> list[str]:
        """The names in ``directory`` (none when it does not exist), sorted."""
        if not os.path.isdir(directory):
            return []
        return sorted(p.name for p in Path(directory).iterdir() if not files_only or p.is_file())

    def mkdirs(self, directory: Path) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)

    def write_text(self, path: Path, text: str) -> None:
        """A new file ``path`` (its directories made as needed) holding ``text`` as UTF-8."""
        self.mkdirs(self.parent(path))
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)

    def rename(self, source: Path, target: Path) -> None:
        os.rename(source, target)

    def swap_file(self, source: Path, target: Path) -> bool:
        """Replace the file ``target`` by the file ``source`` in one step, so that no reader finds it missing; False
        (and nothing done) when either is not a file."""
        if not (os.path.isfile(source) and os.path.isfile(target)):
            return False
        os.replace(source, target)
        return True

    def delete(self, path: Path) -> None:
        """Remove the file or directory tree ``path``; nothing when it does not exist."""
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)

    def copy_in(self, local: Path, path: Path) -> None:
        """Copy the local directory ``local`` to ``path`` (which must not exist)."""
        shutil.copytree(local, path)

    def copy_out(self, path: Path, local: Path) -> None:
        """Copy the directory ``path`` to the local ``local`` (which must not exist)."""
        shutil.copytree(path, local)


LOCAL_FILES = LocalFiles()


class StagedWrite:
    """``with StagedWrite(files, target, overwrite) as stage:`` write ``stage.staging`` (a file or a directory of
    ``files``, which does not exist yet), which becomes ``target`` when the block ends normally and is removed when
    it raises.

    An existing ``target`` is refused on entry unless ``overwrite`` (``OutputExistsError``: "``subject`` already
    exists; ``how_to_overwrite`` to replace it"; ``subject`` defaults to "output TARGET"), and again at the commit if
    it appeared meanwhile. ``success_marker`` adds an empty ``_SUCCESS`` file to a staged directory, as Spark's
    writers do. ``on_failure`` runs (its own errors ignored) before the staging is removed, to stop what may still be
    writing into it."""

    def __init__(self, files: Any, target: Any, overwrite: bool = False, *, subject: str | None = None,
                 how_to_overwrite: str = "pass --overwrite", success_marker: bool = False,
                 on_failure: Callable[[], None] | None = None):
        self.files, self.target, self.overwrite = files, target, overwrite
        self.subject = subject if subject is not None else f"output {files.uri(target)}"
        self.how_to_overwrite = how_to_overwrite
        self.success_marker = success_marker
        self._on_failure = on_failure
        tag = uuid.uuid4().hex[:12]
        name, directory = files.name(target), files.parent(target)
        self.staging = files.join(directory, f".{name}{STAGING_INFIX}{tag}")
        self.replaced = files.join(directory, f".{name}{REPLACED_INFIX}{tag}")

    def _exists_error(self, how: str) -> OutputExistsError:
        return OutputExistsError(f"{self.subject} {how}; {self.how_to_overwrite} to replace it")

    def __enter__(self) -> Self:
        if not self.overwrite and self.files.exists(self.target):
            raise self._exists_error("already exists")
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            try:
                self.commit()
                return
            except BaseException:
                self._fail()
                raise
        self._fail()

    def commit(self) -> None:
        """Rename the staging into place (moving an old ``target`` aside first, and deleting it once replaced)."""
        files = self.files
        if self.success_marker:
            marker = files.join(self.staging, SUCCESS_MARKER)
            if not files.exists(marker):
                files.write_text(marker, "")
        if not files.exists(self.target):
            files.rename(self.staging, self.target)
            return
        if not self.overwrite:
            raise self._exists_error("appeared while it was written")
        if files.swap_file(self.staging, self.target):
            return
        files.rename(self.target, self.replaced)
        try:
            files.rename(self.staging, self.target)
        except BaseException:
            files.rename(self.replaced, self.target)
            raise
        self._remove(self.replaced, "the output it replaced")

    def _fail(self) -> None:
        if self._on_failure is not None:
            try:
                self._on_failure()
            except Exception:
                logger.debug("stopping the writers of %s failed", self.files.uri(self.staging), exc_info=True)
        self._remove(self.staging, "its staging")

    def _remove(self, path: Any, what: str) -> None:
        """Delete ``path``; a failure is a warning, as the write itself has succeeded or failed already."""
        try:
            self.files.delete(path)
        except Exception as error:
            logger.warning("could not remove %s (%s) of %s: %s", self.files.uri(path), what,
                           self.files.uri(self.target), error)
