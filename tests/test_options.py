"""The option table (sparkgmm.options) against what is built from it: the Params and their defaults, the estimator's
and select_model's keyword defaults, the jobs' flags, TOML keys and --help, and the checks on both sides. No Spark
session: Params and job configs are plain Python."""

from __future__ import annotations

import ast
import inspect
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from sparkgmm import BayesianGaussianMixture, GaussianMixture, GaussianMixtureModel, Mixture, select_model
from sparkgmm.cli import build_parser
from sparkgmm.config import JOB_CONFIGS, ConfigError, SparkSettings, load_job_config
from sparkgmm.errors import InputError
from sparkgmm import options
from sparkgmm.options import (
    BAYESIAN_DEFAULTS,
    BAYESIAN_PARAMS,
    JOBS,
    ONLINE_PARAMS,
    OPTIONS,
    PARAMS,
    SELECT_ARGUMENTS,
    SPARK_SECTION,
)

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"fit": {"input": "in", "output": "out"}, "predict": {"model": "m", "input": "in", "output": "out"},
            "select": {"input": "in", "output": "out", "k_range": "2:4"},
            "update": {"model": "m", "input": "in", "output": "out"}}


def stages():
    mixture = Mixture([1.0], [[0.0, 0.0]], [[[1.0, 0.0], [0.0, 1.0]]])
    return [GaussianMixture(), GaussianMixtureModel(mixture)]


@pytest.mark.parametrize("stage", stages(), ids=["estimator", "model"])
def test_every_param_is_in_the_table_with_its_default(stage):
    table = {**PARAMS, **(ONLINE_PARAMS if isinstance(stage, GaussianMixtureModel) else {})}
    assert {param.name for param in stage.params} == set(table)
    for name, option in table.items():
        param = stage.getParam(name)
        if option.spark_default is None:
            assert not stage.hasDefault(param), name
        else:
            assert stage.getOrDefault(param) == option.spark_default, name
            assert type(stage.getOrDefault(param)) is type(option.spark_default), name
    # the Params sparkgmm declares itself are described by the table (pyspark's shared ones keep their own words)
    own = {name for name in table if not any(name in vars(base) for base in type(stage).__mro__
                                             if base.__module__.startswith("pyspark"))}
    assert {name: stage.getParam(name).doc for name in own} == {name: table[name].help for name in own}
    assert {"k", "initMode", "engine", "sampleRows"} <= own


def test_the_bayesian_estimator_adds_its_priors_and_changes_two_defaults():
    stage = BayesianGaussianMixture()
    assert {param.name for param in stage.params} == set(PARAMS) | set(BAYESIAN_PARAMS)
    assert not set(PARAMS) & set(BAYESIAN_PARAMS)
    for name, option in {**PARAMS, **BAYESIAN_PARAMS}.items():
        expected = BAYESIAN_DEFAULTS.get(name, option.spark_default)
        assert stage.getOrDefault(name) == expected if expected is not None else not stage.hasDefault(name), name
    own = set(BAYESIAN_PARAMS)
    assert {name: stage.getParam(name).doc for name in own} == {name: BAYESIAN_PARAMS[name].help for name in own}
    for method in (BayesianGaussianMixture.__init__, BayesianGaussianMixture.setParams):
        keywords = {name: p.default for name, p in inspect.signature(method).parameters.items() if name != "self"}
        assert keywords == {**{name: o.default if name == "seed" else o.spark_default for name, o in PARAMS.items()},
                            **{name: o.spark_default for name, o in BAYESIAN_PARAMS.items()}, **BAYESIAN_DEFAULTS}
    assert BayesianGaussianMixture(k=3, meanPrior=[1, 2]).getOrDefault("meanPrior") == [1.0, 2.0]


@pytest.mark.parametrize("method", [GaussianMixture.__init__, GaussianMixture.setParams], ids=["__init__", "setParams"])
def test_the_estimators_keyword_defaults_are_the_tables(method):
    """pyspark.ml writes the defaults into __init__ and setParams; @keyword_only passes on only what was given, so
    they are for the reader, and must be the table's Param defaults (None: unset, or for the seed the fixed default
    seed)."""
    keywords = {name: p.default for name, p in inspect.signature(method).parameters.items() if name != "self"}
    assert keywords == {name: option.default if name == "seed" else option.spark_default
                        for name, option in PARAMS.items()}


def test_select_models_keyword_defaults_are_the_tables():
    signature = inspect.signature(select_model).parameters
    for name, option in SELECT_ARGUMENTS.items():
        expected = inspect.Parameter.empty if name == "k" else option.default
        assert signature[name].default == expected, name


@pytest.mark.parametrize("job", JOBS)
def test_every_flag_and_toml_key_of_a_job_is_in_the_table_and_back(job):
    parser = build_parser(job)
    flags = {flag for action in parser._actions for flag in action.option_strings if flag.startswith("--")}
    negations = {flag for flag in flags if flag.startswith("--no-")}  # --no-overwrite: a bool flag's other half
    assert flags - {"--help"} - negations == {o.flag for o in OPTIONS if job in o.jobs and o.flag}
    keys = {f.name for f in fields(JOB_CONFIGS[job])}
    assert keys == {o.key for o in OPTIONS if job in o.jobs and o.key and o.section is None} | {SPARK_SECTION}
    assert {f.name for f in fields(SparkSettings)} == {o.key for o in OPTIONS if o.section == SPARK_SECTION}
    # and a flag sets the key the table pairs it with
    for option in (o for o in OPTIONS if job in o.jobs and o.flag and o.key and o.section is None):
        action = next(a for a in parser._actions if option.flag in a.option_strings)
        assert action.dest == option.key


