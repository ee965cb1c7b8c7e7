"""The code that runs in the executors' tasks, for both engines: packing a partition's rows into blocks, the stored
elements (a block, or where a partition's blocks are on an executor's local disk), the local files themselves, what
the conversion pass learns about the blocks, and one task's answers to the requests of a pass; then the bodies each
engine hands Spark (the RDD engine's ``mapPartitions`` functions, the DataFrame engine's ``mapInArrow`` bodies),
which only decode their input and call the shared code. The engines (``engine.rdd``, ``engine.dataframe``) run them;
nothing here builds an RDD or a DataFrame."""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
import shutil
import socket
import tempfile
import uuid
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import pyarrow as pa

from ..features import list_array_to_matrix
from ...moments import ColumnMoments
from ...passes import Block, content_fingerprint, merge_fingerprints, pack_block
from ...sampling import RowSample, SampleBuilder


class Stored(NamedTuple):
    """One stored element: a ``Block`` (the Spark cache holds the data) or a ``LocalFile`` (an executor's local disk
    does), with the rows dropped while packing it."""

    payload: Block | LocalFile
    invalid: int
    ragged: int


# --- the Python worker ----------------------------------------------------------------------------------------------

_worker_settled = False


def settle_python_worker() -> None:
    """Once in each Python worker process, at its first sparkgmm task: ``gc.freeze()`` what is alive then (the
    imported modules: numpy, pyarrow, pyspark, sparkgmm), out of the cyclic garbage collector's way.

    PySpark's daemon runs ``gc.collect()`` after every task of a reused worker, and a full collection walks every
    object it tracks: with these modules imported, ~25 ms of CPU per task on this machine (2026-12-06: 50 jobs of
    two trivial tasks, 1.2-1.4 s of CPU in each worker; 0.04 s once frozen), more than a pass's arithmetic on small
    blocks. Frozen objects are still freed when nothing refers to them; only reference cycles among them are never
    collected. Never in the driver, which runs no task: its objects are its user's."""
    global _worker_settled
    if _worker_settled:
        return
    _worker_settled = True
    from pyspark import TaskContext

    if TaskContext.get() is not None:
        gc.freeze()


# --- packing rows into blocks --------------------------------------------------------------------------------------

def _block_batch(block: Block, invalid: int, ragged: int) -> pa.RecordBatch:
    """One output row of ``pack_partition``: a packed block as raw bytes, with the counts of dropped rows."""
    w, origin = block.w, block.origin
    return pa.RecordBatch.from_pydict(
        {
            "rows": pa.array([block.n_rows], pa.int64()),
            "cols": pa.array([block.xt.shape[0]], pa.int32()),
            "x": pa.array([block.xt.tobytes()], pa.binary()),
            "w": pa.array([b"" if w is None else w.tobytes()], pa.binary()),
            "h": pa.array([block.hashes.tobytes()], pa.binary()),
            "origin": pa.array([b"" if origin is None else origin.tobytes()], pa.binary()),
            "invalid": pa.array([invalid], pa.int64()),
            "ragged": pa.array([ragged], pa.int64()),
        }
    )


PACKED_SCHEMA = "rows long, cols int, x binary, w binary, h binary, origin binary, invalid long, ragged long"


