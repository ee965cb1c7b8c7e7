"""Every bad input, once, as a table: the Python API raises ``InputError`` with a message naming the problem, and the
job exits 2 with that message as its one ``sparkgmm CMD: error:`` line, no traceback and no output left behind.

The API column calls what a user of the library would (``GaussianMixture.fit`` on ``jobs.read_input``'s DataFrame,
``GaussianMixtureModel.load``, ``load_job_config``, ...); the job column runs ``sparkgmm.cli.run`` in-process on the
shared local[2] session. A few runs go through a separate process too (``python -m sparkgmm`` and spark-submit),
where the Python workers' own output would show.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import leftovers
from sparkgmm import GaussianMixture, GaussianMixtureModel, InputError, Mixture
from sparkgmm.cli import run
from sparkgmm.config import load_job_config
from sparkgmm.spark import jobs
from sparkgmm.spark.failures import input_error_from

ROOT = Path(__file__).resolve().parent.parent
ROWS = np.random.default_rng(7).normal(size=(40, 2)) + np.repeat([[0.0, 0.0], [6.0, 6.0]], 20, axis=0)


# --- inputs ---------------------------------------------------------------------------------------------------------

def parquet(path: Path, X: np.ndarray = ROWS, **columns) -> Path:
    """A Parquet file with columns a, b (from ``X``, unless None) and any others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = {"a": pa.array(X[:, 0], pa.float64()), "b": pa.array(X[:, 1], pa.float64())} if X is not None else {}
    table.update({name: v if isinstance(v, pa.Array) else pa.array(v) for name, v in columns.items()})
    pq.write_table(pa.table(table), path)
    return path


