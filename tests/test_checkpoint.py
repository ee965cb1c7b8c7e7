"""Checkpoints of fits in progress: a fit resumed after any pass, through the bytes of the saved files, ends exactly
where the uninterrupted fit ends; a checkpoint of another fit is refused."""

import dataclasses

import numpy as np
import pytest

from helpers import as_files, overlapping_blobs
from sparkgmm import Mixture
from sparkgmm.bayesian import POSTERIOR_ARRAYS, Posterior
from sparkgmm.candidates import FitSpec, Restart, fit_side_by_side, restart_runs
from sparkgmm.checkpoint import CheckpointError, check, encode, restore
from sparkgmm.em import EMResult, EMSettings, local_passes

# A warm start with a component far from every row, which collapses and is re-seeded.
COLLAPSING = Mixture([0.5, 0.5 - 1e-9, 1e-9], [[0.0, 0.0], [2.5, 2.5], [500.0, 500.0]], np.ones((3, 2)), "diag")
SPECS = [
    # restarts, SQUAREM (cycles, extrapolations, rejections) and re-seeds all carry state across passes
    FitSpec(5, "full", EMSettings(60, 1e-7, 1e-6, "squarem"), "k-means||", seed=3, n_init=3),
    FitSpec(3, "diag", EMSettings(8, 0.0, 1e-6, "none"), "k-means", seed=4, n_init=1, label="k=3 diag: "),
    FitSpec(3, "diag", EMSettings(40, 1e-8, 1e-6, "squarem"), "k-means||", seed=5, initial=COLLAPSING),
]
KEY = {"input": {"rows": 3000, "fingerprint": 123}, "fits": [{"k": 5}, {"k": 3}, {"k": 12}]}


def assert_same_outcomes(resumed, uninterrupted):
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert a.best_index == b.best_index
        for ra, rb in zip(a.restarts, b.restarts, strict=True):
            for name in ("weights", "means", "covariances"):
                np.testing.assert_array_equal(getattr(ra.result.mixture, name), getattr(rb.result.mixture, name))
                np.testing.assert_array_equal(getattr(ra.initial, name), getattr(rb.initial, name))
            assert ra.result.log_likelihood_history == rb.result.log_likelihood_history
            assert (ra.result.n_iter, ra.result.n_passes, ra.result.converged, ra.result.cluster_sizes) == (
                rb.result.n_iter, rb.result.n_passes, rb.result.converged, rb.result.cluster_sizes)
            assert (ra.result.n_reseeds, ra.result.n_extrapolations, ra.result.n_rejected, ra.init_passes) == (
                rb.result.n_reseeds, rb.result.n_extrapolations, rb.result.n_rejected, rb.init_passes)
            assert ra.result.log_density_quantiles == rb.result.log_density_quantiles


