#!/usr/bin/env bash
# The jobs end to end on example data, in local mode, through spark-submit as a scheduler would run them:
# generate data/example.parquet, package sparkgmm for --py-files, then fit, predict, update and select with conf/*.toml,
# writing under out/, and an HTML report of the selection. Runs in WORKDIR (default: the checkout). Needs
# scripts/setup.sh first.
#   bash scripts/example.sh [WORKDIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "${1:-$root}" && cd "${1:-$root}"

py="$root/.venv/bin/python"
export PYSPARK_PYTHON="$py" PYSPARK_DRIVER_PYTHON="$py" SPARK_LOCAL_IP=127.0.0.1
submit() {
  "$root/.venv/bin/spark-submit" --master 'local[2]' --conf spark.log.level=WARN --py-files dist/sparkgmm.zip "$@"
}

"$py" "$root/scripts/make_example_data.py" --output data/example.parquet >/dev/null
"$py" "$root/scripts/package.py" --output dist/sparkgmm.zip >/dev/null
submit "$root/jobs/fit_gmm.py" --config "$root/conf/fit.toml" --overwrite
submit "$root/jobs/predict_gmm.py" --config "$root/conf/predict.toml" --overwrite
submit "$root/jobs/update_gmm.py" --config "$root/conf/update.toml" --overwrite
submit "$root/jobs/select_k_gmm.py" --config "$root/conf/select.toml" --k-range 2:6 --overwrite
# a page to look at: the selection, its best model and a sample of the input (no Spark)
"$py" -m sparkgmm report out/example-selection --input data/example.parquet --output out/example-report.html --overwrite

"$py" - <<'PY'
import json
import numpy as np
import pyarrow.parquet as pq
from sparkgmm import Mixture

fitted, truth = Mixture.load("out/example-model"), Mixture.load("data/example.parquet.truth")
metrics = json.load(open("out/example-model/metrics.json"))
print(f"\nfit: {metrics['k']} {metrics['covariance_type']} components on {metrics['n_rows']} rows, "
      f"{metrics['n_iter']} iterations, log-likelihood {metrics['log_likelihood']:.6f}, BIC {metrics['bic']:.1f}")
nearest = [int(np.argmin(((truth.means - m) ** 2).sum(1))) for m in fitted.means]
print(f"largest distance of a fitted mean from the true one: {np.abs(fitted.means - truth.means[nearest]).max():.4f}")
scores = pq.read_table("out/example-predictions")
print(f"predict: {scores.num_rows} rows with columns {', '.join(scores.column_names)}")
updated = json.load(open("out/example-model-updated/metrics.json"))
print(f"update: {updated['n_rows']} new rows, log-likelihood {updated['log_likelihood_before']:.6f} before and "
      f"{updated['log_likelihood_after']:.6f} after; the model has seen {updated['seen_rows']} rows in "
      f"{updated['seen_batches']} batches")
selection = json.load(open("out/example-selection/candidates.json"))
best = selection["best"]
print(f"select: best of {len(selection['candidates'])} candidates by {selection['criterion']}: "
      f"k={best['k']} {best['covariance_type']} (the data were drawn from 4 diagonal components)")
print("report: out/example-report.html")
PY