def damage_pages(path: Path) -> None:
    """Overwrite the start of the data pages with 0xff, leaving the footer (and so the schema) readable."""
    data = bytearray(path.read_bytes())
    footer_start = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    data[4:footer_start // 2] = b"\xff" * (footer_start // 2 - 4)
    path.write_bytes(bytes(data))


def model_dir(path: Path, n_features: int) -> Path:
    """A saved two-component mixture of ``n_features`` features (no Spark params: predict names the features)."""
    means = np.stack([np.zeros(n_features), np.full(n_features, 6.0)])
    Mixture([0.5, 0.5], means, np.stack([np.eye(n_features)] * 2), "full").save(path)
    return path


def make_missing(tmp: Path) -> dict:
    return {"input": str(tmp / "missing.parquet")}


def make_not_parquet(tmp: Path) -> dict:
    (tmp / "in").mkdir()
    (tmp / "in" / "part-0.parquet").write_bytes(b"these bytes are not Parquet at all\n" * 20)
    return {"input": str(tmp / "in")}


def make_csv(tmp: Path) -> dict:
    (tmp / "in").mkdir()
    for name in ("a.csv", "b.csv"):
        (tmp / "in" / name).write_text("a,b\n1.0,2.0\n3.0,4.0\n")
    return {"input": str(tmp / "in")}


def make_truncated(tmp: Path) -> dict:
    path = parquet(tmp / "in" / "part-0.parquet")
    path.write_bytes(path.read_bytes()[:-30])
    return {"input": str(tmp / "in")}


def make_damaged_pages(tmp: Path) -> dict:
    parquet(tmp / "in" / "part-0.parquet")  # a good file: the schema comes from either, the rows fail to read
    damage_pages(parquet(tmp / "in" / "part-1.parquet"))
    return {"input": str(tmp / "in"), "model": str(model_dir(tmp / "model", 2))}


def make_empty_dir(tmp: Path) -> dict:
    (tmp / "in").mkdir()
    return {"input": str(tmp / "in")}


def make_zero_rows(tmp: Path) -> dict:
    return {"input": str(parquet(tmp / "in.parquet", ROWS[:0]))}


def make_points(tmp: Path) -> dict:
    return {"input": str(parquet(tmp / "in.parquet", s=["x"] * len(ROWS)))}


def make_ragged(tmp: Path) -> dict:
    vectors = pa.array([[1.0, 2.0]] * 20 + [[1.0, 2.0, 3.0]] * 20, pa.list_(pa.float64()))
    return {"input": str(parquet(tmp / "in.parquet", None, v=vectors))}


def make_null_first(tmp: Path) -> dict:
    a = pa.array([None] * 5 + list(ROWS[5:, 0]), pa.float64())  # one file: its first Arrow batch starts with nulls
    return {"input": str(parquet(tmp / "in.parquet", None, a=a, b=ROWS[:, 1]))}


def make_null_partition(tmp: Path) -> dict:
    parquet(tmp / "in" / "part-0.parquet")
    nulls = pa.nulls(10, pa.float64())
    parquet(tmp / "in" / "part-1.parquet", None, a=nulls, b=nulls)
    return {"input": str(tmp / "in")}


def vectors(X: np.ndarray, nulls: int = 0) -> pa.Array:
    return pa.array([None] * nulls + [list(row) for row in X[nulls:]], pa.list_(pa.float64()))


def make_null_vectors_first(tmp: Path) -> dict:
    return {"input": str(parquet(tmp / "in.parquet", None, v=vectors(ROWS, nulls=5)))}


def make_null_vector_partition(tmp: Path) -> dict:
    parquet(tmp / "in" / "part-0.parquet", None, v=vectors(ROWS))
    parquet(tmp / "in" / "part-1.parquet", None, v=vectors(ROWS[:10], nulls=10))
    return {"input": str(tmp / "in")}


def make_non_finite(tmp: Path) -> dict:
    X = ROWS.copy()
    X[3, 0], X[30, 1] = np.inf, np.nan
    return {"input": str(parquet(tmp / "in.parquet", X))}


def make_few_rows(tmp: Path) -> dict:
    return {"input": str(parquet(tmp / "in.parquet", ROWS[:3]))}


def make_weights(value: float) -> Callable[[Path], dict]:
    def make(tmp: Path) -> dict:
        w = np.ones(len(ROWS))
        w[11] = value
        return {"input": str(parquet(tmp / "in.parquet", w=w))}
    return make


def make_config(text: str) -> Callable[[Path], dict]:
    def make(tmp: Path) -> dict:
        (tmp / "fit.toml").write_text(text)
        return {"input": str(parquet(tmp / "in.parquet")), "config": str(tmp / "fit.toml")}
    return make


def make_existing_output(tmp: Path) -> dict:
    (tmp / "out").mkdir()
    (tmp / "out" / "keep.txt").write_text("old")
    return {"input": str(parquet(tmp / "in.parquet")), "model": str(model_dir(tmp / "model", 2))}


def make_damaged_model(tmp: Path) -> dict:
    (tmp / "model").mkdir()
    (tmp / "model" / "metadata.json").write_text("{}")
    return {"input": str(parquet(tmp / "in.parquet")), "model": str(tmp / "model")}


def make_three_feature_model(tmp: Path) -> dict:
    vectors = pa.array([list(row) for row in ROWS], pa.list_(pa.float64()))
    return {"input": str(parquet(tmp / "in.parquet", v=vectors)), "model": str(model_dir(tmp / "model", 3))}


# --- the API column -------------------------------------------------------------------------------------------------

def read(spark, paths):
    return jobs.read_input(spark, paths["input"], None)


def fit(**params) -> Callable:
    def api(spark, paths):
        GaussianMixture(**{"inputCols": ["a", "b"], "seed": 1, **params}).fit(read(spark, paths))
    return api


def config_api(spark, paths):
    load_job_config("fit", {"input": paths["input"], "output": paths["output"]}, paths["config"])


def save_over_existing(spark, paths):
    GaussianMixtureModel.load(paths["model"]).save(paths["output"])


def load_model(spark, paths):
    GaussianMixtureModel.load(paths["model"])


def transform_with_two_columns(spark, paths):
    GaussianMixtureModel.load(paths["model"]).setInputCols(["a", "b"]).transform(read(spark, paths))


# --- the table ------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], dict]
    job: list[str]  # argv after the command, with {input}, {output}, {model}, {config} filled in
    message: str  # in the API's error and in the job's line (both formatted with the paths)
    api: Callable | None  # None: no API call meets this problem (a flag, a job-only check)
    command: str = "fit"
    api_message: str | None = None  # when the API words it differently


FIT = ["--input", "{input}", "--output", "{output}"]
PREDICT = ["--model", "{model}", "--input", "{input}", "--output", "{output}"]

CASES = [
    Case("missing input", make_missing, FIT, "{input} does not exist", read),
    Case("not Parquet", make_not_parquet, FIT,
         "input {input}: file part-0.parquet is not a Parquet file (or is damaged)", read),
    Case("a directory of CSV files", make_csv, FIT, ".csv is not a Parquet file (or is damaged)", read),
    Case("truncated Parquet", make_truncated, FIT,
         "input {input}: file part-0.parquet is not a Parquet file (or is damaged)", read),
    Case("damaged pages, found by the conversion", make_damaged_pages, FIT,
         "part-1.parquet is not a Parquet file (or is damaged)", fit()),
    Case("damaged pages, found by predict's write", make_damaged_pages, PREDICT + ["--features", "a,b"],
         "input {input}: file part-1.parquet is not a Parquet file (or is damaged)", None, command="predict"),
    Case("empty directory", make_empty_dir, FIT,
         "input {input} has no rows: there is no Parquet file in it", read),
    Case("zero rows", make_zero_rows, FIT, "k=2 components need at least 2 rows; the data has 0", fit()),
    Case("missing feature column", make_points, FIT + ["--features", "a,zz"],
         "input column 'zz' is not in the DataFrame (columns: a, b, s)", fit(inputCols=["a", "zz"])),
    Case("non-numeric feature column", make_points, FIT + ["--features", "a,s"],
         "input column 's' has type string; it must be numeric", fit(inputCols=["a", "s"])),
    Case("vectors of unequal length", make_ragged, FIT + ["--features", "v"],
         "features 'v': rows have different lengths; every row needs the same number of features",
         fit(inputCols=None, featuresCol="v")),
    Case("null features first in a partition", make_null_first, FIT,
         "5 rows have null, NaN or infinite values in features a, b; drop or impute them", fit()),
    Case("a partition all null", make_null_partition, FIT,
         "10 rows have null, NaN or infinite values in features a, b; drop or impute them", fit()),
    Case("null vectors first in a partition", make_null_vectors_first, FIT + ["--features", "v"],
         "5 rows have null, NaN or infinite values in features 'v'; drop or impute them",
         fit(inputCols=None, featuresCol="v")),
    Case("a partition of null vectors only", make_null_vector_partition, FIT + ["--features", "v"],
         "10 rows have null, NaN or infinite values in features 'v'; drop or impute them",
         fit(inputCols=None, featuresCol="v")),
    Case("NaN and inf features", make_non_finite, FIT,
         "2 rows have null, NaN or infinite values in features a, b; drop or impute them", fit()),
    Case("fewer rows than k", make_few_rows, FIT + ["--k", "5"], "k=5 components need at least 5 rows; the data has 3",
         fit(k=5)),
    Case("k=0", make_points, FIT + ["--k", "0", "--features", "a,b"], "--k: '0' must be >= 1", fit(k=0),
         api_message="k=0 must be >= 1"),
    Case("a negative weight", make_weights(-1.0), FIT + ["--weight-col", "w"],
         "1 rows have null, NaN or infinite values in features a, b or in weight column 'w' (null, negative or not "
         "finite)", fit(weightCol="w")),
    Case("an infinite weight", make_weights(np.inf), FIT + ["--weight-col", "w"],
         "1 rows have null, NaN or infinite values in features a, b or in weight column 'w' (null, negative or not "
         "finite)", fit(weightCol="w")),
    Case("malformed TOML", make_config("k = [\n"), ["--config", "{config}"] + FIT,
         "config file '{config}' is not valid TOML", config_api),
    Case("unknown config key", make_config("clusters = 3\n"), ["--config", "{config}"] + FIT,
         "config {config}: unknown key 'clusters'", config_api),
    Case("existing output", make_existing_output, FIT, "{output} already exists; pass --overwrite to replace it",
         save_over_existing, api_message="model path {output} already exists; use write().overwrite().save(path)"),
    Case("damaged model directory", make_damaged_model, PREDICT, "'{model}/metadata.json' is not sparkgmm mixture "
         "metadata", load_model, command="predict"),
    Case("model of 3 features, 2 columns named", make_three_feature_model, PREDICT + ["--features", "a,b"],
         "the model has 3 features but 2 columns were named: a, b", transform_with_two_columns, command="predict",
         api_message="3 features"),
    # transform gives rows of another length null outputs, by design (README); the job refuses an output of nulls
    Case("model of 3 features, vectors of 2", make_three_feature_model, PREDICT + ["--features", "v"],
         "no row could be scored: the model wants 3 finite features per row from v", None, command="predict"),
]


API_CASES = [pytest.param(case, id=case.id) for case in CASES if case.api is not None]


@pytest.mark.spark
@pytest.mark.parametrize("case", API_CASES)
def test_the_api_raises_input_error_naming_the_problem(spark, tmp_path, case):
    paths = {"output": str(tmp_path / "out"), **case.make(tmp_path)}
    message = (case.api_message or case.message).format(**paths)
    with pytest.raises(InputError, match=re.escape(message)):
        case.api(spark, paths)


@pytest.mark.spark
@pytest.mark.parametrize("case", [pytest.param(case, id=case.id) for case in CASES])
def test_the_job_exits_2_with_one_line_and_leaves_nothing(spark, tmp_path, capsys, case):
    paths = {"output": str(tmp_path / "out"), **case.make(tmp_path)}
    existed = Path(paths["output"]).exists()
    before = sorted(p.name for p in Path(paths["output"]).iterdir()) if existed else None
    assert run(case.command, [arg.format(**paths) for arg in case.job]) == 2
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.startswith("sparkgmm ")]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sparkgmm {case.command}: error: ") and case.message.format(**paths) in lines[0]
    assert "Traceback" not in out and "Traceback" not in err
    if existed:  # an existing output is left as it was
        assert sorted(p.name for p in Path(paths["output"]).iterdir()) == before
    else:
        assert not Path(paths["output"]).exists()
    assert leftovers(tmp_path) == []


