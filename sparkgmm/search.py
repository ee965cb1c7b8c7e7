"""The search for a start on the sample, in memory on the driver: many restarts of k-means++ and EM with SQUAREM,
side by side through the same EM coroutine as the full-data fit (``sparkgmm.em``) and a local pass runner over the
sample. Pure NumPy: never imports pyspark.

The sample (``sparkgmm.sampling``) comes in key order, so any prefix of it is a smaller sample of the same law. The
search runs in two stages, because restarts are cheap on few rows and the answer needs many:

1. screen: ``restarts`` starts per fit (k-means++ on the first SCREEN_ROWS rows, then one hard-assignment M-step),
   each followed by EM to SCREEN_TOL on those rows;
2. polish: the best POLISH_KEPT screened fits (at least ``n_init``, distinct) go on by EM on the whole sample to
   POLISH_TOL.

A restart whose covariance breaks (``CovarianceError``: single precision rounds a component of few rows in many
dimensions below ``regCovar``, as on scikit-learn's digits) is dropped from the search, and logged; only when every
restart of a fit breaks does the search fail, with the first one's error.

The best ``n_init`` polished fits start EM on the full data. Every random draw comes from
``numpy.random.default_rng((seed, restart, SEARCH_STREAM))``, so a fit's search does not depend on the other fits
searched beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bayesian import Prior
from .em import EMSettings, em_candidate, local_passes, run_side_by_side
from .errors import InputError
from .gaussian import CovarianceError
from .init import initial_mixture
from .mixture import Mixture

logger = logging.getLogger("sparkgmm")

# Restarts per fit on the sample, by default (sampleRestarts).
DEFAULT_SAMPLE_RESTARTS = 16
# Rows of the screening stage (a prefix of the sample) and its EM tolerance and iteration cap. The caps bound the
# search on slowly converging data (digits: d=64); the full-data EM goes on from where the search stops.
SCREEN_ROWS = 1 << 14
SCREEN_TOL = 1e-4
SCREEN_MAX_ITER = 60
# The screen only ranks the restarts: single precision (relative to each block's mean) does that ~1.5x faster.
SCREEN_DTYPE = "float32"
# Screened fits polished on the whole sample (at least nInit), and the polish's tolerance and cap.
POLISH_KEPT = 2
POLISH_TOL = 1e-5
POLISH_MAX_ITER = 150
# Separates the search's random streams from those of the full-data initialisations.
SEARCH_STREAM = 7


@dataclass(frozen=True)
class SearchSpec:
    """One fit's search: its components, covariance type, ``reg_covar``, re-seed cap, seed, restarts, and how many
    starts it needs (``n_init``). A Bayesian mixture's search (``prior`` given) runs its variational inference, with
    merge moves every ``merge_every`` iterations, instead of EM: on the sample, whose rows are few, the components
    the data do not need empty and merge in far fewer iterations than on all the rows, and the full-data run starts
    from a mixture that already has the right components."""

    n_components: int
    covariance_type: str
    reg_covar: float
    max_reseeds: int
    seed: int
    restarts: int
    n_init: int = 1
    prior: Prior | None = None
    merge_every: int = 0

    def screening(self) -> SearchSpec:
        """The spec of the screening stage: EM, also for a Bayesian mixture (its variational inference, merges
        included, on a few thousand rows would keep fewer components than the whole sample supports)."""
        return dataclasses.replace(self, prior=None, merge_every=0)

    def settings(self, tol: float, max_iter: int, rows: int) -> EMSettings:
        """The runs' settings: EM with SQUAREM to ``tol`` per row; a Bayesian run to ``tol`` per row on its lower
        bound, which is a total over the ``rows``."""
        if self.prior is None:
            return EMSettings(max_iter, tol, self.reg_covar, "squarem", self.max_reseeds)
        return EMSettings(max_iter, tol * rows, self.reg_covar, "none", 0, self.merge_every)


@dataclass(frozen=True)
class SearchOutcome:
    """What a fit's search found: ``starts`` (best first, ``n_init`` of them at most), the best mean log-likelihood
    on the sample, the restarts, the sample's rows, and the passes over the sample and the seconds of the whole
    search (both shared with the fits searched beside it)."""

    starts: tuple[Mixture, ...]
    log_likelihood: float
    restarts: int
    sample_rows: int
    passes: int
    seconds: float


def search_sample(sample: np.ndarray, specs: Sequence[SearchSpec]) -> list[SearchOutcome]:
    """Search every spec's starts on ``sample`` (m, d), largest key first, all specs side by side."""
    started = time.perf_counter()
    m = sample.shape[0]
    rows = np.ascontiguousarray(sample)
    distinct = np.unique(rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1])))).shape[0] if m else 0
    for spec in specs:
        if distinct < spec.n_components:
            raise InputError(f"k={spec.n_components} components need at least {spec.n_components} distinct rows of "
                             f"positive weight; the sample of the data has {distinct}")
    screen = sample[:SCREEN_ROWS]
    screened, screen_passes = _em_side_by_side(
        screen,
        [(spec.screening(), initial_mixture(screen, None, spec.n_components, spec.covariance_type, spec.reg_covar,
                                            "k-means++", (spec.seed, r, SEARCH_STREAM)))
         for spec in specs for r in range(spec.restarts)],
        SCREEN_TOL, SCREEN_MAX_ITER, SCREEN_DTYPE,
    )
    polish = []
    position = 0
    for spec in specs:
        mine = _survivors(screened[position:position + spec.restarts], spec, "screen")
        position += spec.restarts
        polish.append([result.mixture for result in _best_distinct(mine, max(POLISH_KEPT, spec.n_init))])
    polished, polish_passes = _em_side_by_side(
        sample, [(spec, start) for spec, starts in zip(specs, polish, strict=True) for start in starts], POLISH_TOL,
        POLISH_MAX_ITER)
    seconds = time.perf_counter() - started
    outcomes = []
    position = 0
    for spec, starts in zip(specs, polish, strict=True):
        mine = _survivors(polished[position:position + len(starts)], spec, "polish")
        position += len(starts)
        best = _best_distinct(mine, spec.n_init)
        outcomes.append(SearchOutcome(tuple(r.mixture for r in best), best[0].log_likelihood, spec.restarts, m,
                                      screen_passes + polish_passes, seconds))
        logger.info("sample search: k=%d %s: best mean log-likelihood %.6f on %d sample rows, %d restarts, %.2f s",
                    spec.n_components, spec.covariance_type, best[0].log_likelihood, m, spec.restarts, seconds)
    return outcomes


