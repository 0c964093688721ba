"""Observers, uint8 params, per-channel int8 weights and the quant table, on hand-made data with
hand-derived expected values."""
import json

import numpy as np
import pytest

from mobile_engine.ir.dtypes import QuantParams
from quantize import observers as obs
from quantize.table import IMAGE_PARAMS, QuantTable, QuantTableError, TableEntry
from quantize.weights import QMAX, dequantize_weights, quantize_weights


def stats_of(x) -> obs.TensorStats:
    s = obs.TensorStats()
    s.observe_range(x)
    s.observe_hist(x)
    return s


def test_minmax_and_uint8_params():
    s = stats_of(np.array([-1.0, 0.5, 3.0], np.float32))
    assert obs.observe(s, "minmax") == (-1.0, 3.0)
    p = obs.uint8_params(-1.0, 3.0)
    assert p.scale == pytest.approx((4 / 255,)) and p.zero_point == (64,)    # 255 / 4 = 63.75
    # ranges always include 0 (a ReLU floor or a zero-padded tap is exact)
    assert obs.uint8_params(2.0, 5.0) == QuantParams((5 / 255,), (0,))
    assert obs.uint8_params(-6.0, -1.0).zero_point == (255,)
    assert obs.uint8_params(0.0, 0.0).scale == (obs.MIN_SCALE,)


def test_percentile_of_uniform_data():
    x = np.linspace(-1, 1, 2_000_001, dtype=np.float32)      # uniform: quantile q is 2q - 1
    tail = 1 - obs.PERCENTILE / 100
    lo, hi = obs.observe(stats_of(x), "percentile")
    width = 2 / obs.BINS
    assert hi == pytest.approx(1 - 2 * tail, abs=width) and lo == pytest.approx(-1 + 2 * tail,
                                                                                abs=width)
    # a side whose bound is exactly 0 (ReLU output) keeps it; half the mass sits at 0, so the
    # quantile q is at 2q - 1 again
    lo, hi = obs.observe(stats_of(np.maximum(x, 0)), "percentile")
    assert lo == 0.0 and hi == pytest.approx(1 - 2 * tail, abs=width / 2)
    lo, hi = obs.percentile(stats_of(x), 90.0)
    assert (lo, hi) == (pytest.approx(-0.8, abs=width), pytest.approx(0.8, abs=width))


def test_mse_clips_rare_outliers_where_the_derivative_vanishes():
    """N values uniform in [0, 1] and a fraction f at 10. For a clip t in [1, 10] the expected
    error per element is (t / 255)^2 / 12 (rounding, all values inside) + f (10 - t)^2 (the
    outliers), minimised at t = 10 f / (1 / (12 * 255^2) + f)."""
    n, f = 1_000_000, 1e-5
    x = np.concatenate([np.linspace(0, 1, n, dtype=np.float32), np.full(int(n * f), 10, np.float32)])
    s = stats_of(x)
    expected = 10 * f / (1 / (12 * 255 ** 2) + f)
    lo, hi = obs.observe(s, "mse")
    assert lo == 0.0
    assert hi == pytest.approx(expected, abs=2 * 10 / obs.BINS)
    # the closed form of the error at the chosen clip agrees with the histogram's
    t = hi
    closed = (t / 255) ** 2 / 12 * n / len(x) + (10 - t) ** 2 * int(n * f) / len(x)
    assert obs.quantization_mse(s, 0.0, t) == pytest.approx(closed, rel=0.05)


def test_entropy_ignores_a_rare_outlier_and_keeps_dense_data():
    dense = np.linspace(0, 1, 1_000_000, dtype=np.float32)
    lo, hi = obs.observe(stats_of(dense), "entropy")
    assert (lo, hi) == (0.0, pytest.approx(1.0, abs=2 / obs.BINS))   # nothing to clip
    # ReLU data: the spike of zeros does not collapse the range (half-normal: p99 ~ 2.58)
    rng = np.random.default_rng(0)
    lo, hi = obs.observe(stats_of(np.maximum(rng.normal(0, 1, 1_000_000), 0)), "entropy")
    assert 2.5 < hi < 5.0


