"""DENSIFY at import: a sparse TFLite constant (``SparsityParameters``) -> its dense array.

The format (TFLite's ``schema.fbs``, the same walk as TFLite's ``FormatConverter``): the
tensor's dims, plus one extra dim per entry of ``block_map`` (a block of that original dim), are
visited in ``traversal_order``; each level is DENSE (``dense_size`` entries) or SPARSE_CSR
(``array_segments[parent] .. array_segments[parent + 1]`` index the level's ``array_indices``).
The stored values follow in that visiting order. A blocked dim's original index is
``outer * block_size + inner``.
"""
from __future__ import annotations

import numpy as np

from mobile_engine.errors import ModelFormatError

DENSE, SPARSE_CSR = 0, 1


def _vector(meta, which: str) -> np.ndarray:
    """array_segments / array_indices: a union of Int32Vector, Uint16Vector, Uint8Vector."""
    import tflite
    table = getattr(meta, f"Array{which}")()
    kind = getattr(meta, f"Array{which}Type")()
    cls = {1: tflite.Int32Vector, 2: tflite.Uint16Vector, 3: tflite.Uint8Vector}.get(kind)
    if table is None or cls is None:
        raise ModelFormatError(f"sparse tensor: array_{which.lower()} of type {kind} is missing "
                               f"or unknown")
    vec = cls()
    vec.Init(table.Bytes, table.Pos)
    return vec.ValuesAsNumpy().astype(np.int64) if vec.ValuesLength() else np.zeros(0, np.int64)


def densify(values: np.ndarray, shape: tuple[int, ...], sparsity) -> np.ndarray:
    """The dense array of ``shape`` that the stored ``values`` and ``sparsity`` describe."""
    order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
    block_map = [int(d) for d in sparsity.BlockMapAsNumpy()] if sparsity.BlockMapLength() else []
    metas = [sparsity.DimMetadata(k) for k in range(sparsity.DimMetadataLength())]
    rank = len(shape)
    if len(order) != rank + len(block_map) or len(metas) != len(order):
        raise ModelFormatError(f"sparse tensor of shape {list(shape)}: traversal order {order}, "
                               f"block map {block_map}, {len(metas)} dim metadata do not fit")
    levels = []
    for meta in metas:
        if meta.Format() == DENSE:
            levels.append((DENSE, int(meta.DenseSize()), None, None))
        else:
            levels.append((SPARSE_CSR, 0, _vector(meta, "Segments"), _vector(meta, "Indices")))
    block_size = [int(metas[order[rank + j]].DenseSize()) for j in range(len(block_map))]

    # Walk the levels breadth-first: each row of `idx` is one path (an index per level so far),
    # `pos` its position in the level (the parent index of the next sparse level).
    idx = np.zeros((1, 0), np.int64)
    pos = np.zeros(1, np.int64)
    for fmt, size, segments, indices in levels:
        if fmt == DENSE:
            idx = np.concatenate([np.repeat(idx, size, axis=0),
                                  np.tile(np.arange(size), len(pos))[:, None]], axis=1)
            pos = (pos[:, None] * size + np.arange(size)[None, :]).reshape(-1)
        else:
            counts = segments[pos + 1] - segments[pos]
            child = np.concatenate([np.arange(a, b) for a, b in
                                    zip(segments[pos], segments[pos + 1])]) \
                if len(pos) else np.zeros(0, np.int64)
            idx = np.concatenate([np.repeat(idx, counts, axis=0), indices[child][:, None]],
                                 axis=1)
            pos = child
    if len(idx) != values.size:
        raise ModelFormatError(f"sparse tensor of shape {list(shape)}: {values.size} stored "
                               f"values for {len(idx)} positions")
    orig = np.zeros((len(idx), rank), np.int64)
    for level in range(rank):
        orig[:, order[level]] = idx[:, level]
    for level in range(rank, len(order)):
        j = order[level] - rank
        d = block_map[j]
        orig[:, d] = orig[:, d] * block_size[j] + idx[:, level]
    dense = np.zeros(shape, values.dtype)
    dense[tuple(orig.T)] = values
    return dense
