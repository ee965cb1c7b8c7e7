"""The bounded sample that ``python -m sparkgmm report`` draws on its figures: rows of a local Parquet input read
with pyarrow (only the feature columns of a few randomly chosen row groups), or rows drawn from the model itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .files import local_path
from .mixture import Mixture

# Row groups are read (whole, their feature columns only) until the sample is full, then on while the values read
# stay below this: ~80 MB of float64, a fraction of a second, and the whole input when it is small.
READ_BUDGET_VALUES = 10_000_000
_INDEXED_NAME = re.compile(r"(.+)\[(\d+)\]")  # "features[3]": how the jobs name the entries of a vector column


@dataclass(frozen=True)
class Sample:
    """Rows (n, d), the component each is coloured by, and a sentence saying where they come from."""

    X: np.ndarray
    labels: np.ndarray
    description: str


def model_sample(mixture: Mixture, rows: int, seed: int) -> Sample:
    X, labels = mixture.sample(rows, seed=seed)
    return Sample(X, labels, f"{rows:,} rows drawn from the model itself (no --input given; seed {seed}), coloured "
                             "by the component that drew them")


def _is_vector(arrow_type) -> bool:
    """A list column, or Spark's VectorUDT as Parquet stores it: a struct of type, size, indices and values."""
    import pyarrow as pa

    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type) or pa.types.is_fixed_size_list(arrow_type):
        return True
    return pa.types.is_struct(arrow_type) and {"type", "size", "indices", "values"} <= {f.name for f in arrow_type}


def _is_numeric(arrow_type) -> bool:
    import pyarrow as pa

    return pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type)


def feature_columns(schema, path: str, named: Sequence[str] | None, fitted: Sequence[str] | None,
                    n_features: int) -> tuple[list[str], bool]:
    """The columns to read and whether they are one vector column: those named (``--features``), else the fit's
    feature names, else every numeric column when there are as many as the model has features."""
    types = {field.name: field.type for field in schema}
    names = list(named or [])
    if not names and fitted:
        indexed = [_INDEXED_NAME.fullmatch(name) for name in fitted]
        bases = {m.group(1) for m in indexed if m}
        if all(indexed) and len(bases) == 1 and next(iter(bases)) in types:
            names = [next(iter(bases))]
        else:
            names = list(fitted)
    if len(names) == 1 and names[0] in types and _is_vector(types[names[0]]):
        return names, True
    if not names:
        names = [name for name, arrow_type in types.items() if _is_numeric(arrow_type)]
        if len(names) != n_features:
            raise InputError(f"--input {path} has {len(names)} numeric columns ({', '.join(names)}) and the model "
                             f"{n_features} features: name them with --features")
    missing = [name for name in names if name not in types]
    if missing:
        raise InputError(f"--input {path} has no column {missing[0]!r} (columns: {', '.join(types)}); name the "
                         "features with --features")
    wrong = [name for name in names if not _is_numeric(types[name])]
    if wrong:
        raise InputError(f"--input {path}: column {wrong[0]!r} is {types[wrong[0]]}, not numeric")
    if len(names) != n_features:
        raise InputError(f"--features names {len(names)} columns; the model has {n_features} features")
    return names, False


def _vector_rows(values: list[Any], n_features: int) -> np.ndarray:
    """Python values of a list or Vector-struct column -> (n, d), NaN rows where a value is null or of another
    length."""
    X = np.full((len(values), n_features), np.nan)
    for i, value in enumerate(values):
        if isinstance(value, dict):  # Spark's VectorUDT: type 1 dense (values), 0 sparse (size, indices, values)
            if value.get("type") == 0 and value.get("size") == n_features:
                X[i] = 0.0
                X[i, value["indices"]] = value["values"]
                continue
            value = value.get("values") if value.get("type") == 1 else None
        if value is not None and len(value) == n_features and None not in value:
            X[i] = value
    return X


def _matrix(table, columns: list[str], vector: bool, n_features: int) -> np.ndarray:
    import pyarrow as pa

    if vector:
        return _vector_rows(table.column(columns[0]).to_pylist(), n_features)
    return np.column_stack([table.column(name).cast(pa.float64()).to_numpy() for name in columns])


def parquet_sample(path: str, mixture: Mixture, named: Sequence[str] | None, fitted: Sequence[str] | None,
                   rows: int, seed: int) -> Sample:
    """``rows`` rows at random from the row groups of a local Parquet file or directory, read in a random order
    (only their feature columns, one at a time) until there are enough rows and as long as ``READ_BUDGET_VALUES``
    allows; rows with null or non-finite features are left out. Coloured by their most probable component."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    local = local_path(path, f"--input {path}: the report reads a local Parquet file or directory; copy a part of the "
                             "data to local disk (a few files are enough), or leave --input out to draw from the model")
    if not local.exists():
        raise FileNotFoundError(f"--input {path} does not exist")
    try:
        dataset = ds.dataset(local, format="parquet")  # skips names starting with "." or "_" (_SUCCESS, staging)
        pieces = [piece for fragment in dataset.get_fragments() for piece in fragment.split_by_row_group()]
    except (pa.ArrowException, OSError) as e:
        raise InputError(f"--input {path} cannot be read as Parquet ({str(e).splitlines()[0]})") from None
    columns, vector = feature_columns(dataset.schema, path, named, fitted, mixture.n_features)
    total = sum(piece.row_groups[0].num_rows for piece in pieces)
    if total == 0:
        raise InputError(f"--input {path} has no rows")
    # A bottom-k sample: every row read gets a uniform random key and the rows with the smallest keys are kept, so
    # the sample is uniform over the rows read while only one row group is held at a time.
    rng = np.random.default_rng(seed)
    X, keys, read, groups = np.empty((0, mixture.n_features)), np.empty(0), 0, 0
    for index in rng.permutation(len(pieces)):
        size = pieces[index].row_groups[0].num_rows
        if read >= rows and (read + size) * mixture.n_features > READ_BUDGET_VALUES:
            break
        try:
            table = pieces[index].to_table(columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise InputError(
                f"--input {path}: {pieces[index].path} cannot be read ({str(e).splitlines()[0]})") from None
        group_keys = rng.random(table.num_rows)
        chosen = np.argpartition(group_keys, rows)[:rows] if table.num_rows > rows else np.arange(table.num_rows)
        X = np.concatenate([X, _matrix(table.take(chosen), columns, vector, mixture.n_features)])
        keys = np.concatenate([keys, group_keys[chosen]])
        if keys.size > rows:
            kept = np.argpartition(keys, rows)[:rows]
            X, keys = X[kept], keys[kept]
        read, groups = read + table.num_rows, groups + 1
    finite = np.isfinite(X).all(axis=1)
    if not finite.any():
        raise InputError(f"--input {path}: none of the {X.shape[0]:,} rows sampled has {mixture.n_features} finite "
                         f"features in {', '.join(columns)}")
    X = X[finite]
    description = (f"{X.shape[0]:,} rows of {path} ({', '.join(columns)}), at random from the {read:,} rows of "
                   f"{groups} of its {len(pieces)} row groups ({total:,} rows in all)")
    if not finite.all():
        description += f", leaving out {int((~finite).sum()):,} with null or non-finite features"
    return Sample(X, mixture.predict(X), description + "; coloured by their most probable component")
