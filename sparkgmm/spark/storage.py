"""What both engines store and compute per task: the stored elements (a block, or where a partition's blocks are
on an executor's local disk), the local files themselves, what the conversion pass learns about the blocks, and one
task's answers to the requests of a pass. Nothing here knows of RDDs or DataFrames: the engines
(``blocks.FeatureBlocks``, ``frames.FrameBlocks``) feed these functions the stored elements of one task."""

from __future__ import annotations

import abc
import contextlib
import math
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import numpy as np

from ..options import PARAMS, check_value
from ..passes import Block, content_fingerprint, merge_fingerprints
from ..sampling import RowSample, SampleBuilder


def check_storage(dtype: str, block_storage: str) -> None:
    check_value(PARAMS["dtype"], "dtype", dtype)
    check_value(PARAMS["blockStorage"], "blockStorage", block_storage)


class Stored(NamedTuple):
    """One stored element: a ``Block`` (the Spark cache holds the data) or a ``LocalFile`` (an executor's local disk
    does), with the rows dropped while packing it."""

    payload: object
    invalid: int
    ragged: int


# --- blocks on the executors' local disks -------------------------------------------------------------------------

MISSING_LOCAL_FILE = "sparkgmm: local block file missing"
_ALIGN = 64


class MissingLocalFile(RuntimeError):
    """A pass ran where a partition's block file is not (another host, or a cleaned directory)."""


@dataclass(frozen=True)
class LocalFile:
    """A partition's blocks, written once to a file on its executor's local disk and memory-mapped by every pass.
    ``blocks`` holds, per block, ``(x offset, rows, w offset or -1, hashes offset, origin or None)``."""

    path: str
    n_features: int
    dtype: str
    blocks: tuple

    def read(self) -> Iterator[Block]:
        if not os.path.exists(self.path):
            raise MissingLocalFile(f"{MISSING_LOCAL_FILE}: {self.path} on {socket.gethostname()}")
        if not self.blocks:
            return
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        d = self.n_features
        for x_offset, rows, w_offset, h_offset, origin in self.blocks:
            xt = np.frombuffer(data, dtype=self.dtype, count=d * rows, offset=x_offset).reshape(d, rows)
            w = None if w_offset < 0 else np.frombuffer(data, dtype=np.float64, count=rows, offset=w_offset)
            hashes = np.frombuffer(data, dtype=np.uint64, count=rows, offset=h_offset)
            yield Block(xt, w, hashes, origin)


def _local_dir(store: str) -> str:
    """This executor's directory for the store's files: under Spark's local dirs, which the executor removes when
    it stops (``SPARK_LOCAL_DIRS`` is set for Python workers), else the temporary directory."""
    roots = os.environ.get("SPARK_LOCAL_DIRS", "").split(",")
    root = roots[0] if roots[0] else tempfile.gettempdir()
    return os.path.join(root, f"sparkgmm-{store}")


def _removed_marker(store: str) -> str:
    """Left beside the store's directory by ``remove_local_files``: a task of the store's conversion that is still
    running then (the conversion failed, and Spark had not killed it yet) removes the file it writes."""
    return _local_dir(store) + ".removed"


def write_local_file(store: str, index: int, stored: Iterator[Stored]) -> Iterator[Stored]:
    """Write one partition's blocks to a new file on this executor's local disk; yield where they are. A write that
    fails (the task killed because another failed, a damaged input) removes its file, and so does one that ends
    after the store was removed."""
    directory = _local_dir(store)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"part-{index:05d}-{uuid.uuid4().hex}.bin")
    layout = []
    invalid = ragged = 0
    d, dtype = 0, "float64"
    try:
        with open(path, "wb") as out:
            for element in stored:
                invalid += element.invalid
                ragged += element.ragged
                block = element.payload
                if not block.n_rows:
                    continue
                d, dtype = block.xt.shape[0], block.xt.dtype.name
                x_offset = _write_aligned(out, block.xt)
                w_offset = -1 if block.w is None else _write_aligned(out, block.w)
                h_offset = _write_aligned(out, block.hashes)
                layout.append((x_offset, block.n_rows, w_offset, h_offset, block.origin))
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise
    if os.path.exists(_removed_marker(store)):
        shutil.rmtree(directory, ignore_errors=True)
        return
    yield Stored(LocalFile(path, d, dtype, tuple(layout)), invalid, ragged)


def _write_aligned(out, array: np.ndarray) -> int:
    offset = out.tell()
    out.write(memoryview(np.ascontiguousarray(array)).cast("B"))
    out.write(b"\0" * (-out.tell() % _ALIGN))
    return offset


def remove_local_files(store: str, _elements) -> Iterator[int]:
    """Remove the store's files on this executor, and mark it removed for any writer still running."""
    directory = _local_dir(store)
    os.makedirs(os.path.dirname(directory), exist_ok=True)
    with open(_removed_marker(store), "w"):
        pass
    shutil.rmtree(directory, ignore_errors=True)
    yield 0


def blocks_of(element: Stored) -> Iterator[Block]:
    payload = element.payload
    if isinstance(payload, LocalFile):
        yield from payload.read()
    else:
        yield payload


