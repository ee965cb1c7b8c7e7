"""Fits as candidates that share passes: restarts of one fit, several fits of one input (model selection,
``fitMultiple``), all driven side by side by ``sparkgmm.em.run_side_by_side``. Pure NumPy: never imports pyspark.

Each fit asks for ``n_init`` restarts; restart ``r`` of a fit seeded ``seed`` draws every random number from streams
keyed ``(seed, r, ...)``, so a fit gives the same result alone or beside others. The restart with the highest final
log-likelihood wins (the first on a tie); of a Bayesian fit's restarts, the highest lower bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .bayesian import Prior
from .em import EMResult, EMSettings, EMState, PassRunner, em_candidate, run_side_by_side
from .errors import InputError
from .init import SAMPLE_INIT_MODE, initialise
from .mixture import Mixture
from .passes import Request
from .sampling import DEFAULT_SAMPLE_ROWS
from .search import DEFAULT_SAMPLE_RESTARTS, SearchOutcome, SearchSpec, search_sample


@dataclass(frozen=True)
class FitSpec:
    """One fit: ``initial`` (a warm start) replaces the initialisation, and then one restart is enough. With a
    ``prior`` the fit is a Bayesian mixture's (``sparkgmm.bayesian``): its restarts start as EM's do, and the best
    lower bound wins."""

    n_components: int
    covariance_type: str
    settings: EMSettings
    init_mode: str
    seed: int
    n_init: int = 1
    init_steps: int = 2
    initial: Mixture | None = None
    label: str = ""
    sample_restarts: int = DEFAULT_SAMPLE_RESTARTS
    sample_rows: int = DEFAULT_SAMPLE_ROWS
    prior: Prior | None = None

    @property
    def restarts(self) -> int:
        return 1 if self.initial is not None else self.n_init

    @property
    def searches_sample(self) -> bool:
        """Whether the fit's starts come from a search on the sample (``sparkgmm.search``)."""
        return self.initial is None and self.init_mode == SAMPLE_INIT_MODE

    def search_spec(self) -> SearchSpec:
        return SearchSpec(self.n_components, self.covariance_type, self.settings.reg_covar,
                          self.settings.max_reseeds, self.seed, self.sample_restarts, self.n_init, self.prior,
                          self.settings.merge_every)


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
    search: SearchOutcome | None = None

    @property
    def best(self) -> EMResult:
        return self.restarts[self.best_index].result


class RestartRun:
    """One restart of one fit, as a candidate for ``run_side_by_side`` (``run()``), that can say where it stands
    between passes and be rebuilt from that (``sparkgmm.checkpoint``). Its ``phase`` is ``"init"`` while the
    initialisation runs (a resumed run starts it again: it is a few passes, drawn from the same seeds), ``"em"`` once
    EM runs (``initial``, ``init_passes`` and the ``EMState`` ``state`` say all of it), and ``"done"`` with its
    ``restart`` and the pass count at which it finished. A run of a fit that searches the sample takes its start
    from ``search`` (``search_starts``) and makes no initialisation pass."""

    def __init__(self, spec: FitSpec, fit: int, index: int):
        self.spec = spec
        self.fit = fit
        self.index = index
        self.phase = "init"
        self.initial: Mixture | None = None
        self.init_passes = 0
        self.state: EMState | None = None
        self.restart: Restart | None = None
        self.finished_passes: int | None = None
        self.search: SearchOutcome | None = None

    @property
    def label(self) -> str:
        spec = self.spec
        return spec.label + (f"restart {self.index + 1}/{spec.restarts}: " if spec.restarts > 1 else "")

    def resume_em(self, initial: Mixture, init_passes: int, state: EMState) -> None:
        self.phase, self.initial, self.init_passes, self.state = "em", initial, init_passes, state

    def resume_done(self, restart: Restart, finished_passes: int) -> None:
        self.phase, self.restart, self.finished_passes = "done", restart, finished_passes
        self.initial, self.init_passes = restart.initial, restart.init_passes  # saved again by later checkpoints

    def run(self) -> Generator[Request, Any, Restart]:
        spec = self.spec
        if self.phase == "done":
            if self.restart is None:
                raise RuntimeError(f"{self.label}finished without its result")
            return self.restart
            yield  # a generator all the same
        if self.phase == "init":
            initial = spec.initial
            if spec.searches_sample:
                if self.search is None:
                    raise RuntimeError("a sample-search fit ran before search_starts gave it its start")
                initial = self.search.starts[self.index % len(self.search.starts)]
            elif initial is None:
                start = initialise(spec.n_components, spec.covariance_type, spec.settings.reg_covar, spec.init_mode,
                                   (spec.seed, self.index), spec.init_steps)
                try:
                    request = next(start)
                    while True:
                        answer = yield request
                        self.init_passes += 1
                        request = start.send(answer)
                except StopIteration as stop:
                    initial = stop.value
            self.resume_em(initial, self.init_passes, EMState.start(initial, spec.settings))
        initial = self.initial
        if initial is None:
            raise RuntimeError(f"{self.label}EM started without its initial mixture")
        result = yield from em_candidate(initial, spec.settings, self.label, self.state, prior=spec.prior)
        restart = Restart(result, initial, self.init_passes)
        self.phase, self.restart = "done", restart
        return restart