def test_kl_divergence_by_hand():
    """hist [8, 4, 0, 1], 2 levels. i = 2: P = [8, 4 + 1], Q = [8, 4] (one bin per group):
    KL = 8/13 ln((8/13)/(8/12)) + 5/13 ln((5/13)/(4/12)) = 0.005782. i = 3: the group {bin 2}
    is empty in hist[:3] but P[2] = 1: inf. i = 4: groups {0, 1} -> 6, 6 and {2, 3} -> 0, 1:
    KL = 8/13 ln(8/6) + 4/13 ln(4/6) = 0.052277. The smallest is i = 2: threshold 2 bins."""
    h = np.array([8.0, 4.0, 0.0, 1.0])
    assert obs.kl_divergence(h, 2, 2) == pytest.approx(0.005782, abs=1e-6)
    assert obs.kl_divergence(h, 3, 2) == float("inf")
    assert obs.kl_divergence(h, 4, 2) == pytest.approx(0.052277, abs=1e-6)
    assert obs._kl_threshold(h, 0.5, levels=2) == 1.0             # 2 bins of width 0.5


def test_255_grid_detection():
    s = obs.TensorStats()
    s.observe_range(np.arange(256, dtype=np.float32) / np.float32(255))
    assert s.on_255_grid
    s.observe_range(np.array([0.5], np.float32))               # 127.5 / 255: off the grid
    assert not s.on_255_grid
    s = obs.TensorStats()
    s.observe_range(np.array([0.0, 2.0], np.float32))           # outside 0..1
    assert not s.on_255_grid


def test_channel_percentiles():
    x = np.stack([np.linspace(0, 1, 100_001), -np.linspace(0, 4, 100_001)], axis=-1)
    c = obs.ChannelStats()
    c.observe_range(x)
    c.observe_hist(x)
    np.testing.assert_allclose(c.absmax, [1, 4])
    np.testing.assert_allclose(c.percentile(99), [0.99, 3.96], atol=2 * 4 / obs.CHANNEL_BINS)


def test_unknown_observer_and_missing_histogram():
    s = obs.TensorStats()
    s.observe_range(np.ones(3, np.float32))
    with pytest.raises(ValueError, match="unknown observer 'kl'.*percentile"):
        obs.observe(s, "kl")
    with pytest.raises(ValueError, match="needs a histogram"):
        obs.observe(s, "percentile")


@pytest.mark.parametrize("shape", [(1, 3, 3, 3), (13, 7, 1, 1), (64, 32, 3, 3)])
def test_per_channel_symmetric_weights(shape):
    rng = np.random.default_rng(1)
    w = rng.normal(0, 1, shape).astype(np.float32) * rng.uniform(0.01, 10, shape[0])[:, None,
                                                                                    None, None]
    w[0] = 0                                                    # an all-zero channel
    q, p = quantize_weights(w)
    assert q.dtype == np.int8 and p.axis == 0 and set(p.zero_point) == {0}
    amax = np.abs(q.reshape(shape[0], -1)).max(axis=1)
    assert amax[0] == 0 and np.all(amax[1:] == QMAX)           # each channel uses the full range
    err = np.abs(dequantize_weights(q, p) - w).reshape(shape[0], -1).max(axis=1)
    assert np.all(err <= np.asarray(p.scale) / 2 * (1 + 1e-6))  # half a step at most


def test_quant_table_json_round_trip(tmp_path):
    t = QuantTable({"a": TableEntry(-0.1234567890123, 3.3, -5.0, 7.25, False, "norm1"),
                    "img": TableEntry(0.0, 1.0, 0.0, 1.0, True, "")},
                   {"observer": "percentile", "images": 8}, {"a": [1.0, 0.25, 1 / 3]})
    path = t.save(tmp_path / "t.json")
    back = QuantTable.load(path)
    assert back == t                                            # floats survive exactly
    assert back.params("img") == IMAGE_PARAMS
    assert back.params("a") == obs.uint8_params(-0.1234567890123, 3.3)
    with pytest.raises(QuantTableError, match="no range for tensor 'b'"):
        back.params("b")
    doc = json.loads(path.read_text())
    doc["version"] = 99
    with pytest.raises(QuantTableError, match="version 99"):
        QuantTable.from_json(json.dumps(doc))
    doc["version"] = 1
    doc["tensors"]["a"]["lo"] = 5.0                             # lo > hi
    with pytest.raises(QuantTableError, match="not finite and ordered"):
        QuantTable.from_json(json.dumps(doc))
    with pytest.raises(QuantTableError, match="not JSON"):
        QuantTable.from_json("{")
