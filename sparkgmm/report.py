"""``python -m sparkgmm report``: one self-contained HTML page about a fit or select output, for a person to look at.

The page shows what the fit did (a summary, the convergence curve, BIC/AIC against k for a select output, the
cluster sizes) and what the model looks like: a bounded sample drawn on the mixture's principal plane with each
component's 2-sigma ellipse, and the sample's log-densities. Images are embedded as base64 PNG, so the page is one
file. No Spark: the model directory is read by ``sparkgmm.persistence`` (either format version), the fit's numbers
come from ``metrics.json`` (or the training summary a Python API save holds), and the sample from the model itself or
from a local Parquet input read with pyarrow, a bounded number of rows (``sparkgmm.report_sample``). matplotlib is the
optional extra ``sparkgmm[report]`` (``sparkgmm.report_plots``).
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import BEST_MODEL_DIR, CANDIDATES_JSON, METRICS_FILE
from .errors import InputError
from .files import LOCAL_FILES, StagedWrite
from .mixture import Mixture
from .persistence import read_model_dir
from .report_sample import Sample, model_sample, parquet_sample
from .summary import GaussianMixtureSummary

logger = logging.getLogger("sparkgmm.report")

SAMPLE_ROWS = 2000
_MAX_LISTED_FEATURES = 20
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 72em; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; } th, td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; }
th { text-align: left; font-weight: 600; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best { background: #fff3c4; } .warnings { background: #fde8e8; padding: 0.5em 1.5em; border-left: 4px solid #c00; }
figure { margin: 1em 0; } img { max-width: 100%; height: auto; } figcaption { color: #555; font-size: 0.9em; }
"""


@dataclass(frozen=True)
class ReportSource:
    """What the report is about: the directory given, the model directory within it (``best/`` of a select
    output), the mixture, the fit's metrics (None when the directory has none) and a select output's candidates."""

    directory: Path
    model_dir: Path
    mixture: Mixture
    metrics: dict[str, Any] | None
    selection: dict[str, Any] | None
    quantiles: dict[float, float]

    @property
    def kind(self) -> str:
        if self.selection is not None:
            return "select output (the chosen model is best/)"
        return "fit output" if (self.model_dir / METRICS_FILE).exists() else "model directory"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} cannot be read as JSON ({e}): is the output complete?") from None
    if not isinstance(document, dict):
        raise InputError(f"{path} must hold a JSON object")
    return document


def load_source(directory: str | os.PathLike) -> ReportSource:
    """A fit output, a select output or a model directory -> what the report shows."""
    root = Path(directory)
    if not root.exists():
        raise FileNotFoundError(f"report directory {directory} does not exist")
    if not root.is_dir():
        raise InputError(f"{directory} is not a directory: give a fit or select output directory")
    selection = _read_json(root / CANDIDATES_JSON) if (root / CANDIDATES_JSON).exists() else None
    if selection is not None:
        rows, best = selection.get("candidates"), selection.get("best")
        if not isinstance(rows, list) or not rows or not isinstance(best, dict) or "index" not in best:
            raise InputError(f"{root / CANDIDATES_JSON} lacks its candidates or best: is the output complete?")
    model_dir = root / BEST_MODEL_DIR if selection is not None else root
    saved = read_model_dir(model_dir)
    if (model_dir / METRICS_FILE).exists():
        metrics = _read_json(model_dir / METRICS_FILE)
    elif isinstance(saved.summary, dict):  # saved by the Python API: the training summary, in metrics.json's names
        metrics = GaussianMixtureSummary.from_dict(saved.summary, str(model_dir)).to_metrics()
    else:
        metrics = None
    quantiles = log_density_quantiles((metrics or {}).get("log_density_quantiles") or saved.log_density_quantiles)
    return ReportSource(root, model_dir, saved.mixture, metrics, selection, quantiles)