@pytest.mark.spark
def test_null_rows_first_in_a_partition_are_left_out_when_asked(spark, tmp_path):
    """The rows after the nulls of a partition's first Arrow batch count, and fit, with handleInvalid='skip'."""
    for make, params in ((make_null_first, {"inputCols": ["a", "b"]}), (make_null_vectors_first, {"featuresCol": "v"})):
        tmp = tmp_path / make.__name__
        model = GaussianMixture(k=2, seed=1, handleInvalid="skip", **params).fit(read(spark, make(tmp)))
        assert model.summary.numRows == len(ROWS) - 5


# --- input_error_from alone -----------------------------------------------------------------------------------------

class Py4JJavaError(Exception):
    """Stands in for py4j's: recognised by its name and its text."""


@pytest.mark.parametrize("text, source, expected", [
    (": org.apache.spark.SparkException: Job aborted due to stage failure: ... : org.apache.spark.SparkException: "
     "[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///data/in%20put/part-1%20x.parquet.  "
     "SQLSTATE: KD001\nCaused by: java.lang.RuntimeException: file:/data/in put/part-1 x.parquet is not a Parquet "
     "file. Expected magic number at tail, but found [32, 50, 54, 46]",
     "/data/in put", "input /data/in put: file part-1 x.parquet is not a Parquet file (or is damaged)"),
    ("[FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while reading file hdfs://nn:8020/d/x/p.parquet. "
     "Could not read footer.", "hdfs:///d", "input hdfs:///d: file x/p.parquet is not a Parquet file (or is damaged)"),
    ("[FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while reading file file:/d/one.parquet. Could not",
     "file:///d/one.parquet", "input file:///d/one.parquet is not a Parquet file (or is damaged)"),
    ("[FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while reading file file:/d/x.parquet. Could not",
     None, "input file /d/x.parquet is not a Parquet file (or is damaged)"),
    ("[FAILED_READ_FILE.PARQUET_COLUMN_DATA_TYPE_MISMATCH] Encountered error while reading file file:///d/p.parquet. "
     "Data type mismatches when reading Parquet column [a]. Expected Spark type double, actual Parquet type BINARY. "
     "SQLSTATE: KD001", "/d",
     "input /d: file p.parquet stores column 'a' as BINARY but the input's schema (read from another file) says "
     "double: the files' schemas disagree"),
    ("[FAILED_READ_FILE.FILE_NOT_EXIST] Encountered error while reading file file:///d/p.parquet. File does not "
     "exist.", "/d", "input /d: file p.parquet no longer exists: the input changed while the job read it"),
    ("[PATH_NOT_FOUND] Path does not exist: file:/d/nope. SQLSTATE: 42K03", "/d/nope", "input /d/nope does not exist"),
    ("[PATH_NOT_FOUND] Path does not exist: file:/d/*.pq. SQLSTATE: 42K03", "/d/*.pq",
     "input /d/*.pq matches no files"),
    ("[UNABLE_TO_INFER_SCHEMA] Unable to infer schema for Parquet. It must be specified manually. SQLSTATE: 42KD9",
     "/d", "input /d has no rows: there is no Parquet file in it (only empty or hidden files, or none at all)"),
    ("[FAILED_READ_FILE.NO_HINT] Encountered error while reading file file:///d/p.parquet.  SQLSTATE: KD001\n"
     "\tat java.net.SocketInputStream.read(SocketInputStream.java:1)\nCaused by: java.io.IOException: could not "
     "decode the dictionary for [a]\nCaused by: java.io.IOException: gzip stream CRC failure", "/d",
     "input /d: file p.parquet is damaged: reading it failed with IOException: gzip stream CRC failure"),
    # a read that failed on the way to the bytes says nothing about the file: it stays what it was (exit 1)
    ("[FAILED_READ_FILE.NO_HINT] Encountered error while reading file s3a://b/p.parquet.  SQLSTATE: KD001\nCaused "
     "by: java.net.SocketException: Connection reset", "s3a://b", None),
    ("[FAILED_READ_FILE.CANNOT_READ_FILE_FOOTER] Encountered error while reading file s3a://b/p.parquet. Could not "
     "read footer.\nCaused by: java.net.SocketTimeoutException: Read timed out", "s3a://b", None),
    ("An error occurred while calling o46.count.\n: java.lang.OutOfMemoryError: Java heap space", "/d", None),
    ("[FAILED_READ_FILE.UNSUPPORTED_FILE_SYSTEM] Encountered error while reading file x://b/p.parquet. The file "
     "system X hasn't implemented y.", "x://b", None),
])
def test_input_error_from_spark_texts(text, source, expected):
    error = input_error_from(Py4JJavaError(text), source)
    assert (None if error is None else str(error)) == expected
    if error is not None:
        assert isinstance(error, InputError) and len(str(error).splitlines()) == 1


