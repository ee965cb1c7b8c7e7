"""The README's picture of ``python -m sparkgmm report``: its main figures composed into one PNG.

    .venv/bin/python scripts/report_picture.py DIR [--input PATH] [--output docs/report.png] [--sample-rows 2000]

DIR is what the report takes (a select output shows BIC against k; a fit output its cluster sizes). The figures are
drawn by the report's own functions (``sparkgmm.report_plots``) on the same sample, so the picture is what the page
shows, only on one canvas. docs/report.png was made from the select output of ``bash scripts/example.sh WORKDIR``:

    .venv/bin/python scripts/report_picture.py WORKDIR/out/example-selection --input WORKDIR/data/example.parquet
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sparkgmm import report, report_plots, report_sample


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--input", help="local Parquet to draw the sample from (default: the model's own draws)")
    parser.add_argument("--output", type=Path, default=Path("docs/report.png"))
    parser.add_argument("--sample-rows", type=int, default=report.SAMPLE_ROWS)
    parser.add_argument("--dpi", type=int, default=85)
    args = parser.parse_args()

    source = report.load_source(args.directory)
    mixture, metrics = source.mixture, source.metrics or {}
    if args.input:
        sample = report_sample.parquet_sample(args.input, mixture, None, metrics.get("feature_names"),
                                              args.sample_rows, seed=0)
    else:
        sample = report_sample.model_sample(mixture, args.sample_rows, seed=0)

    figure, _ = report_plots.new_figure(13, 7.5)
    figure.clear()
    grid = figure.add_gridspec(3, 2, width_ratios=(1.25, 1))
    projection = figure.add_subplot(grid[:, 0])
    report_plots.draw_projection(projection, mixture, sample.X, sample.labels, report.feature_names(source))
    right = [figure.add_subplot(grid[row, 1]) for row in range(3)]
    if source.selection is not None:
        report_plots.draw_selection(right[0], source.selection["candidates"], source.selection["criterion"],
                                    source.selection["best"]["index"])
    else:
        report_plots.draw_log_density(right[0], mixture.score_samples(sample.X), source.quantiles)
    report_plots.draw_convergence(right[1], None, metrics.get("initial_log_likelihood"), metrics.get("history") or [])
    report_plots.draw_cluster_sizes(right[2], mixture.weights, metrics.get("cluster_sizes"),
                                    metrics.get("weight_sum") or metrics.get("n_rows"))
    figure.suptitle(f"python -m sparkgmm report {args.directory.name}: {mixture.n_components} "
                    f"{mixture.covariance_type} components, {metrics.get('n_rows', 0):,} rows", fontsize="large")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(report_plots.png_bytes(figure, dpi=args.dpi))
    print(f"{args.output}: {args.output.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
