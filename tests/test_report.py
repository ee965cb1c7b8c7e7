"""``python -m sparkgmm report``: the page, its figures and the command line, on fit and select outputs built without
Spark (a saved Mixture plus the metrics.json / candidates.json fields the jobs write)."""

from __future__ import annotations

import base64
import io
import json
import math
import re
import struct
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from helpers import make_mixture, summary_of_every_field
from sparkgmm import InputError, Mixture
from sparkgmm.errors import OutputExistsError
from sparkgmm import report, report_plots, report_sample

pytest.importorskip("matplotlib")

N_ROWS = 6000


class Page(HTMLParser):
    """What a person sees: sections, the summary table, images, captions, table rows, warnings."""

    def __init__(self, text: str):
        super().__init__()
        self.sections, self.summary, self.images, self.captions, self.warnings = [], {}, [], [], []
        self.tables: dict[str, list[dict]] = {}
        self._table, self._row, self._cell, self._text, self._in = None, None, None, [], []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in.append(tag)
        if tag == "section":
            self.sections.append(attrs["id"])
        elif tag == "img":
            self.images.append(attrs)
            self._in.pop()  # a void element
        elif tag == "table":
            self._table = attrs.get("class")
            self.tables[self._table] = []
        elif tag == "tr":
            self._row = {"attrs": attrs, "cells": []}
        elif tag in ("td", "th", "figcaption", "li"):
            self._text = []

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        text = "".join(self._text)
        if tag in ("td", "th") and self._row is not None:
            self._row["cells"].append(text)
        elif tag == "tr":
            if self._table == "summary":
                self.summary[self._row["attrs"]["data-key"]] = self._row["cells"][1]
            else:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "figcaption":
            self.captions.append(text)
        elif tag == "li":
            self.warnings.append(text)

    def handle_data(self, data):
        self._text.append(data)


def png_of(image: dict) -> tuple[int, int, np.ndarray]:
    prefix = "data:image/png;base64,"
    assert image["src"].startswith(prefix)
    data = base64.b64decode(image["src"][len(prefix):], validate=True)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    from matplotlib.image import imread

    pixels = imread(io.BytesIO(data), format="png")
    assert pixels.shape[:2] == (height, width)
    return width, height, pixels


def assert_figures_are_pictures(page: Page, count: int) -> None:
    assert len(page.images) == count
    for image in page.images:
        width, height, pixels = png_of(image)
        assert 400 <= width <= 1600 and 250 <= height <= 1000
        assert pixels[..., :3].std() > 0.05  # drawn on, not blank


def number(text: str) -> float:
    return float(text.replace(",", ""))


def history_of(lls: list[float]) -> list[dict]:
    return [{"iteration": t, "log_likelihood": lls[t], "change": lls[t] - lls[t - 1], "seconds": 0.01 * t}
            for t in range(1, len(lls))]


def write_fit_dir(path: Path, mixture: Mixture, **extra) -> dict:
    """A fit output as the fit job writes it: the model directory and metrics.json (spark/jobs.py fit_metrics)."""
    mixture.save(path)
    rng = np.random.default_rng(1)
    lls = list(-7.0 + 2.0 * (1.0 - np.exp(-0.8 * np.arange(9))) + rng.normal(0, 1e-9, 9))
    sizes = rng.multinomial(N_ROWS, mixture.weights).tolist()
    n_parameters = mixture.n_parameters
    metrics = {
        "k": mixture.n_components, "covariance_type": mixture.covariance_type, "log_likelihood": lls[-1],
        "bic": -2 * lls[-1] * N_ROWS + n_parameters * math.log(N_ROWS), "aic": -2 * lls[-1] * N_ROWS + 2 * n_parameters,
        "n_parameters": n_parameters, "n_iter": len(lls) - 1, "converged": False, "passes": 12, "seconds": 3.5,
        "warnings": ["EM did not converge in 8 iterations (tol 0.001): raise max_iter or tol <script>"],
        "restarts": [], "initial_log_likelihood": lls[0], "history": history_of(lls), "cluster_sizes": sizes,
        "n_rows": N_ROWS, "weight_sum": float(N_ROWS), "n_features": mixture.n_features,
        "feature_names": [f"f<{i}>&" for i in range(mixture.n_features)], "input": "data/in.parquet",
        "sparkgmm_version": "0.1.0", **extra,
    }
    (path / "metrics.json").write_text(json.dumps(metrics))
    return metrics


