"""Job configuration: one frozen dataclass per job, loaded once from a TOML file and command-line flags.

The fields are the option table's settings of each job (``sparkgmm.options``): every one is both a TOML key
(``max_iter``) and a flag (``--max-iter``); a flag given on the command line wins over the file, and the file wins over
the default. Spark settings live in the file's ``[spark]`` table (and ``--master``). Unknown keys, wrong types and
values the table's rules refuse are errors (``ConfigError``) that name the key and the file or flag they came from.
This module does not import pyspark.
"""

from __future__ import annotations

import inspect
import tomllib
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .errors import InputError
from .options import COVARIANCE_PRIOR, OPTIONS, REQUIRED, SPARK_SECTION, Option, job_options

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


# --- the dataclasses, from the table -------------------------------------------------------------------------------

def _field(option: Option) -> Any:
    """The option's ``dataclasses.Field`` (typeshed types ``field()`` as the value it defaults to, hence ``Any``)."""
    metadata = {"option": option}
    default = option.default
    if default is REQUIRED:
        return field(metadata=metadata)
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _settings_of(options: Sequence[Option]) -> Callable[[type], type]:
    """A frozen dataclass of ``options`` (in the table's order), then the fields the class declares itself."""

    def make(cls: type) -> type:
        own = inspect.get_annotations(cls)  # the class's own, a new dict
        table = {}
        for option in options:
            if option.key is None:
                raise TypeError(f"option {option.name!r} has no key, so it cannot be a field of {cls.__name__}")
            table[option.key] = option.kind if option.default is not None else option.kind | None
            setattr(cls, option.key, _field(option))
        cls.__annotations__ = {**table, **own}
        return dataclass(frozen=True, kw_only=True)(cls)

    return make


class _Settings:
    if TYPE_CHECKING:  # the fields come from the table, and ``_settings_of`` makes the class a dataclass
        __dataclass_fields__: ClassVar[dict[str, Field[Any]]]

        def __getattr__(self, name: str) -> Any: ...


@_settings_of([o for o in OPTIONS if o.section == SPARK_SECTION])
class SparkSettings(_Settings):
    """The ``[spark]`` table. Under ``spark-submit``, whatever spark-submit was given wins over these."""

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


class _JobSettings(_Settings):
    def __post_init__(self) -> None:
        """A Bayesian mixture's settings need ``--prior``, which says the job fits one."""
        if getattr(self, "prior", None) is not None:
            return
        for f in job_fields(type(self)):
            option = f.metadata["option"]
            if option.bayesian and getattr(self, f.name) is not None:
                raise ConfigError(f"{option.flag} is a setting of a Bayesian mixture: give --prior too (or prior in "
                                  "the config file)")

    @property
    def bayesian(self) -> bool:
        """Whether the job fits a Bayesian mixture (``--prior`` given)."""
        return getattr(self, "prior", None) is not None

    def estimator_params(self) -> dict[str, Any]:
        """The ``GaussianMixture`` (or, with ``--prior``, ``BayesianGaussianMixture``) params these settings give:
        those with a Param, unset ones left out."""
        values = ((f.metadata["option"].param, getattr(self, f.name)) for f in job_fields(type(self)))
        return {param: value for param, value in values if param and value is not None}


@_settings_of(job_options("fit"))
class FitConfig(_JobSettings):
    spark: SparkSettings = field(default_factory=SparkSettings)


@_settings_of(job_options("select"))
class SelectConfig(_JobSettings):
    spark: SparkSettings = field(default_factory=SparkSettings)


@_settings_of(job_options("predict"))
class PredictConfig(_JobSettings):
    spark: SparkSettings = field(default_factory=SparkSettings)

    @property
    def output_columns(self) -> tuple[str, ...]:
        """The columns the job adds to the kept input columns."""
        return PREDICTION_COLUMNS + ((OUTLIER_COLUMN,) if self.outlier_quantile is not None else ())


