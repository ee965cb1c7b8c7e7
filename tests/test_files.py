"""The one staged writer (``sparkgmm.files.StagedWrite``) on both file systems it serves: this machine's
(``LocalFiles``, no Spark) and Hadoop's through the session (``sparkgmm.spark.outputs.HadoopFiles``, here on
``file://`` URIs); and ``local_path_of``, the one parser of local paths. Every test reads back what was written."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import leftovers, make_mixture
from sparkgmm.errors import OutputExistsError
from sparkgmm.files import LOCAL_FILES, STAGING_INFIX, StagedWrite, is_glob, local_path_of


class Failed(Exception):
    pass


@pytest.fixture(params=["local", pytest.param("hadoop", marks=pytest.mark.spark)])
def fs(request, tmp_path):
    """(files, at): a file system of either flavour, and how it names a path under ``tmp_path``."""
    if request.param == "local":
        return LOCAL_FILES, lambda path: path
    from sparkgmm.spark.outputs import HadoopFiles

    return HadoopFiles(request.getfixturevalue("spark"), tmp_path.as_uri()), lambda path: path.as_uri()


def tree(directory: Path) -> dict[str, bytes]:
    """Every file under ``directory``: relative path -> bytes."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def write(files, directory, contents: dict[str, str]) -> None:
    for name, text in contents.items():
        files.write_text(files.join(directory, name), text)


def old_output(path: Path) -> dict[str, bytes]:
    (path / "sub").mkdir(parents=True)
    (path / "part-0.txt").write_text("old")
    (path / "sub" / "part-1.txt").write_text("old too")
    return tree(path)


def test_a_staged_directory_appears_whole_and_only_when_the_block_ends(fs, tmp_path):
    files, at = fs
    out = tmp_path / "out"
    with StagedWrite(files, at(out), success_marker=True) as stage:
        write(files, stage.staging, {"part-0.txt": "new", "sub/part-1.txt": "more"})
        assert not out.exists()
        (hidden,) = tmp_path.iterdir()
        assert hidden.name.startswith(f".out{STAGING_INFIX}") and tree(hidden) == {
            "part-0.txt": b"new", "sub/part-1.txt": b"more"}
    assert tree(out) == {"part-0.txt": b"new", "sub/part-1.txt": b"more", "_SUCCESS": b""}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_inside_the_block_keeps_the_old_output_and_leaves_no_staging(fs, tmp_path, existing):
    files, at = fs
    out = tmp_path / "out"
    before = old_output(out) if existing else None
    with pytest.raises(Failed):
        with StagedWrite(files, at(out), overwrite=True) as stage:
            write(files, stage.staging, {"part-0.txt": "half of the new one"})
            raise Failed()
    assert (tree(out) if out.exists() else None) == before
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if existing else [])


def test_without_overwrite_an_existing_output_is_refused_before_the_block_runs(fs, tmp_path):
    files, at = fs
    out = tmp_path / "out"
    before = old_output(out)
    with pytest.raises(OutputExistsError) as refused:
        with StagedWrite(files, at(out), subject=f"output {out}"):
            pytest.fail("the block ran")
    assert str(refused.value) == f"output {out} already exists; pass --overwrite to replace it"
    assert tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_that_appears_while_it_is_written_is_left_alone_without_overwrite(fs, tmp_path):
    files, at = fs
    out = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="appeared while it was written; pass --overwrite to replace it"):
        with StagedWrite(files, at(out)) as stage:
            write(files, stage.staging, {"part-0.txt": "new"})
            before = old_output(out)  # another writer
    assert tree(out) == before and leftovers(tmp_path) == []


def test_overwrite_replaces_the_old_output_and_puts_it_back_when_the_rename_fails(fs, tmp_path, monkeypatch):
    files, at = fs
    out = tmp_path / "out"
    before = old_output(out)
    rename = files.rename

    def failing_rename(source, target):
        if STAGING_INFIX in str(source):
            raise OSError("disk full")
        rename(source, target)

    with monkeypatch.context() as patch:
        patch.setattr(files, "rename", failing_rename)
        with pytest.raises(OSError, match="disk full"):
            with StagedWrite(files, at(out), overwrite=True) as stage:
                write(files, stage.staging, {"part-0.txt": "new"})
    assert tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["out"]

    with StagedWrite(files, at(out), overwrite=True) as stage:
        write(files, stage.staging, {"part-0.txt": "new"})
    assert tree(out) == {"part-0.txt": b"new"} and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_file_is_staged_and_replaced_like_a_directory(fs, tmp_path):
    files, at = fs
    out = tmp_path / "page.html"
    out.write_text("old")
    for overwrite in (False, True):
        try:
            with StagedWrite(files, at(out), overwrite) as stage:
                files.write_text(stage.staging, "new")
        except OutputExistsError:
            assert not overwrite
    assert out.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["page.html"]


@pytest.mark.spark
def test_the_staging_is_removed_even_when_the_jvm_is_gone(spark, tmp_path):
    """A job stopped with SIGTERM: the signal reaches the JVM too, yet a local staging directory must go."""
    from sparkgmm.spark.outputs import HadoopFiles

    class Unreachable:
        def __getattr__(self, name):
            raise ConnectionError("Answer from Java side is empty")  # what py4j raises once the JVM has exited

    files = HadoopFiles(spark, tmp_path.as_uri())
    with pytest.raises(Failed):
        with StagedWrite(files, (tmp_path / "out").as_uri()) as stage:
            write(files, stage.staging, {"part-0.txt": "new"})
            files.fs = Unreachable()
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