@pytest.fixture(scope="module")
def fit_dir(tmp_path_factory) -> tuple[Path, dict]:
    path = tmp_path_factory.mktemp("fit") / "model"
    return path, write_fit_dir(path, make_mixture("full", n_components=3, n_features=3, seed=4))


@pytest.fixture(scope="module")
def fit_page(fit_dir, tmp_path_factory) -> tuple[Page, str]:
    out = tmp_path_factory.mktemp("fit-report") / "report.html"
    report.write_report(fit_dir[0], out, sample_rows=500)
    text = out.read_text()
    return Page(text), text


def test_a_fit_report_shows_the_fit_and_the_model(fit_dir, fit_page):
    page, text = fit_page
    _, metrics = fit_dir
    assert page.sections == ["summary", "convergence", "cluster-sizes", "projection", "log-density"]
    summary = page.summary
    assert summary["kind"] == "fit output" and summary["input"] == "data/in.parquet"
    assert summary["covariance_type"] == "full" and number(summary["k"]) == 3
    assert number(summary["n_rows"]) == N_ROWS and number(summary["n_iter"]) == 8
    assert summary["converged"] == "no"
    for key in ("log_likelihood", "bic", "aic"):
        assert number(summary[key]) == pytest.approx(metrics[key], rel=1e-5, abs=0.05)
    # every string from the directory is escaped, and reads back as it was
    assert summary["features"] == "f<0>&, f<1>&, f<2>&" and "f&lt;0&gt;&amp;" in text
    assert page.warnings == metrics["warnings"] and "<script>" not in text
    rows = page.tables["components"][1:]  # after the header row
    assert [number(r["cells"][2]) for r in rows] == metrics["cluster_sizes"]
    weights = Mixture.load(fit_dir[0]).weights
    assert [number(r["cells"][1]) for r in rows] == pytest.approx(weights, rel=1e-5)
    assert_figures_are_pictures(page, 4)
    assert "500 rows drawn from the model itself" in page.captions[2]


def test_the_convergence_and_size_figures_draw_the_metrics(fit_dir):
    _, metrics = fit_dir
    _, (ax_ll, ax_gap, ax_sizes) = report_plots.new_figure(9, 3, ncols=3)
    report_plots.draw_convergence(ax_ll, ax_gap, metrics["initial_log_likelihood"], metrics["history"])
    lls = [metrics["initial_log_likelihood"]] + [h["log_likelihood"] for h in metrics["history"]]
    line = ax_ll.get_lines()[0]
    assert list(line.get_xdata()) == list(range(9)) and list(line.get_ydata()) == lls
    gap, change = ax_gap.get_lines()
    assert list(gap.get_ydata()) == [lls[-1] - v for v in lls[:-1]] and ax_gap.get_yscale() == "log"
    assert list(change.get_ydata()) == pytest.approx(np.abs(np.diff(lls)))
    mixture = Mixture.load(fit_dir[0])
    report_plots.draw_cluster_sizes(ax_sizes, mixture.weights, metrics["cluster_sizes"], N_ROWS)
    assert [bar.get_height() for bar in ax_sizes.patches] == metrics["cluster_sizes"]
    assert list(ax_sizes.get_lines()[0].get_ydata()) == pytest.approx(mixture.weights * N_ROWS)


def full_covariances(mixture: Mixture) -> np.ndarray:
    k, d, cov = mixture.n_components, mixture.n_features, mixture.covariances
    return {"full": lambda: cov, "tied": lambda: np.repeat(cov[None], k, 0),
            "diag": lambda: np.stack([np.diag(c) for c in cov]),
            "spherical": lambda: cov[:, None, None] * np.eye(d)}[mixture.covariance_type]()


