"""The Bayesian mixture (``sparkgmm.BayesianGaussianMixture``): how often it finds the true number of components, and
what an iteration costs against an EM iteration, in one local[2] session.

    .venv/bin/python scripts/bayesian_benchmark.py recovery [--rows 1M] [--seeds 12] [--k 20] [--features 8]
                                                           [--sklearn-rows 0] [--merge-every 10]
    .venv/bin/python scripts/bayesian_benchmark.py cost [--sizes 1000000:16:8,10000000:16:8] [--iters 8]

recovery, per seed s = 0 .. seeds-1: a mixture of 3 + (s mod 6) full-covariance components in --features dimensions
(covariances with random axes and variances in [0.5, 2], weights ~ Dirichlet(5)), its means drawn N(0, 4^2) for even
seeds and N(0, 2.5^2) for odd ones (overlapping clusters); --rows rows written to Parquet; a BayesianGaussianMixture
with k = --k and every other setting at its default (Dirichlet-process prior, the sample search, merge moves every 10
iterations (--merge-every; 0: none, in the sample search too), maxIter 100, tol 1e-3 on the total lower bound) fitted
with seed s. A seed counts as found when summary.effectiveComponents (weight > 0.01) equals the true count. With
--sklearn-rows N > 0, scikit-learn's BayesianGaussianMixture (same k, its defaults: k-means start, max_iter 100) runs
on the first N rows of each seed in memory in this process, for the same count (the table says on how many rows).

cost, per size n x d x k: rows from scripts/parquet_data.py's fixed 8-component mixture; GaussianMixture (EM,
acceleration none), BayesianGaussianMixture without merge moves (mergeEvery 0) and with a merge check at every
iteration (mergeEvery 1: what a merge check's iteration costs) each fit --iters iterations (tol 0) from the same
initial mixture, in turn, twice, after one unmeasured warm-up fit; the statistic is the median of the fits' own
per-iteration seconds (pass and M-step). The default (a merge check every 10th iteration) costs their weighted mean.
The ratios are over EM's median: the issue's target is <= 1.15.

Results print as tables; --json FILE also writes them. Exit code 1 when one of our fits failed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchtools import ArgumentParser, UsageError, machine, parse_count, size_label, write_json
from parquet_data import ensure_dataset

from sparkgmm import BayesianGaussianMixture, GaussianMixture, Mixture
from sparkgmm.bayesian import DEFAULT_MERGE_EVERY
from sparkgmm.spark.session import local_session


def truth_of(seed: int, features: int) -> Mixture:
    rng = np.random.default_rng(1000 + seed)
    k = 3 + seed % 6
    spread = 4.0 if seed % 2 == 0 else 2.5
    means = rng.normal(0.0, spread, (k, features))
    covariances = []
    for _ in range(k):
        axes, _ = np.linalg.qr(rng.normal(size=(features, features)))
        covariances.append((axes * rng.uniform(0.5, 2.0, features)) @ axes.T)
    return Mixture(rng.dirichlet(np.full(k, 5.0)), means, np.stack(covariances))


def write_rows(directory: Path, X: np.ndarray, files: int = 4) -> str:
    directory.mkdir(parents=True)
    for i, rows in enumerate(np.array_split(np.arange(X.shape[0]), files)):
        pq.write_table(pa.table({f"f{j}": X[rows, j] for j in range(X.shape[1])}), directory / f"part-{i}.parquet")
    return str(directory)


def recovery(spark, args) -> list[dict]:
    results = []
    for seed in range(args.seeds):
        truth = truth_of(seed, args.features)
        X, _ = truth.sample(args.rows, seed=seed)
        X = X[np.random.default_rng(seed).permutation(args.rows)]
        row: dict[str, Any] = {"seed": seed, "true_k": truth.n_components, "failed": False}
        with tempfile.TemporaryDirectory() as tmp:
            df = spark.read.parquet(write_rows(Path(tmp) / "rows", X))
            started = time.perf_counter()
            try:
                model = BayesianGaussianMixture(k=args.k, seed=seed, mergeEvery=args.merge_every,
                                                inputCols=[f"f{j}" for j in range(args.features)]).fit(df)
                s = model.summary
                row.update(found=s.effectiveComponents, iterations=s.numIter, converged=s.converged,
                           merges=s.numMerges, seconds=time.perf_counter() - started,
                           search_seconds=s.sampleSearchSeconds)
            except Exception:
                traceback.print_exc()
                row.update(failed=True, found=None)
        if args.sklearn_rows:
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.mixture import BayesianGaussianMixture as SkBayesian

            started = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                try:
                    theirs = SkBayesian(n_components=args.k, random_state=seed).fit(X[:args.sklearn_rows])
                    row.update(sklearn_found=int(np.count_nonzero(theirs.weights_ > 0.01)),
                               sklearn_iterations=theirs.n_iter_, sklearn_seconds=time.perf_counter() - started)
                except Exception as error:  # a peer's failure is reported, never counted as ours
                    row.update(sklearn_found=None, sklearn_error=f"{type(error).__name__}: {error}")
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def print_recovery(results: list[dict], args) -> None:
    print(f"\nrecovery: {size_label(args.rows)} rows x {args.features} features, k={args.k}, mergeEvery="
          f"{args.merge_every}, {len(results)} seeds (true k 3..8)")
    head = f"{'seed':>4} {'true k':>6} {'found':>6} {'iters':>6} {'merges':>6} {'conv':>5} {'seconds':>8}"
    if args.sklearn_rows:
        head += f" | {'sklearn found':>13} {'its iters':>9} {'its s':>7}"
    print(head)
    for r in results:
        line = (f"{r['seed']:>4} {r['true_k']:>6} {('MISS' if r['failed'] else r['found']):>6} "
                f"{r.get('iterations', '-'):>6} {r.get('merges', '-'):>6} {r.get('converged', '-')!s:>5} "
                f"{r.get('seconds', float('nan')):>8.1f}")
        if args.sklearn_rows:
            line += (f" | {r.get('sklearn_found', 'failed')!s:>13} {r.get('sklearn_iterations', '-'):>9} "
                     f"{r.get('sklearn_seconds', float('nan')):>7.1f}")
        print(line)
    ours = sum(1 for r in results if not r["failed"] and r["found"] == r["true_k"])
    print(f"sparkgmm found the true k in {ours}/{len(results)} seeds ({100.0 * ours / len(results):.0f}%; target "
          f">= 90%); median seconds per fit {statistics.median(r['seconds'] for r in results if not r['failed']):.1f}")
    if args.sklearn_rows:
        theirs = sum(1 for r in results if r.get("sklearn_found") == r["true_k"])
        print(f"scikit-learn (defaults, on {size_label(args.sklearn_rows)} rows) found it in {theirs}/{len(results)}")


# Fits per engine and size in the cost section.
ROUNDS = 2


def cost(spark, args) -> list[dict]:
    results = []
    root = tempfile.mkdtemp(prefix="bayesian-benchmark-")
    for n, d, k in args.sizes:
        path = ensure_dataset(root, n, d, 8)
        cols = [f"f{j}" for j in range(d)]
        df = spark.read.parquet(str(path))
        first = np.array(df.select(*cols).limit(max(k, 1000)).toPandas(), dtype=np.float64)
        start = Mixture(np.full(k, 1.0 / k), first[:k], np.stack([np.cov(first.T)] * k))
        row: dict[str, Any] = {"rows": n, "features": d, "k": k, "failed": False}
        engines = {
            "em": lambda **kw: GaussianMixture(acceleration="none", maxReseeds=0, **kw),
            "bayes": lambda **kw: BayesianGaussianMixture(mergeEvery=0, **kw),
            "merge_check": lambda **kw: BayesianGaussianMixture(mergeEvery=1, **kw),
        }
        common = dict(k=k, inputCols=cols, initialModel=start, tol=0.0)
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        try:
            GaussianMixture(maxIter=2, **common).fit(df)  # warm-up: worker start, JVM compilation
            for _ in range(ROUNDS):  # engines in turn, twice: drifts of the machine fall on each alike
                for name, make in engines.items():
                    model = make(maxIter=args.iters, **common).fit(df)
                    seconds[name] += model.summary.iterationSeconds
        except Exception:
            traceback.print_exc()
            row["failed"] = True
        for name in engines:
            row[name] = statistics.median(seconds[name]) if seconds[name] and not row["failed"] else None
        results.append(row)
        print(json.dumps(row), flush=True)
    return results


def print_cost(results: list[dict], args) -> None:
    print(f"\ncost per iteration (median of {ROUNDS * args.iters}, seconds), full covariance; 'default' is the "
          f"mean over {DEFAULT_MERGE_EVERY} iterations at mergeEvery={DEFAULT_MERGE_EVERY}: one merge check and "
          f"{DEFAULT_MERGE_EVERY - 1} plain ones")
    print(f"{'size':>16} {'EM':>8} {'Bayes':>8} {'ratio':>6} {'merge check':>12} {'ratio':>6} {'default':>8} "
          f"{'ratio':>6}")
    for r in results:
        label = f"{size_label(r['rows'])}x{r['features']}x{r['k']}"
        em, bayes, check = r.get("em"), r.get("bayes"), r.get("merge_check")
        default = None if bayes is None or check is None else \
            (check + (DEFAULT_MERGE_EVERY - 1) * bayes) / DEFAULT_MERGE_EVERY

        def show(value):
            return "MISS" if value is None else f"{value:.3f}"

        def ratio(value, em=em):
            return "-" if value is None or em is None else f"{value / em:.2f}"

        print(f"{label:>16} {show(em):>8} {show(bayes):>8} {ratio(bayes):>6} {show(check):>12} {ratio(check):>6} "
              f"{show(default):>8} {ratio(default):>6}")
    print("target: Bayes / EM <= 1.15")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = ArgumentParser(prog="bayesian_benchmark.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("section", choices=("recovery", "cost"))
    parser.add_argument("--rows", default="1M")
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--features", type=int, default=8)
    parser.add_argument("--sklearn-rows", default="0")
    parser.add_argument("--merge-every", type=int, default=10)
    parser.add_argument("--sizes", default="1000000:16:8,10000000:16:8")
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    args.rows = parse_count(args.rows, "--rows")
    args.sklearn_rows = parse_count(args.sklearn_rows, "--sklearn-rows") if args.sklearn_rows != "0" else 0
    try:
        args.sizes = [tuple(int(v) for v in size.split(":")) for size in args.sizes.split(",")]
    except ValueError:
        raise UsageError(f"--sizes: {args.sizes!r} is not a list of ROWS:FEATURES:K") from None
    if any(len(size) != 3 or min(size) < 1 for size in args.sizes) or args.seeds < 1 or args.k < 2 or args.iters < 1:
        raise UsageError("--sizes needs ROWS:FEATURES:K of positive numbers; --seeds and --iters >= 1, --k >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        print(f"bayesian_benchmark.py: error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"machine": machine()}))
    spark = local_session("local[2]", "bayesian-benchmark", **{"spark.driver.memory": "8g",
                                                                "spark.ui.enabled": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        if args.section == "recovery":
            results = recovery(spark, args)
            print_recovery(results, args)
        else:
            results = cost(spark, args)
            print_cost(results, args)
    finally:
        spark.stop()
    if args.json:
        write_json(args.json, {"section": args.section, "machine": machine(), "results": results}, print)
    return 1 if any(r["failed"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
