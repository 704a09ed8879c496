"""The list encoding of :mod:`recsys.encoding`, vectorised over an Arrow batch of lists (the bulk load's path).

:func:`encode_lists` returns, for every row, exactly the bytes :func:`recsys.encoding.encode_list` returns for
that row (the tests check it byte for byte), without a Python loop over the rows: the headers are one numpy
structured array, the float16 scores and uint8 sources one ``astype`` each over the flattened list values, the
ids are joined by Arrow (or arrive joined from Spark's ``concat_ws``), and the four parts of each value are
concatenated by ``binary_join_element_wise``. Only the bulk load imports this module (it needs pyarrow); the API
decodes with :func:`recsys.encoding.decode_list`.

Example:
    >>> values = encode_lists(pa.array([["P1", "P2"]]), pa.array([[0.9, 0.5]]), pa.array([[1, 4]]),
    ...                       pa.array([0.0]))
    >>> values[0].as_py() == encode_list(["P1", "P2"], [0.9, 0.5], [1, 4], created_at=0.0)
    True
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from recsys.encoding import HEADER_SIZE, MAGIC, VERSION, EncodingError

SEPARATOR = "\x00"
# The header of encoding.encode_list (struct "<2sBHd") as a packed numpy record, one per row.
_HEADER_DTYPE = np.dtype([("magic", "S2"), ("version", "u1"), ("count", "<u2"), ("created_at", "<f8")])


def list_counts(lists: pa.Array) -> np.ndarray:
    """Items per row of a list array (a null list counts as empty), as int64."""
    return pc.fill_null(pc.list_value_length(lists), 0).to_numpy(zero_copy_only=False).astype(np.int64)


def _flat_values(lists: pa.Array, name: str) -> pa.Array:
    flat = lists.flatten()  # honours the slice offset and skips the values behind null lists
    if flat.null_count:
        raise EncodingError(f"{name} holds a null element")
    return flat


def _binary(data: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """A binary array over ``data`` with int32 ``offsets`` (no copy of the data)."""
    if offsets[-1] > np.iinfo(np.int32).max:
        raise EncodingError("an Arrow batch of lists must encode to less than 2 GiB: lower maxRecordsPerBatch")
    return pa.Array.from_buffers(
        pa.binary(),
        len(offsets) - 1,
        [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data))],
    )


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def joined_ids(product_ids: pa.Array, counts: np.ndarray) -> pa.Array:
    """The ids of each row joined by NUL, as binary, after checking them.

    Args:
        product_ids: ``list<string>`` (checked id by id) or ``string``/``binary`` holding a row's ids already
            joined by NUL (Spark's ``concat_ws``; checked by counting separators, which also catches a null
            element that ``concat_ws`` skipped).
        counts: Items per row (from the scores), which the ids must match.

    Raises:
        EncodingError: Counts differ, or an id is empty or contains NUL.
    """
    if pa.types.is_list(product_ids.type) or pa.types.is_large_list(product_ids.type):
        ids_counts = list_counts(product_ids)
        if not np.array_equal(ids_counts, counts):
            row = _first_bad(ids_counts != counts)
            raise EncodingError(f"row {row}: lengths differ: {ids_counts[row]} ids, {counts[row]} scores")
        flat = _flat_values(product_ids, "product_ids")
        if len(flat) and (
            pc.any(pc.equal(pc.binary_length(flat), 0)).as_py() or pc.any(pc.match_substring(flat, SEPARATOR)).as_py()
        ):
            raise EncodingError("product ids must be non-empty and contain no NUL")
        joined = pc.binary_join(product_ids.cast(pa.list_(pa.string())), SEPARATOR)
        return pc.fill_null(joined, "").cast(pa.binary())
    joined = pc.fill_null(product_ids.cast(pa.binary()), b"")
    _check_joined(joined, counts)
    return joined


def _check_joined(joined: pa.Array, counts: np.ndarray) -> None:
    """Row ``i`` holds ``counts[i]`` non-empty ids: ``counts[i] - 1`` NULs, none doubled, leading or trailing.

    numpy over the batch's data buffer (the NUL positions, then one ``searchsorted``), several times faster
    than Arrow's substring kernels.
    """
    bufs = joined.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=len(joined) + 1, offset=4 * joined.offset)
    rel = offsets.astype(np.int64) - int(offsets[0])
    data = np.frombuffer(bufs[2], dtype=np.uint8, count=int(offsets[-1])) if bufs[2] is not None else np.zeros(0)
    nul = data[int(offsets[0]) :] == 0
    pos = np.flatnonzero(nul)
    lengths = np.diff(rel)
    found = np.where(lengths > 0, np.diff(np.searchsorted(pos, rel)) + 1, 0)
    if not np.array_equal(found, counts):
        row = _first_bad(found != counts)
        raise EncodingError(
            f"row {row}: lengths differ or an id holds NUL: {found[row]} ids joined, {counts[row]} scores"
        )
    filled = lengths > 0
    if len(pos) and (nul[rel[:-1][filled]].any() or nul[rel[1:][filled] - 1].any() or (nul[1:] & nul[:-1]).any()):
        raise EncodingError("product ids must be non-empty and contain no NUL")


def encode_lists(product_ids: pa.Array, scores: pa.Array, sources: pa.Array, created_at: pa.Array) -> pa.Array:
    """Encodes one ranked list per row; row ``i`` of the result equals ``encode_list`` of row ``i``.

    Args:
        product_ids: ``list<string>``, or ``string`` with each row's ids joined by NUL (see :func:`joined_ids`).
        scores: ``list<float>`` (float32 or float64; rounded to float16 as ``encode_list`` does).
        sources: ``list<int>``, source bits in 0-255.
        created_at: Epoch seconds per row (``double``).

    Returns:
        A ``binary`` array, one value per row; an empty or null list gives the 13-byte header of an empty list.

    Raises:
        EncodingError: Lengths differ, more than 65535 items, a bad id, a null score or a source out of range.

    Example:
        >>> encode_lists(pa.array(["P1\\x00P2"]), pa.array([[0.9, 0.5]]), pa.array([[1, 4]]), pa.array([0.0]))
    """
    rows = len(scores)
    if not (len(product_ids) == len(sources) == len(created_at) == rows):
        raise EncodingError(
            f"columns differ in length: {len(product_ids)} ids, {rows} scores, {len(sources)} sources, "
            f"{len(created_at)} created_at"
        )
    counts = list_counts(scores)
    src_counts = list_counts(sources)
    if not np.array_equal(src_counts, counts):
        row = _first_bad(src_counts != counts)
        raise EncodingError(f"row {row}: lengths differ: {counts[row]} scores, {src_counts[row]} sources")
    if rows and counts.max() > 0xFFFF:
        raise EncodingError(f"at most 65535 items per list, got {counts.max()}")
    if created_at.null_count:
        raise EncodingError("created_at holds a null")
    ids = joined_ids(product_ids, counts)
    with np.errstate(over="ignore"):  # |score| > 65504 becomes +-inf, as in encode_list
        f16 = _flat_values(scores, "scores").to_numpy(zero_copy_only=False).astype("<f2")
    src = _flat_values(sources, "sources").to_numpy(zero_copy_only=False)
    if len(src) and (src.min() < 0 or src.max() > 0xFF):
        raise EncodingError("source bits must be in 0-255")
    header = np.empty(rows, dtype=_HEADER_DTYPE)
    header["magic"] = MAGIC
    header["version"] = VERSION
    header["count"] = counts
    header["created_at"] = created_at.cast(pa.float64()).to_numpy(zero_copy_only=False)
    offsets = np.concatenate(([0], np.cumsum(counts)))
    parts = [
        _binary(header.view(np.uint8), np.arange(rows + 1, dtype=np.int64) * HEADER_SIZE),
        _binary(f16.view(np.uint8), offsets * 2),
        _binary(src.astype(np.uint8), offsets),
        ids,
    ]
    return pc.binary_join_element_wise(*parts, b"")