def pack_blocks(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int,
                dtype: str) -> Iterator[tuple[Block, int, int]]:
    """A partition's valid rows packed into ``dtype`` blocks of about ``block_bytes``: ``(block, invalid, ragged)``,
    where the counts of invalid (null, non-finite, bad weight) and ragged rows ride along on the blocks (a last
    block may hold no rows, only counts)."""
    itemsize = np.dtype(dtype).itemsize
    pending_x: list[np.ndarray] = []
    pending_w: list[np.ndarray] = []
    pending_rows = 0
    d = -1
    invalid = ragged = 0

    def pack(rows: np.ndarray, weights: np.ndarray | None) -> tuple[Block, int, int]:
        nonlocal invalid, ragged
        packed = pack_block(rows, weights, dtype), invalid, ragged
        invalid = ragged = 0
        return packed

    for batch in batches:
        X, valid, d, batch_ragged = list_array_to_matrix(batch.column(0), d if d >= 0 else None)
        ragged += batch_ragged
        if has_weight:
            w = batch.column(1).cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
            valid &= np.isfinite(w) & (w >= 0.0)
        invalid += int((~valid).sum()) - batch_ragged
        if not valid.any():  # nothing to keep, and the row length may not be known yet
            continue
        keep = slice(None) if valid.all() else valid
        pending_x.append(X[keep])
        if has_weight:
            pending_w.append(w[keep])
        pending_rows += pending_x[-1].shape[0]
        rows_per_block = max(1, block_bytes // (itemsize * max(d, 1)))
        if pending_rows >= rows_per_block:
            rows = np.concatenate(pending_x)
            weights = np.concatenate(pending_w) if has_weight else None
            full = (pending_rows // rows_per_block) * rows_per_block
            for start in range(0, full, rows_per_block):
                stop = start + rows_per_block
                yield pack(rows[start:stop], None if weights is None else weights[start:stop])
            pending_x = [rows[full:]]
            pending_w = [] if weights is None else [weights[full:]]
            pending_rows -= full
    if pending_rows or invalid or ragged:
        rows = np.concatenate(pending_x) if pending_x else np.zeros((0, max(d, 0)))
        yield pack(rows, np.concatenate(pending_w) if pending_w else None)


def pack_partition(batches: Iterator[pa.RecordBatch], has_weight: bool, block_bytes: int,
                   dtype: str) -> Iterator[pa.RecordBatch]:
    """mapInArrow body: ``pack_blocks``, one output row (``PACKED_SCHEMA``) per block."""
    for block, invalid, ragged in pack_blocks(batches, has_weight, block_bytes, dtype):
        yield _block_batch(block, invalid, ragged)




def block_of(rows: int, cols: int, x, w, h, origin, has_weight: bool, dtype: str) -> Block:
    """The ``Block`` of one packed row (``PACKED_SCHEMA``); ``x``, ``w``, ``h`` and ``origin`` are bytes or any buffer
    (an Arrow value's, read without a copy)."""
    xt = np.frombuffer(x, dtype=dtype).reshape(max(cols, 0), rows)
    weights = np.frombuffer(w, dtype=np.float64) if has_weight else None
    hashes = np.frombuffer(h, dtype=np.uint64)
    origin = np.frombuffer(origin, dtype=np.float64) if len(origin) else None
    return Block(xt, weights, hashes, origin)


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
                if not isinstance(block, Block):
                    raise TypeError(f"write_local_file stores blocks, not {type(block).__name__}")
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
    out.write(np.ascontiguousarray(array).data.cast("B"))
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
    keep (``sampling.RowSample``), if any; ``moments`` the weighted mean and scatter of all the rows
    (``moments.ColumnMoments``), None before any row, and from the first disagreement on the feature count on (the
    fit refuses such input: nothing is lost)."""

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
    moments: ColumnMoments | None = None

    def merge(self, other: Description) -> Description:
        sample = other.sample if self.sample is None else self.sample if other.sample is None else \
            self.sample.merge(other.sample)
        dims = self.dims | other.dims
        moments = None if len(dims) > 1 else other.moments if self.moments is None else \
            self.moments if other.moments is None else self.moments.merge(other.moments)
        return Description(self.rows + other.rows, self.weight_sum + other.weight_sum, self.invalid + other.invalid,
                           self.ragged + other.ragged, dims, self.bytes + other.bytes,
                           self.blocks + other.blocks, max(self.largest_task, other.largest_task),
                           merge_fingerprints(self.fingerprint, other.fingerprint), self.tasks + other.tasks, sample,
                           moments)


def describe_partition(stored, sample_rows: int = 0, sample_seed: tuple[int, ...] = (),
                       moments: bool = False) -> Iterator[Description]:
    """Rows, weight sum, invalid and ragged counts, the feature counts and the bytes of one task's blocks; with
    ``sample_rows``, also their sample of that many rows at most (``sampling``), drawn with ``sample_seed``; with
    ``moments``, their column moments (only a Bayesian mixture's priors need them: they cost a third to a half of
    packing the blocks)."""
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
                                            content_fingerprint(block),
                                            moments=ColumnMoments.of_block(block) if moments else None))
            if sample is not None:
                sample.add(block)
    dims = sorted(total.dims)
    kept = None if sample is None else sample.result(dims[0] if len(dims) == 1 else 0)
    yield total._replace(largest_task=total.rows, sample=kept)


def answer_partition(requests: Sequence, n_features: int, stored) -> list:
    """One task's answers to every request of a pass: each block is read once and answers all of them."""
    settle_python_worker()
    answers = [request.empty(n_features) for request in requests]
    for element in stored:
        for block in blocks_of(element):
            if block.n_rows:
                for i, request in enumerate(requests):
                    answers[i] = answers[i].merge(request.on_block(block))
    return answers


def merge_answers(a: list, b: list) -> list:
    return [x.merge(y) for x, y in zip(a, b, strict=True)]


def described_answers(requests: Sequence, n_features: int, elements: list) -> tuple[Description, list | None]:
    """One task of a pass that packs its rows itself and stores nothing (``convert_and_answer`` of either engine): its
    blocks described, and the requests answered when every block has ``n_features`` features (None otherwise: the
    caller refuses such rows, and nothing is computed on them)."""
    described = next(describe_partition(elements))
    answers = answer_partition(requests, n_features, elements) if described.dims <= {n_features} else None
    return described, answers


def describe_and_answer(broadcast, n_features: int, stored) -> Iterator[tuple[Description, list | None]]:
    """``described_answers`` of the requests a pass broadcast (``engine.rdd.convert_and_answer``)."""
    yield described_answers(broadcast.value, n_features, list(stored))


def merge_described_answers(a: tuple[Description, list | None],
                            b: tuple[Description, list | None]) -> tuple[Description, list | None]:
    answers = None if a[1] is None or b[1] is None else merge_answers(a[1], b[1])
    return a[0].merge(b[0]), answers


# --- the RDD engine's task bodies ----------------------------------------------------------------------------------

def number_blocks(index: int, stored) -> Iterator[tuple[int, Stored]]:
    """Key each block by a running number (offset by the partition index) for a round-robin partitionBy."""
    for number, element in enumerate(stored):
        yield index + number, element


def answer_broadcast(broadcast, n_features: int, stored) -> Iterator[list]:
    """``answer_partition`` of the requests a pass broadcast."""
    yield answer_partition(broadcast.value, n_features, stored)


def _arrow_batches(schema: pa.Schema, messages: Iterator[bytes]) -> Iterator[pa.RecordBatch]:
    """Arrow IPC record batch messages (no schema of their own) as record batches, without copying the data."""
    for message in messages:
        yield pa.ipc.read_record_batch(pa.py_buffer(message), schema)


def pack_arrow_messages(schema: pa.Schema, has_weight: bool, block_bytes: int, dtype: str,
                        messages: Iterator[bytes]) -> Iterator[Stored]:
    """``pack_blocks`` of the JVM's Arrow batch messages of a partition (``engine.arrow_rdd``)."""
    for block, invalid, ragged in pack_blocks(_arrow_batches(schema, messages), has_weight, block_bytes, dtype):
        yield Stored(block, invalid, ragged)


def stored_of_row(has_weight: bool, dtype: str, row) -> Stored:
    """The stored block of one packed row (``PACKED_SCHEMA``) brought to the RDD as a Row."""
    block = block_of(row.rows, row.cols, row.x, row.w, row.h, row.origin, has_weight, dtype)
    return Stored(block, row.invalid, row.ragged)


# --- the DataFrame engine's mapInArrow bodies ----------------------------------------------------------------------

LOCATION_SCHEMA = "stored binary"  # a pickled Stored holding a LocalFile: one row per stored partition
ANSWER_SCHEMA = "answer binary"  # one task's pickled answers


def _binary_batch(name: str, value: bytes) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: pa.array([value], pa.binary())})


