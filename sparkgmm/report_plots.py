"""The figures of ``python -m sparkgmm report``, each drawn into matplotlib Axes the caller provides.

matplotlib is an optional extra (``sparkgmm[report]``): this module imports it only through ``new_figure`` and
``png_bytes``, which use the Agg canvas directly (no pyplot, no global backend state). The plane of the 2-D
projection is computed from the model alone (``projection_plane``), so it is the same whatever sample is drawn on it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .mixture import Mixture

# 2-sigma ellipses: in a plane, a Gaussian puts 1 - exp(-2^2 / 2) = 86.5% of its mass inside this Mahalanobis radius.
ELLIPSE_SIGMAS = 2.0
# BIC/AIC differences below ~10 are not strong evidence either way (Kass & Raftery 1995): linear there, log above.
SELECTION_LINEAR_BELOW = 10.0


def _matplotlib():
    try:
        import matplotlib
    except ImportError:
        raise InputError("the report needs matplotlib: pip install 'sparkgmm[report]'") from None
    return matplotlib


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1):
    """A figure on the Agg canvas and its axes (a flat list)."""
    _matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False)
    return figure, list(axes.ravel())


def png_bytes(figure, dpi: int = 100) -> bytes:
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=dpi)
    return out.getvalue()


def component_colors(k: int) -> list:
    """One colour per component, the same in every figure of the report."""
    from matplotlib import colormaps

    if k <= 10:
        return [colormaps["tab10"](j) for j in range(k)]
    if k <= 20:
        return [colormaps["tab20"](j) for j in range(k)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, k)]


def _covariance_sums(mixture: Mixture) -> np.ndarray:
    """``sum_j w_j Sigma_j``, (d, d), from whichever covariance type the mixture has."""
    w, cov = mixture.weights, mixture.covariances
    if mixture.covariance_type == "full":
        return np.einsum("j,jab->ab", w, cov)
    if mixture.covariance_type == "tied":
        return np.array(cov)
    if mixture.covariance_type == "diag":
        return np.diag(w @ cov)
    return np.eye(mixture.n_features) * float(w @ cov)


def overall_moments(mixture: Mixture) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of the whole mixture: ``sum_j w_j (Sigma_j + (mu_j - mu)(mu_j - mu)^T)``
    (the centred form of ``sum_j w_j (Sigma_j + mu_j mu_j^T) - mu mu^T``, without its cancellation)."""
    mean = mixture.weights @ mixture.means
    centred = mixture.means - mean
    return mean, _covariance_sums(mixture) + (centred * mixture.weights[:, None]).T @ centred


