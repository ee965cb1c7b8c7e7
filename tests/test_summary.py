"""The fit-result schema (``sparkgmm.summary``): every field of the summary has one name in metrics.json, and what
``to_metrics`` and ``to_dict`` write reads back as the same summary. No Spark: the summary is plain data."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from helpers import bayesian_summary_of_every_field, summary_of_every_field
from sparkgmm.persistence import ModelFormatError
from sparkgmm.summary import CANDIDATE_METRICS, REPORTED, GaussianMixtureSummary

PROPERTIES = {"bic", "aic", "fullDataPasses"}  # reported, and computed again when read back


def through_json(document):
    return json.loads(json.dumps(document, allow_nan=False))


def test_every_field_of_the_summary_has_one_name_in_metrics():
    fields = {f.name for f in dataclasses.fields(GaussianMixtureSummary)}
    attributes = [entry.attribute for entry in REPORTED]
    keys = [entry.key for entry in REPORTED]
    assert len(set(attributes)) == len(attributes) and len(set(keys)) == len(keys)
    assert set(attributes) == fields | PROPERTIES
    assert list(summary_of_every_field().to_metrics()) == keys
    assert CANDIDATE_METRICS == ("log_likelihood", "bic", "aic", "n_parameters", "n_iter", "converged", "passes",
                                 "seconds")


def test_metrics_and_the_model_directory_block_read_back_as_the_same_summary():
    summary = bayesian_summary_of_every_field()
    unset = [f.name for f in dataclasses.fields(summary) if (f.default is not dataclasses.MISSING
             and getattr(summary, f.name) == f.default) or (f.default_factory is not dataclasses.MISSING
             and getattr(summary, f.name) == f.default_factory())]
    assert unset == []  # the example sets every field, so that losing any one on the way shows below
    assert GaussianMixtureSummary.from_metrics(through_json(summary.to_metrics())) == summary
    assert GaussianMixtureSummary.from_dict(through_json(summary.to_dict()), "model") == summary
    em = summary_of_every_field()  # EM's: a log-likelihood per iteration, no prior
    assert GaussianMixtureSummary.from_metrics(through_json(em.to_metrics())) == em


def test_a_bayesian_fits_metrics_hold_the_lower_bound_per_iteration():
    metrics = bayesian_summary_of_every_field().to_metrics()
    assert metrics["history"] == [
        {"iteration": 1, "lower_bound": -50.5, "change": None, "seconds": 0.25},
        {"iteration": 2, "lower_bound": -40.25, "change": 10.25, "seconds": 0.5},
        {"iteration": 3, "lower_bound": -39.75, "change": 0.5, "seconds": 0.75},
    ]
    assert (metrics["prior"], metrics["effective_components"], metrics["lower_bounds"]) == (
        "dirichlet_process", 2, [-50.5, -40.25, -39.75])
    assert (metrics["initial_log_likelihood"], metrics["log_likelihood"]) == (-4.0, -3.125)


def test_metrics_write_the_history_per_iteration_and_the_computed_figures():
    metrics = summary_of_every_field().to_metrics()
    assert metrics["initial_log_likelihood"] == -4.0
    assert metrics["history"] == [
        {"iteration": 1, "log_likelihood": -3.5, "change": 0.5, "seconds": 0.25},
        {"iteration": 2, "log_likelihood": -3.25, "change": 0.25, "seconds": 0.5},
        {"iteration": 3, "log_likelihood": -3.125, "change": 0.125, "seconds": 0.75},
    ]
    assert metrics["bic"] == pytest.approx(2 * 3.125 * 99.5 + 11 * math.log(99.5), rel=1e-15)
    assert metrics["aic"] == pytest.approx(2 * 3.125 * 99.5 + 2 * 11, rel=1e-15)
    assert (metrics["passes"], metrics["full_data_passes"], metrics["n_rejected_steps"]) == (9, 8, 1)
    assert metrics["log_density_quantiles"] == {"0.01": -9.0, "0.5": -3.0}
    assert metrics["cluster_sizes"] == [70, 31] and metrics["restarts"][1]["numPasses"] == 4


def test_a_summary_block_without_a_field_every_fit_writes_is_refused_by_name():
    block = summary_of_every_field().to_dict()
    del block["numRows"]
    with pytest.raises(ModelFormatError, match=r"model summary in '/models/m' is damaged: .*numRows"):
        GaussianMixtureSummary.from_dict(block, "/models/m")
