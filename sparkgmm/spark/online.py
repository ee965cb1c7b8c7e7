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
from .engine.base import Converted, choose_engine
from .engine.dataframe import convert_and_answer as dataframe_convert_and_answer
from .engine.rdd import convert_and_answer as rdd_convert_and_answer
from .estimator import check_blocks
from .features import features_column

if TYPE_CHECKING:
    from .model import GaussianMixtureModel

logger = logging.getLogger("sparkgmm")


class _NoRows(Exception):
    """The new rows were none (or all invalid and skipped)."""


@dataclass(frozen=True)
class ModelUpdate:
    """An update on Spark: the new ``model``, what the update measured (``result``), the rows skipped as invalid,
    and the seconds spent converting the rows (an update of one pass reads, converts and scores them in one job:
    then that job's seconds) and in all."""

    model: GaussianMixtureModel
    result: UpdateResult
    skipped_rows: int
    conversion_seconds: float
    seconds: float


def update_rule(model: GaussianMixtureModel) -> UpdateRule:
    """The model's online Params as an ``UpdateRule`` (which refuses a combination that is not one rule)."""
    p = model.online_settings()
    return UpdateRule(p["decayFactor"], p["halfLife"], p["timeUnit"], p["stepPower"], p["averageAfter"])


def update_model(model: GaussianMixtureModel, dataset: DataFrame, measure_after: bool = False,
                 label: str = "online update") -> ModelUpdate:
    """``model`` updated with the rows of ``dataset`` (its features and weight columns, by the model's Params; invalid
    rows as ``handleInvalid`` says). With ``measure_after``, a second pass measures the new model on the rows (their
    log-likelihood after, and the quantiles of their log-densities that the new model then holds): the rows are
    converted to stored blocks first, as for a fit. Without it, the one pass reads, converts and scores the rows in
    one Spark job and stores nothing (``convert_and_answer`` of the model's engine: ``engine.rdd``'s in a classic
    session, ``engine.dataframe``'s under Spark Connect or with ``engine="dataframe"``)."""
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
    candidate = update_candidate(mixture, rule, p["regCovar"], effective_count=model.online_settings()[
        "effectiveCount"], max_reseeds=p["maxReseeds"], measure_after=measure_after, label=label)
    converted: list[tuple[Converted, float]] = []

    def accept(found: Converted, seconds: float) -> None:
        """Refuse rows that cannot be learnt from; an empty input (invalid rows skipped) ends the update."""
        converted.append((found, seconds))
        if skip_empty and found.n_rows == 0 and not found.ragged_rows and (
                not found.invalid_rows or p["handleInvalid"] == "skip"):
            raise _NoRows
        check_blocks(found, what, p["handleInvalid"], weight_col, 1)
        if found.n_features != mixture.n_features:
            raise InputError(f"features {what} have {found.n_features} values per row but the model has "
                             f"{mixture.n_features} features")
        if found.invalid_rows:
            logger.warning("skipped %d rows with null, NaN or infinite values in features %s", found.invalid_rows,
                           what)

    try:
        if measure_after:
            with open_blocks(dataset, features, weight_col, getattr(StorageLevel, p["storageLevel"]),
                             engine=p["engine"], aggregation_depth=p["aggregationDepth"], dtype=p["dtype"],
                             block_storage=p["blockStorage"]) as blocks:
                accept(Converted(blocks.n_rows, blocks.weight_sum, blocks.invalid_rows, blocks.ragged_rows,
                                 blocks.n_features), blocks.seconds)
                result: UpdateResult = run_side_by_side([candidate], blocks.run_pass)[0].value
        else:
            # One pass and nothing after it: the rows are read, packed and scored in one job, nothing stored.
            engine = choose_engine(dataset.sparkSession, p["engine"])
            convert_and_answer = rdd_convert_and_answer if engine == "rdd" else dataframe_convert_and_answer

            def read_and_answer(requests, description: str) -> list:
                if converted:
                    raise RuntimeError("an update without a second pass asked for one")
                began = time.perf_counter()
                described, answers = convert_and_answer(
                    dataset, features, weight_col, requests, mixture.n_features, dtype=p["dtype"],
                    aggregation_depth=p["aggregationDepth"], description=f"sparkgmm: {description}")
                accept(Converted.of(described), time.perf_counter() - began)
                if answers is None:
                    raise RuntimeError("rows of another width were answered")
                return answers

            result = run_side_by_side([candidate], read_and_answer)[0].value
    except _NoRows:
        return None
    skipped, conversion = converted[0][0].invalid_rows, converted[0][1]
    updated = model._copyValues(type(model)(result.mixture, logDensityQuantiles=result.log_density_quantiles))
    seen = result.mixture.seen
    logger.info("%s (%s): %d rows, log-likelihood %.6g per row before%s; the model has seen %d rows in %d batches",
                label, rule.describe(), result.n_samples, result.log_likelihood_before,
                "" if result.log_likelihood_after is None else f", {result.log_likelihood_after:.6g} after",
                0 if seen is None else seen.rows, 0 if seen is None else seen.batches)
    return ModelUpdate(updated, result, skipped, conversion, time.perf_counter() - started)