def test_input_error_from_leaves_other_exceptions_alone():
    assert input_error_from(ValueError("[PATH_NOT_FOUND] Path does not exist: /x. ")) is None
    assert input_error_from(InputError("already one")) is None
    wrapped = RuntimeError("while fitting")
    wrapped.__cause__ = Py4JJavaError("[PATH_NOT_FOUND] Path does not exist: file:/x. SQLSTATE: 42K03")
    assert str(input_error_from(wrapped)) == "input /x does not exist"


# --- separate processes: what the Python workers print shows too ----------------------------------------------------
#
# The ``python -m sparkgmm`` runs share one child process, so one JVM: it runs each in turn as ``python -m`` would
# (runpy, sys.argv), each starting and stopping its own SparkContext, between marker lines on its merged stdout and
# stderr. The spark-submit run, which tests spark-submit's own way of running the job, is its own process.

SPARK_SUBMIT = Path(pytest.importorskip("pyspark").__file__).parent / "bin" / "spark-submit"

PYTHON_M_IN_TURN = """
import json, os, runpy, sys

for case in json.loads(sys.argv[1]):
    os.chdir(case["cwd"])
    print(f"@@ case {case['name']}", flush=True)
    sys.argv = ["sparkgmm", *case["argv"]]
    try:
        runpy.run_module("sparkgmm", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    print(f"@@ exit {code}", flush=True)
"""


