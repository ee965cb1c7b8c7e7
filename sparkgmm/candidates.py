"""Fits as candidates that share passes: restarts of one fit, several fits of one input (model selection,
``fitMultiple``), all driven side by side by ``sparkgmm.em.run_side_by_side``. Pure NumPy: never imports pyspark.

Each fit asks for ``n_init`` restarts; restart ``r`` of a fit seeded ``seed`` draws every random number from streams
keyed ``(seed, r, ...)``, so a fit gives the same result alone or beside others. The restart with the highest final
log-likelihood wins (the first on a tie).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Generator, Sequence

from .em import EMResult, EMSettings, EMState, PassRunner, em_candidate, run_side_by_side
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


class RestartRun:
    """One restart of one fit, as a candidate for ``run_side_by_side`` (``run()``), that can say where it stands
    between passes and be rebuilt from that (``sparkgmm.checkpoint``). Its ``phase`` is ``"init"`` while the
    initialisation runs (a resumed run starts it again: it is a few passes, drawn from the same seeds), ``"em"`` once
    EM runs (``initial``, ``init_passes`` and the ``EMState`` ``state`` say all of it), and ``"done"`` with its
    ``restart`` and the pass count at which it finished."""

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

    @property
    def label(self) -> str:
        spec = self.spec
        return spec.label + (f"restart {self.index + 1}/{spec.restarts}: " if spec.restarts > 1 else "")

    def resume_em(self, initial: Mixture, init_passes: int, state: EMState) -> None:
        self.phase, self.initial, self.init_passes, self.state = "em", initial, init_passes, state

    def resume_done(self, restart: Restart, finished_passes: int) -> None:
        self.phase, self.restart, self.finished_passes = "done", restart, finished_passes

    def run(self) -> Generator:
        spec = self.spec
        if self.phase == "done":
            return self.restart
            yield  # a generator all the same
        if self.phase == "init":
            initial = spec.initial
            if initial is None:
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
        result = yield from em_candidate(self.initial, spec.settings, self.label, self.state)
        self.phase, self.restart = "done", Restart(result, self.initial, self.init_passes)
        return self.restart


def restart_runs(specs: Sequence[FitSpec]) -> list[RestartRun]:
    """Every restart of every fit, in order: fit 0's restarts, then fit 1's, ..."""
    return [RestartRun(spec, i, r) for i, spec in enumerate(specs) for r in range(spec.restarts)]


def fit_side_by_side(specs: Sequence[FitSpec], run_pass: PassRunner, runs: Sequence[RestartRun] | None = None,
                     after_pass: Callable[[int], None] | None = None, passes: int = 0) -> list[FitOutcome]:
    """Run every restart of every fit side by side: one pass per step serves all that are still running.

    ``runs`` (from ``restart_runs``, possibly resumed from a checkpoint) default to new ones; ``after_pass`` and
    ``passes`` go to ``run_side_by_side``."""
    started = time.perf_counter()
    runs = list(runs) if runs is not None else restart_runs(specs)

    def passed(count: int) -> None:
        for run in runs:
            if run.phase == "done" and run.finished_passes is None:
                run.finished_passes = count
        if after_pass is not None:
            after_pass(count)

    finished = run_side_by_side([run.run() for run in runs], run_pass, passed, passes)
    outcomes = []
    for i in range(len(specs)):
        mine = [(f, run) for f, run in zip(finished, runs) if run.fit == i]
        restarts = tuple(f.value for f, _ in mine)
        best = max(range(len(restarts)), key=lambda r: (restarts[r].result.log_likelihood, -r))
        done_at = max(run.finished_passes for _, run in mine)
        outcomes.append(FitOutcome(restarts, best, done_at, max(f.at for f, _ in mine) - started))
    return outcomes
