"""Checkpoints of a fit in progress: where every restart of every fit stands between two passes, as one JSON document
and one set of float64/int64 arrays (saved as ``.npz`` and read back with ``allow_pickle=False``: loading a
checkpoint never runs code), and the check that a checkpoint was written by the fit that finds it. Pure NumPy: the
Spark layer (``sparkgmm.spark.checkpoints``) stores them through Hadoop's FileSystem.

A restart in EM is saved whole (its ``EMState``: parameters, SQUAREM cycle, history), so a fit resumed from a
checkpoint goes on exactly as it would have; a restart still initialising is saved as such and initialises again
(a few passes, drawn from the same seeds, so it reaches the same start); a finished restart is saved with its result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_type_hints

import numpy as np

from .acceleration import Squarem
from .bayesian import POSTERIOR_ARRAYS, Posterior
from .candidates import Restart, RestartRun
from .em import EMResult, EMState
from .errors import InputError
from .mixture import Mixture
from .search import SearchOutcome

FORMAT = "sparkgmm.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(InputError):
    """A checkpoint is damaged, or was written by another fit (other input, features or settings)."""


def encode(key: dict[str, Any], runs: Sequence[RestartRun],
           passes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checkpoint of ``runs`` after ``passes`` passes: a JSON-ready document and its arrays. ``key`` describes
    the fit (input fingerprint, features, settings) as JSON values; ``check`` compares it on resume."""
    arrays: dict[str, np.ndarray] = {}
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "key": key,
        "passes": passes,
        "iterations": max((len(run.state.history) for run in runs if run.state is not None), default=0),
        "runs": [_encode_run(run, arrays) for run in runs],
    }
    return document, arrays


def check(document: dict[str, Any], key: dict[str, Any], where: str) -> None:
    """Refuse a checkpoint written for another fit, naming the first thing that differs."""
    if document.get("format") != FORMAT or document.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{where} is not a sparkgmm checkpoint of format version {FORMAT_VERSION}")
    saved = document.get("key")
    if saved == key:
        return
    if not isinstance(saved, dict):
        raise CheckpointError(f"{where} is damaged: it does not say which fit wrote it")
    name, theirs, ours = _first_difference(saved, key, "")
    raise CheckpointError(
        f"{where} was written by another fit: its {name} is {_show(theirs)}, this fit's is {_show(ours)}; resume "
        "with the same input and settings, or use another checkpoint directory"
    )


