"""Range observers: per-tensor statistics over calibration data -> the clipping range [lo, hi].

Calibration makes two passes over the feeds (calibrate.py): the first records each tensor's
min and max (``TensorStats.observe_range``), the second a histogram of ``BINS`` equal bins over
[min, max] (``observe_hist``). An observer turns the statistics into a range:

- ``minmax``: [min, max], nothing clipped.
- ``percentile``: the ``100 - p`` and ``p`` percentiles (p = ``PERCENTILE``), linear inside a bin;
  a side whose observed bound is 0 (ReLU outputs) keeps it.
- ``mse``: the range minimising the expected squared error of uint8 quantize-dequantize,
  ``E = sum_unclipped n_i * s^2 / 12 + sum_clipped n_i * (c_i - bound)^2`` with s = (hi - lo)/255
  and c_i the bin centres (rounding error uniform over a step; clipped bins lose their distance to
  the bound); hi and lo are searched in turn over the bin edges.
- ``entropy``: TensorRT's KL-divergence threshold search: for each candidate hi (a bin edge past
  the first ``LEVELS`` bins) the reference P = hist[:i] with the clipped tail added to its last
  bin, Q = P merged into ``LEVELS`` groups and spread evenly over each group's nonzero bins; hi
  minimises KL(P || Q). lo is searched the same way on the mirrored negative side when
  min < 0; one-sided data (min >= 0) uses 255 levels and leaves out the bin of exact zeros
  (a ReLU's spike would otherwise dominate the divergence and collapse the range).

``uint8_params(lo, hi)``: the asymmetric uint8 params of a range (widened to include 0, so a
real 0, e.g. a zero-padded tap or a ReLU floor, is exact): ``s = (hi - lo) / 255``,
``z = clamp(round(-lo / s), 0, 255)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mobile_engine.ir.dtypes import QuantParams

BINS = 2048
CHANNEL_BINS = 256
PERCENTILE = 99.995
LEVELS = 128          # KL quantization levels compared per side (TensorRT's 128 of int8)
# NOTE: a tensor with (almost) no spread still needs a positive scale
MIN_SCALE = 1e-8


@dataclass
class TensorStats:
    """Statistics of one tensor over the calibration feeds."""
    minimum: float = float("inf")
    maximum: float = float("-inf")
    count: int = 0
    on_255_grid: bool = True      # every value is k / 255 with k in 0..255 (8-bit image data)
    hist: np.ndarray | None = field(default=None, repr=False)   # f64[BINS] over [min, max]

    def observe_range(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32).reshape(-1)
        if x.size == 0:
            return
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))
        self.count += x.size
        if self.on_255_grid:
            k = x * np.float32(255)
            self.on_255_grid = bool(self.minimum >= 0 and self.maximum <= 1
                                    and np.all(np.abs(k - np.rint(k)) <= 1e-3))

    def observe_hist(self, x: np.ndarray) -> None:
        """Add ``x`` to the histogram over [minimum, maximum] (observe_range saw all data)."""
        if self.hist is None:
            self.hist = np.zeros(BINS, np.float64)
        x = np.asarray(x, np.float32).reshape(-1)
        if x.size == 0 or not self.maximum > self.minimum:
            self.hist[0] += x.size
            return
        width = (self.maximum - self.minimum) / BINS
        idx = ((x.astype(np.float64) - self.minimum) / width).astype(np.int64)
        np.clip(idx, 0, BINS - 1, out=idx)
        self.hist += np.bincount(idx, minlength=BINS)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.minimum, self.maximum, BINS + 1)


@dataclass
class ChannelStats:
    """Per-channel magnitudes of an NHWC tensor (last axis): max |x| and a histogram of |x| per
    channel over [0, max |x|] (``CHANNEL_BINS`` bins) for per-channel percentiles."""
    absmax: np.ndarray | None = None                              # f64[C]
    hist: np.ndarray | None = field(default=None, repr=False)     # f64[C, CHANNEL_BINS]

    def observe_range(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float32)
        a = np.abs(x.reshape(-1, x.shape[-1])).max(axis=0).astype(np.float64)
        self.absmax = a if self.absmax is None else np.maximum(self.absmax, a)

    def observe_hist(self, x: np.ndarray) -> None:
        x = np.abs(np.asarray(x, np.float32).reshape(-1, x.shape[-1]))
        c = x.shape[1]
        if self.hist is None:
            self.hist = np.zeros((c, CHANNEL_BINS))
        width = np.where(self.absmax > 0, self.absmax / CHANNEL_BINS, 1.0).astype(np.float32)
        idx = np.minimum((x / width).astype(np.int64), CHANNEL_BINS - 1)
        idx += np.arange(c, dtype=np.int64) * CHANNEL_BINS
        self.hist += np.bincount(idx.reshape(-1), minlength=c * CHANNEL_BINS).reshape(
            c, CHANNEL_BINS)

    def percentile(self, p: float = PERCENTILE) -> np.ndarray:
        """f64[C]: the ``p`` percentile of |x| per channel (upper edge of its bin)."""
        cum = np.cumsum(self.hist, axis=1)
        target = cum[:, -1:] * (p / 100)
        i = (cum < target).sum(axis=1)                      # the bin holding the percentile
        return np.minimum((i + 1) / CHANNEL_BINS, 1.0) * self.absmax


def uint8_params(lo: float, hi: float) -> QuantParams:
    """Asymmetric uint8 params covering [min(lo, 0), max(hi, 0)]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = max((hi - lo) / 255.0, MIN_SCALE)
    zero = int(np.clip(np.rint(-lo / scale), 0, 255))
    return QuantParams((scale,), (zero,))