@_settings_of(job_options("update"))
class UpdateConfig(_JobSettings):
    spark: SparkSettings = field(default_factory=SparkSettings)

    def model_params(self) -> dict[str, Any]:
        """The model Params these settings give (the update rule, weights, invalid rows): unset ones left out."""
        return self.estimator_params()


JOB_CONFIGS: dict[str, type] = {"fit": FitConfig, "predict": PredictConfig, "select": SelectConfig,
                                "update": UpdateConfig}


# --- loading -----------------------------------------------------------------------------------------------------

def job_fields(config_type: type) -> list:
    """The flag/key fields of a job config (the ``spark`` table aside)."""
    return [f for f in fields(config_type) if f.name != "spark"]


def value_kind(option: Option) -> type:
    """int, float, str, bool, dict or tuple: what a setting's value is."""
    return typing.get_origin(option.kind) or option.kind


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


def coerce(option: Option, value: Any, where: str, from_flag: bool = False) -> Any:
    """A raw value (a flag's string when ``from_flag``, else a TOML value) as the option's type, checked by its rule.
    ``where`` names its source. A file must give numbers as numbers; a flag's string is parsed."""
    if option.kind == tuple[int, ...]:
        result = _parse_k_range(value, where)
    else:
        result = _coerce_kind(value_kind(option), value, where, from_flag)
    problem = option.problem(result)
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
    if kind is list:  # numbers: a TOML array, or 'x,y,z'
        return _numbers(value, where, "a list of numbers (a TOML array or 'x,y,z')")
    if kind is COVARIANCE_PRIOR:  # a number, a list of numbers, or a matrix: TOML arrays, or 'x', 'x,y', 'a,b;c,d'
        if from_flag:
            rows = [row for row in value.split(";") if row.strip()]
            value = [_numbers(row, where, COVARIANCE_PRIOR_TEXT) for row in rows] if len(rows) > 1 else \
                _numbers(value, where, COVARIANCE_PRIOR_TEXT)
            return value[0] if isinstance(value, list) and len(value) == 1 and not isinstance(value[0], list) else value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, list) and value and all(isinstance(row, list) for row in value):
            return [_numbers(row, where, COVARIANCE_PRIOR_TEXT) for row in value]
        return _numbers(value, where, COVARIANCE_PRIOR_TEXT)
    if kind is dict:
        if isinstance(value, dict) and all(isinstance(v, (str, int, float, bool)) for v in value.values()):
            return dict(value)
        raise ConfigError(f"{where}: must be a table of settings with string, number or boolean values")
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: {_show(value)} is not a string")


COVARIANCE_PRIOR_TEXT = "a number, a list of numbers or a matrix (TOML arrays, or 'x', 'x,y,z', 'a,b;c,d')"


def _numbers(value: Any, where: str, what: str) -> list[float]:
    """A list of numbers from a TOML array or a comma-separated string."""
    if isinstance(value, str):
        try:
            return [float(part) for part in _split(value)] or _fail(where, value, what)
        except ValueError:
            pass
    elif isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                   for v in value):
        return [float(v) for v in value]
    return _fail(where, value, what)


def _fail(where: str, value: Any, what: str) -> Any:
    raise ConfigError(f"{where}: {_show(value)} is not {what}")


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
            values[key] = coerce(known[key].metadata["option"], value, f"{source}: {prefix + key}")
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
        option = by_name[name].metadata["option"]
        values[name] = coerce(option, raw, option.flag, from_flag=True)
    spark = values.pop("spark", {})
    if master is not None:
        master_option = next(f for f in fields(SparkSettings) if f.name == "master").metadata["option"]
        spark["master"] = coerce(master_option, master, master_option.flag, from_flag=True)
    missing = [f.metadata["option"] for name, f in by_name.items()
               if f.default is MISSING and f.default_factory is MISSING and name not in values]
    if missing:
        raise ConfigError(f"{missing[0].flag} is required (or set {missing[0].key} in the config file)")
    return config_type(**values, spark=SparkSettings(**spark))