def _first_difference(saved: Any, current: Any, name: str) -> tuple[str, Any, Any]:
    """Where two keys first differ: a dotted name (``fits[0].max_iter``) and both values."""
    if isinstance(saved, dict) and isinstance(current, dict):
        for part in current:
            if saved.get(part) != current[part]:
                return _first_difference(saved.get(part), current[part], f"{name}.{part}" if name else part)
    if isinstance(saved, list) and isinstance(current, list) and len(saved) == len(current):
        for i, (a, b) in enumerate(zip(saved, current, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{name}[{i}]")
    return name or "key", saved, current


def restore(document: dict[str, Any], arrays: dict[str, np.ndarray], runs: Sequence[RestartRun], where: str) -> int:
    """Put ``runs`` (new, from ``restart_runs`` of the same fits: ``check`` the document first) where the checkpoint
    says they stood; returns the passes made so far."""
    saved = document.get("runs")
    if not isinstance(saved, list) or len(saved) != len(runs):
        raise CheckpointError(f"{where} is damaged: it holds {_count(saved)} restarts, this fit has {len(runs)}")
    try:
        for run, entry in zip(runs, saved, strict=True):
            _restore_run(run, entry, arrays)
        return int(document["passes"])
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise CheckpointError(f"{where} is damaged: {type(e).__name__}: {e}") from None


# --- runs ---------------------------------------------------------------------------------------------------------

def _encode_run(run: RestartRun, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    if run.phase == "init":
        return {"phase": "init"}
    if run.initial is None:
        raise RuntimeError(f"{run.label}is in phase {run.phase!r} without its initial mixture")
    entry: dict[str, Any] = {"phase": run.phase, "initial": _put_mixture(run.initial, arrays),
                             "init_passes": run.init_passes}
    if run.search is not None:  # what the sample search found: a resumed fit does not search again
        search = run.search
        entry["search"] = {"log_likelihood": _put_array(np.asarray([search.log_likelihood]), arrays),
                           "restarts": search.restarts, "sample_rows": search.sample_rows, "passes": search.passes,
                           "seconds": _put_array(np.asarray([search.seconds]), arrays)}
    if run.phase == "em":
        if run.state is None:
            raise RuntimeError(f"{run.label}runs EM without its state")
        entry["state"] = _encode_state(run.state, arrays)
    else:
        if run.restart is None:
            raise RuntimeError(f"{run.label}finished without its result")
        entry["result"] = _encode_result(run.restart.result, arrays)
        entry["finished_passes"] = run.finished_passes
    return entry


def _restore_run(run: RestartRun, entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    phase = entry["phase"]
    if phase == "init":
        return
    initial = _get_mixture(entry["initial"], arrays)
    init_passes = int(entry["init_passes"])
    search = entry.get("search")
    if search is not None:
        run.search = SearchOutcome((initial,), float(_get_array(search["log_likelihood"], arrays)[0]),
                                   int(search["restarts"]), int(search["sample_rows"]), int(search["passes"]),
                                   float(_get_array(search["seconds"], arrays)[0]))
    if phase == "em":
        run.resume_em(initial, init_passes, _decode_state(entry["state"], arrays))
    elif phase == "done":
        result = _decode_result(entry["result"], arrays)
        run.resume_done(Restart(result, initial, init_passes), int(entry["finished_passes"]))
    else:
        raise ValueError(f"unknown phase {phase!r}")


def _encode_state(state: EMState, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    squarem = state.squarem
    start = state.start_log_likelihood
    return {
        "current": _put_current(state.current, arrays),
        "start_log_likelihood": None if start is None else _put_array(np.asarray([start]), arrays),
        "number": state.number,
        "history": _put_array(np.asarray(state.history, dtype=np.float64), arrays),
        "seconds": _put_array(np.asarray(state.seconds, dtype=np.float64), arrays),
        "cycle": [_put_mixture(m, arrays) for m in state.cycle],
        "fallback": None if state.fallback is None else _put_mixture(state.fallback, arrays),
        "best": _put_array(np.asarray([state.best]), arrays),  # -inf after a re-seed: not a JSON number
        "compare": state.compare,
        "reseeds": state.reseeds,
        "passes": state.passes,
        "converged": state.converged,
        "final": state.final,
        "merges": state.merges,
        "merge_due": state.merge_due,
        "squarem": None if squarem is None else {"step_max": squarem.step_max,
                                                 "extrapolations": squarem.extrapolations,
                                                 "rejections": squarem.rejections},
    }


def _decode_state(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> EMState:
    squarem = entry["squarem"]
    start = entry.get("start_log_likelihood")
    return EMState(
        current=_get_current(entry["current"], arrays),
        start_log_likelihood=None if start is None else float(_get_array(start, arrays)[0]),
        number=int(entry["number"]),
        history=[float(v) for v in _get_array(entry["history"], arrays)],
        seconds=[float(v) for v in _get_array(entry["seconds"], arrays)],
        cycle=[_get_mixture(m, arrays) for m in entry["cycle"]],
        fallback=None if entry["fallback"] is None else _get_mixture(entry["fallback"], arrays),
        best=float(_get_array(entry["best"], arrays)[0]),
        compare=bool(entry["compare"]),
        reseeds=int(entry["reseeds"]),
        passes=int(entry["passes"]),
        converged=bool(entry["converged"]),
        final=bool(entry["final"]),
        merges=int(entry.get("merges", 0)),
        merge_due=bool(entry.get("merge_due", False)),
        squarem=None if squarem is None else Squarem(float(squarem["step_max"]), int(squarem["extrapolations"]),
                                                     int(squarem["rejections"])),
    )


# EMResult's counts (its int fields), saved as JSON numbers under their own names: a count added to EMResult is
# saved and restored without a word here. Its other fields are encoded one by one below.
_RESULT_COUNTS = tuple(name for name, kind in get_type_hints(EMResult).items() if kind is int)


def _encode_result(result: EMResult, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {
        "mixture": _put_mixture(result.mixture, arrays),
        "history": _put_array(np.asarray(result.log_likelihood_history), arrays),
        "seconds": _put_array(np.asarray(result.iteration_seconds, dtype=np.float64), arrays),
        "cluster_sizes": _put_array(np.asarray(result.cluster_sizes, dtype=np.int64), arrays),
        "weight_sum": _put_array(np.asarray([result.weight_sum]), arrays),
        "converged": result.converged,
        "quantile_levels": _put_array(np.asarray(list(result.log_density_quantiles), dtype=np.float64), arrays),
        "quantiles": _put_array(np.asarray(list(result.log_density_quantiles.values()), dtype=np.float64), arrays),
        "posterior": None if result.posterior is None else _put_posterior(result.posterior, arrays),
        "lower_bounds": _put_array(np.asarray(result.lower_bound_history, dtype=np.float64), arrays),
        **{name: getattr(result, name) for name in _RESULT_COUNTS},
    }


def _decode_result(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> EMResult:
    history = tuple(float(v) for v in _get_array(entry["history"], arrays))
    posterior = None if entry.get("posterior") is None else _get_posterior(entry["posterior"], arrays)
    return EMResult(
        mixture=_get_mixture(entry["mixture"], arrays) if posterior is None else posterior.mixture,
        posterior=posterior,
        lower_bound_history=tuple(float(v) for v in _get_array(entry["lower_bounds"], arrays))
        if "lower_bounds" in entry else (),
        log_likelihood=history[-1],
        log_likelihood_history=history,
        iteration_seconds=tuple(float(v) for v in _get_array(entry["seconds"], arrays)),
        converged=bool(entry["converged"]),
        cluster_sizes=tuple(int(c) for c in _get_array(entry["cluster_sizes"], arrays, np.int64)),
        weight_sum=float(_get_array(entry["weight_sum"], arrays)[0]),
        log_density_quantiles={} if "quantiles" not in entry else dict(zip(  # older checkpoints lack them
            map(float, _get_array(entry["quantile_levels"], arrays)),
            map(float, _get_array(entry["quantiles"], arrays)),
            strict=True,
        )),
        **{name: int(entry[name]) for name in _RESULT_COUNTS},
    )


# --- arrays -------------------------------------------------------------------------------------------------------

def _put_array(value: np.ndarray, arrays: dict[str, np.ndarray]) -> str:
    name = f"a{len(arrays)}"
    arrays[name] = value
    return name


def _get_array(name: str, arrays: dict[str, np.ndarray], dtype=np.float64) -> np.ndarray:
    value = arrays[name]
    if value.dtype != dtype:
        raise ValueError(f"array {name!r} has dtype {value.dtype}, expected {np.dtype(dtype)}")
    return value


def _put_mixture(mixture: Mixture, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"covariance_type": mixture.covariance_type, "weights": _put_array(mixture.weights, arrays),
            "means": _put_array(mixture.means, arrays), "covariances": _put_array(mixture.covariances, arrays)}


def _get_mixture(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Mixture:
    return Mixture(_get_array(entry["weights"], arrays), _get_array(entry["means"], arrays),
                   _get_array(entry["covariances"], arrays), entry["covariance_type"])


def _put_posterior(posterior: Posterior, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    return {"covariance_type": posterior.covariance_type, "prior_type": posterior.prior_type,
            **{name: _put_array(getattr(posterior, name), arrays) for name in POSTERIOR_ARRAYS}}


def _get_posterior(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Posterior:
    values = {name: _get_array(entry[name], arrays) for name in POSTERIOR_ARRAYS}
    return Posterior(prior_type=entry["prior_type"], covariance_type=entry["covariance_type"], **values)


def _put_current(current: Mixture | Posterior, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Where an EM run stands (a mixture), or a Bayesian run once it has a posterior."""
    if isinstance(current, Posterior):
        return {"posterior": _put_posterior(current, arrays)}
    return _put_mixture(current, arrays)


def _get_current(entry: dict[str, Any], arrays: dict[str, np.ndarray]) -> Mixture | Posterior:
    return _get_posterior(entry["posterior"], arrays) if "posterior" in entry else _get_mixture(entry, arrays)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_show(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return repr(value) if not isinstance(value, list) else "[" + ", ".join(_show(v) for v in value) + "]"


def _count(value: Any) -> str:
    return str(len(value)) if isinstance(value, list) else "no"