def test_the_projection_plane_and_ellipses_come_from_the_model(covariance_type):
    mixture = make_mixture(covariance_type, n_components=3, n_features=4, seed=3)
    w, mu, sigma = mixture.weights, mixture.means, full_covariances(mixture)
    mean = w @ mu
    covariance = np.einsum("j,jab->ab", w, sigma + mu[:, :, None] * mu[:, None, :]) - np.outer(mean, mean)
    got_mean, got_covariance = report_plots.overall_moments(mixture)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got_covariance, covariance, rtol=1e-10, atol=1e-10)
    _, axes, variances = report_plots.projection_plane(mixture)
    top = np.sort(np.linalg.eigvalsh(covariance))[::-1][:2]
    np.testing.assert_allclose(variances, top, rtol=1e-10)
    np.testing.assert_allclose(axes.T @ axes, np.eye(2), atol=1e-12)
    np.testing.assert_allclose(covariance @ axes, axes * top, atol=1e-9)
    projected = report_plots.projected_covariances(mixture, axes)
    np.testing.assert_allclose(projected, np.einsum("da,jde,eb->jab", axes, sigma, axes), rtol=1e-10, atol=1e-12)
    # each ellipse drawn is the 2-sigma contour of its component's projected covariance, around its projected mean
    X, labels = mixture.sample(300, seed=0)
    _, (ax,) = report_plots.new_figure(5, 5)
    report_plots.draw_projection(ax, mixture, X, labels, [f"x{i}" for i in range(4)])
    assert len(ax.patches) == 3
    for j, ellipse in enumerate(ax.patches):
        angle = np.radians(ellipse.angle)
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        radii = np.array([ellipse.width, ellipse.height]) / (2 * report_plots.ELLIPSE_SIGMAS)
        np.testing.assert_allclose(rotation @ np.diag(radii**2) @ rotation.T, projected[j], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ellipse.center, (mu[j] - mean) @ axes, atol=1e-12)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), (X - mean) @ axes, atol=1e-12)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_one_feature_is_a_histogram_under_the_mixture_density(covariance_type):
    mixture = make_mixture(covariance_type, n_components=2, n_features=1, seed=5)
    X, labels = mixture.sample(400, seed=1)
    _, (ax,) = report_plots.new_figure(5, 3)
    report_plots.draw_projection(ax, mixture, X, labels, ["x"])
    *components, total = ax.get_lines()
    grid = total.get_xdata()
    np.testing.assert_allclose(total.get_ydata(), np.exp(mixture.score_samples(grid[:, None])), rtol=1e-10)
    np.testing.assert_allclose(sum(line.get_ydata() for line in components), total.get_ydata(), rtol=1e-9)


def write_select_dir(path: Path) -> dict:
    """A select output as the select job writes it: candidates.json and best/ (a fit output)."""
    rows = []
    for covariance_type in ("full", "diag"):
        for k in (1, 2, 3, 4):
            bic = 1000.0 * abs(k - 3) + (50.0 if covariance_type == "full" else 0.0) + 20000.0
            rows.append({"k": k, "covariance_type": covariance_type, "log_likelihood": -bic / (2 * N_ROWS),
                         "bic": bic, "aic": bic - 40.0 * k, "n_parameters": 7 * k, "n_iter": 5 + k,
                         "converged": k != 4, "passes": 30, "seconds": 2.0})
    best = min(range(len(rows)), key=lambda i: rows[i]["bic"])
    document = {"criterion": "bic", "best": {"k": rows[best]["k"], "covariance_type": rows[best]["covariance_type"],
                                             "index": best},
                "candidates": rows, "n_rows": N_ROWS, "feature_names": ["a", "b"], "input": "in.parquet"}
    path.mkdir()
    (path / "candidates.json").write_text(json.dumps(document))
    write_fit_dir(path / "best", make_mixture("diag", n_components=3, n_features=2, seed=6),
                  feature_names=["a", "b"], converged=True, warnings=[])
    return document