def _em_side_by_side(rows: np.ndarray, starts: list[tuple[SearchSpec, Mixture]], tol: float,
                     max_iter: int, dtype: str = "float64") -> tuple[list, int]:
    """EM with SQUAREM (or a Bayesian mixture's variational inference) from every start over ``rows`` in ``dtype``
    blocks, side by side: the results, and the passes over ``rows``."""
    run_pass = local_passes(rows, dtype=dtype)
    candidates = [_broken_as_result(em_candidate(start, spec.settings(tol, max_iter, rows.shape[0]), quiet=True,
                                                 prior=spec.prior))
                  for spec, start in starts]
    finished = run_side_by_side(candidates, run_pass)
    return [f.value for f in finished], max((f.passes for f in finished), default=0)


def _broken_as_result(candidate):
    """``candidate``'s run, whose ``CovarianceError`` becomes its result instead of ending every run beside it."""
    try:
        return (yield from candidate)
    except CovarianceError as e:
        return e


def _survivors(results: list, spec: SearchSpec, stage: str) -> list:
    """The runs of ``results`` that did not break; logs those that did, and raises the first one's error when none
    is left."""
    kept = [r for r in results if not isinstance(r, CovarianceError)]
    if len(kept) < len(results):
        logger.info("sample search (%s): k=%d %s: %d of %d runs dropped, their covariance not positive definite",
                    stage, spec.n_components, spec.covariance_type, len(results) - len(kept), len(results))
    if not kept:
        raise next(r for r in results if isinstance(r, CovarianceError))
    return kept


def _best_distinct(results: list, count: int) -> list:
    """The ``count`` best results by final log-likelihood (a Bayesian run's: lower bound), skipping any that ended
    where a better one did."""
    ordered = sorted(results, key=lambda r: -r.objective)
    kept: list = []
    for result in ordered:
        if len(kept) == count:
            break
        if not any(abs(result.objective - other.objective) <= 1e-9 * max(1.0, abs(other.objective))
                   for other in kept):
            kept.append(result)
    # Fewer distinct optima than asked: repeat the best ones (their full-data runs then agree).
    return kept + ordered[:count - len(kept)] if len(kept) < count else kept
