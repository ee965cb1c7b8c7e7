"""Every option of sparkgmm, declared once: the table ``OPTIONS``.

An entry says where the option exists and how it is named there: ``param``, the Param of ``GaussianMixture`` and
``GaussianMixtureModel`` (camelCase); ``argument``, a keyword of ``select_model``; ``key``, the jobs' TOML key
(snake_case, inside the ``[spark]`` table when ``section`` says so) and, outside ``[spark]``, the flag ``--key-name``;
``jobs``, the jobs that take the key. An option that exists on one side only leaves the other side's names None.
Then its type, its default, its rule and its help text. Everything else is built from the table: the jobs' config
dataclasses and their ``--help`` (``sparkgmm.config``, ``sparkgmm.cli``), the Params' declarations, defaults and
validation (``sparkgmm.spark.params``), and ``select_model``'s checks. Value lists live here (``STORAGE_LEVELS`` ...)
or with their owner in the core (``COVARIANCE_TYPES`` in ``gaussian``, ``INIT_MODES`` in ``init`` ...).

A rule returns None for a good value, else what is wrong with it ("must be >= 1"); each side puts the name and the
value it was given in front of it (``k=0 must be >= 1``, ``--k: '0' must be >= 1``). This module imports no pyspark.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .bayesian import DEFAULT_MERGE_EVERY, DEFAULT_PRIOR_TYPE, PRIOR_TYPES
from .em import ACCELERATIONS, DEFAULT_ACCELERATION, DEFAULT_MAX_RESEEDS
from .errors import InputError
from .gaussian import COVARIANCE_TYPES
from .init import DEFAULT_INIT_MODE, INIT_MODES
from .mixture import Mixture
from .online import DEFAULT_DECAY_FACTOR, DEFAULT_TIME_UNIT, TIME_UNITS
from .passes import BLOCK_DTYPES
from .sampling import DEFAULT_SAMPLE_ROWS
from .search import DEFAULT_SAMPLE_RESTARTS
from .sketch import OUTLIER_LEVEL_RULE, is_outlier_level

JOBS = ("fit", "predict", "select", "update")
SPARK_SECTION = "spark"

CRITERIA = ("bic", "aic")
STORAGE_LEVELS = ("MEMORY_AND_DISK_DESER", "MEMORY_AND_DISK", "MEMORY_ONLY", "DISK_ONLY", "MEMORY_AND_DISK_2")
# Where the converted blocks live between passes (sparkgmm.spark.engine).
BLOCK_STORAGES = ("local-files", "spark-cache")
DEFAULT_BLOCK_STORAGE = "local-files"
# What a fit does with rows whose features or weight cannot be used (pyspark.ml's name and values).
HANDLE_INVALID = ("error", "skip")
# How a fit runs its passes: "rdd" (broadcast and treeReduce, needs a SparkContext), "dataframe" (DataFrame
# operations only, as a Spark Connect client must), "auto" (rdd when the session has a SparkContext, where it is
# faster; else dataframe).
ENGINES = ("auto", "rdd", "dataframe")
# pyspark's HasSeed defaults to hash(class name), which Python randomises per process: a fixed seed instead, so
# that an unseeded fit is reproducible from run to run.
FIXED_SEED = zlib.crc32(b"sparkgmm.GaussianMixture")

Rule = Callable[[Any], "str | None"]
class CovariancePrior:
    """The kind of the covariancePrior option: a number, a list of numbers or a list of lists (a matrix), by
    covariance type."""


COVARIANCE_PRIOR = CovariancePrior


# --- rules: each returns None when the value is fine, else what is wrong with it ---------------------------------

def at_least(low: float) -> Rule:
    def rule(value: float) -> str | None:
        if not math.isfinite(value):
            return "must be finite"
        return None if value >= low else f"must be >= {low:g}"

    return rule


def one_of(choices: tuple[str, ...]) -> Rule:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"


def each_one_of(choices: tuple[str, ...]) -> Rule:
    def rule(values: tuple[str, ...]) -> str | None:
        if not values:
            return "must name at least one"
        bad = [v for v in values if v not in choices]
        return f"has {', '.join(map(repr, bad))}; each must be one of {', '.join(choices)}" if bad else None

    return rule


def above(low: float) -> Rule:
    def rule(value: float) -> str | None:
        if not math.isfinite(value):
            return "must be finite"
        return None if value > low else f"must be > {low:g}"

    return rule


def within(low: float, high: float, low_open: bool = False) -> Rule:
    def rule(value: float) -> str | None:
        inside = (low < value if low_open else low <= value) and value <= high
        return None if inside else f"must be in {'(' if low_open else '['}{low:g}, {high:g}]"

    return rule


def finite(value: float) -> str | None:
    return None if math.isfinite(value) else "must be finite"


def not_empty(value: str) -> str | None:
    return None if value else "must not be empty"


def not_blank(value: str) -> str | None:
    """Not empty, nor only spaces (a directory, an output column)."""
    return None if value.strip() else "must not be empty"


def k_list(values: tuple[int, ...]) -> str | None:
    if not values:
        return "must name at least one k"
    return None if min(values) >= 1 else "must hold only k >= 1"


def outlier_level(value: float) -> str | None:
    return None if is_outlier_level(value) else OUTLIER_LEVEL_RULE


# --- the table ----------------------------------------------------------------------------------------------------

REQUIRED = object()  # the default of a job setting that must be given
_AS_DEFAULT = object()


@dataclass(frozen=True)
class Option:
    """One option. ``kind`` is its type (``tuple[str, ...]`` for a list of names, ``tuple[int, ...]`` for ks);
    ``default`` None means unset (no value), REQUIRED a job setting that must be given. ``param_default`` is the
    Param's default where it differs from what leaving the option out means elsewhere (the seed)."""

    help: str
    kind: Any = str
    default: Any = None
    rule: Rule | None = None
    param: str | None = None
    argument: str | None = None
    key: str | None = None
    jobs: tuple[str, ...] = ()
    section: str | None = None
    own_flag: str | None = None  # a flag other than --key, or the only name of a flag that is no key
    metavar: str | None = None
    param_default: Any = _AS_DEFAULT
    bayesian: bool = False  # a Param of BayesianGaussianMixture alone (its priors)
    online: bool = False  # a Param of GaussianMixtureModel alone (its online update rule, sparkgmm.online)

    @property
    def name(self) -> str:
        return self.param or self.argument or self.key or self.own_flag or ""

    @property
    def flag(self) -> str | None:
        """The command-line flag, if there is one: ``--max-iter`` for ``max_iter``; ``[spark]`` keys have none but
        ``--master``."""
        if self.own_flag or self.section:
            return self.own_flag
        return flag_name(self.key) if self.key else None

    @property
    def spark_default(self) -> Any:
        """The Param's default (None: the Param has none)."""
        return self.default if self.param_default is _AS_DEFAULT else self.param_default

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` (None: unset, or fine)."""
        return None if value is None or self.rule is None else self.rule(value)


def flag_name(key: str) -> str:
    return "--" + key.replace("_", "-")


FIT_AND_SELECT = ("fit", "select")
_COLS = "COLS"

OPTIONS: tuple[Option, ...] = (
    Option("TOML file with any of the settings below; flags win", own_flag="--config", jobs=JOBS, metavar="FILE"),
    # what the jobs read and write
    Option("model directory written by fit, select or update", key="model", jobs=("predict", "update"),
           default=REQUIRED, rule=not_empty, metavar="MODEL_DIR"),
    Option("input Parquet file or directory", key="input", jobs=JOBS, default=REQUIRED, rule=not_empty,
           metavar="PATH"),
    Option("model directory to write", key="output", jobs=("fit",), default=REQUIRED, rule=not_empty,
           metavar="MODEL_DIR"),
    Option("model directory to write: the updated model, with its metrics.json", key="output", jobs=("update",),
           default=REQUIRED, rule=not_empty, metavar="MODEL_DIR"),
    Option("directory for candidates.json, candidates.csv and best/", key="output", jobs=("select",),
           default=REQUIRED, rule=not_empty, metavar="DIR"),
    Option("Parquet directory to write", key="output", jobs=("predict",), default=REQUIRED, rule=not_empty,
           metavar="PATH"),
    Option("comma-separated numeric columns, or one Vector/array column; default: every numeric column",
           kind=tuple[str, ...], default=(), key="features", jobs=FIT_AND_SELECT, metavar=_COLS),
    Option("feature columns; default: those the model was fitted on", kind=tuple[str, ...], default=(),
           key="features", jobs=("predict", "update"), metavar=_COLS),
    Option("comma-separated input columns to keep; default: all", kind=tuple[str, ...], default=(), key="keep_cols",
           jobs=("predict",), metavar=_COLS),
    Option("column of non-negative sample weights", param="weightCol", key="weight_col",
           jobs=(*FIT_AND_SELECT, "update"), rule=not_empty, metavar="COL"),
    Option("features column: a Vector or array<float/double> column", param="featuresCol", default="features"),
    Option("numeric feature columns (instead of featuresCol)", kind=list[str], param="inputCols"),
    # the fit
    Option("number of components (>= 1)", kind=int, default=2, rule=at_least(1), param="k", key="k", jobs=("fit",)),
    Option(f"covariance type: one of {', '.join(COVARIANCE_TYPES)}", default="full", rule=one_of(COVARIANCE_TYPES),
           param="covarianceType", key="covariance_type", jobs=("fit",)),
    Option("candidate k: LOW:HIGH (inclusive) or a comma-separated list", kind=tuple[int, ...], default=REQUIRED,
           rule=k_list, argument="k", key="k_range", jobs=("select",), metavar="LOW:HIGH"),
    Option("covariance types to try, comma-separated", kind=tuple[str, ...], default=("full",),
           rule=each_one_of(COVARIANCE_TYPES), argument="covarianceTypes", key="covariance_types", jobs=("select",),
           metavar="TYPES"),
    Option(f"information criterion, one of {', '.join(CRITERIA)}: the lowest wins", default="bic",
           rule=one_of(CRITERIA), argument="criterion", key="criterion", jobs=("select",)),
    Option("EM iterations at most (one iteration = one E-step + one M-step)", kind=int, default=100,
           rule=at_least(0), param="maxIter", key="max_iter", jobs=FIT_AND_SELECT),
    Option("stop when the mean per-row log-likelihood changes by less than this", kind=float, default=1e-3,
           rule=at_least(0), param="tol", key="tol", jobs=FIT_AND_SELECT),
    Option("added to the diagonal of every covariance", kind=float, default=1e-6, rule=at_least(0),
           param="regCovar", key="reg_covar", jobs=FIT_AND_SELECT),
    Option("seed of every random draw (sampling, initialisation); default: a fixed seed", kind=int,
           param="seed", key="seed", jobs=FIT_AND_SELECT, param_default=FIXED_SEED),
    Option(f"initialisation: one of {', '.join(INIT_MODES)}", default=DEFAULT_INIT_MODE, rule=one_of(INIT_MODES),
           param="initMode", key="init", jobs=FIT_AND_SELECT),
    Option("k-means|| oversampling rounds, one pass over the data each (>= 1)", kind=int, default=2,
           rule=at_least(1), param="initSteps", key="init_steps", jobs=FIT_AND_SELECT),
    Option("restarts on the full data, run side by side in shared passes; the best log-likelihood wins (>= 1; with "
           "the sample initialisation, from the best distinct optima of its search)", kind=int, default=1,
           rule=at_least(1), param="nInit", key="n_init", jobs=FIT_AND_SELECT),
    Option("rows the conversion keeps as a weighted sample for the sample initialisation (>= 1; the driver holds "
           "about 2 x this x features doubles)", kind=int, default=DEFAULT_SAMPLE_ROWS, rule=at_least(1),
           param="sampleRows", key="sample_rows", jobs=FIT_AND_SELECT),
    Option("k-means++ and EM restarts per fit on the sample, in memory on the driver (the sample initialisation; "
           ">= 1)", kind=int, default=DEFAULT_SAMPLE_RESTARTS, rule=at_least(1), param="sampleRestarts",
           key="sample_restarts", jobs=FIT_AND_SELECT),
    # Left unset in the jobs, these two take the estimator's default: a Bayesian mixture's is none and 0.
    Option(f"re-seeds of collapsed components (less than one row's weight, or a covariance the ridge cannot keep "
           f"valid) per EM run at most; 0: never (default {DEFAULT_MAX_RESEEDS}; with --prior 0, its only value)",
           kind=int, rule=at_least(0), param="maxReseeds", key="max_reseeds", jobs=FIT_AND_SELECT,
           param_default=DEFAULT_MAX_RESEEDS),
    Option(f"EM acceleration: one of {', '.join(ACCELERATIONS)} (default {DEFAULT_ACCELERATION}; with --prior none, "
           "its only value)", rule=one_of(ACCELERATIONS), param="acceleration", key="acceleration",
           jobs=FIT_AND_SELECT, param_default=DEFAULT_ACCELERATION),
    # a Bayesian mixture's priors (BayesianGaussianMixture; the jobs fit one when --prior is given)
    Option(f"fit a variational Bayesian mixture with this weight prior, one of {', '.join(PRIOR_TYPES)} (k is then "
           "an upper bound: the prior switches off the components the data do not support)",
           rule=one_of(PRIOR_TYPES), param="weightConcentrationPriorType", key="prior", jobs=FIT_AND_SELECT,
           param_default=DEFAULT_PRIOR_TYPE, bayesian=True),
    Option("concentration of the weight prior (> 0; default 1/k): small values favour few components",
           kind=float, rule=above(0.0), param="weightConcentrationPrior", key="weight_concentration_prior",
           jobs=FIT_AND_SELECT, bayesian=True),
    Option("precision scale of the means' prior (> 0; default 1)", kind=float, rule=above(0.0),
           param="meanPrecisionPrior", key="mean_precision_prior", jobs=FIT_AND_SELECT, bayesian=True),
    Option("mean of the means' prior, one value per feature (default: the data's mean)", kind=list[float],
           param="meanPrior", key="mean_prior", jobs=FIT_AND_SELECT, bayesian=True, metavar="X,X,..."),
    Option("degrees of freedom of the precisions' Wishart prior (> features - 1; default: the number of "
           "features)", kind=float, rule=finite, param="degreesOfFreedomPrior", key="degrees_of_freedom_prior",
           jobs=FIT_AND_SELECT, bayesian=True),
    Option("scale of the precisions' Wishart prior, in the covariance type's shape: a (d, d) matrix (full, tied), "
           "d variances (diag) or one (spherical); default: the data's covariance in that shape",
           kind=COVARIANCE_PRIOR, param="covariancePrior", key="covariance_prior", jobs=FIT_AND_SELECT, bayesian=True,
           metavar="X | X,X,... | X,X;X,X"),
    Option("try merge moves every this many iterations (groups of components merged into one when that raises the "
           f"lower bound; 0: never, scikit-learn's plain updates; default {DEFAULT_MERGE_EVERY})", kind=int,
           rule=at_least(0), param="mergeEvery", key="merge_every", jobs=FIT_AND_SELECT, bayesian=True,
           param_default=DEFAULT_MERGE_EVERY),
    Option("a sparkgmm.Mixture, GaussianMixtureModel or fitted sklearn.mixture.GaussianMixture to start EM from "
           "(overrides initMode and nInit)", kind=Mixture, param="initialModel"),
    Option("model directory to start EM from (a warm start: replaces --init and --n-init)", key="initial_model",
           jobs=("fit",), rule=not_empty, metavar="MODEL_DIR"),
    # online updates (GaussianMixtureModel.update, the update job, sparkgmm.spark.streaming)
    Option("online updates: the remembered statistics are multiplied by this per time unit before a batch's are "
           "added (1: forget nothing; as StreamingKMeans' decayFactor)", kind=float, default=DEFAULT_DECAY_FACTOR,
           rule=within(0.0, 1.0), param="decayFactor", key="decay_factor", jobs=("update",), online=True),
    Option("online updates: what was seen this many time units ago counts half (> 0; sets the decay factor)",
           kind=float, rule=above(0.0), param="halfLife", key="half_life", jobs=("update",), online=True),
    Option(f"the time unit of the decay factor and half-life: one of {', '.join(TIME_UNITS)} (points: rows, or "
           "units of sample weight)", default=DEFAULT_TIME_UNIT, rule=one_of(TIME_UNITS), param="timeUnit",
           key="time_unit", jobs=("update",), online=True),
    Option("online updates by stepwise EM instead of forgetting: batch t gets the step (t + 1) ** -stepPower, in "
           "(0.5, 1] (1: every batch counts the same)", kind=float, rule=within(0.5, 1.0, low_open=True),
           param="stepPower", key="step_power", jobs=("update",), online=True),
    Option("with stepPower: once the model has seen more than this many batches, its parameters are the average of "
           "stepwise EM's iterates since (Polyak-Ruppert averaging; the steps go on from the latest iterate); >= 0",
           kind=int, rule=at_least(0), param="averageAfter", key="average_after", jobs=("update",), online=True),
    Option("rows' worth of data the parameters of a model without remembered statistics stand for (one an older "
           "sparkgmm saved, or built from parameters); >= 0, 0: forget them", kind=float, rule=at_least(0.0),
           param="effectiveCount", key="effective_count", jobs=("update",), online=True),
    # how the data are stored and passed over
    Option("depth of the tree-reduce of the per-partition statistics (>= 1)", kind=int, default=2, rule=at_least(1),
           param="aggregationDepth", key="aggregation_depth", jobs=FIT_AND_SELECT),
    Option(f"storage level of what Spark persists (the blocks with spark-cache, else where their files are): one of "
           f"{', '.join(STORAGE_LEVELS)}", default="MEMORY_AND_DISK_DESER", rule=one_of(STORAGE_LEVELS),
           param="storageLevel", key="storage_level", jobs=FIT_AND_SELECT),
    Option(f"type of the stored blocks and the per-row arithmetic: one of {', '.join(BLOCK_DTYPES)} (float32: half "
           "the memory and bytes per pass, ~7 significant digits per row; sums are float64)", default="float64",
           rule=one_of(BLOCK_DTYPES), param="dtype", key="dtype", jobs=FIT_AND_SELECT),
    Option(f"where the converted blocks live between passes: one of {', '.join(BLOCK_STORAGES)} (memory-mapped "
           "files on the executors' local disks, or Spark's block manager)", default=DEFAULT_BLOCK_STORAGE,
           rule=one_of(BLOCK_STORAGES), param="blockStorage", key="block_storage", jobs=FIT_AND_SELECT),
    Option(f"rows with null, NaN or infinite features, or a null, negative or non-finite weight: one of "
           f"{', '.join(HANDLE_INVALID)} (error refuses the input, counting them; skip leaves them out and counts "
           "them in the summary and metrics.json)", default="error", rule=one_of(HANDLE_INVALID),
           param="handleInvalid", key="invalid_rows", jobs=(*FIT_AND_SELECT, "update")),
    Option(f"how the fit runs its passes: one of {', '.join(ENGINES)} (auto: rdd in a classic session, dataframe "
           "under Spark Connect)", default="auto", rule=one_of(ENGINES), param="engine"),
    Option("directory (any Hadoop file system URI) where the fit saves its state after every pass; the same fit of "
           "the same input that finds a checkpoint there resumes from it", rule=not_blank, param="checkpointDir",
           key="checkpoint_dir", jobs=FIT_AND_SELECT, metavar="DIR"),
    Option("keep the last checkpoint when the fit (the job: its output) is done; by default it is removed",
           kind=bool, default=False, param="keepCheckpoint", key="keep_checkpoint", jobs=FIT_AND_SELECT),
    # scoring
    Option("output column of the most probable component", param="predictionCol", default="prediction"),
    Option("output column of the probabilities of the components", param="probabilityCol", default="probability"),
    Option("output column of each row's log-density", param="logDensityCol", default="logDensity"),
    Option("add an outlier column, true for rows whose log-density is below this quantile of the training "
           "log-densities (a level in (0, 0.5], e.g. 0.01: the lowest hundredth; levels between those the model "
           "stores are interpolated)", kind=float, rule=outlier_level, param="outlierQuantile",
           key="outlier_quantile", jobs=("predict",), metavar="LEVEL"),
    Option("output column flagging outliers (with outlierQuantile)", default="isOutlier", rule=not_blank,
           param="outlierCol"),
    Option("replace an existing output", kind=bool, default=False, key="overwrite", jobs=JOBS),
    # the [spark] table; under spark-submit whatever spark-submit was given wins over these
    Option("Spark master; default local[2] when not run by spark-submit (spark-submit's wins)", key="master",
           jobs=JOBS, section=SPARK_SECTION, own_flag="--master", rule=not_empty, metavar="URL"),
    Option("Spark application name", key="app_name", jobs=JOBS, section=SPARK_SECTION, rule=not_empty),
    Option("spark.driver.memory (only when the job starts Spark)", key="driver_memory", jobs=JOBS,
           section=SPARK_SECTION, rule=not_empty),
    Option("spark.executor.memory", key="executor_memory", jobs=JOBS, section=SPARK_SECTION, rule=not_empty),
    Option("spark.executor.cores", kind=int, rule=at_least(1), key="executor_cores", jobs=JOBS,
           section=SPARK_SECTION),
    Option("repartition the input into this many partitions", kind=int, rule=at_least(1), key="partitions",
           jobs=JOBS, section=SPARK_SECTION),
    Option("any other Spark settings, by their full names", kind=dict, default={}, key="conf", jobs=JOBS,
           section=SPARK_SECTION),
)

PARAMS: dict[str, Option] = {o.param: o for o in OPTIONS if o.param and not o.bayesian and not o.online}
# GaussianMixtureModel's own Params: how it is updated online (sparkgmm.online).
ONLINE_PARAMS: dict[str, Option] = {o.param: o for o in OPTIONS if o.param and o.online}
# BayesianGaussianMixture's own Params (its priors), and the shared Params whose defaults it changes: variational
# inference runs without acceleration and re-seeds (a Dirichlet-process prior empties components on purpose).
BAYESIAN_PARAMS: dict[str, Option] = {o.param: o for o in OPTIONS if o.param and o.bayesian}
BAYESIAN_DEFAULTS: dict[str, Any] = {"acceleration": "none", "maxReseeds": 0}
SELECT_ARGUMENTS: dict[str, Option] = {o.argument: o for o in OPTIONS if o.argument}


def job_options(job: str, section: str | None = None) -> list[Option]:
    """The settings of ``job`` in the config's top level (or in ``section``), in the table's order."""
    return [o for o in OPTIONS if job in o.jobs and o.key and o.section == section]


def param_defaults(params: Mapping[str, Option] | None = None) -> dict[str, Any]:
    """The Params' defaults (those that have one), of ``params`` (default: the shared ones)."""
    return {name: o.spark_default for name, o in (PARAMS if params is None else params).items()
            if o.spark_default is not None}


def check_value(option: Option, name: str, value: Any) -> None:
    """``InputError`` "name=value rule" when ``value`` breaks ``option``'s rule."""
    problem = option.problem(value)
    if problem:
        raise InputError(f"{name}={value!r} {problem}")


def validate_params(values: Mapping[str, Any], params: Mapping[str, Option] | None = None) -> dict[str, Any]:
    """``values`` (Param name -> value, None for unset) checked against the table, in its order, for ``params``
    (default: the shared ones); returned as given."""
    for name, option in (PARAMS if params is None else params).items():
        check_value(option, name, values.get(name))
    return dict(values)