def test_a_select_report_shows_every_candidate_and_the_chosen_one(tmp_path):
    document = write_select_dir(tmp_path / "selection")
    report.write_report(tmp_path / "selection", tmp_path / "report.html", sample_rows=300)
    page = Page((tmp_path / "report.html").read_text())
    assert page.sections == ["summary", "convergence", "selection", "cluster-sizes", "projection", "log-density"]
    assert page.summary["best"] == "k=3 diag" and page.summary["covariance_type"] == "diag"
    assert page.summary["criterion"] == "lowest BIC of 8 candidates" and page.warnings == []
    shown = page.tables["candidates"][1:]  # after the header row
    assert len(shown) == len(document["candidates"])
    for row, candidate in zip(shown, document["candidates"], strict=True):
        k, covariance_type, _ll, bic, aic, _n_parameters, n_iter, converged = row["cells"]
        assert (number(k), covariance_type, number(n_iter)) == (candidate["k"], candidate["covariance_type"],
                                                                candidate["n_iter"])
        assert number(bic) == pytest.approx(candidate["bic"]) and number(aic) == pytest.approx(candidate["aic"])
        assert converged == ("yes" if candidate["converged"] else "no")
    assert [r["attrs"].get("class") for r in shown].count("best") == 1
    assert shown[document["best"]["index"]]["attrs"]["class"] == "best"
    assert_figures_are_pictures(page, 5)
    # the criterion figure: each line is its covariance type's BIC above the lowest, against k; the chosen is ringed
    _, (ax,) = report_plots.new_figure(5, 3)
    report_plots.draw_selection(ax, document["candidates"], "bic", document["best"]["index"])
    lowest = min(c["bic"] for c in document["candidates"])
    lines = {line.get_label(): line for line in ax.get_lines()}
    for covariance_type in ("full", "diag"):
        mine = [c for c in document["candidates"] if c["covariance_type"] == covariance_type]
        assert list(lines[covariance_type].get_xdata()) == [c["k"] for c in mine]
        assert list(lines[covariance_type].get_ydata()) == [c["bic"] - lowest for c in mine]
    assert list(lines["chosen"].get_xdata()) == [3] and list(lines["chosen"].get_ydata()) == [0.0]


def test_a_model_directory_without_metrics_still_gets_a_report(tmp_path):
    mixture = make_mixture("spherical", n_components=2, n_features=3, seed=1)
    mixture.save(tmp_path / "model")
    report.write_report(tmp_path / "model", tmp_path / "report.html", sample_rows=200)
    page = Page((tmp_path / "report.html").read_text())
    assert page.summary["kind"] == "model directory" and "bic" not in page.summary
    assert any("no metrics.json" in w for w in page.warnings)
    assert page.sections == ["summary", "convergence", "cluster-sizes", "projection", "log-density"]
    assert_figures_are_pictures(page, 3)  # no convergence curve
    assert [number(r["cells"][1]) for r in page.tables["components"][1:]] == pytest.approx(mixture.weights, rel=1e-5)


def write_parquet_input(path: Path, mixture: Mixture) -> np.ndarray:
    """Rows sorted by component (as Mixture.sample draws them) in two files of 500-row row groups, an extra id
    column, a vector column, and a few rows with null or non-finite features."""
    X, _ = mixture.sample(N_ROWS, seed=2)
    a = pa.array(X[:, 0], mask=np.arange(N_ROWS) % 100 == 7)
    b = X[:, 1].copy()
    b[np.arange(N_ROWS) % 100 == 8] = np.inf
    vectors = pa.array([list(row) for row in X], pa.list_(pa.float64()))
    table = pa.table({"id": np.arange(N_ROWS), "a": a, "b": b, "c": X[:, 2], "features": vectors})
    path.mkdir()
    half = N_ROWS // 2
    pq.write_table(table.slice(0, half), path / "part-0.parquet", row_group_size=500)
    pq.write_table(table.slice(half), path / "part-1.parquet", row_group_size=500)
    (path / "_SUCCESS").write_text("")
    return X


@pytest.fixture(scope="module")
def parquet_input(tmp_path_factory):
    mixture = make_mixture("full", n_components=3, n_features=3, seed=8, separation=6.0)
    path = tmp_path_factory.mktemp("input") / "in.parquet"
    return mixture, path, write_parquet_input(path, mixture)


