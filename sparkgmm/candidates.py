"""Fits as candidates that share passes: restarts of one fit, several fits of one input (model selection,
``fitMultiple``), all driven side by side by ``sparkgmm.em.run_side_by_side``. Pure NumPy: never imports pyspark.

Each fit asks for ``n_init`` restarts; restart ``r`` of a fit seeded ``seed`` draws every random number from streams
keyed ``(seed, r, ...)``, so a fit gives the same result alone or beside others. The restart with the highest final
log-likelihood wins (the first on a tie).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Generator, Sequence

from .em import EMResult, EMSettings, PassRunner, em_candidate, run_side_by_side
from .init import initialise
from .mixture import Mixture


@dataclass(frozen=True)
class FitSpec:
    """One fit: ``initial`` (a warm start) replaces the initialisation, and then one restart is enough."""

    n_components: int
    covariance_type: str
    settings: EMSettings
    init_mode: str
    seed: int
    n_init: int = 1
    init_steps: int = 2
    initial: Mixture | None = None
    label: str = ""

    @property
    def restarts(self) -> int:
        return 1 if self.initial is not None else self.n_init


@dataclass(frozen=True)
class Restart:
    result: EMResult
    initial: Mixture
    init_passes: int


@dataclass(frozen=True)
class FitOutcome:
    """A fit's restarts, the index of the best, and the passes and seconds the shared run had taken when the fit's
    last restart finished."""

    restarts: tuple[Restart, ...]
    best_index: int
    passes: int
    seconds: float

    @property
    def best(self) -> EMResult:
        return self.restarts[self.best_index].result


def _restart(spec: FitSpec, index: int) -> Generator:
    init_passes = 0
    initial = spec.initial
    label = spec.label + (f"restart {index + 1}/{spec.restarts}: " if spec.restarts > 1 else "")
    if initial is None:
        start = initialise(spec.n_components, spec.covariance_type, spec.settings.reg_covar, spec.init_mode,
                           (spec.seed, index), spec.init_steps)
        try:
            request = next(start)
            while True:
                answer = yield request
                init_passes += 1
                request = start.send(answer)
        except StopIteration as stop:
            initial = stop.value
    result = yield from em_candidate(initial, spec.settings, label)
    return Restart(result, initial, init_passes)


def fit_side_by_side(specs: Sequence[FitSpec], run_pass: PassRunner) -> list[FitOutcome]:
    """Run every restart of every fit side by side: one pass per step serves all that are still running."""
    started = time.perf_counter()
    owners = [i for i, spec in enumerate(specs) for _ in range(spec.restarts)]
    candidates = [_restart(spec, r) for spec in specs for r in range(spec.restarts)]
    finished = run_side_by_side(candidates, run_pass)
    outcomes = []
    for i in range(len(specs)):
        mine = [f for f, owner in zip(finished, owners) if owner == i]
        restarts = tuple(f.value for f in mine)
        best = max(range(len(restarts)), key=lambda r: (restarts[r].result.log_likelihood, -r))
        outcomes.append(FitOutcome(restarts, best, max(f.passes for f in mine),
                                   max(f.at for f in mine) - started))
    return outcomes