def projection_plane(mixture: Mixture) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mean, axes, variances)``: the mixture's overall mean (d,), its two principal directions as columns of
    ``axes`` (d, 2) and the variance along each; with d == 2, the features themselves. Each axis's sign makes its
    largest loading positive, so that the picture does not flip between runs."""
    mean, covariance = overall_moments(mixture)
    if mixture.n_features == 2:
        return mean, np.eye(2), np.diag(covariance).copy()
    values, vectors = np.linalg.eigh(covariance)
    order = np.argsort(values)[::-1][:2]
    axes = vectors[:, order]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), [0, 1]] < 0, -1.0, 1.0)
    return mean, axes, values[order]


def projected_covariances(mixture: Mixture, axes: np.ndarray) -> np.ndarray:
    """``P^T Sigma_j P`` for every component, (k, 2, 2)."""
    k, cov = mixture.n_components, mixture.covariances
    if mixture.covariance_type == "full":
        return np.einsum("da,jde,eb->jab", axes, cov, axes)
    if mixture.covariance_type == "tied":
        return np.broadcast_to(axes.T @ cov @ axes, (k, 2, 2))
    if mixture.covariance_type == "diag":
        return np.einsum("da,jd,db->jab", axes, cov, axes)
    return cov[:, None, None] * (axes.T @ axes)[None]


def draw_convergence(ax_ll, ax_gap, initial: float | None, history: Sequence[dict[str, Any]],
                     key: str = "log_likelihood", what: str = "mean log-likelihood per row") -> None:
    """The mean log-likelihood (or ``key``: a Bayesian fit's lower bound) after each iteration (0: the initial
    parameters), and (unless ``ax_gap`` is None) on a log scale its gap to the final value and the change per
    iteration (what ``tol`` is compared with)."""
    iterations = [h["iteration"] for h in history]
    values = [h[key] for h in history]
    if initial is not None:
        iterations, values = [0, *iterations], [initial, *values]
    ax_ll.plot(iterations, values, marker="o", markersize=3)
    name = "log-likelihood" if key == "log_likelihood" else "lower bound"
    ax_ll.set(xlabel="iteration", ylabel=what, title=name)
    ax_ll.ticklabel_format(axis="y", useOffset=False)
    ax_ll.grid(alpha=0.3)
    ax_ll.xaxis.get_major_locator().set_params(integer=True)
    if ax_gap is None:
        return
    final = values[-1]
    gaps = [(t, final - v) for t, v in zip(iterations[:-1], values[:-1], strict=True) if final - v > 0]
    changes = [(h["iteration"], abs(h["change"])) for h in history if h.get("change")]
    if gaps:
        ax_gap.semilogy(*zip(*gaps, strict=True), marker="o", markersize=3, label="final - current")
    if changes:
        ax_gap.semilogy(*zip(*changes, strict=True), marker=".", linestyle="--", label="|change| in the iteration")
    if gaps or changes:
        ax_gap.legend(fontsize="small")
    ax_gap.set(xlabel="iteration", title=f"distance to the final {name}")
    ax_gap.grid(alpha=0.3, which="both")
    ax_gap.xaxis.get_major_locator().set_params(integer=True)


def draw_selection(ax, candidates: Sequence[dict[str, Any]], criterion: str, best: int | None) -> None:
    """One criterion against k, one line per covariance type, as the distance above the lowest value on a symlog
    scale (linear below ``SELECTION_LINEAR_BELOW``), so that both the steep fall and the near-ties at its bottom
    show. Hollow markers: candidates that did not converge; ringed: candidate ``best``."""
    lowest = min(row[criterion] for row in candidates)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for row in candidates:
        by_type.setdefault(row["covariance_type"], []).append(row)
    for covariance_type, rows in by_type.items():
        rows = sorted(rows, key=lambda row: row["k"])
        line, = ax.plot([r["k"] for r in rows], [r[criterion] - lowest for r in rows], marker="o",
                        label=covariance_type)
        loose = [r for r in rows if not r.get("converged", True)]
        if loose:
            ax.plot([r["k"] for r in loose], [r[criterion] - lowest for r in loose], linestyle="none", marker="o",
                    markerfacecolor="white", markeredgecolor=line.get_color())
    if best is not None:
        chosen = candidates[best]
        ax.plot([chosen["k"]], [chosen[criterion] - lowest], linestyle="none", marker="o", markersize=14,
                markerfacecolor="none", markeredgecolor="black", markeredgewidth=1.5, label="chosen")
    ax.set_yscale("symlog", linthresh=SELECTION_LINEAR_BELOW)
    ax.set_ylim(bottom=-0.3 * SELECTION_LINEAR_BELOW)  # room for the ring around a zero
    ax.set(xlabel="k (components)", ylabel=f"{criterion.upper()} - {lowest:,.1f}",
           title=f"{criterion.upper()} above its lowest value (lower is better)")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")


def draw_cluster_sizes(ax, weights: np.ndarray, sizes: Sequence[int] | None, n_rows: float | None) -> None:
    """Rows per component (the most probable one, as the fit counted them) and, as diamonds, each component's
    weight times the rows (its share of the responsibilities); only the weights without a fit summary."""
    k = len(weights)
    colors = component_colors(k)
    positions = np.arange(k)
    if sizes is not None:
        bars = ax.bar(positions, sizes, color=colors)
        if n_rows:
            ax.plot(positions, np.asarray(weights) * n_rows, linestyle="none", marker="D", color="black",
                    markersize=4, label="weight x rows")
            ax.legend(fontsize="small")
        ax.set_ylabel("rows (most probable component)")
    else:
        bars = ax.bar(positions, weights, color=colors)
        ax.set_ylabel("weight")
    if k <= 20:
        ax.bar_label(bars, labels=[f"{v:,.0f}" if sizes is not None else f"{v:.3f}" for v in bars.datavalues],
                     fontsize="x-small")
        ax.set_xticks(positions)
    ax.set(xlabel="component", title="cluster sizes")


def _ellipse(ax, center, covariance, color) -> None:
    from matplotlib.patches import Ellipse

    values, vectors = np.linalg.eigh(covariance)
    values = np.clip(values, 0.0, None)
    angle = np.degrees(np.arctan2(vectors[1, 1], vectors[0, 1]))
    width, height = 2.0 * ELLIPSE_SIGMAS * np.sqrt(values[::-1])
    ax.add_patch(Ellipse(center, width, height, angle=angle, facecolor="none", edgecolor=color, linewidth=2))


def draw_projection(ax, mixture: Mixture, X: np.ndarray, labels: np.ndarray, feature_names: Sequence[str]) -> None:
    """The sample on the mixture's principal plane (or against the features themselves, d == 2), coloured by
    component, with each component's 2-sigma ellipse projected to that plane; d == 1: a histogram of the sample
    under the mixture's density and its weighted components."""
    colors = component_colors(mixture.n_components)
    if mixture.n_features == 1:
        _draw_one_feature(ax, mixture, X[:, 0], colors, feature_names[0])
        return
    mean, axes, variances = projection_plane(mixture)
    if mixture.n_features == 2:
        mean = np.zeros(2)  # the features themselves, in their own units
    points = (X - mean) @ axes
    ax.scatter(points[:, 0], points[:, 1], c=[colors[j] for j in labels], s=4, alpha=0.4, linewidths=0,
               rasterized=True)
    centres = (mixture.means - mean) @ axes
    for j, (centre, covariance) in enumerate(zip(centres, projected_covariances(mixture, axes), strict=True)):
        _ellipse(ax, centre, covariance, colors[j])
        ax.annotate(str(j), centre, ha="center", va="center", fontsize="small", fontweight="bold",
                    bbox=dict(boxstyle="circle,pad=0.2", facecolor="white", edgecolor=colors[j], alpha=0.8))
    if mixture.n_features == 2:
        ax.set(xlabel=feature_names[0], ylabel=feature_names[1])
    else:
        share = variances / np.trace(overall_moments(mixture)[1])
        ax.set(xlabel=f"PC1 ({share[0]:.0%} of the variance)", ylabel=f"PC2 ({share[1]:.0%} of the variance)")
    ax.set_title("sample on the principal plane, 2-sigma ellipses")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.3)


