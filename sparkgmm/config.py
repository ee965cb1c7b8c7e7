"""Job configuration: one frozen dataclass per job, loaded once from a TOML file and command-line flags.

Every field is both a TOML key (``max_iter``) and a flag (``--max-iter``); a flag given on the command line wins over
the file, and the file wins over the field's default. Spark settings live in the file's ``[spark]`` table (and
``--master``). Unknown keys, wrong types and out-of-range values are errors (``ConfigError``) that name the key and
the file or flag they came from. This module does not import pyspark.
"""

from __future__ import annotations

import math
import tomllib
import types
import typing
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .errors import InputError
from .gaussian import COVARIANCE_TYPES
from .em import ACCELERATIONS, DEFAULT_ACCELERATION, DEFAULT_MAX_RESEEDS
from .init import DEFAULT_INIT_MODE, INIT_MODES
from .sampling import DEFAULT_SAMPLE_ROWS
from .search import DEFAULT_SAMPLE_RESTARTS
from .passes import BLOCK_DTYPES
from .sketch import OUTLIER_LEVEL_RULE, is_outlier_level

CRITERIA = ("bic", "aic")
STORAGE_LEVELS = ("MEMORY_AND_DISK_DESER", "MEMORY_AND_DISK", "MEMORY_ONLY", "DISK_ONLY", "MEMORY_AND_DISK_2")
# Where the converted blocks live between passes (sparkgmm.spark.blocks.FeatureBlocks).
BLOCK_STORAGES = ("local-files", "spark-cache")
DEFAULT_BLOCK_STORAGE = "local-files"
# What a fit does with rows whose features or weight cannot be used (pyspark.ml's name and values).
HANDLE_INVALID = ("error", "skip")
# The columns the predict job adds to its output; and the one it adds with --outlier-quantile.
PREDICTION_COLUMNS = ("prediction", "probability", "log_density")
OUTLIER_COLUMN = "is_outlier"
# The files of the fit and select jobs' outputs (beside the model directory's own), named once for the jobs and the
# report.
METRICS_FILE = "metrics.json"
CANDIDATES_JSON = "candidates.json"
CANDIDATES_CSV = "candidates.csv"
BEST_MODEL_DIR = "best"


class ConfigError(InputError):
    """A flag or config value is missing, unknown, of the wrong type or out of range. Jobs exit with code 2."""


# --- value checks: each returns None when the value is fine, else what is wrong with it --------------------------

def _at_least(low: float) -> Callable[[Any], str | None]:
    def check(value: float) -> str | None:
        if not math.isfinite(value):
            return "must be finite"
        return None if value >= low else f"must be >= {low:g}"

    return check


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