def test_the_sample_of_an_input_is_spread_over_its_row_groups(parquet_input):
    mixture, path, X = parquet_input
    sample = report_sample.parquet_sample(str(path), mixture, None, ["a", "b", "c"], 600, seed=0)
    assert 570 <= sample.X.shape[0] < 600  # 1 in 50 rows has a null or an infinity, and is left out
    assert np.isfinite(sample.X).all()
    rows = {tuple(row) for row in X}
    assert all(tuple(row) in rows for row in sample.X)
    np.testing.assert_array_equal(sample.labels, mixture.predict(sample.X))
    # the input is small, so every row group was read and every component (the rows are sorted by it) is there
    assert "from the 6,000 rows of 12 of its 12 row groups (6,000 rows in all)" in sample.description
    assert set(sample.labels) == {0, 1, 2}
    assert "leaving out" in sample.description


def test_the_input_is_read_only_as_far_as_needed(parquet_input, monkeypatch):
    mixture, path, X = parquet_input
    monkeypatch.setattr(report_sample, "READ_BUDGET_VALUES", 1)
    fitted = ["features[0]", "features[1]", "features[2]"]  # how the fit job names a vector column's entries
    sample = report_sample.parquet_sample(str(path), mixture, None, fitted, 700, seed=3)
    assert "(features), at random from the 1,000 rows of 2 of its 12 row groups" in sample.description
    assert sample.X.shape == (700, 3)  # the vector column has no invalid rows
    rows = {tuple(row) for row in X}
    assert all(tuple(row) in rows for row in sample.X)


def test_vector_values_as_spark_stores_them():
    values = [{"type": 1, "size": None, "indices": None, "values": [1.0, 2.0, 3.0]},
              {"type": 0, "size": 3, "indices": [2], "values": [5.0]},
              {"type": 0, "size": 4, "indices": [3], "values": [5.0]}, None, [4.0, None, 1.0], [7.0, 8.0, 9.0]]
    X = report_sample._vector_rows(values, 3)
    np.testing.assert_array_equal(X[[0, 1, 5]], [[1, 2, 3], [0, 0, 5], [7, 8, 9]])
    assert np.isnan(X[[2, 3, 4]]).all(axis=1).all()


@pytest.mark.parametrize("named, fitted, message", [
    (("a", "zz", "c"), None, "has no column 'zz'"),
    (("a", "c"), None, "--features names 2 columns; the model has 3 features"),
    (("a", "b", "features"), None, "column 'features' is list<"),
    (None, None, "has 4 numeric columns (id, a, b, c) and the model 3 features: name them with --features"),
])
def test_features_that_do_not_fit_the_model_are_refused(parquet_input, named, fitted, message):
    mixture, path, _ = parquet_input
    with pytest.raises(InputError) as error:
        report_sample.parquet_sample(str(path), mixture, named, fitted, 10, seed=0)
    assert message in str(error.value)


def test_a_report_with_an_input_names_it(parquet_input, fit_dir, tmp_path):
    mixture, path, _ = parquet_input
    model = tmp_path / "model"
    write_fit_dir(model, mixture, feature_names=["a", "b", "c"],
                  log_density_quantiles={"0.01": -9.5, "0.001": -12.0})
    report.write_report(model, tmp_path / "report.html", input_path=str(path), sample_rows=400)
    page = Page((tmp_path / "report.html").read_text())
    shown = int(re.match(r"(\d+) rows of", page.captions[2]).group(1))
    assert 370 <= shown < 400  # 1 in 50 rows is invalid
    assert f"rows of {path} (a, b, c)" in page.captions[2] and "most probable component" in page.captions[2]
    assert "Dashed: the model's log-density quantiles" in page.captions[3]
    assert_figures_are_pictures(page, 4)


@pytest.mark.parametrize("raw", [{"0.01": -9.5, "0.001": -12.0}, [[0.01, -9.5], [0.001, -12.0]],
                                 [{"quantile": 0.01, "value": -9.5}, {"quantile": 0.001, "log_density": -12.0}]])