def restart_runs(specs: Sequence[FitSpec]) -> list[RestartRun]:
    """Every restart of every fit, in order: fit 0's restarts, then fit 1's, ..."""
    return [RestartRun(spec, i, r) for i, spec in enumerate(specs) for r in range(spec.restarts)]


def search_starts(runs: Sequence[RestartRun], sample: np.ndarray | None) -> None:
    """Search the sample for the starts of every fit whose runs still need one (``FitSpec.searches_sample``), all
    such fits side by side; a run resumed from a checkpoint already has its start and is left alone. ``sample`` is
    in key order (``sampling.RowSample.ordered``)."""
    waiting: dict[int, list[RestartRun]] = {}
    for run in runs:
        if run.phase == "init" and run.spec.searches_sample:
            waiting.setdefault(run.fit, []).append(run)
    if not waiting:
        return
    if sample is None or not sample.shape[0]:
        raise InputError("initMode='sample' needs the sample the conversion keeps, and there is none (sampleRows=0?)")
    by_size: dict[int, list[int]] = {}  # fits searched on the same prefix of the sample go side by side
    for fit, fit_runs in waiting.items():
        by_size.setdefault(fit_runs[0].spec.sample_rows, []).append(fit)
    for rows, fits in by_size.items():
        outcomes = search_sample(sample[:rows], [waiting[fit][0].spec.search_spec() for fit in fits])
        for fit, outcome in zip(fits, outcomes, strict=True):
            for run in waiting[fit]:
                run.search = outcome


def fit_side_by_side(specs: Sequence[FitSpec], run_pass: PassRunner, runs: Sequence[RestartRun] | None = None,
                     after_pass: Callable[[int], None] | None = None, passes: int = 0,
                     sample: np.ndarray | None = None) -> list[FitOutcome]:
    """Run every restart of every fit side by side: one pass per step serves all that are still running.

    ``runs`` (from ``restart_runs``, possibly resumed from a checkpoint) default to new ones; ``after_pass`` and
    ``passes`` go to ``run_side_by_side``. Fits that search the sample for their starts do so first, on ``sample``
    (``search_starts``)."""
    started = time.perf_counter()
    runs = list(runs) if runs is not None else restart_runs(specs)
    search_starts(runs, sample)

    def passed(count: int) -> None:
        for run in runs:
            if run.phase == "done" and run.finished_passes is None:
                run.finished_passes = count
        if after_pass is not None:
            after_pass(count)

    finished = run_side_by_side([run.run() for run in runs], run_pass, passed, passes)
    outcomes = []
    for i in range(len(specs)):
        mine = [(f, run) for f, run in zip(finished, runs, strict=True) if run.fit == i]
        restarts = tuple(f.value for f, _ in mine)
        best = max(range(len(restarts)), key=lambda r: (restarts[r].result.objective, -r))
        done_at = 0
        for _, run in mine:
            if run.finished_passes is None:
                raise RuntimeError(f"{run.label}finished without its pass count")
            done_at = max(done_at, run.finished_passes)
        outcomes.append(FitOutcome(restarts, best, done_at, max(f.at for f, _ in mine) - started, mine[0][1].search))
    return outcomes
