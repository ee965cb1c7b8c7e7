"""The command line: ``python -m sparkgmm {fit,predict,select,update} [flags]`` and the spark-submit entry points in
jobs/; ``python -m sparkgmm report`` (``run_report``, no Spark).

Exit codes: 0 success; 2 invalid flags, config or input (``sparkgmm.errors.InputError``, a missing or existing path,
Spark's analysis errors, or input files Spark cannot read, recognised by ``sparkgmm.spark.failures``: one line on
stderr naming the problem, and no output); 1 anything else (the traceback is logged, then one line). Flags and
config keys are built from the option table (``sparkgmm.options``), so each is declared once. Everything up to and
including the checks of local paths runs before Spark starts, so a bad flag costs no JVM and prints nothing else.
"""

from __future__ import annotations

import argparse
import logging
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from .config import ConfigError, load_job_config, value_kind
from .errors import InputError
from .files import is_glob, local_path_of
from .options import OPTIONS, REQUIRED, flag_name
from .persistence import read_model_dir
from .spark.failures import input_error_from

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
DESCRIPTIONS = {
    "fit": "Fit a Gaussian mixture to a Parquet input; write the model directory and its metrics.json.",
    "predict": "Score a Parquet input with a saved model: prediction, probability and log_density per row.",
    "select": "Fit every k (and covariance type) of a range; write candidates.json/.csv and the best model.",
    "update": "Update a saved model online with the rows of a Parquet input; write the new model directory and its "
              "metrics.json.",
}
REPORT = "report"  # not a Spark job: its own parser (run_report)
REPORT_DESCRIPTION = ("Write one self-contained HTML page about a fit or select output: summary, convergence, BIC/AIC "
                      "against k, cluster sizes, a sample on the mixture's principal plane. No Spark; needs matplotlib "
                      "(pip install 'sparkgmm[report]').")
# Exit 2: what the caller passed in cannot be used. Any other exception, a bare ValueError included, is exit 1.
_INPUT_ERRORS = (InputError, FileNotFoundError, FileExistsError, NotADirectoryError)
_SPARK_INPUT_ERRORS = ("AnalysisException", "IllegalArgumentException", "ParseException")

logger = logging.getLogger("sparkgmm")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting, so a bad flag is one line and exit code 2."""

    def error(self, message: str):
        raise ConfigError(message)


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = _Parser(prog=f"sparkgmm {command}", description=DESCRIPTIONS[command], argument_default=argparse.SUPPRESS,
                     allow_abbrev=False)
    required = parser.add_argument_group("required (as flags or in the config file)")
    optional = parser.add_argument_group("settings")
    for option in OPTIONS:
        flag = option.flag
        if command not in option.jobs or not flag:
            continue
        kind = value_kind(option)
        help_text = option.help
        group: argparse._ActionsContainer
        if option.key is None or option.section:  # the config file itself, and --master: before the settings
            group = parser
        else:
            group = required if option.default is REQUIRED else optional
        if group is optional and option.default not in (None, ()):
            default = option.default
            help_text += f" (default: {','.join(map(str, default)) if isinstance(default, tuple) else default})"
        dest = option.key or option.name.removeprefix("--")
        if kind is bool:
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, help=help_text)
        else:
            metavar = option.metavar or {int: "N", float: "X"}.get(kind, "VALUE")
            group.add_argument(flag, dest=dest, metavar=metavar, help=help_text)
    return parser


def parse(command: str, argv: Sequence[str]) -> Any:
    """Flags and config file -> the job's validated config (``ConfigError`` on any problem)."""
    namespace = vars(build_parser(command).parse_args(list(argv)))
    config_file = namespace.pop("config", None)
    master = namespace.pop("master", None)
    return load_job_config(command, namespace, config_file, master)


def check_local_paths(command: str, config: Any) -> None:
    """Refuse, before Spark starts, local inputs that do not exist and local outputs that do."""
    for name in ("input", "model", "initial_model"):
        uri = getattr(config, name, None)
        path = local_path_of(uri) if uri and not is_glob(uri) else None  # Spark expands globs itself
        if path is not None and not path.exists():
            raise FileNotFoundError(f"{flag_name(name)} {uri} does not exist")
        if path is not None and name != "input":
            read_model_dir(path)  # a damaged model directory (either format version) fails here: ModelFormatError
    output = local_path_of(config.output)
    if output is not None and output.exists() and not config.overwrite:
        raise FileExistsError(f"output {config.output} already exists; pass --overwrite to replace it")


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)


