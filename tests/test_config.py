"""The job config loader: TOML + flags into one validated dataclass per job (no Spark)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sparkgmm.config import ConfigError, FitConfig, PredictConfig, SelectConfig, UpdateConfig, load_job_config

ROOT = Path(__file__).resolve().parent.parent
REQUIRED = {"fit": {"input": "in", "output": "out"}, "predict": {"model": "m", "input": "in", "output": "out"},
            "select": {"input": "in", "output": "out", "k_range": "2:4"}}


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "job.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "conf").glob("*.toml")))
def test_every_example_config_loads(name):
    command = name.removesuffix(".toml").removesuffix("-cluster")
    config = load_job_config(command, {}, str(ROOT / "conf" / name))
    assert type(config) is {"fit": FitConfig, "predict": PredictConfig, "select": SelectConfig,
                            "update": UpdateConfig}[command]


def test_file_values_are_typed_and_flags_override_them(tmp_path):
    path = write(tmp_path, """
input = "data/points.parquet"
output = "models/gmm"
k = 5
tol = 1            # an integer where a float is wanted is fine
features = ["a", "b"]
[spark]
master = "local[1]"
executor_memory = "2g"
partitions = 3
[spark.conf]
"spark.sql.shuffle.partitions" = 7
"spark.eventLog.enabled" = true
""")
    config = load_job_config("fit", {"k": "3", "features": "x, y,z", "overwrite": True}, path, master="local[2]")
    assert (config.k, config.tol, config.features, config.overwrite) == (3, 1.0, ("x", "y", "z"), True)
    assert config.input == "data/points.parquet" and config.covariance_type == "full"
    assert config.spark.master == "local[2]" and config.spark.partitions == 3
    assert config.spark.spark_conf() == {
        "spark.executor.memory": "2g", "spark.sql.shuffle.partitions": "7", "spark.eventLog.enabled": "true",
    }


def test_defaults_without_a_file():
    config = load_job_config("fit", REQUIRED["fit"])
    assert (config.k, config.covariance_type, config.max_iter, config.tol, config.reg_covar) == (
        2, "full", 100, 1e-3, 1e-6)
    assert config.seed is None and config.features == () and config.overwrite is False


@pytest.mark.parametrize("text, fragment", [
    ('kk = 3', "unknown key 'kk'"),
    ('[spark]\nmaster_url = "x"', "unknown key 'spark.master_url'"),
    ('k = "3"', "k: '3' is not an integer"),
    ('k = 2.5', "k: 2.5 (float) is not an integer"),
    ('k = true', "k: True (bool) is not an integer"),
    ('k = 0', "k: 0 (int) must be >= 1"),
    ('tol = -1e-3', "tol: -0.001 (float) must be >= 0"),
    ('tol = inf', "tol: inf (float) must be finite"),
    ('reg_covar = nan', "reg_covar: nan (float) must be finite"),
    ('covariance_type = "ful"', "covariance_type: 'ful' must be one of full, tied, diag, spherical"),
    ('init = "kmeans"', "init: 'kmeans' must be one of"),
    ('overwrite = "yes"', "overwrite: 'yes' is not true or false"),
    ('features = [1, 2]', "features: [1, 2] (list) is not a list of names"),
    ('spark = 3', "'spark' must be a table"),
    ('[spark]\npartitions = 0', "spark.partitions: 0 (int) must be >= 1"),
    ('[spark.conf]\n"spark.x" = [1]', "spark.conf: must be a table of settings"),
    ('k = ', "is not valid TOML"),
])
def test_bad_config_values_name_the_key(tmp_path, text, fragment):
    path = write(tmp_path, 'input = "in"\noutput = "out"\n' + text)
    with pytest.raises(ConfigError, match=None) as info:
        load_job_config("fit", {}, path)
    message = str(info.value)
    assert fragment in message and path in message
    assert "\n" not in message


@pytest.mark.parametrize("flags, fragment", [
    ({"k": "two"}, "--k: 'two' is not an integer"),
    ({"max_iter": "-1"}, "--max-iter: '-1' must be >= 0"),
    ({"tol": "fast"}, "--tol: 'fast' is not a number"),
    ({"input": ""}, "--input: '' must not be empty"),
])
def test_bad_flags_name_the_flag(flags, fragment):
    with pytest.raises(ConfigError) as info:
        load_job_config("fit", {**REQUIRED["fit"], **flags})
    assert fragment in str(info.value)


def test_missing_required_setting_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"--output is required \(or set output in the config file\)"):
        load_job_config("fit", {"input": "in"})
    with pytest.raises(ConfigError, match="does not exist"):
        load_job_config("fit", REQUIRED["fit"], str(tmp_path / "nope.toml"))


@pytest.mark.parametrize("raw, expected", [
    ("2:5", (2, 3, 4, 5)), ("3", (3,)), ("2,4, 8", (2, 4, 8)), ([2, 6], (2, 6)), ("4:4", (4,)),
])
def test_k_range_forms(raw, expected):
    assert load_job_config("select", {**REQUIRED["select"], "k_range": raw}).k_range == expected


@pytest.mark.parametrize("raw, fragment", [
    ("5:2", "runs backwards"), ("a:b", "is not a k range"), ("1:2:3", "is not a k range"), ("0:3", "k >= 1"),
    ("", "is not a k range"),
])
def test_bad_k_ranges(raw, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_job_config("select", {**REQUIRED["select"], "k_range": raw})


def test_select_lists_and_criterion():
    config = load_job_config("select", {**REQUIRED["select"], "covariance_types": "diag,spherical", "criterion": "aic"})
    assert config.covariance_types == ("diag", "spherical") and config.criterion == "aic"
    with pytest.raises(ConfigError, match="'fulll'; each must be one of"):
        load_job_config("select", {**REQUIRED["select"], "covariance_types": "full,fulll"})
    with pytest.raises(ConfigError, match="must be one of bic, aic"):
        load_job_config("select", {**REQUIRED["select"], "criterion": "loglik"})


def test_a_hostile_config_is_data_never_code(tmp_path):
    """Values are parsed as TOML and checked as data: nothing in a config file or flag is evaluated or run."""
    marker = tmp_path / "code-ran"
    code = f"__import__('pathlib').Path('{marker}').touch()"
    with pytest.raises(ConfigError, match=r"k: .* is not an integer"):
        load_job_config("fit", {}, write(tmp_path, f'input = "in"\noutput = "out"\nk = "{code}"\n'))
    with pytest.raises(ConfigError, match=r"--max-iter: .* is not an integer"):
        load_job_config("fit", {**REQUIRED["fit"], "max_iter": code})
    # where a string is wanted it stays the string it was given
    config = load_job_config("fit", {}, write(tmp_path, f'input = "{code}"\noutput = "$(touch {marker})"\n'
                                                       f'features = ["{code}"]\n'))
    assert (config.input, config.output, config.features) == (code, f"$(touch {marker})", (code,))
    assert not marker.exists()


def test_a_bayesian_jobs_priors_come_from_flags_or_toml_arrays(tmp_path):
    required = {"input": "in", "output": "out"}
    flags = load_job_config("fit", {**required, "prior": "dirichlet_process", "mean_prior": "0,1.5,2",
                                    "covariance_prior": "2,0.5;0.5,1", "merge_every": "5"})
    params = flags.estimator_params()
    assert params["meanPrior"] == [0.0, 1.5, 2.0] and params["covariancePrior"] == [[2.0, 0.5], [0.5, 1.0]]
    assert (params["weightConcentrationPriorType"], params["mergeEvery"]) == ("dirichlet_process", 5)
    assert "acceleration" not in params and "maxReseeds" not in params  # the estimator's own defaults
    for raw, value in (("2.5", 2.5), ("1,2,3", [1.0, 2.0, 3.0])):
        assert load_job_config("fit", {**required, "prior": "dirichlet_process",
                                       "covariance_prior": raw}).covariance_prior == value
    config = tmp_path / "fit.toml"
    config.write_text('input = "in"\noutput = "out"\nprior = "dirichlet_distribution"\nmean_prior = [0, 1]\n'
                      "covariance_prior = [[1, 0], [0, 2]]\n")
    loaded = load_job_config("fit", {}, str(config))
    assert (loaded.mean_prior, loaded.covariance_prior) == ([0.0, 1.0], [[1.0, 0.0], [0.0, 2.0]])
    with pytest.raises(ConfigError, match=r"^--mean-prior: 'a,b' is not a list of numbers"):
        load_job_config("fit", {**required, "prior": "dirichlet_process", "mean_prior": "a,b"})
    with pytest.raises(ConfigError, match=r"^--mean-prior is a setting of a Bayesian mixture: give --prior too"):
        load_job_config("fit", {**required, "mean_prior": "1,2"})
    assert not load_job_config("fit", required).bayesian and flags.bayesian