def test_a_fit_resumed_after_any_pass_ends_exactly_where_the_uninterrupted_fit_ends():
    X = overlapping_blobs()
    run_pass = local_passes(X, block_rows=700)
    checkpoints = []
    runs = restart_runs(SPECS)
    uninterrupted = fit_side_by_side(SPECS, run_pass, runs,
                                     after_pass=lambda passes: checkpoints.append(as_files(*encode(KEY, runs, passes))))
    total = len(checkpoints)
    assert total == max(outcome.passes for outcome in uninterrupted) and total > 40
    # Some restarts extrapolated and had extrapolations rejected, and the warm start re-seeded: the state was rich.
    results = [r.result for outcome in uninterrupted for r in outcome.restarts]
    assert sum(r.n_extrapolations for r in results) > 0 and sum(r.n_rejected for r in results) > 0
    assert sum(r.n_reseeds for r in results) > 0
    phases = [[entry["phase"] for entry in document["runs"]] for document, _ in checkpoints]
    # after the first pass: k-means|| is still drawing, the sample mode and the warm start are in EM
    assert phases[0] == ["init"] * 3 + ["em", "em"] and phases[-1] == ["done"] * 5
    assert any("init" in p and "em" in p for p in phases) and any("em" in p and "done" in p for p in phases)
    for after in sorted({1, 3, 6, 10, total // 2, total - 2, total - 1, total}):
        document, arrays = checkpoints[after - 1]
        check(document, KEY, "checkpoint")
        resumed_runs = restart_runs(SPECS)
        passes = restore(document, arrays, resumed_runs, "checkpoint")
        assert passes == after
        made = []

        def counted(requests, description):
            made.append(description)  # noqa: B023 -- used in this iteration only
            return run_pass(requests, description)

        resumed = fit_side_by_side(SPECS, counted, resumed_runs, passes=passes)
        assert_same_outcomes(resumed, uninterrupted)
        if after == total:
            assert made == []  # every restart had finished: nothing left to read
        if all(phase != "init" for phase in phases[after - 1]):
            # no pass made twice once every restart was past its initialisation (one still drawing starts again)
            assert len(made) == total - after
            assert [o.passes for o in resumed] == [o.passes for o in uninterrupted]


def test_a_checkpoint_of_another_fit_or_a_damaged_one_is_refused():
    X = overlapping_blobs(n=600)
    runs = restart_runs(SPECS[1:2])
    saved = []
    fit_side_by_side(SPECS[1:2], local_passes(X), runs, after_pass=lambda p: saved.append(encode(KEY, runs, p)))
    document, arrays = as_files(*saved[-3])
    other_input = {**KEY, "input": {"rows": 2999, "fingerprint": 123}}
    with pytest.raises(CheckpointError, match=r"its input\.rows is 3000, this fit's is 2999"):
        check(document, other_input, "checkpoint /x")
    with pytest.raises(CheckpointError, match=r"checkpoint /x was written by another fit: its fits\[1\].k is 3, this "
                                              "fit's is 4; resume with the same input and settings"):
        check(document, {**KEY, "fits": [{"k": 5}, {"k": 4}, {"k": 12}]}, "checkpoint /x")
    with pytest.raises(CheckpointError, match=r"its fits is \[\{k=5\}, \{k=3\}, \{k=12\}\], this fit's is \[\{k=5\}\]"):
        check(document, {**KEY, "fits": [{"k": 5}]}, "checkpoint /x")
    with pytest.raises(CheckpointError, match="not a sparkgmm checkpoint"):
        check({**document, "format_version": 99}, KEY, "checkpoint /x")
    with pytest.raises(CheckpointError, match="holds 1 restarts, this fit has 3"):
        restore(document, arrays, restart_runs(SPECS[:1]), "checkpoint /x")
    name = document["runs"][0]["state"]["current"]["means"]
    with pytest.raises(CheckpointError, match="checkpoint /x is damaged: KeyError"):
        restore(document, {k: v for k, v in arrays.items() if k != name}, restart_runs(SPECS[1:2]), "checkpoint /x")
    bad = {**arrays, name: arrays[name][:, :1]}
    with pytest.raises(CheckpointError, match="checkpoint /x is damaged"):
        restore(document, bad, restart_runs(SPECS[1:2]), "checkpoint /x")


def result_of_every_field() -> EMResult:
    """A finished restart's result in which every field holds a value of its own: each count (whatever counts EMResult
    declares) a different number."""
    history = (-4.0, -3.25)
    posterior = Posterior("dirichlet_process", [[2.0, 3.0, 4.0], [5.0, 6.0, 7.0]], [1.5, 2.5, 3.5], COLLAPSING.means,
                          [3.0, 4.0, 5.0], COLLAPSING.covariances, "diag")
    values = {"mixture": posterior.mixture, "posterior": posterior, "log_likelihood_history": history,
              "log_likelihood": history[-1], "lower_bound_history": (-50.5, -40.25), "iteration_seconds": (0.25, 0.5),
              "converged": True, "cluster_sizes": (5, 6, 7), "weight_sum": 17.5,
              "log_density_quantiles": {0.01: -9.0, 0.5: -3.0}}
    counts = [f.name for f in dataclasses.fields(EMResult) if f.name not in values]
    return EMResult(**values, **{name: 100 + i for i, name in enumerate(counts)})


def test_a_finished_restart_comes_back_with_every_field_of_its_result():
    result = result_of_every_field()
    run = restart_runs(SPECS[1:2])[0]
    run.resume_done(Restart(result, COLLAPSING, 4), finished_passes=40)
    document, arrays = as_files(*encode(KEY, [run], 40))
    resumed = restart_runs(SPECS[1:2])[0]
    assert restore(document, arrays, [resumed], "checkpoint") == 40
    assert (resumed.phase, resumed.restart.init_passes, resumed.finished_passes) == ("done", 4, 40)
    restored = resumed.restart.result
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(restored.mixture, name), getattr(result.mixture, name))
    for name in POSTERIOR_ARRAYS:
        np.testing.assert_array_equal(getattr(restored.posterior, name), getattr(result.posterior, name))
    assert restored.posterior.prior_type == "dirichlet_process"
    lost = {f.name: (getattr(result, f.name), getattr(restored, f.name)) for f in dataclasses.fields(EMResult)
            if f.name not in ("mixture", "posterior") and getattr(restored, f.name) != getattr(result, f.name)}
    assert lost == {}