def feature_names(source: ReportSource) -> list[str]:
    names = (source.metrics or {}).get("feature_names") or (source.selection or {}).get("feature_names")
    if isinstance(names, list) and len(names) == source.mixture.n_features:
        return [str(name) for name in names]
    return [f"feature {i}" for i in range(source.mixture.n_features)]


def log_density_quantiles(raw: Any) -> dict[float, float]:
    """Log-density quantiles as ``{level: log-density}``, from a mapping (the model's, or a JSON object keyed by the
    level), or a list of ``[level, value]`` pairs or of objects with ``quantile`` and ``value``/``log_density``."""
    pairs: list = []
    if isinstance(raw, dict):
        pairs = list(raw.items())
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                item = (item.get("quantile"), item.get("value", item.get("log_density")))
            pairs.append(item)
    try:
        return {float(q): float(v) for q, v in pairs}
    except (TypeError, ValueError):
        logger.warning("log_density_quantiles in the metrics are not understood; they are left out: %r", raw)
        return {}


def _number(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{value:,}"
    if isinstance(value, (float, np.floating)):
        return f"{value:,.1f}" if abs(float(value)) >= 1e4 else f"{value:.6g}"
    return str(value)


def _cell(value: Any) -> str:
    css = ' class="num"' if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else ""
    return f"<td{css}>{html.escape(_number(value))}</td>"


def _row(key: str, label: str, value: Any) -> str:
    return f'<tr data-key="{html.escape(key)}"><th>{html.escape(label)}</th>{_cell(value)}</tr>'


def _summary_rows(source: ReportSource) -> list[str]:
    m, s, mixture = source.metrics or {}, source.selection or {}, source.mixture
    names = feature_names(source)
    listed = ", ".join(names[:_MAX_LISTED_FEATURES]) + (f", ... ({len(names)} in all)"
                                                         if len(names) > _MAX_LISTED_FEATURES else "")
    rows = [("directory", "directory", str(source.directory)), ("kind", "kind", source.kind),
            ("input", "input", m.get("input") or s.get("input")), ("features", "features", listed),
            ("k", "components (k)", mixture.n_components), ("covariance_type", "covariance type",
                                                             mixture.covariance_type)]
    if s:
        best = s["best"]
        rows += [("criterion", "chosen by", f"lowest {str(s.get('criterion', '')).upper()} of "
                                            f"{len(s['candidates'])} candidates"),
                 ("best", "chosen", f"k={best.get('k')} {best.get('covariance_type')}")]
    for key, label in (("n_rows", "rows"), ("n_skipped_rows", "invalid rows skipped"),
                       ("log_likelihood", "log-likelihood (mean per row)"), ("bic", "BIC"), ("aic", "AIC"),
                       ("converged", "converged"), ("n_iter", "iterations"), ("seconds", "seconds"),
                       ("prior", "Bayesian weight prior"), ("effective_components", "components used (weight > 0.01)"),
                       ("n_merges", "components merged away"),
                       ("sparkgmm_version", "fitted by sparkgmm")):
        if m.get(key) is not None and not (key == "n_skipped_rows" and not m[key]):
            rows.append((key, label, m[key]))
    if isinstance(m.get("restarts"), list) and len(m["restarts"]) > 1:
        rows.append(("restarts", "restarts (best)", f"{len(m['restarts'])} ({m.get('best_restart', 0)})"))
    return [_row(*row) for row in rows if row[2] is not None]


def _candidates_table(selection: dict[str, Any]) -> str:
    columns = ("k", "covariance_type", "log_likelihood", "bic", "aic", "n_parameters", "n_iter", "converged")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for index, row in enumerate(selection["candidates"]):
        cells = "".join(_cell(row.get(c)) for c in columns)
        css = ' class="best"' if index == selection["best"]["index"] else ""
        body.append(f'<tr{css} data-index="{index}">{cells}</tr>')
    return f'<table class="candidates"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _figure(figure, alt: str, caption: str) -> str:
    from .report_plots import png_bytes

    data = base64.b64encode(png_bytes(figure)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _section(key: str, title: str, *parts: str) -> str:
    return f'<section id="{key}"><h2>{html.escape(title)}</h2>{"".join(parts)}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _convergence_section(metrics: dict[str, Any] | None) -> str:
    from .report_plots import draw_convergence, new_figure

    metrics = metrics or {}
    history = metrics.get("history") or []
    if not history:
        return _section("convergence", "Convergence", _note("no iteration history in this directory"))
    figure, (ax_ll, ax_gap) = new_figure(10, 3.6, ncols=2)
    if "lower_bound" in history[0]:  # a Bayesian mixture's fit: its passes measure the variational lower bound
        draw_convergence(ax_ll, ax_gap, None, history, "lower_bound", "lower bound (total)")
        caption = (f"Variational lower bound (total over the rows) after each of {len(history)} iterations, and on a "
                   "log scale how far each is below the final value; the fit stops once the change falls below tol "
                   "(jumps: merge moves).")
    else:
        draw_convergence(ax_ll, ax_gap, metrics.get("initial_log_likelihood"), history)
        caption = (f"Mean log-likelihood per row after each of {len(history)} EM iterations (0: the initial "
                   "parameters), and on a log scale how far each is below the final value; EM stops once the change "
                   "falls below tol.")
    return _section("convergence", "Convergence", _figure(figure, "convergence curve", caption))


def _selection_section(selection: dict[str, Any]) -> str:
    from .report_plots import draw_selection, new_figure

    criterion = str(selection.get("criterion", "bic"))
    figure, (ax_bic, ax_aic) = new_figure(10, 3.6, ncols=2)
    for ax, name in ((ax_bic, "bic"), (ax_aic, "aic")):
        draw_selection(ax, selection["candidates"], name, selection["best"]["index"])
    caption = (f"BIC and AIC of every candidate against k, one line per covariance type; circled: the candidate chosen "
               f"(lowest {criterion.upper()}); hollow markers: candidates that stopped at max_iter without converging.")
    return _section("selection", "Model selection", _figure(figure, "BIC and AIC against k", caption),
                    _candidates_table(selection))


def _sizes_section(source: ReportSource) -> str:
    from .report_plots import draw_cluster_sizes, new_figure

    m = source.metrics or {}
    sizes = m.get("cluster_sizes") if len(m.get("cluster_sizes") or ()) == source.mixture.n_components else None
    figure, (ax,) = new_figure(max(5.0, min(12.0, 0.45 * source.mixture.n_components + 3)), 3.4)
    draw_cluster_sizes(ax, source.mixture.weights, sizes, m.get("weight_sum") or m.get("n_rows"))
    caption = ("Rows whose most probable component each is (diamonds: weight x rows, each component's share of the "
               "responsibilities)." if sizes is not None else "Component weights (no cluster sizes in this directory).")
    head = "<th>component</th><th>weight</th>" + ("<th>rows</th>" if sizes is not None else "")
    body = "".join(f'<tr data-index="{j}">{_cell(j)}{_cell(float(w))}'
                   f'{_cell(sizes[j]) if sizes is not None else ""}</tr>'
                   for j, w in enumerate(source.mixture.weights))
    table = f'<table class="components"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    return _section("cluster-sizes", "Cluster sizes", _figure(figure, "cluster sizes", caption), table)


def _sample_sections(source: ReportSource, sample: Sample) -> str:
    from .report_plots import ELLIPSE_SIGMAS, draw_log_density, draw_projection, new_figure, projection_plane

    mixture, names = source.mixture, feature_names(source)
    figure, (ax,) = new_figure(7.5, 6.0 if mixture.n_features > 1 else 3.6)
    draw_projection(ax, mixture, sample.X, sample.labels, names)
    if mixture.n_features == 1:
        plane = f"{sample.description}: a histogram of {names[0]}, under the mixture's density and its components."
    else:
        if mixture.n_features == 2:
            plane = "the two features"
        else:
            axes = projection_plane(mixture)[1]
            plane = "the mixture's two principal axes (from its overall covariance, not the sample): " + "; ".join(
                f"PC{a + 1} = " + " ".join(f"{axes[i, a]:+.2f}*{names[i]}" for i in np.argsort(-np.abs(axes[:, a]))[:4])
                + (" ..." if mixture.n_features > 4 else "") for a in (0, 1))
        plane = (f"{sample.description}, on {plane}. Ellipses: each component's {ELLIPSE_SIGMAS:g}-sigma contour "
                 "projected to the same plane.")
    projection = _section("projection", "Components", _figure(figure, "sample coloured by component", plane))
    quantiles = source.quantiles
    figure, (ax,) = new_figure(7.5, 3.2)
    draw_log_density(ax, mixture.score_samples(sample.X), quantiles)
    caption = f"Log-density under the mixture of the same {sample.X.shape[0]:,} rows; low density = unusual row."
    if quantiles:
        caption += " Dashed: the model's log-density quantiles over its training rows (outlier thresholds)."
    return projection + _section("log-density", "Log-density", _figure(figure, "log-density histogram", caption))


def build_report(source: ReportSource, sample: Sample) -> str:
    """The HTML page, as text."""
    m = source.metrics or {}
    warnings = [str(w) for w in m.get("warnings") or []]
    if source.metrics is None:
        warnings.append("no metrics.json or training summary here: the fit's history and cluster sizes are unknown")
    parts = [_section("summary", "Summary", f'<table class="summary">{"".join(_summary_rows(source))}</table>',
                      f'<ul class="warnings">{"".join(f"<li>{html.escape(w)}</li>" for w in warnings)}</ul>'
                      if warnings else "")]
    parts.append(_convergence_section(source.metrics))
    if source.selection is not None:
        parts.append(_selection_section(source.selection))
    parts.append(_sizes_section(source))
    parts.append(_sample_sections(source, sample))
    title = html.escape(f"sparkgmm report: {source.directory}")
    made = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{_STYLE}</style></head>\n<body><h1>{title}</h1>"
            f'<p class="made">Made {made} by sparkgmm {html.escape(__version__)}.</p>\n'
            + "\n".join(parts) + "\n</body></html>\n")


def write_report(directory: str | os.PathLike, output: str | os.PathLike, *, input_path: str | None = None,
                 features: Sequence[str] = (), sample_rows: int = SAMPLE_ROWS, seed: int = 0,
                 overwrite: bool = False) -> Path:
    """Write the report of ``directory`` (a fit or select output, or a model directory) to the HTML file
    ``output``, atomically; the sample is ``sample_rows`` rows of the local Parquet ``input_path`` or, without it,
    drawn from the model. Returns the output path."""
    target = Path(output)
    if target.is_dir():
        raise InputError(f"output {output} is a directory: name the HTML file to write")
    with StagedWrite(LOCAL_FILES, target, overwrite, subject=f"output {output}") as stage:  # refuses an existing one
        if int(sample_rows) != sample_rows or sample_rows < 1:
            raise InputError(f"sample_rows must be a positive integer; got {sample_rows!r}")
        source = load_source(directory)
        if input_path is None:
            sample = model_sample(source.mixture, int(sample_rows), seed)
        else:
            sample = parquet_sample(input_path, source.mixture, features or None,
                                    (source.metrics or {}).get("feature_names"), int(sample_rows), seed)
        page = build_report(source, sample)
        target.parent.mkdir(parents=True, exist_ok=True)
        stage.staging.write_text(page, encoding="utf-8")
        os.chmod(stage.staging, 0o644)  # readable by the web server or colleague it is for, whatever the umask
    logger.info("wrote %s (%.0f KB): report of %s", output, len(page) / 1024, directory)
    return target
