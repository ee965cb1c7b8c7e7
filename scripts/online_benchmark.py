"""Online EM (``sparkgmm.online``, ``GaussianMixtureModel.update``, ``train_on``): how close one pass of updates comes
to batch EM on a stationary stream, how closely a forgetting model tracks a drifting stream, and what an update costs
per micro-batch on Spark, against MLlib's StreamingKMeans.

    .venv/bin/python scripts/online_benchmark.py stationary [--rows 10M] [--batches 100] [--features 16]
                                                            [--components 8] [--seed 0] [--json FILE]
    .venv/bin/python scripts/online_benchmark.py drifting [--batches 60] [--batch-rows 50k] [--features 16]
                                                          [--components 8] [--speed 0.1] [--half-life 10]
                                                          [--window 10] [--seed 0] [--plot FILE] [--json FILE]
    .venv/bin/python scripts/online_benchmark.py latency [--rows 100k] [--batches 12] [--features 16]
                                                         [--components 8] [--seed 0] [--engine auto]
                                                         [--measure-after] [--json FILE]

The rows come from a fixed seeded mixture (``truth``): --components full-covariance Gaussians in --features
dimensions, means N(0, 1.5^2) per coordinate (about 8.5 apart, 7 standard deviations), covariances A A^T + 0.5 I with
A's entries N(0, 1/d) (variances 0.5 to about 4.5, random axes; about 1.2 standard deviation per axis), weights
Dirichlet(4). Mixture.sample groups rows by component, so every set of rows is shuffled. Every fit in memory is
sparkgmm's default: the sample start (k-means++ and EM restarts on the sample the conversion keeps, drawn by the
conversion's own draw) and EM with SQUAREM to tol 1e-6 on the mean per-row log-likelihood (at most 2000 iterations),
``start_benchmark.sparkgmm_fit``; a warm-started fit is ``sparkgmm.em.run_em`` with the same tol and acceleration.

stationary: --rows rows, shuffled, cut into --batches micro-batches (100 of 100k by default), and 200k held-out rows
drawn separately. The start is the fit on the first batch alone. Then, in memory, one pass over batches 2..N with
``sparkgmm.online.partial_fit``: the default rule (decayFactor 1, forget nothing), and stepwise EM with stepPower 0.6
and 1.0 for comparison. The reference is batch EM on all the rows, warm-started from the first-batch model, to tol
1e-6 (the batch optimum). The table gives the held-out mean log-likelihood per row of the first-batch model, of each
rule after 10 batches (1M rows seen by default) and after the pass, and of the optimum, and their gaps to it (optimum
minus model). Stepwise EM runs with and without averageAfter 10 (its iterates averaged from batch 11 on: Polyak-Ruppert
averaging). Targets, for the default rule: after the pass within 1e-3 per row of the optimum, after 10 batches within
1e-2. Seconds: the whole online pass (and the median update) against the batch fit (and its median iteration).

drifting: --batches micro-batches of --batch-rows rows; component j's mean moves steadily along a fixed random unit
direction by --speed times its typical standard deviation, sqrt(trace(cov_j) / d), per batch (0.1 by default: one
standard deviation every 10 batches, 5.9 over 60). Prequentially, each batch t >= 1 is scored (mean log-likelihood
per row) under three models that have seen only batches < t: (a) online, halfLife --half-life batches, the fit on batch
0 updated with every batch after it is scored; (b) frozen, the fit on batch 0; (c) a batch fit on the last --window
batches (t-window .. t-1; fewer before t = window), warm-started from the previous one. A table every 5 batches;
target: for every t >= window, (a) within 0.05 per row of (c) (gap = (c) - (a)); the max and median gap, and (b)'s gap
at t = 10, 30 and the last. On the table's rows, a fourth model splits (a)'s gap into its causes: (d) batch EM to
convergence on all batches < t, batch s weighted decay ** (t - 1 - s) (decay = 0.5 ** (1 / halfLife)), which is how
(a)'s remembered statistics weigh them, warm-started from (a) (then from the previous (d)). (c) - (d) is the gap the
halfLife's memory sets (older rows drag the means back), (d) - (a) what one M-step per batch costs beyond it.
--plot FILE draws the curves and the gaps (matplotlib, when installed).

latency (Spark local[2], in this process): --batches micro-batches of --rows rows written as Parquet files; a
GaussianMixture (default Params) fitted on the first; then per following file: (i) sparkgmm's update,
``update_model_unless_empty(model, spark.read.parquet(file))``, and the model write (``ModelDirectory.write_version`` +
``write_pointer`` into a temporary directory). An update makes no pass over stored blocks: it reads, packs and scores
the rows in one Spark job (``convert_and_answer`` of the model's engine, --engine: the RDD engine's by default, the
DataFrame engine's as under Spark Connect; conversion_seconds is that job's), so its E-step cannot be timed apart: the
table shows the job and the rest, and overhead <= total + write, an upper bound, on which the verdict is taken. With
--measure-after (what the update job does: a second pass measures the new model on the rows) the rows are converted to
stored blocks first; the table then splits the update into its conversion (``ModelUpdate.conversion_seconds``), its
passes and the release of the blocks (``StoredBlocks.run_pass`` and the last ``unpersist``, timed by wrappers this
script puts in place) and the rest (the M-step, the new model); overhead = total + write - passes. For scale, the
same update in memory (``partial_fit`` of the file's rows, one process). Target: median overhead <= 0.5 s per
micro-batch. (ii) A real stream:
``train_on`` over the same files (maxFilesPerTrigger 1, trigger availableNow), wall seconds from its start to its end
divided by the micro-batches, and the median of the query's own per-trigger durations. (iii) The peer: MLlib's
``pyspark.mllib.clustering.StreamingKMeansModel.update(rdd, 1.0, "batches")`` on each file's rows as an RDD of dense
vectors (2 partitions, cached and counted first), k = --components from N(0, 1) centres: what StreamingKMeans.trainOn
does for every micro-batch's RDD. Our total (and E-step pass, when separate) against its median.

Every timing statistic is a median. Tables print to stdout (and the load average at the start and end: the timings
mean little on a busy machine), progress to stderr; --json FILE writes the results.
Exit code 1 when a row of ours says MISS: a run of ours failed, or missed its target. A peer that fails is reported
as failed, never as a pass.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtools import ArgumentParser, UsageError, check_json_path, fmt, logger, machine, parse_count, size_label, \
    table_lines, write_json
from start_benchmark import sparkgmm_fit

from sparkgmm import Mixture
from sparkgmm.em import EMResult, local_passes, run_em
from sparkgmm.online import UpdateRule, partial_fit

PROG = "online_benchmark.py"
log = logger(PROG)

TOL, MAX_ITER, REG_COVAR = 1e-6, 2000, 1e-6
MEAN_SPREAD = 1.5
HELD_OUT_ROWS = 200_000
EARLY_BATCHES = 10  # stationary: the online model is also measured after this many batches
EARLY_TARGET, PASS_TARGET = 1e-2, 1e-3
DRIFT_TARGET = 0.05
OVERHEAD_TARGET = 0.5
TABLE_EVERY = 5


# --- data -----------------------------------------------------------------------------------------------------------

def truth(features: int, components: int, seed: int) -> Mixture:
    """The fixed mixture the rows come from (see the module's docstring)."""
    rng = np.random.default_rng([seed, 4242])
    spread = rng.normal(0.0, 1.0 / np.sqrt(features), (components, features, features))
    covariances = np.einsum("kij,klj->kil", spread, spread) + 0.5 * np.eye(features)
    means = rng.normal(0.0, MEAN_SPREAD, (components, features))
    return Mixture(rng.dirichlet(np.full(components, 4.0)), means, covariances)


def shuffled_rows(mixture: Mixture, rows: int, seed: int) -> np.ndarray:
    X, _ = mixture.sample(rows, seed=seed)
    return X[np.random.default_rng(seed).permutation(rows)]


def default_fit(X: np.ndarray, components: int, seed: int) -> Mixture:
    """sparkgmm's default fit in memory (sample start, EM with SQUAREM to TOL); the mixture remembers its rows."""
    return sparkgmm_fit(X, components, REG_COVAR, seed, "sample")


def warm_fit(start: Mixture, X: np.ndarray) -> EMResult:
    return run_em(start, local_passes(X), max_iter=MAX_ITER, tol=TOL, reg_covar=REG_COVAR, acceleration="squarem")


def guarded(what: str, run: Callable[[], Any]) -> tuple[Any, str | None]:
    """``run()`` and None, or None and the error's first line (its traceback on stderr)."""
    try:
        return run(), None
    except Exception as error:
        traceback.print_exc()
        message = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
        log(f"{what} failed: {message}")
        return None, message


def verdict(value: float | None, target: float) -> str:
    return "MISS" if value is None or not value <= target else "PASS"


# --- stationary -----------------------------------------------------------------------------------------------------

STATIONARY_RULES = (("online, decayFactor 1 (default)", UpdateRule()),
                    ("stepwise EM, stepPower 0.6", UpdateRule(step_power=0.6)),
                    ("stepwise EM, stepPower 0.6, averageAfter 10", UpdateRule(step_power=0.6, average_after=10)),
                    ("stepwise EM, stepPower 1.0", UpdateRule(step_power=1.0)),
                    ("stepwise EM, stepPower 1.0, averageAfter 10", UpdateRule(step_power=1.0, average_after=10)))


def one_pass(start: Mixture, batches: list[np.ndarray], rule: UpdateRule, held_out: np.ndarray,
             early: int) -> dict:
    """Updates with batches 2..N from ``start``: held-out scores after ``early`` batches and after all, seconds."""
    model, seconds, scores = start, [], {}
    for index, batch in enumerate(batches[1:], start=2):
        started = time.perf_counter()
        model = partial_fit(model, batch, reg_covar=REG_COVAR, rule=rule).mixture
        seconds.append(time.perf_counter() - started)
        if index in (early, len(batches)):
            scores[index] = model.score(held_out)
    return {"scores": scores, "seconds": sum(seconds), "median_update_seconds": statistics.median(seconds)}


def stationary(args: argparse.Namespace) -> dict:
    mixture = truth(args.features, args.components, args.seed)
    log(f"stationary: drawing {size_label(args.rows)} + {size_label(HELD_OUT_ROWS)} held-out rows")
    X = shuffled_rows(mixture, args.rows, args.seed)
    held_out = shuffled_rows(mixture, HELD_OUT_ROWS, args.seed + 1)
    batches = np.array_split(X, args.batches)
    early = min(EARLY_BATCHES, args.batches)
    log(f"stationary: fitting the first batch ({batches[0].shape[0]} rows)")
    started = time.perf_counter()
    first, first_error = guarded("the first-batch fit", lambda: default_fit(batches[0], args.components, args.seed))
    first_seconds = time.perf_counter() - started
    rows: list[dict] = [{"model": f"first-batch fit ({size_label(batches[0].shape[0])} rows)",
                         "seen_rows": batches[0].shape[0], "held_out": None if first is None else first.score(held_out),
                         "seconds": first_seconds, "target": None, "failed": first is None, "error": first_error}]
    passes: dict[str, dict] = {}
    for label, rule in STATIONARY_RULES:
        log(f"stationary: one pass, {label}")
        done: dict | None = None
        error: str | None = "the first-batch fit failed"
        if first is not None:
            done, error = guarded(label, partial(one_pass, first, batches, rule, held_out, early))
        passes[label] = {} if done is None else done
        default = rule == UpdateRule()
        for index in sorted({early, args.batches}):
            seen = sum(b.shape[0] for b in batches[:index])
            target = (PASS_TARGET if index == args.batches else EARLY_TARGET) if default else None
            rows.append({"model": f"{label}, after {index} batches", "seen_rows": seen,
                         "held_out": None if done is None else done["scores"][index],
                         "seconds": None if done is None or index != args.batches else done["seconds"],
                         "target": target, "failed": done is None, "error": error})
    log(f"stationary: batch EM on all {size_label(args.rows)} rows, warm-started from the first-batch fit")
    started = time.perf_counter()
    batch_fit: EMResult | None = None
    batch_error: str | None = "the first-batch fit failed"
    if first is not None:
        batch_fit, batch_error = guarded("the batch fit", partial(warm_fit, first, X))
    batch_seconds = time.perf_counter() - started
    optimum = None if batch_fit is None else batch_fit.mixture.score(held_out)
    rows.append({"model": f"batch EM on all {size_label(args.rows)} rows (optimum)", "seen_rows": args.rows,
                 "held_out": optimum, "seconds": batch_seconds, "target": None, "failed": batch_fit is None,
                 "error": batch_error})
    for r in rows:
        r["gap"] = None if optimum is None or r["held_out"] is None else optimum - r["held_out"]
        r["verdict"] = "-" if r["target"] is None else verdict(r["gap"], r["target"])
    default_pass = passes[STATIONARY_RULES[0][0]]
    timing = {"online_pass_seconds": default_pass.get("seconds"),
              "online_median_update_seconds": default_pass.get("median_update_seconds"),
              "batch_fit_seconds": None if batch_fit is None else batch_seconds,
              "batch_fit_iterations": None if batch_fit is None else batch_fit.n_iter,
              "batch_fit_passes": None if batch_fit is None else batch_fit.n_passes,
              "batch_fit_converged": None if batch_fit is None else batch_fit.converged,
              "batch_median_iteration_seconds": None if batch_fit is None or not batch_fit.iteration_seconds else
              statistics.median(batch_fit.iteration_seconds)}
    print_stationary(rows, timing, args, batches[0].shape[0])
    return {"results": rows, "timing": timing}


def print_stationary(rows: list[dict], timing: dict, args: argparse.Namespace, batch_rows: int) -> None:
    print(f"\nstationary: {size_label(args.rows)} rows x {args.features} features, k={args.components} "
          f"(full covariance), {args.batches} batches of {size_label(batch_rows)}; held-out "
          f"{size_label(HELD_OUT_ROWS)} rows; mean log-likelihood per row; gap = optimum - model")
    width = max(len(r["model"]) for r in rows)
    columns = [("model".ljust(width), width, lambda r: r["model"].ljust(width)),
               ("rows seen", 9, lambda r: size_label(r["seen_rows"])),
               ("held-out LL", 12, lambda r: fmt(r["held_out"], ".6f")),
               ("gap", 10, lambda r: fmt(r["gap"], ".2e")),
               ("target", 7, lambda r: fmt(r["target"], ".0e", "")),
               ("verdict", 7, lambda r: r["verdict"]),
               ("seconds", 8, lambda r: fmt(r["seconds"], ".1f", ""))]
    for line in table_lines(columns, rows,
                            lambda r: f"{r['model'].ljust(width)} | MISS: {r['error'] or 'no score'}"):
        print(line)
    online, batch = timing["online_pass_seconds"], timing["batch_fit_seconds"]
    print(f"seconds: online pass ({args.batches - 1} updates, decayFactor 1) {fmt(online, '.1f', 'failed')} (median "
          f"{fmt(timing['online_median_update_seconds'], '.3f')} s per update); batch EM on all rows "
          f"{fmt(batch, '.1f', 'failed')} ({fmt(timing['batch_fit_iterations'], 'd')} iterations, "
          f"{fmt(timing['batch_fit_passes'], 'd')} passes, converged {timing['batch_fit_converged']}, median "
          f"{fmt(timing['batch_median_iteration_seconds'], '.2f')} s per iteration)"
          + ("" if online is None or batch is None else f"; batch / online {batch / online:.1f}x"))
    print(f"targets (online, decayFactor 1): after {min(EARLY_BATCHES, args.batches)} batches gap <= "
          f"{EARLY_TARGET:g}; after one pass gap <= {PASS_TARGET:g}")


# --- drifting -------------------------------------------------------------------------------------------------------

class DriftingStream:
    """The drifting mixture: component j's mean at batch t is means_j + t * speed * scale_j * direction_j."""

    def __init__(self, args: argparse.Namespace):
        self.base = truth(args.features, args.components, args.seed)
        rng = np.random.default_rng([args.seed, 4243])
        directions = rng.normal(size=(args.components, args.features))
        self.directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        self.scales = np.sqrt(np.trace(self.base.covariances, axis1=1, axis2=2) / args.features)
        self.speed, self.rows, self.seed = args.speed, args.batch_rows, args.seed

    def batch(self, t: int) -> np.ndarray:
        means = self.base.means + t * self.speed * self.scales[:, None] * self.directions
        moved = Mixture(self.base.weights, means, self.base.covariances)
        return shuffled_rows(moved, self.rows, self.seed * 1_000_003 + t + 1)


def memory_weighted_fit(start: Mixture, batches: list[np.ndarray], decay: float) -> EMResult:
    """Batch EM to convergence on every batch seen so far, batch s of t weighted decay ** (t - 1 - s): the weights
    the online model's remembered statistics give its batches, fitted to the full, as one M-step per batch is not."""
    weights = np.concatenate([np.full(X.shape[0], decay ** (len(batches) - 1 - s)) for s, X in enumerate(batches)])
    return run_em(start, local_passes(np.concatenate(batches), weights), max_iter=MAX_ITER, tol=TOL,
                  reg_covar=REG_COVAR, acceleration="squarem")


def drifting(args: argparse.Namespace) -> dict:
    stream = DriftingStream(args)
    rule = UpdateRule(half_life=args.half_life)
    window: list[np.ndarray] = [stream.batch(0)]
    log(f"drifting: fitting batch 0 ({size_label(args.batch_rows)} rows)")
    fit0, error = guarded("the fit on batch 0", lambda: default_fit(window[0], args.components, args.seed))
    series: list[dict] = []
    online = window_fit = fit0
    memory_fit: Mixture | None = None
    seen = [window[0]]
    before_mismatch = 0.0
    for t in range(1, args.batches):
        X = stream.batch(t)
        row: dict[str, Any] = {"t": t, "online": None, "frozen": None, "window": None, "memory": None,
                               "failed": False, "error": error}
        if online is None or window_fit is None or fit0 is None:
            row["failed"] = True
            series.append(row)
            continue
        row.update(online=online.score(X), frozen=fit0.score(X), window=window_fit.score(X))
        if t % TABLE_EVERY == 0 or t == args.batches - 1:
            memory, memory_error = guarded(f"the fit on the halfLife's weights before batch {t}",
                                           partial(memory_weighted_fit, memory_fit or online, seen, rule.decay))
            memory_fit = None if memory is None else memory.mixture
            row["memory"] = None if memory_fit is None else memory_fit.score(X)
            row["memory_error"] = memory_error
        seen.append(X)
        update, error = guarded(f"the online update with batch {t}",
                                partial(partial_fit, online, X, reg_covar=REG_COVAR, rule=rule))
        online = None if update is None else update.mixture
        if update is not None:
            before_mismatch = max(before_mismatch, abs(update.log_likelihood_before - row["online"]))
        window = (window + [X])[-args.window:]
        refit, refit_error = guarded(f"the window fit after batch {t}",
                                     partial(warm_fit, window_fit, np.concatenate(window)))
        window_fit = None if refit is None else refit.mixture
        error = error or refit_error
        row["window_iterations"] = None if refit is None else refit.n_iter
        series.append(row)
        if t % TABLE_EVERY == 0 or t == args.batches - 1:
            log(f"drifting: batch {t}: online {row['online']:.4f}, frozen {row['frozen']:.4f}, window "
                f"{row['window']:.4f}")
    for row in series:
        row["gap_online"] = None if row["failed"] else row["window"] - row["online"]
        row["gap_frozen"] = None if row["failed"] else row["window"] - row["frozen"]
        row["gap_memory"] = None if row["failed"] or row["memory"] is None else row["window"] - row["memory"]
    judged = [r for r in series if r["t"] >= args.window]
    gaps = [r["gap_online"] for r in judged if r["gap_online"] is not None]
    failed = any(r["failed"] or r.get("memory_error") for r in judged) or not judged
    frozen_at: dict[int, float | None] = {t: next((r["gap_frozen"] for r in series if r["t"] == t), None)
                 for t in sorted({10, 30, args.batches - 1}) if 1 <= t < args.batches}
    memory_gaps = [r["gap_memory"] for r in judged if r["gap_memory"] is not None]
    summary: dict[str, Any] = {"judged_batches": len(judged), "max_gap": max(gaps) if gaps else None,
               "memory_max_gap": max(memory_gaps) if memory_gaps else None,
               "median_gap": statistics.median(gaps) if gaps else None, "target": DRIFT_TARGET,
               "frozen_gap_at": frozen_at, "log_likelihood_before_mismatch": before_mismatch,
               "typical_std": [float(s) for s in stream.scales], "failed": failed}
    summary["verdict"] = "MISS" if failed else verdict(summary["max_gap"], DRIFT_TARGET)
    print_drifting(series, summary, args)
    if args.plot:
        plot_drifting(series, args)
    return {"results": series, "summary": summary}


def print_drifting(series: list[dict], summary: dict, args: argparse.Namespace) -> None:
    print(f"\ndrifting: {args.batches} batches of {size_label(args.batch_rows)} rows x {args.features} features, "
          f"k={args.components}; each mean moves {args.speed:g} x its component's typical standard deviation per batch "
          f"(sqrt(trace/d): {min(summary['typical_std']):.2f} to {max(summary['typical_std']):.2f}) along a fixed "
          f"random direction. Prequential mean log-likelihood per row of batch t under: (a) online, halfLife "
          f"{args.half_life:g} batches; (b) frozen fit on batch 0; (c) batch fit on batches t-{args.window}..t-1; "
          f"(d) batch fit on batches 0..t-1 weighted as (a) remembers them. gap = (c) - model")
    shown = [r for r in series if r["t"] % TABLE_EVERY == 0 or r["t"] == args.batches - 1]
    columns = [("t", 4, lambda r: str(r["t"])),
               ("(a) online", 11, lambda r: fmt(r["online"], ".4f")),
               ("(b) frozen", 11, lambda r: fmt(r["frozen"], ".4f")),
               ("(c) window", 11, lambda r: fmt(r["window"], ".4f")),
               ("(d) memory", 11, lambda r: fmt(r["memory"], ".4f")),
               ("gap (a)", 8, lambda r: fmt(r["gap_online"], ".4f")),
               ("gap (b)", 8, lambda r: fmt(r["gap_frozen"], ".4f")),
               ("gap (d)", 8, lambda r: fmt(r["gap_memory"], ".4f"))]
    for line in table_lines(columns, shown, lambda r: f"{r['t']:>4} | MISS: {r['error'] or 'a model failed'}"):
        print(line)
    frozen = ", ".join(f"t={t}: {fmt(gap, '.3f')}" for t, gap in summary["frozen_gap_at"].items())
    print(f"(a) vs (c) over t >= {args.window} ({summary['judged_batches']} batches): max gap "
          f"{fmt(summary['max_gap'], '.4f')}, median {fmt(summary['median_gap'], '.4f')}; target max gap <= "
          f"{DRIFT_TARGET:g}: {summary['verdict']}")
    print(f"(b) frozen falls behind (c) by {frozen}")
    print(f"(d) EM to convergence on the halfLife's weights, on the rows the online model has seen: max gap to (c) "
          f"{fmt(summary['memory_max_gap'], '.4f')} on the rows shown (the part of (a)'s gap its memory sets, not "
          f"its one M-step per batch)")
    print(f"check: partial_fit's log_likelihood_before vs Mixture.score of the same rows: max difference "
          f"{summary['log_likelihood_before_mismatch']:.2e}")


def plot_drifting(series: list[dict], args: argparse.Namespace) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"--plot: matplotlib is not installed; no plot written to {args.plot}")
        return
    kept = [r for r in series if not r["failed"]]
    t = [r["t"] for r in kept]
    figure, (axes, gaps) = plt.subplots(2, 1, figsize=(9, 8), sharex=True, height_ratios=(3, 2))
    for key, label in (("online", f"(a) online, halfLife {args.half_life:g}"), ("frozen", "(b) frozen, batch 0"),
                       ("window", f"(c) batch fit, last {args.window} batches")):
        axes.plot(t, [r[key] for r in kept], label=label)
    fitted = [r for r in kept if r["memory"] is not None]
    axes.plot([r["t"] for r in fitted], [r["memory"] for r in fitted], "o", color="C3", markersize=4,
              label="(d) batch fit, (a)'s weights")
    axes.axvline(args.window, color="grey", linestyle=":", linewidth=1)
    axes.set_ylabel("mean log-likelihood per row of batch t")
    axes.set_title(f"drifting means: {args.speed:g} std per batch")
    axes.legend()
    # The frozen model's fall sets the upper panel's scale; the gap that the target is about gets its own.
    gaps.plot(t, [r["gap_online"] for r in kept], label="(c) - (a): online behind the window fit", color="C0")
    gaps.plot([r["t"] for r in fitted], [r["gap_memory"] for r in fitted], "o", color="C3", markersize=4,
              label="(c) - (d): the part the memory sets")
    gaps.axhline(DRIFT_TARGET, color="C3", linestyle="--", linewidth=1, label=f"target {DRIFT_TARGET:g}")
    gaps.axhline(0.0, color="grey", linewidth=0.5)
    gaps.axvline(args.window, color="grey", linestyle=":", linewidth=1)
    gaps.set_xlabel("batch t")
    gaps.set_ylabel("gap per row")
    gaps.legend()
    figure.tight_layout()
    figure.savefig(args.plot, dpi=120)
    plt.close(figure)
    log(f"plot written to {args.plot}")