def test_every_option_exists_somewhere_and_names_are_unique_per_side():
    for option in OPTIONS:
        assert option.param or option.argument or option.flag or option.key, option
        assert not option.key or option.jobs, option
        assert option.param is None or re.fullmatch(r"[a-z][A-Za-z]*", option.param), option
        assert option.key is None or re.fullmatch(r"[a-z][a-z_]*", option.key), option
        assert option.flag is None or re.fullmatch(r"--[a-z][a-z-]*", option.flag), option
    for job in JOBS:
        keys = [(o.section, o.key) for o in OPTIONS if job in o.jobs and o.key]
        assert len(keys) == len(set(keys)), job
    assert len(PARAMS) + len(BAYESIAN_PARAMS) + len(ONLINE_PARAMS) == sum(1 for o in OPTIONS if o.param)
    assert not any(o.online and o.bayesian for o in OPTIONS)


# A bad value of every option that both the API and a job check, by its key (weight_col aside: below).
BAD = {
    "k": 0, "covariance_type": "ful", "max_iter": -1, "tol": -1e-3, "reg_covar": float("nan"), "init": "kmeans",
    "init_steps": 0, "n_init": 0, "sample_rows": 0, "sample_restarts": 0, "max_reseeds": -1, "acceleration": "fast",
    "aggregation_depth": 0, "storage_level": "IN_THE_CLOUD", "dtype": "float16", "block_storage": "tape",
    "invalid_rows": "drop", "checkpoint_dir": " ", "outlier_quantile": 0.9,
    "criterion": "hqc", "covariance_types": ("full", "round"), "k_range": (0, 3),
    "prior": "dirichlet", "weight_concentration_prior": 0.0, "mean_precision_prior": -1.0,
    "degrees_of_freedom_prior": float("inf"), "merge_every": -1,
    "decay_factor": 1.5, "half_life": 0.0, "time_unit": "hours", "step_power": 0.5, "average_after": -1,
    "effective_count": -1.0,
}
SHARED = [o for o in OPTIONS if (o.param or o.argument) and o.key and o.rule]


def test_every_checked_option_of_both_sides_has_a_bad_value_here():
    assert {o.key for o in SHARED} == set(BAD) | {"weight_col"}


def test_an_empty_weight_col_is_no_weights_in_the_api_and_an_error_in_a_job():
    """pyspark.ml's convention: an empty weightCol means unweighted rows; a job refuses an empty --weight-col."""
    assert GaussianMixture(weightCol="")._validated()["weightCol"] is None
    with pytest.raises(ConfigError, match=r"^--weight-col: '' must not be empty$"):
        load_job_config("fit", {**REQUIRED["fit"], "weight_col": ""})


def _as_flag(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("option", [o for o in SHARED if o.key in BAD], ids=lambda o: o.key)
def test_a_bad_value_is_the_same_one_line_error_through_the_api_and_the_job(option):
    value = BAD[option.key]
    rule_text = option.problem(value)
    assert rule_text
    with pytest.raises(InputError) as api:
        if option.online:  # the model's own Params
            stages()[1]._set(**{option.param: value}).online_settings()
        elif option.param:
            (BayesianGaussianMixture if option.bayesian else GaussianMixture)(**{option.param: value})._validated()
        else:  # select_model checks its arguments before it reads the data
            select_model(None, **{"k": [2], option.argument: list(value) if isinstance(value, tuple) else value})
    job = option.jobs[0]
    with pytest.raises(ConfigError) as flag:
        load_job_config(job, {**REQUIRED[job], option.key: _as_flag(value)})
    api_name = option.param or option.argument
    assert str(api.value) == f"{api_name}={value!r} {rule_text}"
    assert str(flag.value) == f"{option.flag}: {_as_flag(value)!r} {rule_text}"


@pytest.mark.parametrize("job", JOBS)
def test_help_shows_the_tables_help_text(job):
    result = subprocess.run([sys.executable, "-m", "sparkgmm", job, "--help"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120, env={**os.environ, "COLUMNS": "1000"})
    assert result.returncode == 0, result.stderr
    entries: dict[str, str] = {}  # flag -> its help, as printed (a long flag puts its help on the next line)
    for line in result.stdout.splitlines():
        if line.strip().startswith("--"):
            flag = line.split()[0].rstrip(",")
            entries[flag] = " ".join(line.split()[1:])
        elif line.startswith("    ") and entries:
            entries[flag] += " " + line.strip()
    for option in (o for o in OPTIONS if job in o.jobs and o.flag):
        printed = entries[option.flag]
        default = option.default
        if option.key and option.section is None and default not in (None, (), options.REQUIRED):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else str(default)
            assert printed.endswith(f"{option.help} (default: {shown})"), option.flag
        else:
            assert printed.endswith(option.help), option.flag


def test_no_spark_module_but_the_jobs_imports_the_job_config():
    """Value lists live in the option table or with their owner in the core; only the jobs need the job config."""
    importers = set()
    for path in (ROOT / "sparkgmm" / "spark").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module == "config":
                importers.add(path.name)
    assert importers == {"jobs.py"}
