"""Online updates of a ``GaussianMixtureModel`` on Spark: the new rows converted to blocks once, the update's passes
(``sparkgmm.online.update_candidate``) run over them, the new model built beside the old one."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pyspark import StorageLevel
from pyspark.sql import DataFrame

from ..em import run_side_by_side
from ..errors import InputError
from ..online import UpdateResult, UpdateRule, update_candidate
from .engine import open_blocks
from .estimator import check_blocks
from .features import features_column

if TYPE_CHECKING:
    from .model import GaussianMixtureModel

logger = logging.getLogger("sparkgmm")


@dataclass(frozen=True)
class ModelUpdate:
    """An update on Spark: the new ``model``, what the update measured (``result``), the rows skipped as invalid,
    and the seconds spent converting the rows and in all."""

    model: GaussianMixtureModel
    result: UpdateResult
    skipped_rows: int
    conversion_seconds: float
    seconds: float


def update_rule(model: GaussianMixtureModel) -> UpdateRule:
    """The model's online Params as an ``UpdateRule`` (which refuses a combination that is not one rule)."""
    p = model.online_settings()
    return UpdateRule(p["decayFactor"], p["halfLife"], p["timeUnit"], p["stepPower"])


def update_model(model: GaussianMixtureModel, dataset: DataFrame, measure_after: bool = False,
                 label: str = "online update") -> ModelUpdate:
    """``model`` updated with the rows of ``dataset`` (its features and weight columns, by the model's Params; invalid
    rows as ``handleInvalid`` says). With ``measure_after``, a second pass measures the new model on the rows (their
    log-likelihood after, and the quantiles of their log-densities that the new model then holds)."""
    update = update_model_unless_empty(model, dataset, measure_after, label, skip_empty=False)
    if update is None:
        raise RuntimeError("an update of no rows was not refused")
    return update


def update_model_unless_empty(model: GaussianMixtureModel, dataset: DataFrame, measure_after: bool = False,
                              label: str = "online update", skip_empty: bool = True) -> ModelUpdate | None:
    """``update_model``, or None when ``dataset`` has no rows (after skipping invalid ones) and ``skip_empty``."""
    started = time.perf_counter()
    if model.posterior is not None:
        raise InputError("a Bayesian mixture's model cannot be updated online: refit it (online updates are for "
                         "GaussianMixture's models)")
    p = model._validated()
    rule = update_rule(model)
    mixture = model.mixture
    input_cols = model.input_columns()
    what = ", ".join(input_cols) if input_cols else repr(model.getFeaturesCol())
    features = features_column(dataset, model.getFeaturesCol(), input_cols)
    model.check_input_cols()
    weight_col = model._weight_col()
    with open_blocks(dataset, features, weight_col, getattr(StorageLevel, p["storageLevel"]), engine=p["engine"],
                     aggregation_depth=p["aggregationDepth"], dtype=p["dtype"],
                     block_storage=p["blockStorage"]) as blocks:
        if skip_empty and blocks.n_rows == 0 and not blocks.ragged_rows and (
                not blocks.invalid_rows or p["handleInvalid"] == "skip"):
            return None
        check_blocks(blocks, what, p["handleInvalid"], weight_col, 1)
        if blocks.n_features != mixture.n_features:
            raise InputError(f"features {what} have {blocks.n_features} values per row but the model has "
                             f"{mixture.n_features} features")
        if blocks.invalid_rows:
            logger.warning("skipped %d rows with null, NaN or infinite values in features %s", blocks.invalid_rows,
                           what)
        candidate = update_candidate(mixture, rule, p["regCovar"], effective_count=model.online_settings()[
            "effectiveCount"], max_reseeds=p["maxReseeds"], measure_after=measure_after, label=label)
        result: UpdateResult = run_side_by_side([candidate], blocks.run_pass)[0].value
        skipped, conversion = blocks.invalid_rows, blocks.seconds
    updated = model._copyValues(type(model)(result.mixture, logDensityQuantiles=result.log_density_quantiles))
    seen = result.mixture.seen
    logger.info("%s (%s): %d rows, log-likelihood %.6g per row before%s; the model has seen %d rows in %d batches",
                label, rule.describe(), result.n_samples, result.log_likelihood_before,
                "" if result.log_likelihood_after is None else f", {result.log_likelihood_after:.6g} after",
                0 if seen is None else seen.rows, 0 if seen is None else seen.batches)
    return ModelUpdate(updated, result, skipped, conversion, time.perf_counter() - started)