def job_env() -> dict[str, str]:
    return {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
            "SPARK_LOCAL_IP": "127.0.0.1"}


def spark_submit(command: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    script = {"fit": "fit_gmm.py", "predict": "predict_gmm.py"}[command]
    argv = [str(SPARK_SUBMIT), "--master", "local[2]", "--conf", "spark.ui.enabled=false",
            str(ROOT / "jobs" / script), *args]
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=job_env(), timeout=300)


@dataclass(frozen=True)
class Run:
    returncode: int
    output: str  # the run's own stdout and stderr, merged
    whole: str  # the whole child process's output (what a late line of an earlier run would land in)
    cwd: Path


@pytest.fixture(scope="module")
def python_m_runs(tmp_path_factory) -> dict[str, Run]:
    """The ``python -m sparkgmm`` runs below, in one child process: by name, each run's exit code and output."""
    runs = {}

    def case(name: str, make: Callable[[Path], dict], command: str, args: list[str]) -> None:
        cwd = tmp_path_factory.mktemp(name)
        paths = {**make(cwd), "dir": str(cwd)}
        runs[name] = {"name": name, "cwd": str(cwd), "argv": [command, *(arg.format(**paths) for arg in args)]}

    # Paths absolute: the JVM, started by the first run, resolves relative ones against its own working directory.
    case("weights", make_weights(-1.0), "fit", ["--input", "{input}", "--output", "{dir}/out", "--weight-col", "w"])
    case("damaged", make_damaged_pages, "fit", ["--input", "{dir}/in", "--output", "{dir}/out"])

    def make_clean_predict(tmp: Path) -> dict:
        X = ROWS.copy()
        X[4, 1] = np.nan  # one row cannot be scored: the count still works, as a warning of sparkgmm's own
        parquet(tmp / "in.parquet", X)
        model_dir(tmp / "model", 2)
        return {}

    # last: whatever the process prints until it exits counts as this run's
    case("predict", make_clean_predict, "predict", ["--model", "{dir}/model", "--input", "{dir}/in.parquet",
                                                    "--output", "{dir}/out", "--features", "a,b"])
    with tempfile.TemporaryFile() as out:
        child = subprocess.run([sys.executable, "-c", PYTHON_M_IN_TURN, json.dumps(list(runs.values()))], stdout=out,
                               stderr=subprocess.STDOUT, env=job_env(), cwd=tmp_path_factory.getbasetemp(),
                               timeout=600)
        out.seek(0)
        whole = out.read().decode(errors="replace")
    assert child.returncode == 0, whole[-3000:]
    found = re.findall(r"^@@ case (\S+)\n(.*?)^@@ exit (\d+)\n", whole + "\n", re.S | re.M)
    assert [name for name, _, _ in found] == list(runs), whole[-3000:]
    tail = whole[whole.rindex("@@ exit "):].split("\n", 1)[1]  # after the last run: the process's exit
    return {name: Run(int(code), output + (tail if name == "predict" else ""), whole, Path(runs[name]["cwd"]))
            for name, output, code in found}


