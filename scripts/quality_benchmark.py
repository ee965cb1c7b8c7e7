"""Quality of the optimum and time to reach it: sparkgmm (plain EM and SQUAREM) against scikit-learn's and Spark
MLlib's GaussianMixture, in one process and one local[2] Spark session.

    .venv/bin/python scripts/quality_benchmark.py [--sections quality,acceleration,selection,restarts,time]
                                                  [--quick] [--seed 1]

Data: synthetic mixtures with known labels (separated, overlapping, elongated, unequal; 30k rows, d 3-6, k 3-6) and
scikit-learn's iris (k=3), wine (k=3) and breast_cancer (k=2), standardised per column. Every set is written to
Parquet with pyarrow, read back as an MLlib Vector column, repartitioned to one partition per core and cached; that
one DataFrame feeds both Spark engines. Each Spark engine first runs one unmeasured warm-up fit. Full covariance.

1. quality: sparkgmm plain and squarem (the library's default start, initMode="sample", nInit=1, tol=1e-8,
   maxIter=2000), scikit-learn (its default k-means init, n_init=1, tol=1e-8, max_iter=2000), MLlib with its
   defaults (k set) and MLlib at sparkgmm's budget (maxIter=2000, tol=1e-8 x n on its total log-likelihood, i.e.
   1e-8 per row, as sparkgmm's rule). Every returned model is scored
   in memory with ``Mixture.score`` (mean per-row log-likelihood: one yardstick; MLlib's covariances get 1e-6 on the
   diagonal, marked "+reg", only when not positive definite). ARI: adjusted Rand index of the hard assignments
   against the true labels. passes: sparkgmm's numPasses (conversion + init + E-steps + final pass); scikit-learn's
   and MLlib's iterations. Target: sparkgmm's ll >= scikit-learn's - 1e-3 and >= both MLlib fits' (- 1e-9 for
   rounding). A fit of ours that fails is a MISS; a peer that fails is reported, and the check against it is then
   missed too (a failed peer is never a pass).
2. acceleration: from the two sparkgmm fits of 1. target = min(plain final ll, squarem final ll) - 1e-6; t = the
   first index of logLikelihoodHistory at or above it; passes to target = numPasses - (numIter - t) - 1, that is
   conversion + init passes + t E-steps. For SQUAREM that count includes every rejected extrapolation of the fit,
   also those after t (an upper bound; "rej" shows how many). A set is "slow" when plain EM runs > 100 iterations.
   Targets: plain/squarem >= 2 on slow sets; squarem <= 1.1 x plain passes on fast sets.
3. selection: ``select_model`` over k = 2..8 (full, BIC, maxIter=300, tol=1e-6, the library's default
   acceleration) on each synthetic set; chosen k against the true k.
4. restarts, at 1M x 8 x 8 (8 separated components): wall time of fit with nInit=4 and nInit=1, plain EM,
   maxIter=20, tol=0. Target: ratio <= 2.
5. time, at 1M x 8 x 8, separated and overlapping, one cached DataFrame per set for both Spark engines. Long runs:
   sparkgmm squarem (tol=1e-8, maxIter=2000), sparkgmm plain (tol=1e-8, maxIter=1000), MLlib (maxIter=200,
   tol=1e-8 x n on its total log-likelihood, i.e. 1e-8 per row). best = the highest in-memory score of the three;
   target = best - 1e-4. Seconds to target = wall time of the whole fit (conversion/initialisation included) with
   maxIter = the first power of two whose fit reaches the target (the doubling protocol, same seed, so fits are
   prefixes of each other). MLlib: fits with maxIter = 1, 2, 4, ... (same tol as its long run; a power of two at or
   above the long run's numIter is the long run itself), each scored in memory; skipped ("never") if even the long
   run misses. sparkgmm squarem: the same search, started at the power of two that the long run's history predicts
   and checked one step below. sparkgmm plain, without extra fits: plain EM with tol=0 is an exact prefix of the long
   run, so a fit with maxIter=m costs the long run's wall time minus its iterations after m (iterationSeconds);
   m = the first power of two at or above the first history index reaching the target. Target: MLlib seconds /
   sparkgmm seconds >= 5 (met trivially, and said so, when MLlib never reaches the target).

--quick: 3k-row synthetic sets, lower caps, k = 2..5 in selection, and the 1M sections at 100k rows.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
import time
import warnings
from collections import namedtuple
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyspark.ml.clustering import GaussianMixture as MLlibGaussianMixture
from sklearn import datasets
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from benchmark import cached_frame

from sparkgmm import CovarianceError, GaussianMixture, Mixture
from sparkgmm.spark.session import local_session

SECTIONS = ("quality", "acceleration", "selection", "restarts", "time")
SYNTHETIC = ("separated", "overlapping", "elongated", "unequal")
REAL = {"iris": (datasets.load_iris, 3), "wine": (datasets.load_wine, 3),
        "breast_cancer": (datasets.load_breast_cancer, 2)}
ENGINES = ("sparkgmm", "squarem", "sklearn", "MLlib", "MLlib budget")
OURS = ("sparkgmm", "squarem")
PEERS = ("sklearn", "MLlib", "MLlib budget")
CHECKS: list[tuple[str, str, bool, str]] = []  # (section, what, met, detail), for the footer


# rows of the small synthetic sets, EM cap (sparkgmm and scikit-learn), k range of select_model, rows at "1M", and
# the long runs' maxIter of sparkgmm plain EM and MLlib in section 5
Settings = namedtuple("Settings", "n max_iter select_k big_n plain_cap mllib_cap")
FULL = Settings(30_000, 2000, (2, 3, 4, 5, 6, 7, 8), 1_000_000, 1000, 200)
QUICK = Settings(3_000, 500, (2, 3, 4, 5), 100_000, 150, 40)


@dataclass
class Fit:
    engine: str
    ll: float = math.nan
    ari: float = math.nan
    passes: int = 0
    iters: int = 0
    seconds: float = math.nan
    note: str = ""
    summary: Any = None  # sparkgmm's
    error: str = ""


def check(section: str, what: str, ok: bool, detail: str) -> str:
    CHECKS.append((section, what, ok, detail))
    return "" if ok else "MISS"


def spaced_means(rng: np.random.Generator, k: int, d: int, gap: float) -> np.ndarray:
    """k means drawn N(0, gap^2) until every pair is at least ``gap`` apart."""
    while True:
        means = rng.normal(0.0, gap, (k, d))
        if (np.linalg.norm(means[:, None] - means[None], axis=2) + np.eye(k) * gap).min() >= gap:
            return means


def random_covariances(rng: np.random.Generator, k: int, d: int, floor: float) -> np.ndarray:
    a = rng.normal(0.0, 0.3, (k, d, d))
    return a @ a.transpose(0, 2, 1) + floor * np.eye(d)


def truth(name: str, seed: int) -> Mixture:
    rng = np.random.default_rng(seed)
    if name == "separated":  # every pair of means >= 10 apart, unit-scale covariances
        return Mixture(np.full(4, 0.25), spaced_means(rng, 4, 3, 10.0), random_covariances(rng, 4, 3, 1.0))
    if name == "overlapping":  # means within ~1 sd of each other: plain EM crawls (hundreds of iterations)
        return Mixture(rng.dirichlet(np.full(6, 5.0)), rng.normal(0.0, 0.8, (6, 4)), random_covariances(rng, 6, 4, 0.3))
    if name == "elongated":  # variances 25 ... 0.04 along random axes (condition number 625)
        rotations = [np.linalg.qr(rng.standard_normal((6, 6)))[0] for _ in range(3)]
        covs = np.stack([(q * np.geomspace(25.0, 0.04, 6)) @ q.T for q in rotations])
        return Mixture(np.full(3, 1 / 3), rng.normal(0.0, 1.0, (3, 6)), covs)
    if name == "unequal":
        return Mixture(np.array([0.6, 0.25, 0.1, 0.05]), spaced_means(rng, 4, 3, 4.0),
                       np.stack([np.eye(3) * s for s in (2.0, 1.0, 0.5, 0.3)]))
    if name == "separated-8":
        return Mixture(rng.dirichlet(np.full(8, 5.0)), spaced_means(rng, 8, 8, 10.0),
                       random_covariances(rng, 8, 8, 1.0))
    if name == "overlapping-8":  # ~300 plain EM iterations to tol 1e-8
        return Mixture(rng.dirichlet(np.full(8, 5.0)), rng.normal(0.0, 0.7, (8, 8)), random_covariances(rng, 8, 8, 1.0))
    raise ValueError(name)


def load_set(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    if name in REAL:
        loader, k = REAL[name]
        X, y = loader(return_X_y=True)
        return (X - X.mean(axis=0)) / X.std(axis=0), y, k
    mixture = truth(name, seed)
    X, y = mixture.sample(n, seed=seed + 1)
    return X, y, mixture.n_components


def timed(fit):
    started = time.perf_counter()
    return fit(), time.perf_counter() - started


def scored(fit: Fit, mixture: Mixture, X: np.ndarray, y: np.ndarray) -> Fit:
    fit.ll = mixture.score(X)
    fit.ari = adjusted_rand_score(y, mixture.predict(X))
    return fit


def run_sparkgmm(df, X, y, k, acceleration, seed, max_iter, tol=1e-8) -> Fit:
    est = GaussianMixture(k=k, covarianceType="full", maxIter=max_iter, tol=tol, seed=seed, nInit=1,
                          acceleration=acceleration)
    model, seconds = timed(lambda: est.fit(df))
    s = model.summary
    fit = Fit("squarem" if acceleration == "squarem" else "sparkgmm", passes=s.numPasses, iters=s.numIter,
              seconds=seconds, summary=s, note="" if s.converged or tol == 0 else "not converged")
    return scored(fit, model.mixture, X, y)


def run_sklearn(X, y, k, seed, max_iter, tol=1e-8) -> Fit:
    est = SkGaussianMixture(k, covariance_type="full", tol=tol, max_iter=max_iter, n_init=1, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model, seconds = timed(lambda: est.fit(X))
    fit = Fit("sklearn", passes=model.n_iter_, iters=model.n_iter_, seconds=seconds,
              note="" if model.converged_ else "not converged")
    return scored(fit, Mixture(model.weights_, model.means_, model.covariances_, "full"), X, y)


def run_mllib(df, X, y, k, seed, **params) -> Fit:
    model, seconds = timed(lambda: MLlibGaussianMixture(k=k, seed=seed, **params).fit(df))
    weights = np.array(model.weights)
    means = np.array([g.mean.toArray() for g in model.gaussians])
    covs = np.array([g.cov.toArray() for g in model.gaussians])
    try:
        mixture, note = Mixture(weights, means, covs, "full"), ""
    except CovarianceError:
        mixture, note = Mixture(weights, means, covs + 1e-6 * np.eye(means.shape[1]), "full"), "+reg"
    n_iter = model.summary.numIter
    return scored(Fit("MLlib", passes=n_iter, iters=n_iter, seconds=seconds, note=note), mixture, X, y)


def guarded(engine: str, run) -> Fit:
    try:
        return run()
    except Exception as e:  # report and carry on: one engine failing on one set must not end the benchmark
        return Fit(engine, error=f"{type(e).__name__}: {str(e).splitlines()[0][:100]}")


def table(headers: list[str], rows: list[list]) -> None:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells if i < len(r)]) for i, h in enumerate(headers)]
    line = " | ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    print(line + "\n" + "-" * len(line))
    for r in cells:
        print(" | ".join(c.rjust(w) for c, w in zip(r, widths, strict=False)))


def fmt(value) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.6f}"
    return "" if value is None else str(value)


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def quality_sets(spark, args, cfg, tmp: str) -> None:
    want = set(args.sections)
    fits: dict[str, dict[str, Fit]] = {}
    selections: dict[str, Any] = {}
    names = (*SYNTHETIC, *REAL) if want & {"quality", "acceleration"} else SYNTHETIC
    for i, name in enumerate(names):
        X, y, k = load_set(name, cfg.n, args.seed)
        df = cached_frame(spark, X, f"{tmp}/{name}.parquet")
        if i == 0:  # unmeasured: Python workers start, the JVM compiles its hot paths
            GaussianMixture(k=k, maxIter=10, tol=0.0, seed=args.seed).fit(df)
            MLlibGaussianMixture(k=k, maxIter=10, seed=args.seed).fit(df)
        started, row = time.perf_counter(), fits.setdefault(name, {})
        if want & {"quality", "acceleration"}:
            for engine, acceleration in (("sparkgmm", "none"), ("squarem", "squarem")):
                row[engine] = guarded(engine, lambda: run_sparkgmm(df, X, y, k, acceleration, args.seed, cfg.max_iter))
        if "quality" in want:
            row["sklearn"] = guarded("sklearn", lambda: run_sklearn(X, y, k, args.seed, cfg.max_iter))
            row["MLlib"] = guarded("MLlib", lambda: run_mllib(df, X, y, k, args.seed))
            row["MLlib budget"] = guarded("MLlib budget", lambda: run_mllib(
                df, X, y, k, args.seed, maxIter=cfg.max_iter, tol=1e-8 * X.shape[0]))
        if "selection" in want and name in SYNTHETIC:
            selections[name] = (k, guarded("select_model", lambda: run_selection(df, cfg, args.seed)))
        df.unpersist()
        print(f"  done {name}: {X.shape[0]} x {X.shape[1]}, k={k}, {time.perf_counter() - started:.0f} s", flush=True)
    if "quality" in want:
        print_quality(fits)
    if "acceleration" in want:
        print_acceleration(fits)
    if "selection" in want:
        print_selection(selections, cfg)


def print_quality(fits) -> None:
    section("1. Quality: mean log-likelihood scored in memory, ARI against the true labels")
    rows = []
    for name, row in fits.items():
        failed_peers = [peer for peer in PEERS if row[peer].error or math.isnan(row[peer].ll)]
        best_mllib = max(row["MLlib"].ll, row["MLlib budget"].ll)  # NaN only when both failed
        for engine in ENGINES:
            f = row[engine]
            if f.error:
                mark = ""
                if engine in OURS:
                    mark = check("quality", f"{name} {engine}", False, f"our fit failed: {f.error}")
                rows.append([name, engine, f.error, "", "", "", "", "", "", mark or "peer failed"])
                continue
            vs_sk = vs_ml = mark = ""
            if engine in OURS:
                vs_sk, vs_ml = f"{f.ll - row['sklearn'].ll:+.2e}", f"{f.ll - best_mllib:+.2e}"
                ok = (not failed_peers and f.ll >= row["sklearn"].ll - 1e-3 and f.ll >= best_mllib - 1e-9)
                detail = f"vs sklearn {vs_sk}, vs the better MLlib {vs_ml}"
                if failed_peers:
                    detail += f"; cannot compare: {', '.join(failed_peers)} failed"
                mark = check("quality", f"{name} {engine}", ok, detail)
            rows.append([name, engine, f.ll, f"{f.ari:.4f}", f.passes, f.iters, f"{f.seconds:.2f}", vs_sk, vs_ml,
                         " ".join(filter(None, [mark, f.note]))])
    table(["set", "engine", "mean ll", "ARI", "passes", "iters", "seconds", "vs sklearn", "vs MLlib", "mark"], rows)
    print("target: sparkgmm ll >= sklearn ll - 1e-3 and >= the better MLlib ll (- 1e-9 for rounding); MLlib at its "
          "defaults (maxIter=100, tol=0.01 on the total ll) and at our budget (maxIter as ours, tol 1e-8 x n on the "
          "total ll); a failed fit, ours or a peer's, misses")


def passes_to(summary, target: float) -> tuple[int, int]:
    t = next(i for i, v in enumerate(summary.logLikelihoodHistory) if v >= target)  # the last entry is the final ll
    return t, summary.numPasses - (summary.numIter - t) - 1


def print_acceleration(fits) -> None:
    section("2. Acceleration: passes to the same log-likelihood, plain EM vs SQUAREM")
    rows = []
    for name, row in fits.items():
        plain, sq = row["sparkgmm"], row["squarem"]
        if plain.error or sq.error:
            mark = check("acceleration", name, False, f"our fit failed: {plain.error or sq.error}")
            rows.append([name, "fit failed", "", "", "", "", "", "", "", "", "", mark])
            continue
        target = min(plain.summary.logLikelihood, sq.summary.logLikelihood) - 1e-6
        (tp, pp), (ts, ps) = passes_to(plain.summary, target), passes_to(sq.summary, target)
        slow, ratio = plain.iters > 100, pp / ps
        ok, goal = (ratio >= 2.0, "ratio >= 2") if slow else (ps <= 1.1 * pp, "squarem <= 1.1 x plain")
        mark = check("acceleration", f"{name} ({'slow' if slow else 'fast'})", ok, f"ratio {ratio:.2f}, {goal}")
        rows.append([name, "slow" if slow else "fast", target, plain.iters, tp, pp, sq.iters, ts, ps,
                     sq.summary.numRejectedSteps, f"{ratio:.2f}",
                     " ".join(filter(None, [mark, plain.note and f"plain {plain.note}", sq.note and f"sq {sq.note}"]))])
    table(["set", "kind", "target ll", "plain iters", "plain t", "plain passes", "sq iters", "sq t", "sq passes",
           "rej", "plain/sq", "mark"], rows)
    print("passes to target = numPasses - (numIter - t) - 1 (conversion + init + t E-steps; SQUAREM: + all rejected "
          "steps); slow = plain EM > 100 iterations")


def run_selection(df, cfg, seed: int):
    from sparkgmm import select_model

    return timed(lambda: select_model(df, k=list(cfg.select_k), covarianceTypes=["full"], criterion="bic",
                                      seed=seed, maxIter=300, tol=1e-6))


def print_selection(selections, cfg) -> None:
    section("3. Model selection: BIC over k (full covariance, shared passes, maxIter=300, tol=1e-6, acceleration "
            f"{GaussianMixture().getAcceleration()!r}: the library's default)")
    rows = []
    for name, (true_k, outcome) in selections.items():
        if isinstance(outcome, Fit):
            mark = check("selection", name, False, f"select_model failed: {outcome.error}")
            rows.append([name, true_k, outcome.error, *([""] * len(cfg.select_k)), "", mark])
            continue
        sel, seconds = outcome
        chosen = sel.bestModel.mixture.n_components
        bic = {c["k"]: c["bic"] for c in sel.candidates}
        mark = check("selection", name, chosen == true_k, f"chose k={chosen}, true k={true_k}")
        rows.append([name, true_k, chosen, *(f"{bic.get(k, math.nan):.1f}" for k in cfg.select_k), f"{seconds:.1f}",
                     mark])
    table(["set", "true k", "chosen k", *(f"BIC k={k}" for k in cfg.select_k), "seconds", "mark"], rows)


def restarts(df, k: int, seed: int) -> None:
    section(f"4. Restarts side by side: fit wall time, nInit=4 vs nInit=1 (plain EM, maxIter=20, tol=0), k={k}")
    seconds = {}
    for n_init in (1, 4):
        est = GaussianMixture(k=k, maxIter=20, tol=0.0, seed=seed, nInit=n_init, acceleration="none")
        model, seconds[n_init] = timed(lambda: est.fit(df))
        s = model.summary
        lls = ", ".join(f"{r['logLikelihood']:.6f}" for r in s.restarts)
        print(f"  nInit={n_init}: {seconds[n_init]:.2f} s, {s.numPasses} passes, restart lls {lls}, "
              f"best restart {s.bestRestart}")
    ratio = seconds[4] / seconds[1]
    print(f"  ratio nInit=4 / nInit=1: {ratio:.2f} (target <= 2) "
          + check("restarts", "nInit=4 / nInit=1", ratio <= 2.0, f"ratio {ratio:.2f}"))


def doubling(fit_at, target: float, start: int, cap: int) -> tuple | None:
    """(seconds, maxIter, ll) of the fit with the smallest maxIter = 2**j, j <= cap, reaching ``target``, or None.
    Reaching is monotone in j (prefixes of one EM run): the search starts at j = ``start``, going down while the
    step below still reaches, else up."""
    tried: dict[int, Fit] = {}

    def reaches(j: int) -> bool:
        if j not in tried:
            tried[j] = fit_at(2**j)
        return tried[j].ll >= target

    j = start
    if reaches(j):
        while j > 0 and reaches(j - 1):
            j -= 1
    else:
        while j < cap and not reaches(j):
            j += 1
        if not reaches(j):
            return None
    return tried[j].seconds, 2**j, tried[j].ll


def first_at(history, target: float) -> int | None:
    return next((i for i, v in enumerate(history) if v >= target), None)


def time_to_quality(name, X, y, df, k, seed, cfg) -> list:
    sq = run_sparkgmm(df, X, y, k, "squarem", seed, 2000)
    plain = run_sparkgmm(df, X, y, k, "none", seed, cfg.plain_cap)
    ml_tol = 1e-8 * X.shape[0]
    ml_long = run_mllib(df, X, y, k, seed, maxIter=cfg.mllib_cap, tol=ml_tol)
    lls = {"sparkgmm": plain.ll, "squarem": sq.ll, "MLlib": ml_long.ll}
    leader = max(lls, key=lambda engine: lls[engine])
    target = lls[leader] - 1e-4
    found: dict[str, tuple | None] = {}  # engine -> (seconds, maxIter, ll) of the fit that reaches the target

    t = first_at(plain.summary.logLikelihoodHistory, target)
    if t is not None:  # plain EM: the fit with maxIter=m is the long run without its iterations after m
        m = min(2 ** math.ceil(math.log2(max(t, 1))), plain.iters)
        found["sparkgmm"] = (plain.seconds - sum(plain.summary.iterationSeconds[m:]), m,
                             plain.summary.logLikelihoodHistory[m])
    t = first_at(sq.summary.logLikelihoodHistory, target)
    if t is not None:
        found["squarem"] = doubling(lambda m: run_sparkgmm(df, X, y, k, "squarem", seed, m, tol=0.0), target,
                                    math.ceil(math.log2(max(t, 1))), 11)
    if ml_long.ll >= target:
        found["MLlib"] = doubling(lambda m: ml_long if m >= ml_long.iters else
                                  run_mllib(df, X, y, k, seed, maxIter=m, tol=ml_tol), target, 0,
                                  math.ceil(math.log2(cfg.mllib_cap)))
        if found["MLlib"] and found["MLlib"][1] > ml_long.iters:  # that fit was the long run: say its maxIter
            found["MLlib"] = (found["MLlib"][0], cfg.mllib_cap, found["MLlib"][2])
    rows = []
    ml_hit = found.get("MLlib")
    for engine, long_fit in (("sparkgmm", plain), ("squarem", sq), ("MLlib", ml_long)):
        hit, ratio, mark = found.get(engine), "", ""
        if engine != "MLlib":
            what = f"{name} MLlib/{engine}"
            if hit and ml_hit:
                ratio = f"{ml_hit[0] / hit[0]:.2f}"
                mark = check("time", what, ml_hit[0] / hit[0] >= 5.0, f"ratio {ratio}")
            elif hit:
                ratio, mark = "MLlib never", check("time", what, True, f"MLlib never (its best {ml_long.ll:.6f})")
            else:
                mark = check("time", what, False, f"sparkgmm never (its best {long_fit.ll:.6f})")
        seconds, max_iter, ll_there = hit if hit else ("never", "", long_fit.ll)
        rows.append([name, engine, long_fit.ll, f"{long_fit.ari:.4f}", long_fit.iters, f"{long_fit.seconds:.1f}",
                     seconds if isinstance(seconds, str) else f"{seconds:.1f}", max_iter, ll_there, ratio,
                     " ".join(filter(None, [mark, long_fit.note]))])
    print(f"  {name}: best {lls[leader]:.6f} ({leader}), target {target:.6f}", flush=True)
    return rows


def big_sections(spark, args, cfg, tmp: str) -> None:
    rows: list[list] = []  # table rows, from time_to_quality
    for name in ("separated-8", "overlapping-8"):
        X, y = truth(name, args.seed).sample(cfg.big_n, seed=args.seed + 1)
        df = cached_frame(spark, X, f"{tmp}/{name}.parquet")
        if name == "separated-8":  # warm-up at this size, unmeasured
            GaussianMixture(k=8, maxIter=2, tol=0.0, seed=args.seed).fit(df)
            MLlibGaussianMixture(k=8, maxIter=2, seed=args.seed).fit(df)
            if "restarts" in args.sections:
                restarts(df, 8, args.seed)
        if "time" in args.sections:
            if not rows:
                section(f"5. Time to quality at {cfg.big_n} x 8 x 8 (running)")
            rows += time_to_quality(name, X, y, df, 8, args.seed, cfg)
        df.unpersist()
    if rows:
        section(f"5. Time to quality at {cfg.big_n} x 8 x 8: seconds to reach best - 1e-4, initialisation included")
        table(["set", "engine", "long-run ll", "ARI", "long iters", "long s", "s to target", "maxIter", "ll there",
               "MLlib/this", "mark"], rows)
        print(f"long runs: sparkgmm plain tol 1e-8 maxIter {cfg.plain_cap}, squarem tol 1e-8 maxIter 2000, MLlib "
              f"maxIter {cfg.mllib_cap} tol 1e-8 x n; target MLlib/sparkgmm >= 5")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help="comma-separated subset of " + ",".join(SECTIONS))
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if set(args.sections) - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(set(args.sections) - set(SECTIONS)))}")
    cfg = QUICK if args.quick else FULL
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("sparkgmm").setLevel(logging.WARNING)

    spark = local_session("local[2]", "sparkgmm-quality", **{"spark.ui.enabled": "false", "spark.driver.memory": "6g"})
    spark.sparkContext.setLogLevel("WARN")
    started = time.perf_counter()
    print(f"sparkgmm quality benchmark, seed {args.seed}{', quick' if args.quick else ''}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other processes skew the seconds)", flush=True)
    with tempfile.TemporaryDirectory(prefix="sparkgmm-quality-") as tmp:
        if set(args.sections) & {"quality", "acceleration", "selection"}:
            quality_sets(spark, args, cfg, tmp)
        if set(args.sections) & {"restarts", "time"}:
            big_sections(spark, args, cfg, tmp)
    spark.stop()

    met = sum(ok for _, _, ok, _ in CHECKS)
    section(f"Targets: {met} met, {len(CHECKS) - met} missed ({time.perf_counter() - started:.0f} s in all; load "
            f"average now {os.getloadavg()[0]:.1f})")
    for sec, what, ok, detail in CHECKS:
        print(f"  {'met   ' if ok else 'MISSED'} {sec:<12} {what:<28} {detail}")


if __name__ == "__main__":
    main()