def _is_input_error(exc: BaseException) -> bool:
    return isinstance(exc, _INPUT_ERRORS) or type(exc).__name__ in _SPARK_INPUT_ERRORS


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _exit_on_sigterm(signum, _frame) -> None:
    raise SystemExit(128 + signum)


def run(command: str, argv: Sequence[str]) -> int:
    """Run one job; returns the exit code."""
    prog = f"sparkgmm {command}"
    try:
        config = parse(command, argv)
        check_local_paths(command, config)
    except _INPUT_ERRORS as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_INVALID
    _configure_logging()
    # A scheduler stops a job with SIGTERM: raise SystemExit so that staged output is removed on the way out.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.perf_counter()
    try:
        from .spark.jobs import run_job  # Spark loads only once the flags are known to be good

        run_job(command, config)
    except Exception as e:
        # Spark's way of saying the input cannot be read (not Parquet, damaged, empty), wherever it surfaced
        error = input_error_from(e, getattr(config, "input", None)) or e
        if _is_input_error(error):
            print(f"{prog}: error: {_one_line(error)}", file=sys.stderr)
            return EXIT_INVALID
        logger.exception("%s failed", prog)
        print(f"{prog}: failed: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    logger.info("%s done in %.1f s", prog, time.perf_counter() - started)
    return EXIT_OK


def _positive_int(text: str) -> int:
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be an integer >= 1")
    return int(text)


def run_report(argv: Sequence[str]) -> int:
    """``python -m sparkgmm report DIR --output FILE``: an HTML page about a fit or select output. No Spark; exit
    codes and error lines as the jobs'."""
    from . import report

    prog = "sparkgmm report"
    parser = _Parser(prog=prog, description=REPORT_DESCRIPTION, allow_abbrev=False)
    parser.add_argument("directory", metavar="MODEL_OR_SELECT_DIR",
                        help="a fit output, a select output (the report adds BIC/AIC against k) or a model directory")
    parser.add_argument("--output", required=True, metavar="FILE", help="the HTML file to write (one file, images "
                        "embedded)")
    parser.add_argument("--input", metavar="PATH", help="a local Parquet file or directory (the fit's input, say) to "
                        "draw the sample on the figures from (default: draw it from the model)")
    parser.add_argument("--features", metavar="COLS", help="the feature columns of --input, comma-separated, or one "
                        "Vector/array column (default: those the fit used)")
    parser.add_argument("--sample-rows", type=_positive_int, default=report.SAMPLE_ROWS, metavar="N",
                        help=f"rows on the figures, at most (default: {report.SAMPLE_ROWS})")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the sample (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    try:
        args = parser.parse_args(list(argv))
        _configure_logging()
        logging.getLogger("matplotlib").setLevel(logging.WARNING)
        features = tuple(name.strip() for name in args.features.split(",") if name.strip()) if args.features else ()
        report.write_report(args.directory, args.output, input_path=args.input, features=features,
                            sample_rows=args.sample_rows, seed=args.seed, overwrite=args.overwrite)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except _INPUT_ERRORS as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_INVALID
    except Exception as e:
        logger.exception("%s failed", prog)
        print(f"{prog}: failed: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = (*DESCRIPTIONS, REPORT)
    if argv and argv[0] == REPORT:
        return run_report(argv[1:])
    if not argv or argv[0] not in DESCRIPTIONS:
        if argv and argv[0] in ("-h", "--help"):
            print(f"usage: python -m sparkgmm {{{','.join(commands)}}} [flags]; "
                  "python -m sparkgmm COMMAND --help for the flags")
            return EXIT_OK
        given = repr(argv[0]) if argv else "nothing"
        print(f"sparkgmm: error: the command must be one of {', '.join(commands)}; got {given}", file=sys.stderr)
        return EXIT_INVALID
    try:
        return run(argv[0], argv[1:])
    except SystemExit as e:  # --help
        return int(e.code or 0)