class Description(NamedTuple):
    """What the conversion pass learns about some blocks; ``merge`` is associative. ``largest_task`` is the most
    rows one task of the pass read, ``tasks`` how many tasks read them; ``fingerprint`` is
    ``passes.content_fingerprint`` of all the rows; ``sample`` the bounded sample of the rows the pass was asked to
    keep (``sampling.RowSample``), if any."""

    rows: int
    weight_sum: float
    invalid: int
    ragged: int
    dims: frozenset
    bytes: int
    blocks: int
    largest_task: int
    fingerprint: int = 0
    tasks: int = 0
    sample: RowSample | None = None

    def merge(self, other: Description) -> Description:
        sample = other.sample if self.sample is None else self.sample if other.sample is None else \
            self.sample.merge(other.sample)
        return Description(self.rows + other.rows, self.weight_sum + other.weight_sum, self.invalid + other.invalid,
                           self.ragged + other.ragged, self.dims | other.dims, self.bytes + other.bytes,
                           self.blocks + other.blocks, max(self.largest_task, other.largest_task),
                           merge_fingerprints(self.fingerprint, other.fingerprint), self.tasks + other.tasks, sample)


def describe_partition(stored, sample_rows: int = 0, sample_seed: tuple[int, ...] = ()) -> Iterator[Description]:
    """Rows, weight sum, invalid and ragged counts, the feature counts and the bytes of one task's blocks; with
    ``sample_rows``, also their sample of that many rows at most (``sampling``), drawn with ``sample_seed``."""
    total = Description(0, 0.0, 0, 0, frozenset(), 0, 0, 0, tasks=1)
    sample = SampleBuilder(sample_rows, sample_seed) if sample_rows > 0 else None
    for element in stored:
        total = total.merge(Description(0, 0.0, element.invalid, element.ragged, frozenset(), 0, 0, 0))
        for block in blocks_of(element):
            n_block = block.n_rows
            if not n_block:
                continue
            weight_sum = float(n_block if block.w is None else block.w.sum())
            size = block.xt.nbytes + block.hashes.nbytes + (0 if block.w is None else block.w.nbytes)
            total = total.merge(Description(n_block, weight_sum, 0, 0, frozenset([block.xt.shape[0]]), size, 1, 0,
                                            content_fingerprint(block)))
            if sample is not None:
                sample.add(block)
    dims = sorted(total.dims)
    kept = None if sample is None else sample.result(dims[0] if len(dims) == 1 else 0)
    yield total._replace(largest_task=total.rows, sample=kept)


def describe_depth(tasks: int, depth: int) -> int:
    """The depth of the tree-reduce of a conversion's descriptions: at least ``depth``, and deep enough that the
    driver receives at most about 4 of them whatever the number of tasks (each can carry a sample of
    ``sampleRows`` rows)."""
    return max(depth, math.ceil(math.log2(max(tasks, 2))))


def answer_partition(requests: Sequence, n_features: int, stored) -> list:
    """One task's answers to every request of a pass: each block is read once and answers all of them."""
    answers = [request.empty(n_features) for request in requests]
    for element in stored:
        for block in blocks_of(element):
            if block.n_rows:
                for i, request in enumerate(requests):
                    answers[i] = answers[i].merge(request.on_block(block))
    return answers


def merge_answers(a: list, b: list) -> list:
    return [x.merge(y) for x, y in zip(a, b, strict=True)]


# Rebalance the blocks when one task of a pass would read more than this times its fair share of the rows.
MAX_TASK_SKEW = 1.25
# At most this many stored partitions per core: enough for a pass to follow cores that join later.
MAX_PARTITIONS_PER_CORE = 4


class StoredBlocks(abc.ABC):
    """What both engines' stored blocks (``blocks.FeatureBlocks``, ``frames.FrameBlocks``) share: their settings,
    what the conversion pass learned about them, and their release when a ``with`` block ends."""

    engine = ""

    def __init__(self, spark, storage_level, aggregation_depth: int, dtype: str, block_storage: str,
                 sample_rows: int = 0, sample_seed: tuple[int, ...] = ()):
        check_storage(dtype, block_storage)
        self.spark = spark
        self.aggregation_depth = aggregation_depth
        self.dtype = dtype
        self.block_storage = block_storage
        self.sample_rows = sample_rows
        self.sample_seed = tuple(sample_seed)
        self._storage_level = storage_level
        self._store_id = uuid.uuid4().hex
        self.rebalanced = False

    def _describe_task(self):
        """What each task of the conversion pass runs over its stored elements: ``describe_partition``, keeping a
        sample of ``sample_rows`` rows."""
        return partial(describe_partition, sample_rows=self.sample_rows, sample_seed=self.sample_seed)

    def _described(self, described: Description, seconds: float) -> None:
        """Keep what the conversion pass found: rows, weights, dropped rows, features, bytes, fingerprint."""
        self.seconds = seconds
        self.n_rows = described.rows
        self.weight_sum = described.weight_sum
        self.invalid_rows = described.invalid
        self.ragged_rows = described.ragged
        self.block_bytes = described.bytes
        self.fingerprint = described.fingerprint
        self.largest_task_rows = described.largest_task
        dims = sorted(described.dims)
        self.n_features = dims[0] if len(dims) == 1 else -1
        # The sample's rows, largest key first (a prefix is a smaller sample of the same law); None when not asked.
        sample = described.sample
        self.sample = None if sample is None or self.n_features < 1 else sample.ordered()
        if len(dims) > 1:  # each partition was consistent, but they disagree with each other
            self.ragged_rows = max(self.ragged_rows, 1)

    @property
    @abc.abstractmethod
    def n_tasks(self) -> int:
        """How many tasks a pass started now runs."""

    @abc.abstractmethod
    def run_pass(self, requests: Sequence, description: str) -> list:
        """One pass for ``sparkgmm.em`` over the stored blocks: the answers to ``requests``, one per request."""

    @abc.abstractmethod
    def unpersist(self) -> None:
        """Release the stored blocks (each engine its own way)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.unpersist()