def _draw_one_feature(ax, mixture: Mixture, x: np.ndarray, colors: list, name: str) -> None:
    ax.hist(x, bins=min(60, max(10, x.size // 20)), density=True, color="0.8", label="sample")
    sd = np.sqrt(mixture.covariances.reshape(mixture.n_components, -1)[:, 0] if mixture.covariance_type != "tied"
                 else np.full(mixture.n_components, mixture.covariances.ravel()[0]))
    means = mixture.means[:, 0]
    grid = np.linspace(min(x.min(), (means - 4 * sd).min()), max(x.max(), (means + 4 * sd).max()), 400)
    components = mixture.weights[:, None] * np.exp(-0.5 * ((grid - means[:, None]) / sd[:, None]) ** 2) / (
        sd[:, None] * np.sqrt(2.0 * np.pi))
    for j, curve in enumerate(components):
        ax.plot(grid, curve, color=colors[j], label=f"component {j}" if mixture.n_components <= 10 else None)
    ax.plot(grid, np.exp(mixture.score_samples(grid[:, None])), color="black", linewidth=1.5, label="mixture")
    ax.set(xlabel=name, ylabel="density", title="sample and the mixture's density")
    ax.legend(fontsize="small")


def draw_log_density(ax, log_density: np.ndarray, quantiles: dict[float, float] | None) -> None:
    """A histogram of the sample's log-densities; the model's log-density quantiles (thresholds below which a row is
    as rare as that quantile says) as vertical lines."""
    ax.hist(log_density, bins=60, color="0.6")
    for q, value in sorted((quantiles or {}).items()):
        ax.axvline(value, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(f"q={q:g}", (value, 1.0), xycoords=("data", "axes fraction"), rotation=90, ha="right",
                    va="top", fontsize="x-small", color="tab:red")
    ax.set(xlabel="log-density of the row under the mixture", ylabel="rows", title="log-density of the sample")
    ax.grid(alpha=0.3)
