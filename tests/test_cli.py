"""The command line as a scheduler sees it: separate processes, exit codes, one line on stderr, no output left.

These cases are refused before Spark starts, so they need no JVM.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def sparkgmm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkgmm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.fixture
def workdir(tmp_path) -> Path:
    (tmp_path / "in.parquet").mkdir()  # exists: the checks below fail for other reasons
    (tmp_path / "good.toml").write_text('input = "in.parquet"\noutput = "out"\nk = 3\n')
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["fit", "--input", "in.parquet", "--output", "out", "--k", "0"], "sparkgmm fit: error: --k: '0' must be >= 1"),
    (["fit", "--input", "in.parquet", "--output", "out", "--bogus", "1"],
     "sparkgmm fit: error: unrecognized arguments: --bogus 1"),
    (["fit", "--output", "out"], "sparkgmm fit: error: --input is required (or set input in the config file)"),
    (["fit", "--input", "missing.parquet", "--output", "out"],
     "sparkgmm fit: error: --input missing.parquet does not exist"),
    (["fit", "--config", "good.toml", "--covariance-type", "ful"],
     "sparkgmm fit: error: --covariance-type: 'ful' must be one of full, tied, diag, spherical"),
    (["fit", "--config", "nope.toml"], "sparkgmm fit: error: config file 'nope.toml' does not exist"),
    (["fit", "--config", "bad.toml"], "sparkgmm fit: error: config bad.toml: unknown key 'clusters' (known: input,"),
    (["fit", "--config", "typed.toml"], "sparkgmm fit: error: config typed.toml: tol: '0.1' is not a number"),
    (["select", "--input", "in.parquet", "--output", "out", "--k-range", "9:3"],
     "sparkgmm select: error: --k-range: '9:3' runs backwards"),
    (["select", "--input", "in.parquet", "--output", "out", "--k-range", "2:4", "--criterion", "ll"],
     "sparkgmm select: error: --criterion: 'll' must be one of bic, aic"),
    (["predict", "--model", "nomodel", "--input", "in.parquet", "--output", "out"],
     "sparkgmm predict: error: --model nomodel does not exist"),
    (["predict", "--model", "in.parquet", "--input", "in.parquet", "--output", "out"],
     "sparkgmm predict: error: model path 'in.parquet' is not a sparkgmm model directory: it has no metadata/"),
    (["cluster"], "sparkgmm: error: the command must be one of fit, predict, select, update, report; got 'cluster'"),
    ([], "sparkgmm: error: the command must be one of fit, predict, select, update, report; got nothing"),
])
def test_invalid_flags_and_config_exit_2_with_one_line_and_no_output(workdir, args, message):
    (workdir / "bad.toml").write_text('input = "in.parquet"\noutput = "out"\nclusters = 3\n')
    (workdir / "typed.toml").write_text('input = "in.parquet"\noutput = "out"\ntol = "0.1"\n')
    result = sparkgmm(*args, cwd=workdir)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert result.stderr.startswith(message)
    assert not (workdir / "out").exists()


def test_an_existing_output_is_refused_before_spark_starts(workdir):
    (workdir / "out").mkdir()
    (workdir / "out" / "keep.txt").write_text("old")
    result = sparkgmm("fit", "--config", "good.toml", cwd=workdir)
    assert result.returncode == 2
    assert result.stderr == "sparkgmm fit: error: output out already exists; pass --overwrite to replace it\n"
    assert (workdir / "out" / "keep.txt").read_text() == "old"


@pytest.mark.parametrize("job, command", [("fit_gmm.py", "fit"), ("predict_gmm.py", "predict"),
                                          ("select_k_gmm.py", "select")])
def test_job_entry_points_are_the_commands(workdir, job, command):
    result = subprocess.run([sys.executable, str(ROOT / "jobs" / job), "--help"], capture_output=True, text=True,
                            cwd=workdir, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith(f"usage: sparkgmm {command} ")
    assert "--config FILE" in result.stdout and "--overwrite" in result.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "jobs" / job), "--output"], capture_output=True, text=True,
                         cwd=workdir, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr == f"sparkgmm {command}: error: argument --output: expected one argument\n"