def test_log_density_quantiles_are_drawn_where_they_are(raw):
    quantiles = report.log_density_quantiles(raw)
    assert quantiles == {0.01: -9.5, 0.001: -12.0}
    _, (ax,) = report_plots.new_figure(5, 3)
    report_plots.draw_log_density(ax, np.linspace(-14, -3, 100), quantiles)
    assert sorted(line.get_xdata()[0] for line in ax.get_lines()) == [-12.0, -9.5]


def test_an_existing_output_is_kept_and_a_failed_write_leaves_nothing(fit_dir, tmp_path, monkeypatch):
    out = tmp_path / "report.html"
    out.write_text("old")
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        report.write_report(fit_dir[0], out)
    monkeypatch.setattr(report, "build_report", lambda source, sample: "<html>new</html>")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(report.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        report.write_report(fit_dir[0], out, overwrite=True, sample_rows=10)
    assert out.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    monkeypatch.undo()
    monkeypatch.setattr(report, "build_report", lambda source, sample: "<html>new</html>")
    report.write_report(fit_dir[0], out, overwrite=True, sample_rows=10)
    assert out.read_text() == "<html>new</html>" and sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_without_matplotlib_the_message_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(InputError, match=r"pip install 'sparkgmm\[report\]'"):
        report_plots.new_figure(4, 3)


def sparkgmm(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sparkgmm", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120)


@pytest.mark.parametrize("args, message", [
    (["report", "missing", "--output", "r.html"], "sparkgmm report: error: report directory missing does not exist"),
    (["report", "model", "--output", "old.html"],
     "sparkgmm report: error: output old.html already exists; pass --overwrite to replace it"),
    (["report", "model"], "sparkgmm report: error: the following arguments are required: --output"),
    (["report", "model", "--output", "r.html", "--sample-rows", "0"],
     "sparkgmm report: error: argument --sample-rows: '0' must be an integer >= 1"),
    (["report", "in.parquet", "--output", "r.html"], "sparkgmm report: error: model "),  # not a model directory
])
def test_the_command_refuses_bad_arguments_with_one_line_and_exit_2(fit_dir, tmp_path, args, message):
    Mixture.load(fit_dir[0]).save(tmp_path / "model")
    (tmp_path / "old.html").write_text("old")
    (tmp_path / "in.parquet").mkdir()
    result = sparkgmm(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and result.stderr.startswith(message)
    assert (tmp_path / "old.html").read_text() == "old" and not (tmp_path / "r.html").exists()


def test_the_command_writes_the_page_without_spark(fit_dir, tmp_path):
    code = ("import sys; from sparkgmm.cli import main; code = main(sys.argv[1:]); "
            "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'py4j')))")
    args = ["report", str(fit_dir[0]), "--output", "out/report.html", "--sample-rows", "100"]
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                            timeout=120)
    assert result.stdout.strip() == "0 []", result.stderr
    page = Page((tmp_path / "out" / "report.html").read_text())
    assert page.summary["directory"] == str(fit_dir[0]) and len(page.images) == 4
    assert "wrote out/report.html" in result.stderr


def test_a_python_api_save_shows_its_training_summary(tmp_path):
    from sparkgmm.persistence import SavedModel, write_model_dir

    mixture = make_mixture("tied", n_components=2, n_features=2, seed=2)
    lls = [-4.0, -3.5, -3.4, -3.39]
    summary = {"logLikelihood": lls[-1], "logLikelihoodHistory": lls, "iterationSeconds": [0.1, 0.1, 0.1],
               "numIter": 3, "converged": True, "clusterSizes": [70, 30], "numRows": 100, "weightSum": 100.0,
               "numParameters": mixture.n_parameters}
    write_model_dir(tmp_path / "model", SavedModel(mixture, summary, {0.01: -8.0}))
    source = report.load_source(tmp_path / "model")
    assert source.kind == "model directory" and source.quantiles == {0.01: -8.0}
    metrics = source.metrics
    assert [h["log_likelihood"] for h in metrics["history"]] == lls[1:] and metrics["initial_log_likelihood"] == -4.0
    n_parameters = mixture.n_parameters
    assert metrics["bic"] == pytest.approx(-2 * 100 * lls[-1] + n_parameters * math.log(100), rel=1e-12)
    assert metrics["aic"] == pytest.approx(-2 * 100 * lls[-1] + 2 * n_parameters, rel=1e-12)
    report.write_report(tmp_path / "model", tmp_path / "report.html", sample_rows=100)
    page = Page((tmp_path / "report.html").read_text())
    assert number(page.summary["n_iter"]) == 3 and page.summary["converged"] == "yes" and page.warnings == []
    assert [number(r["cells"][2]) for r in page.tables["components"][1:]] == [70, 30]
    assert "Dashed: the model's log-density quantiles" in page.captions[-1]
    assert_figures_are_pictures(page, 4)


class AskedFor(dict):
    """Metrics that note every name the report asks them for."""

    def __init__(self, metrics):
        super().__init__(metrics)
        self.asked = set()

    def get(self, key, default=None):
        self.asked.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.asked.add(key)
        return super().__getitem__(key)


def test_the_report_reads_the_names_the_summary_writes(tmp_path):
    """A Python API save's summary reaches the report as ``to_metrics`` writes it, and every name the report asks for
    is one the summary writes or one the jobs add to metrics.json themselves."""
    import dataclasses

    from sparkgmm.persistence import SavedModel, write_model_dir

    summary = summary_of_every_field()
    mixture = make_mixture("diag", n_components=len(summary.clusterSizes), n_features=2, seed=3)
    write_model_dir(tmp_path / "model", SavedModel(mixture, summary.to_dict(), summary.logDensityQuantiles))
    source = report.load_source(tmp_path / "model")
    assert source.metrics == summary.to_metrics()
    asked = AskedFor(source.metrics)
    page = Page(report.build_report(dataclasses.replace(source, metrics=asked), report.model_sample(mixture, 100, 0)))
    assert asked.asked - set(summary.to_metrics()) <= {"warnings", "input", "feature_names", "sparkgmm_version"}
    shown = {key: page.summary[key] for key in ("n_rows", "n_skipped_rows", "log_likelihood", "bic", "aic", "n_iter",
                                                "seconds", "converged", "restarts")}
    assert shown == {"n_rows": "101", "n_skipped_rows": "4", "log_likelihood": "-3.125", "bic": f"{summary.bic:.6g}",
                     "aic": f"{summary.aic:.6g}", "n_iter": "3", "seconds": "4.5", "converged": "yes",
                     "restarts": "2 (1)"}
    assert [number(r["cells"][2]) for r in page.tables["components"][1:]] == list(summary.clusterSizes)


def test_a_bayesian_fits_report_shows_its_prior_the_components_used_and_the_lower_bound(tmp_path):
    bounds = [-9000.0, -8200.0, -8100.0, -8099.5]
    history = [{"iteration": t, "lower_bound": b, "change": None if t == 1 else b - bounds[t - 2], "seconds": 0.1}
               for t, b in enumerate(bounds, start=1)]
    path = tmp_path / "model"
    write_fit_dir(path, make_mixture("full", n_components=3, n_features=3, seed=4), history=history,
                  n_iter=len(bounds), prior="dirichlet_process", effective_components=2, n_merges=1,
                  lower_bounds=bounds)
    out = tmp_path / "report.html"
    report.write_report(path, out, sample_rows=200)
    page = Page(out.read_text())
    assert page.summary["prior"] == "dirichlet_process"
    assert number(page.summary["effective_components"]) == 2 and number(page.summary["n_merges"]) == 1
    assert page.captions[0].startswith("Variational lower bound (total over the rows) after each of 4 iterations")
    _, (ax_bound, ax_gap) = report_plots.new_figure(6, 3, ncols=2)
    report_plots.draw_convergence(ax_bound, ax_gap, None, history, "lower_bound", "lower bound (total)")
    assert list(ax_bound.get_lines()[0].get_ydata()) == bounds and ax_bound.get_title() == "lower bound"
    assert list(ax_gap.get_lines()[0].get_ydata()) == [bounds[-1] - b for b in bounds[:-1]]