# --- observers ---------------------------------------------------------------------------------
def minmax(stats: TensorStats) -> tuple[float, float]:
    return stats.minimum, stats.maximum


def _quantile(stats: TensorStats, q: float) -> float:
    cum = np.concatenate([[0.0], np.cumsum(stats.hist)])
    target = q * cum[-1]
    i = int(np.clip(np.searchsorted(cum, target, side="left"), 1, BINS))   # bin i - 1
    inside = (target - cum[i - 1]) / max(stats.hist[i - 1], 1e-300)
    e = stats.edges
    return float(e[i - 1] + np.clip(inside, 0.0, 1.0) * (e[i] - e[i - 1]))


def percentile(stats: TensorStats, p: float = PERCENTILE) -> tuple[float, float]:
    if not stats.maximum > stats.minimum:
        return minmax(stats)
    lo = stats.minimum if stats.minimum == 0 else _quantile(stats, 1 - p / 100)
    hi = stats.maximum if stats.maximum == 0 else _quantile(stats, p / 100)
    return lo, hi


class _Moments:
    """Prefix sums of n, n*c, n*c^2 over the bin centres: O(1) clipped errors per candidate."""

    def __init__(self, stats: TensorStats) -> None:
        e = stats.edges
        self.c = (e[:-1] + e[1:]) / 2
        n = stats.hist
        self.total = float(n.sum())
        self.n0 = np.concatenate([[0.0], np.cumsum(n)])
        self.n1 = np.concatenate([[0.0], np.cumsum(n * self.c)])
        self.n2 = np.concatenate([[0.0], np.cumsum(n * self.c * self.c)])

    def error(self, lo, hi) -> np.ndarray:
        """Expected squared error per element for ranges [lo, hi] (arrays broadcast)."""
        lo, hi = np.minimum(lo, 0.0), np.maximum(hi, 0.0)
        k = np.searchsorted(self.c, lo, side="left")        # bins with centre < lo
        j = np.searchsorted(self.c, hi, side="right")       # bins with centre <= hi
        end = self.c.size
        low = self.n2[k] - 2 * lo * self.n1[k] + lo * lo * self.n0[k]
        high = (self.n2[end] - self.n2[j]) - 2 * hi * (self.n1[end] - self.n1[j]) \
            + hi * hi * (self.n0[end] - self.n0[j])
        inside = self.n0[j] - self.n0[k]
        step = (hi - lo) / 255.0
        return (inside * step * step / 12.0 + np.maximum(low, 0) + np.maximum(high, 0)) \
            / max(self.total, 1.0)