def _binary_values(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.Buffer]:
    for batch in batches:
        for value in batch.column(0):
            yield value.as_buffer()


def _packed_elements(has_weight: bool, dtype: str, batches: Iterator[pa.RecordBatch]) -> Iterator[Stored]:
    """The blocks of packed rows (``PACKED_SCHEMA``), read from the Arrow batches without copying them."""
    for batch in batches:
        rows, cols = batch.column("rows").to_pylist(), batch.column("cols").to_pylist()
        invalid, ragged = batch.column("invalid").to_pylist(), batch.column("ragged").to_pylist()
        x, w, h, origin = (batch.column(name) for name in ("x", "w", "h", "origin"))
        for i in range(batch.num_rows):
            block = block_of(rows[i], cols[i], x[i].as_buffer(), w[i].as_buffer(), h[i].as_buffer(),
                             origin[i].as_buffer(), has_weight, dtype)
            yield Stored(block, invalid[i], ragged[i])


def _stored_elements(block_storage: str, has_weight: bool, dtype: str,
                     batches: Iterator[pa.RecordBatch]) -> Iterator[Stored]:
    if block_storage == "local-files":
        return (pickle.loads(value) for value in _binary_values(batches))
    return _packed_elements(has_weight, dtype, batches)


def write_packed_task(store: str, has_weight: bool, dtype: str,
                      batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body that computes a cached partition from packed rows: its blocks go to a file on this executor's
    local disk, and the one row it yields (``LOCATION_SCHEMA``) says where."""
    yield from _written(store, _packed_elements(has_weight, dtype, batches))


def pack_and_write_task(store: str, has_weight: bool, block_bytes: int, dtype: str,
                        batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``write_packed_task`` straight from the input's rows: the blocks never travel back to the JVM."""
    packed = (Stored(*element) for element in pack_blocks(batches, has_weight, block_bytes, dtype))
    yield from _written(store, packed)


def _written(store: str, elements: Iterator[Stored]) -> Iterator[pa.RecordBatch]:
    from pyspark import TaskContext

    context = TaskContext.get()
    index = context.partitionId() if context is not None else 0
    for element in write_local_file(store, index, elements):
        yield _binary_batch("stored", pickle.dumps(element, protocol=pickle.HIGHEST_PROTOCOL))


def describe_task(describe: Callable, block_storage: str, has_weight: bool, dtype: str,
                  batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a conversion pass: ``describe`` (``describe_partition``) of one task's stored elements."""
    for description in describe(_stored_elements(block_storage, has_weight, dtype, batches)):
        yield _binary_batch("answer", pickle.dumps(description, protocol=pickle.HIGHEST_PROTOCOL))


def answer_task(requests: list, n_features: int, block_storage: str, has_weight: bool, dtype: str,
                batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a pass: one task's answers to every request, as one row."""
    answers = answer_partition(requests, n_features, _stored_elements(block_storage, has_weight, dtype, batches))
    yield _binary_batch("answer", pickle.dumps(answers, protocol=pickle.HIGHEST_PROTOCOL))


def pack_and_answer_task(requests: list, n_features: int, has_weight: bool, block_bytes: int, dtype: str,
                         batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a pass over rows it packs itself, storing nothing (``engine.dataframe.convert_and_answer``):
    ``described_answers`` of the task's rows, as one row."""
    elements = [Stored(block, invalid, ragged)
                for block, invalid, ragged in pack_blocks(batches, has_weight, block_bytes, dtype)]
    answer = described_answers(requests, n_features, elements)
    yield _binary_batch("answer", pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def tree_merge(items: list, merge: Callable) -> object:
    """Merge ``items`` pairwise, level by level (a tree of depth log2(len(items)))."""
    while len(items) > 1:
        items = [merge(items[i], items[i + 1]) if i + 1 < len(items) else items[i] for i in range(0, len(items), 2)]
    return items[0]


def merge_task(merge: Callable, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body of a merge level: the answers of a group of tasks, merged into one row."""
    answers = [pickle.loads(value) for value in _binary_values(batches)]
    if answers:
        merged = tree_merge(answers, merge)
        yield _binary_batch("answer", pickle.dumps(merged, protocol=pickle.HIGHEST_PROTOCOL))


def remove_task(store: str, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """mapInArrow body that removes the store's local files on this executor (``remove_local_files``)."""
    for _ in batches:
        pass
    for removed in remove_local_files(store, ()):
        yield pa.RecordBatch.from_pydict({"removed": pa.array([removed], pa.int64())})