@pytest.mark.slow
@pytest.mark.parametrize("how", ["python -m", "spark-submit"])
def test_an_exit_2_run_prints_one_error_line_and_no_traceback(tmp_path, how, request):
    """Spark stopping with idle Python workers, over Unix-domain sockets, had their daemon print BrokenPipeError
    tracebacks now and then; a local job talks to them over TCP. Under spark-submit, the Python driver's stderr
    arrives on spark-submit's stdout."""
    if how == "python -m":
        result = request.getfixturevalue("python_m_runs")["weights"]
        returncode, output, whole, tmp_path = result.returncode, result.output, result.whole, result.cwd
    else:
        paths = make_weights(-1.0)(tmp_path)
        result = spark_submit("fit", ["--input", paths["input"], "--output", "out", "--weight-col", "w"], tmp_path)
        returncode, output = result.returncode, result.stdout + result.stderr
        whole = output
    assert returncode == 2, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("sparkgmm fit: error:")]
    assert lines == ["sparkgmm fit: error: 1 rows have null, NaN or infinite values in features a, b or in weight "
                     "column 'w' (null, negative or not finite); drop or impute them, or skip them "
                     "(handleInvalid='skip', --invalid-rows skip)"], output[-3000:]
    assert "Traceback" not in whole
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_damaged_file_found_by_a_job_prints_one_error_line_and_no_traceback(python_m_runs):
    """The task that reads the damaged file fails and Spark kills the other one: over Unix-domain sockets every such
    worker printed a BrokenPipeError traceback."""
    result = python_m_runs["damaged"]
    output, tmp_path = result.output, result.cwd
    assert result.returncode == 2, output[-3000:]
    lines = [line for line in output.splitlines() if line.startswith("sparkgmm ")]
    # found inside the conversion (the API's path), where the input's name as given is not known: the file's own path
    assert lines == [f"sparkgmm fit: error: input file {tmp_path}/in/part-1.parquet is not a Parquet file (or is "
                     "damaged)"]
    assert "Traceback" not in result.whole
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.slow
def test_a_clean_predict_run_warns_of_nothing(python_m_runs):
    """Predict reads back its hidden staging directory's part files by name: no 'All paths were ignored'."""
    result = python_m_runs["predict"]
    output, tmp_path = result.output, result.cwd
    assert result.returncode == 0, output[-3000:]
    assert [line for line in output.splitlines() if " WARN " in line and "NativeCodeLoader" not in line] == []
    assert "1 of 40 rows have null, ragged or non-finite features" in output
    table = pq.read_table(tmp_path / "out")
    assert table.num_rows == 40 and table["prediction"].null_count == 1
    assert leftovers(tmp_path) == []
