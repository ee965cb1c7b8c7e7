"""The one staged writer (``sparkgmm.files.StagedWrite``) on both file systems it serves: this machine's
(``LocalFiles``, no Spark) and Hadoop's through the session (``sparkgmm.spark.outputs.HadoopFiles``, here on
``file://`` URIs); and ``local_path_of``, the one parser of local paths. Every test reads back what was written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helpers import leftovers, make_mixture
from sparkgmm.errors import OutputExistsError
from sparkgmm.files import LOCAL_FILES, STAGING_INFIX, StagedWrite, is_glob, local_path_of


class Failed(Exception):
    pass


@dataclass(frozen=True)
class Place:
    """A file system of either flavour, how it names a path on this machine, and the destination ``out``."""

    files: Any
    at: Callable[[Path], Any]
    out: Path

    @property
    def target(self) -> Any:
        return self.at(self.out)

    def stage(self, overwrite: bool = False, **options) -> StagedWrite:
        return StagedWrite(self.files, self.target, overwrite, **options)

    def write(self, directory, contents: dict[str, str]) -> None:
        for name, text in contents.items():
            self.files.write_text(self.files.join(directory, name), text)


def hadoop_place(spark, tmp_path: Path) -> Place:
    from sparkgmm.spark.outputs import HadoopFiles

    return Place(HadoopFiles(spark, tmp_path.as_uri()), lambda path: path.as_uri(), tmp_path / "out")


@pytest.fixture(params=["local", pytest.param("hadoop", marks=pytest.mark.spark)])
def fs(request, tmp_path) -> Place:
    if request.param == "local":
        return Place(LOCAL_FILES, lambda path: path, tmp_path / "out")
    return hadoop_place(request.getfixturevalue("spark"), tmp_path)


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``: relative path -> bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def old_output(path: Path) -> dict[str, bytes]:
    (path / "sub").mkdir(parents=True)
    (path / "part-0.txt").write_text("old")
    (path / "sub" / "part-1.txt").write_text("old too")
    return tree(path)


def test_a_staged_directory_appears_whole_and_only_when_the_block_ends(fs, tmp_path):
    with fs.stage(success_marker=True) as stage:
        fs.write(stage.staging, {"part-0.txt": "new", "sub/part-1.txt": "more"})
        assert not fs.out.exists()
        (hidden,) = tmp_path.iterdir()
        assert hidden.name.startswith(f".out{STAGING_INFIX}") and tree(hidden) == {
            "part-0.txt": b"new", "sub/part-1.txt": b"more"}
    assert tree(fs.out) == {"part-0.txt": b"new", "sub/part-1.txt": b"more", "_SUCCESS": b""}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_inside_the_block_keeps_the_old_output_and_leaves_no_staging(fs, tmp_path, existing):
    before = old_output(fs.out) if existing else None
    stopped = []

    def stop_the_writers():  # runs first, while the staging is still there; its own failure changes nothing
        stopped.append(sorted(p.name for p in tmp_path.iterdir() if STAGING_INFIX in p.name))
        raise RuntimeError("no writers to stop")

    with pytest.raises(Failed), fs.stage(overwrite=True, on_failure=stop_the_writers) as stage:
        fs.write(stage.staging, {"part-0.txt": "half of the new one"})
        raise Failed()
    assert (tree(fs.out) if fs.out.exists() else None) == before
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if existing else [])
    assert stopped == [[fs.files.name(stage.staging)]]


def test_without_overwrite_an_existing_output_is_refused_before_the_block_runs(fs, tmp_path):
    before = old_output(fs.out)
    with pytest.raises(OutputExistsError) as refused, fs.stage(subject=f"output {fs.out}"):
        pytest.fail("the block ran")
    assert str(refused.value) == f"output {fs.out} already exists; pass --overwrite to replace it"
    assert tree(fs.out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_that_appears_while_it_is_written_is_left_alone_without_overwrite(fs, tmp_path):
    with pytest.raises(OutputExistsError, match="appeared while it was written; pass --overwrite to replace it"):
        with fs.stage() as stage:
            fs.write(stage.staging, {"part-0.txt": "new"})
            before = old_output(fs.out)  # another writer
    assert tree(fs.out) == before and leftovers(tmp_path) == []


def test_overwrite_replaces_the_old_output_and_puts_it_back_when_the_rename_fails(fs, tmp_path, monkeypatch):
    before = old_output(fs.out)
    rename = fs.files.rename

    def failing_rename(source, target):
        if STAGING_INFIX in str(source):
            raise OSError("disk full")
        rename(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(fs.files, "rename", failing_rename)
        with pytest.raises(OSError, match="disk full"), fs.stage(overwrite=True) as stage:
            fs.write(stage.staging, {"part-0.txt": "new"})
    assert tree(fs.out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]

    with fs.stage(overwrite=True) as stage:
        fs.write(stage.staging, {"part-0.txt": "new"})
    assert tree(fs.out) == {"part-0.txt": b"new"} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_file_is_staged_and_replaced_like_a_directory(fs, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("old")
    for overwrite in (False, True):
        try:
            with StagedWrite(fs.files, fs.at(page), overwrite) as stage:
                fs.files.write_text(stage.staging, "new")
        except OutputExistsError:
            assert not overwrite
    assert page.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["page.html"]


@pytest.mark.spark
def test_the_staging_is_removed_even_when_the_jvm_is_gone(spark, tmp_path):
    """A job stopped with SIGTERM: the signal reaches the JVM too, yet a local staging directory must go."""

    class Unreachable:
        def __getattr__(self, name):
            raise ConnectionError("Answer from Java side is empty")  # what py4j raises once the JVM has exited

    fs = hadoop_place(spark, tmp_path)
    with pytest.raises(Failed), fs.stage() as stage:
        fs.write(stage.staging, {"part-0.txt": "new"})
        fs.files.fs = Unreachable()
        raise Failed()
    assert list(tmp_path.iterdir()) == []


def test_mixture_save_refuses_an_existing_model_with_its_own_words(tmp_path):
    make_mixture("diag").save(tmp_path / "model")
    before = tree(tmp_path / "model")
    with pytest.raises(OutputExistsError) as refused:
        make_mixture("full").save(tmp_path / "model")
    assert str(refused.value) == (f"model path {str(tmp_path / 'model')!r} already exists; pass overwrite=True to "
                                  "replace it")
    assert tree(tmp_path / "model") == before


@pytest.mark.parametrize("uri, path", [
    ("/data/x", Path("/data/x")),
    ("relative/x", Path("relative/x")),
    ("file:/data/x", Path("/data/x")),
    ("file:///data/x", Path("/data/x")),
    ("file://localhost/data/x", Path("/data/x")),
    ("FILE:///data/x", Path("/data/x")),
    ("file://other-host/data/x", None),
    ("hdfs://nn:8020/data/x", None),
    ("s3a://bucket/x", None),
    ("foo://x", None),
    (Path("/data/x"), Path("/data/x")),
])
def test_local_path_of_names_this_machines_paths_and_nothing_else(uri, path):
    assert local_path_of(uri) == path


@pytest.mark.parametrize("uri, glob", [
    ("/data/*.parquet", True), ("/data/part-?", True), ("/data/[ab]", True), ("/data/{a,b}", True),
    ("/data/x.parquet", False), ("hdfs://nn/data/x", False),
])
def test_is_glob(uri, glob):
    assert is_glob(uri) is glob