def _each_one_of(choices: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(values: tuple[str, ...]) -> str | None:
        bad = [v for v in values if v not in choices]
        if not values:
            return "must name at least one"
        return f"has {', '.join(map(repr, bad))}; each must be one of {', '.join(choices)}" if bad else None

    return check


def _not_empty(value: tuple | str) -> str | None:
    return None if value else "must not be empty"


def _k_range(values: tuple[int, ...]) -> str | None:
    if not values:
        return "must name at least one k"
    if min(values) < 1:
        return "must hold only k >= 1"
    return None


def _option(default: Any = MISSING, check: Callable[[Any], str | None] | None = None, help: str = "",
            metavar: str | None = None) -> Any:
    """A config field; ``default`` MISSING makes it required."""
    metadata = {"check": check, "help": help, "metavar": metavar}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


# --- the Spark part, shared by every job ------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class SparkSettings:
    """The ``[spark]`` table. Under ``spark-submit``, whatever spark-submit was given wins over these."""

    master: str | None = _option(None, _not_empty, "Spark master; default local[2] when not run by spark-submit")
    app_name: str | None = _option(None, _not_empty, "Spark application name")
    driver_memory: str | None = _option(None, _not_empty, "spark.driver.memory (only when the job starts Spark)")
    executor_memory: str | None = _option(None, _not_empty, "spark.executor.memory")
    executor_cores: int | None = _option(None, _at_least(1), "spark.executor.cores")
    partitions: int | None = _option(None, _at_least(1), "repartition the input into this many partitions")
    conf: dict = _option({}, None, "any other Spark settings, by their full names")

    def spark_conf(self) -> dict[str, str]:
        """Spark settings by their full names, as strings."""
        named = {
            "spark.driver.memory": self.driver_memory,
            "spark.executor.memory": self.executor_memory,
            "spark.executor.cores": self.executor_cores,
        }
        settings = {key: value for key, value in named.items() if value is not None}
        settings.update(self.conf)
        return {key: str(value).lower() if isinstance(value, bool) else str(value) for key, value in settings.items()}


# --- the jobs ----------------------------------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class _FitOptions:
    """What fit and select share: the input, its features and the EM settings."""

    input: str = _option(MISSING, _not_empty, "input Parquet file or directory", "PATH")
    features: tuple[str, ...] = _option(
        (), None, "comma-separated numeric columns, or one Vector/array column; default: every numeric column", "COLS"
    )
    weight_col: str | None = _option(None, _not_empty, "column of non-negative sample weights", "COL")
    max_iter: int = _option(100, _at_least(0), "EM iterations at most")
    tol: float = _option(1e-3, _at_least(0), "stop when the mean per-row log-likelihood changes less than this")
    reg_covar: float = _option(1e-6, _at_least(0), "added to the diagonal of every covariance")
    seed: int | None = _option(None, None, "seed of every random draw; default: a fixed seed")
    init: str = _option(DEFAULT_INIT_MODE, _one_of(INIT_MODES), f"initialisation: {', '.join(INIT_MODES)}")
    init_steps: int = _option(2, _at_least(1), "k-means|| oversampling rounds, one pass over the data each")
    n_init: int = _option(1, _at_least(1), "restarts on the full data, run side by side in shared passes; the best "
                          "log-likelihood wins (with --init sample: from the best distinct optima of the search)")
    sample_rows: int = _option(DEFAULT_SAMPLE_ROWS, _at_least(1), "rows the conversion keeps as a weighted sample for "
                               "--init sample (the driver holds about 2 x this x features doubles)")
    sample_restarts: int = _option(DEFAULT_SAMPLE_RESTARTS, _at_least(1),
                                   "k-means++ and EM restarts per fit on the sample, in memory (--init sample)")
    max_reseeds: int = _option(DEFAULT_MAX_RESEEDS, _at_least(0), "re-seeds of collapsed components per EM run at "
                               "most; 0: never")
    acceleration: str = _option(DEFAULT_ACCELERATION, _one_of(ACCELERATIONS),
                                f"EM acceleration: {', '.join(ACCELERATIONS)}")
    aggregation_depth: int = _option(2, _at_least(1), "depth of the tree-reduce of per-partition statistics")
    storage_level: str = _option("MEMORY_AND_DISK_DESER", _one_of(STORAGE_LEVELS),
                                 "storage level of what Spark persists: the blocks with spark-cache, else their places")
    dtype: str = _option("float64", _one_of(BLOCK_DTYPES),
                         "float64, or float32: half the memory and bytes per pass, ~7 significant digits per row")
    block_storage: str = _option(DEFAULT_BLOCK_STORAGE, _one_of(BLOCK_STORAGES),
                                 "local-files (memory-mapped on the executors' local disks) or spark-cache")
    invalid_rows: str = _option("error", _one_of(HANDLE_INVALID),
                                "rows with null, NaN or infinite features or a bad weight: error (count them and "
                                "stop) or skip (leave them out, counted in metrics.json)")
    checkpoint_dir: str | None = _option(None, _not_empty, "save the fit's state here after every pass; the same "
                                         "command run again resumes from it", "DIR")
    keep_checkpoint: bool = _option(False, None, "keep the checkpoint after the output is written")
    overwrite: bool = _option(False, None, "replace an existing output")
    spark: SparkSettings = field(default_factory=SparkSettings)


@dataclass(frozen=True, kw_only=True)
class FitConfig(_FitOptions):
    output: str = _option(MISSING, _not_empty, "model directory to write", "MODEL_DIR")
    k: int = _option(2, _at_least(1), "number of components")
    covariance_type: str = _option("full", _one_of(COVARIANCE_TYPES), f"{', '.join(COVARIANCE_TYPES)}")
    initial_model: str | None = _option(
        None, _not_empty, "model directory to start EM from (a warm start: replaces --init and --n-init)", "MODEL_DIR"
    )


@dataclass(frozen=True, kw_only=True)
class SelectConfig(_FitOptions):
    output: str = _option(MISSING, _not_empty, "directory for candidates.json, candidates.csv and best/", "DIR")
    k_range: tuple[int, ...] = _option(
        MISSING, _k_range, "candidate k: LOW:HIGH (inclusive) or a comma-separated list", "LOW:HIGH"
    )
    covariance_types: tuple[str, ...] = _option(
        ("full",), _each_one_of(COVARIANCE_TYPES), "comma-separated covariance types to try", "TYPES"
    )
    criterion: str = _option("bic", _one_of(CRITERIA), "bic or aic: the lowest wins")


@dataclass(frozen=True, kw_only=True)
class PredictConfig:
    model: str = _option(MISSING, _not_empty, "model directory written by fit or select", "MODEL_DIR")
    input: str = _option(MISSING, _not_empty, "input Parquet file or directory", "PATH")
    output: str = _option(MISSING, _not_empty, "Parquet directory to write", "PATH")
    keep_cols: tuple[str, ...] = _option((), None, "comma-separated input columns to keep; default: all", "COLS")
    features: tuple[str, ...] = _option((), None, "feature columns; default: those the model was fitted on", "COLS")
    outlier_quantile: float | None = _option(
        None, lambda v: None if is_outlier_level(v) else OUTLIER_LEVEL_RULE,
        f"add {OUTLIER_COLUMN}: true for rows whose log-density is below this quantile of the training "
        "log-densities (e.g. 0.01: the lowest hundredth)", "LEVEL",
    )
    overwrite: bool = _option(False, None, "replace an existing output")
    spark: SparkSettings = field(default_factory=SparkSettings)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The columns the job adds to the kept input columns."""
        return PREDICTION_COLUMNS + ((OUTLIER_COLUMN,) if self.outlier_quantile is not None else ())


JOB_CONFIGS: dict[str, type] = {"fit": FitConfig, "predict": PredictConfig, "select": SelectConfig}


# --- loading -----------------------------------------------------------------------------------------------------

def job_fields(config_type: type) -> list:
    """The flag/key fields of a job config (the ``spark`` table aside)."""
    return [f for f in fields(config_type) if f.name != "spark"]


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def value_kind(config_type: type, f) -> type:
    """int, float, str, bool, dict or tuple for a field (``X | None`` counts as X)."""
    hint = typing.get_type_hints(config_type)[f.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return typing.get_origin(hint) or hint


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parse_k_range(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    if isinstance(value, str):
        try:
            bounds = [int(part) for part in value.split(":")] if ":" in value else None
            listed = None if bounds else tuple(int(part) for part in _split(value))
        except ValueError:
            bounds = listed = None
        if listed:
            return listed
        if bounds and len(bounds) == 2:
            if bounds[0] > bounds[1]:
                raise ConfigError(f"{where}: {value!r} runs backwards; write LOW:HIGH with LOW <= HIGH")
            return tuple(range(bounds[0], bounds[1] + 1))
    raise ConfigError(f"{where}: {value!r} is not a k range; write LOW:HIGH (e.g. 2:12) or a list such as 2,4,8")


def coerce(config_type: type, f, value: Any, where: str, from_flag: bool = False) -> Any:
    """A raw value (a flag's string when ``from_flag``, else a TOML value) as the field's type, checked. ``where``
    names its source. A file must give numbers as numbers; a flag's string is parsed."""
    if f.name == "k_range":
        result = _parse_k_range(value, where)
    else:
        result = _coerce_kind(value_kind(config_type, f), value, where, from_flag)
    check = f.metadata.get("check")
    problem = check(result) if check is not None and result is not None else None
    if problem:
        raise ConfigError(f"{where}: {_show(value)} {problem}")
    return result


def _coerce_kind(kind: type, value: Any, where: str, from_flag: bool) -> Any:
    from_flag = from_flag and isinstance(value, str)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: {_show(value)} is not true or false")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_flag:
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {_show(value)} is not an integer")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_flag:
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: {_show(value)} is not a number")
    if kind is tuple:
        if isinstance(value, str):
            return _split(value)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(v.strip() for v in value if v.strip())
        raise ConfigError(f"{where}: {_show(value)} is not a list of names (a TOML array of strings or 'a,b,c')")
    if kind is dict:
        if isinstance(value, dict) and all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            return dict(value)
        raise ConfigError(f"{where}: must be a table of settings with string, number or boolean values")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: {_show(value)} is not a string")


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{value!r} ({type(value).__name__})"


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {e}") from None


def _from_table(config_type: type, table: dict[str, Any], source: str, prefix: str = "") -> dict[str, Any]:
    known = {f.name: f for f in fields(config_type)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{source}: unknown key {prefix + key!r} (known: {', '.join(prefix + name for name in known)})"
            )
        if key == "spark":
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: 'spark' must be a table ([spark])")
            values[key] = _from_table(SparkSettings, value, source, "spark.")
        else:
            values[key] = coerce(config_type, known[key], value, f"{source}: {prefix + key}")
    return values


def load_job_config(
    command: str, flags: dict[str, Any], config_file: str | None = None, master: str | None = None
) -> Any:
    """The validated config of ``command`` from ``config_file`` (optional) overridden by ``flags``.

    ``flags`` maps field names to the raw strings (or booleans) given on the command line; absent keys were not
    given. ``master`` (the ``--master`` flag) overrides ``spark.master``.
    """
    config_type = JOB_CONFIGS[command]
    values: dict[str, Any] = {}
    if config_file is not None:
        values = _from_table(config_type, read_config_file(config_file), f"config {config_file}")
    by_name = {f.name: f for f in job_fields(config_type)}
    for name, raw in flags.items():
        values[name] = coerce(config_type, by_name[name], raw, flag_name(name), from_flag=True)
    spark = values.pop("spark", {})
    if master is not None:
        master_field = next(f for f in fields(SparkSettings) if f.name == "master")
        spark["master"] = coerce(SparkSettings, master_field, master, "--master", from_flag=True)
    missing = [name for name, f in by_name.items() if f.default is MISSING and f.default_factory is MISSING
               and name not in values]
    if missing:
        name = missing[0]
        raise ConfigError(f"{flag_name(name)} is required (or set {name} in the config file)")
    return config_type(**values, spark=SparkSettings(**spark))