# --- latency --------------------------------------------------------------------------------------------------------

def write_files(directory: Path, mixture: Mixture, batches: int, rows: int, seed: int) -> list[str]:
    """One Parquet file per batch, f0..f{d-1}, modification times in batch order (a file stream takes the oldest
    first)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True)
    paths = []
    for b in range(batches):
        X = shuffled_rows(mixture, rows, seed * 1_000_003 + b + 1)
        path = directory / f"batch-{b:04d}.parquet"
        pq.write_table(pa.table({f"f{j}": X[:, j] for j in range(X.shape[1])}), path)
        os.utime(path, (1_700_000_000 + b, 1_700_000_000 + b))
        paths.append(str(path))
    return paths


def timed(method: Callable, record: list[float]) -> Callable:
    """``method``, appending the seconds of each call to ``record``."""
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            record.append(time.perf_counter() - started)

    return wrapper


@contextlib.contextmanager
def timed_blocks(passes: list[float], releases: list[float]) -> Iterator[None]:
    """Inside, every ``StoredBlocks.run_pass`` appends its seconds to ``passes``, every ``unpersist`` to
    ``releases``."""
    from sparkgmm.spark.engine.base import StoredBlocks

    with mock.patch.object(StoredBlocks, "run_pass", timed(StoredBlocks.run_pass, passes)), \
            mock.patch.object(StoredBlocks, "unpersist", timed(StoredBlocks.unpersist, releases)):
        yield


def our_updates(spark, model, files: list[str], root: Path, measure_after: bool) -> list[dict]:
    """Each file's update on Spark, timed (see the module's docstring), then the same update in memory."""
    import pyarrow.parquet as pq

    from sparkgmm.spark.online import update_model_unless_empty, update_rule
    from sparkgmm.spark.streaming import ModelDirectory

    directory = ModelDirectory(spark, str(root / "models-direct"))
    rows = []
    for index, path in enumerate(files, start=1):
        passes: list[float] = []
        releases: list[float] = []
        with timed_blocks(passes, releases):
            update = update_model_unless_empty(model, spark.read.parquet(path), measure_after=measure_after,
                                               label=f"benchmark update {index}")
        if update is None:
            raise RuntimeError(f"{path}: no rows")
        started = time.perf_counter()
        directory.write_version(index, update.model)
        directory.write_pointer(index)
        write = time.perf_counter() - started
        X = np.column_stack([column.to_numpy() for column in pq.read_table(path).columns])
        started = time.perf_counter()
        partial_fit(model.mixture, X, reg_covar=model.getRegCovar(), rule=update_rule(model))
        in_memory = time.perf_counter() - started
        model = update.model
        # No StoredBlocks pass: the update read, packed and scored the rows in one Spark job (its conversion_seconds).
        fused = not passes
        estep = None if fused else sum(passes)
        # the last release is the update's own; an earlier one is the conversion's (it rebalanced the blocks)
        release = None if fused or not releases else releases[-1]
        rows.append({"batch": index, "fused": fused, "total": update.seconds, "job": update.conversion_seconds,
                     "estep": estep, "passes": len(passes), "release": release,
                     "releases": len(releases),
                     "rest": update.seconds - update.conversion_seconds - (estep or 0.0) - (release or 0.0),
                     "write": write, "in_memory": in_memory, "overhead": update.seconds + write - (estep or 0.0)})
        log(f"latency: update {index}: total {update.seconds:.3f} s, " + (
            f"one job (read, pack, E-step) {update.conversion_seconds:.3f} s" if fused else
            f"conversion {update.conversion_seconds:.3f} s, E-step pass {estep:.3f} s") + f", write {write:.3f} s")
    return rows


def stream_run(spark, model, directory: Path, features: int, root: Path, count: int) -> dict:
    from sparkgmm.spark.streaming import train_on

    schema = ", ".join(f"f{j} double" for j in range(features))
    stream_df = spark.readStream.schema(schema).option("maxFilesPerTrigger", 1).parquet(str(directory))
    started = time.perf_counter()
    stream = train_on(stream_df, model, str(root / "models-stream"), str(root / "checkpoint"),
                      trigger={"availableNow": True}, query_name="online_benchmark")
    stream.await_termination()
    wall = time.perf_counter() - started
    progress = [p for p in stream.query.recentProgress if p.numInputRows > 0]
    durations = [p.durationMs["triggerExecution"] / 1000.0 for p in progress if "triggerExecution" in p.durationMs]
    if len(progress) != count:
        raise RuntimeError(f"the stream learnt from {len(progress)} micro-batches with rows, not {count}")
    return {"wall": wall, "micro_batches": count, "per_micro_batch": wall / count,
            "median_trigger": statistics.median(durations) if durations else None}


def streaming_kmeans(spark, files: list[str], k: int, features: int, seed: int) -> list[float]:
    import pyarrow.parquet as pq
    from pyspark.mllib.clustering import StreamingKMeansModel
    from pyspark.mllib.linalg import Vectors

    sc = spark.sparkContext
    centres = np.random.default_rng([seed, 4244]).standard_normal((k, features))
    model = StreamingKMeansModel(list(centres), [1.0] * k)
    seconds = []
    for index, path in enumerate(files, start=1):
        X = np.column_stack([column.to_numpy() for column in pq.read_table(path).columns])
        rdd = sc.parallelize([Vectors.dense(row) for row in X], 2).cache()
        rdd.count()
        started = time.perf_counter()
        model.update(rdd, 1.0, "batches")
        seconds.append(time.perf_counter() - started)
        rdd.unpersist()
        log(f"latency: StreamingKMeansModel.update {index}: {seconds[-1]:.3f} s")
    return seconds


def latency(args: argparse.Namespace) -> dict:
    from sparkgmm.spark.estimator import GaussianMixture
    from sparkgmm.spark.session import local_session

    spark = local_session("local[2]", "online-benchmark", **{"spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    root = Path(tempfile.mkdtemp(prefix="online-benchmark-"))
    try:
        mixture = truth(args.features, args.components, args.seed)
        log(f"latency: writing {args.batches} files of {size_label(args.rows)} rows under {root}")
        first = write_files(root / "first", mixture, 1, args.rows, args.seed)[0]
        following = write_files(root / "stream", mixture, args.batches - 1, args.rows, args.seed + 1)
        cols = [f"f{j}" for j in range(args.features)]
        log("latency: fitting the first batch on Spark")
        model, update_error = guarded("the fit on the first batch", lambda: GaussianMixture(
            k=args.components, inputCols=cols, seed=args.seed, engine=args.engine).fit(spark.read.parquet(first)))
        updates = streamed = None
        stream_error = update_error
        if model is not None:
            updates, update_error = guarded("our updates", lambda: our_updates(spark, model, following, root,
                                                                                  args.measure_after))
            log("latency: the train_on stream")
            streamed, stream_error = guarded("the train_on stream", lambda: stream_run(
                spark, model, root / "stream", args.features, root, len(following)))
        log("latency: the peer, MLlib's StreamingKMeansModel.update")
        peer, peer_error = guarded("StreamingKMeans", lambda: streaming_kmeans(
            spark, following, args.components, args.features, args.seed))
    finally:
        spark.stop()
        shutil.rmtree(root, ignore_errors=True)

    def median(key: str) -> float | None:
        values = [u[key] for u in updates or () if u[key] is not None]
        return statistics.median(values) if values else None

    summary: dict[str, Any] = {key: median(key) for key in ("total", "job", "estep", "release", "rest", "write",
                                                            "in_memory", "overhead")}
    summary["fused"] = updates is not None and all(u["fused"] for u in updates)
    summary["peer"] = None if peer is None else statistics.median(peer)
    if summary["fused"]:
        parts = [{"what": "  of which one Spark job: read, pack, E-step", "seconds": summary["job"]}]
        overhead = "overhead <= total + write (E-step not separable)"
    else:
        parts = [{"what": "  of which conversion to blocks", "seconds": summary["job"]},
                 {"what": "  of which E-step pass (StoredBlocks.run_pass)" if not args.measure_after else
                  "  of which the passes (E-step, measure after)", "seconds": summary["estep"]},
                 {"what": "  of which releasing the blocks (unpersist)", "seconds": summary["release"]}]
        overhead = "overhead = total + write - passes"
    rows = [
        {"what": "sparkgmm update: total (update_model_unless_empty)", "seconds": summary["total"]},
        *parts,
        {"what": "  of which the rest (driver: M-step, new model)", "seconds": summary["rest"]},
        {"what": "model write (write_version + write_pointer)", "seconds": summary["write"]},
        {"what": "same update in memory (partial_fit, one process)", "seconds": summary["in_memory"]},
        {"what": overhead, "seconds": summary["overhead"], "target": OVERHEAD_TARGET},
    ]
    for row in rows:
        row.update(failed=updates is None, error=update_error)
    rows.append({"what": "train_on stream: wall / micro-batches", "failed": streamed is None, "error": stream_error,
                 "seconds": None if streamed is None else streamed["per_micro_batch"]})
    rows.append({"what": "train_on stream: median trigger duration", "failed": streamed is None,
                 "error": stream_error, "seconds": None if streamed is None else streamed["median_trigger"]})
    peer_row = {"what": "peer: MLlib StreamingKMeansModel.update", "seconds": summary["peer"], "peer": True,
                "failed": False, "error": peer_error}
    rows.append(peer_row)
    for row in rows:
        row["verdict"] = verdict(row["seconds"], row["target"]) if "target" in row else "-"
        if row.get("peer") and peer is None:
            row["verdict"] = "peer failed"
    print_latency(rows, summary, args, len(following))
    return {"results": rows, "updates": updates, "stream": streamed, "peer_seconds": peer, "summary": summary}


def print_latency(rows: list[dict], summary: dict, args: argparse.Namespace, count: int) -> None:
    measured = ", measure after" if args.measure_after else ""
    print(f"\nlatency: Spark local[2], engine {args.engine}{measured}; micro-batches of {size_label(args.rows)} rows x "
          f"{args.features} features (Parquet), k={args.components}; {count} updates after the fit on the first; "
          "median seconds")
    width = max(len(r["what"]) for r in rows)
    columns = [("what".ljust(width), width, lambda r: r["what"].ljust(width)),
               ("median s", 9, lambda r: fmt(r["seconds"], ".3f", "FAILED")),
               ("target", 7, lambda r: fmt(r.get("target"), ".1f", "")),
               ("verdict", 11, lambda r: r["verdict"])]
    for line in table_lines(columns, rows, lambda r: f"{r['what'].ljust(width)} | MISS: {r['error']}"):
        print(line)
    if summary["fused"]:
        print("The update made no StoredBlocks pass: it read, packed and scored the rows in one Spark job "
              "(ModelUpdate.conversion_seconds), so its E-step cannot be timed apart; the overhead shown is total + "
              "write, an upper bound, and the verdict is on that bound.")
    total, estep, peer = summary["total"], summary["estep"], summary["peer"]
    if peer is None:
        print("StreamingKMeans failed: no ratio")
    elif total is not None:
        print(f"ours / StreamingKMeans: total {total / peer:.2f}x"
              + ("" if estep is None else f", {'passes' if args.measure_after else 'E-step pass'} {estep / peer:.2f}x")
              + f" (StreamingKMeans median {peer:.3f} s per update)")


# --- main -----------------------------------------------------------------------------------------------------------

SECTIONS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "stationary": stationary, "drifting": drifting, "latency": latency}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    sections = parser.add_subparsers(dest="section", required=True)
    common = ArgumentParser(add_help=False)
    common.add_argument("--features", type=int, default=16)
    common.add_argument("--components", type=int, default=8)
    common.add_argument("--seed", type=int, default=0)
    common.add_argument("--json")
    one = sections.add_parser("stationary", parents=[common])
    one.add_argument("--rows", default="10M")
    one.add_argument("--batches", type=int, default=100)
    two = sections.add_parser("drifting", parents=[common])
    two.add_argument("--batches", type=int, default=60)
    two.add_argument("--batch-rows", default="50k")
    two.add_argument("--speed", type=float, default=0.1)
    two.add_argument("--half-life", type=float, default=10.0)
    two.add_argument("--window", type=int, default=10)
    two.add_argument("--plot")
    three = sections.add_parser("latency", parents=[common])
    three.add_argument("--rows", default="100k")
    three.add_argument("--batches", type=int, default=12)
    three.add_argument("--engine", choices=("auto", "rdd", "dataframe"), default="auto",
                       help="the model's engine Param")
    three.add_argument("--measure-after", action="store_true",
                       help="updates that also measure the new model on the rows, as the update job's do (through "
                            "stored blocks)")
    args = parser.parse_args(argv)
    for name in ("rows", "batch_rows"):
        if isinstance(getattr(args, name, None), str):
            setattr(args, name, parse_count(getattr(args, name), "--" + name.replace("_", "-")))
    if args.features < 1 or args.components < 1 or args.batches < 2:
        raise UsageError("--features and --components must be >= 1, --batches >= 2")
    if args.section == "drifting" and (args.window < 1 or args.half_life <= 0 or args.speed < 0):
        raise UsageError("--window must be >= 1, --half-life > 0, --speed >= 0")
    if args.section == "stationary" and args.rows // args.batches < 20 * args.components:
        raise UsageError("--rows / --batches must hold at least 20 rows per component")
    if args.json:
        check_json_path(args.json)
    return args


def failed_ours(document: dict) -> bool:
    rows = list(document["results"])
    if "summary" in document and "verdict" in document["summary"]:
        rows.append(document["summary"])
    return any((r.get("failed") and not r.get("peer")) or r.get("verdict") == "MISS" for r in rows)


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"machine": machine()}), flush=True)
    load = {"start": os.getloadavg()}
    document = SECTIONS[args.section](args)
    load["end"] = os.getloadavg()
    print("load average (1, 5, 15 min) at the start " + ", ".join(f"{v:.2f}" for v in load["start"]) + "; at the end "
          + ", ".join(f"{v:.2f}" for v in load["end"]) + f" ({machine()['cpus']} CPUs)")
    if args.json:
        settings = {key: value for key, value in vars(args).items() if key != "json"}
        write_json(args.json, {"section": args.section, "settings": settings, "machine": machine(), "load": load,
                               **document}, log)
    return 1 if failed_ours(document) else 0


if __name__ == "__main__":
    sys.exit(main())