def quantization_mse(stats: TensorStats, lo: float, hi: float) -> float:
    """Expected squared uint8 quantize-dequantize error per element of the histogram's data."""
    return float(_Moments(stats).error(np.float64(lo), np.float64(hi)))


def mse(stats: TensorStats) -> tuple[float, float]:
    if not stats.maximum > stats.minimum:
        return minmax(stats)
    e, m = stats.edges, _Moments(stats)
    lo, hi = stats.minimum, stats.maximum
    his = e[e > 0] if hi > 0 else np.array([hi])
    los = e[e < 0] if lo < 0 else np.array([lo])
    for _ in range(2):                      # hi given lo, then lo given hi, twice
        hi = float(his[np.argmin(m.error(lo, his))])
        lo = float(los[np.argmin(m.error(los, hi))])
    return lo, hi


def kl_divergence(hist: np.ndarray, i: int, levels: int, tail: float | None = None) -> float:
    """KL(P || Q) of TensorRT's calibration for a threshold after bin ``i``: P = hist[:i] with
    the clipped tail added to bin i - 1; Q = hist[:i] merged into ``levels`` groups, each group's
    count spread evenly over its bins that are nonzero in P. inf when Q misses mass of P."""
    h = np.asarray(hist[:i], np.float64)
    p = h.copy()
    p[i - 1] += float(np.sum(hist[i:])) if tail is None else tail
    nonzero = (p > 0).astype(np.float64)
    group = np.arange(i) * levels // i
    sums = np.bincount(group, weights=h, minlength=levels)
    counts = np.bincount(group, weights=nonzero, minlength=levels)
    q = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)[group] * nonzero
    ps, qs = p.sum(), q.sum()
    mask = p > 0
    if ps == 0 or qs == 0 or np.any(q[mask] == 0):
        return float("inf")
    pm, qm = p[mask] / ps, q[mask] / qs
    return float((pm * np.log(pm / qm)).sum())


def _kl_threshold(hist: np.ndarray, width: float, levels: int = LEVELS) -> float:
    """TensorRT's search over a one-sided histogram (bin 0 starts at 0): the threshold."""
    n = hist.size
    if n <= levels:
        return n * width
    hist = np.asarray(hist, np.float64)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])     # tail[i] = sum(hist[i:])
    kl = [kl_divergence(hist, i, levels, tail[i]) for i in range(levels, n + 1)]
    best = int(np.argmin(kl))
    return (levels + best) * width if np.isfinite(kl[best]) else n * width


def entropy(stats: TensorStats) -> tuple[float, float]:
    if not stats.maximum > stats.minimum:
        return minmax(stats)
    e, width = stats.edges, (stats.maximum - stats.minimum) / BINS
    lo, hi = stats.minimum, stats.maximum
    if stats.minimum >= 0:
        # NOTE: one-sided (ReLU) data: 255 levels, and the spike of exact zeros (exact in any
        # range) is left out, or it dominates the divergence and the threshold collapses.
        pos = stats.hist.copy()
        pos[0] = 0.0
        return lo, float(min(hi, e[0] + _kl_threshold(pos, width, 2 * LEVELS - 1)))
    zero_bin = int(np.clip(np.floor(-stats.minimum / width), 0, BINS))
    if stats.maximum > 0:
        hi = min(stats.maximum, e[zero_bin] + _kl_threshold(stats.hist[zero_bin:], width))
    neg = stats.hist[:zero_bin][::-1]
    lo = max(stats.minimum, e[zero_bin] - _kl_threshold(neg, width))
    return float(lo), float(hi)


OBSERVERS = {"minmax": minmax, "percentile": percentile, "mse": mse, "entropy": entropy}


def observe(stats: TensorStats, observer: str) -> tuple[float, float]:
    """The range [lo, hi] that ``observer`` picks from ``stats``."""
    try:
        fn = OBSERVERS[observer]
    except KeyError:
        raise ValueError(f"unknown observer {observer!r}; observers: "
                         f"{', '.join(OBSERVERS)}") from None
    if fn is not minmax and stats.hist is None:
        raise ValueError(f"observer {observer!r} needs a histogram (observe_hist)")
    return fn(stats)
