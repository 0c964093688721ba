"""qu8_requant_fp32ties: the tie rounding of QDQ convs against its numpy reference (the model's
float32 conv in onnxruntime's order, rounded, at every element)."""
import numpy as np
import pytest

from kernels import qu8_requant_fp32ties as kt
from kernels.indirection import conv_axis_map

F32 = np.float32


def _case(c, co, k, pad_mode, phases, seed):
    """x, tables, the model's float weights and bias, taps, the fp32out estimate v."""
    rng = np.random.default_rng(seed)
    h = w = 9
    x = rng.integers(0, 256, (1, h, w, c), dtype=np.uint8)
    kw = k + phases - 1
    rowmap = conv_axis_map(h, k, 1, 1, k // 2, k // 2, pad_mode)
    colmap = conv_axis_map(w, kw, 1, 1, k // 2, k // 2 + phases - 1, pad_mode)
    wq = rng.integers(-127, 128, (co, c, k, kw)).astype(np.int8)
    taps = np.stack([np.arange(co) // (co // phases), np.full(co, k)], 1).astype(np.int32)
    live = (np.arange(kw)[None] >= taps[:, :1]) & (np.arange(kw)[None] < taps[:, :1] + k)
    wq = np.where(live[:, None, None, :], wq, 0).astype(np.int8)
    sw = (rng.random(co) * 0.01 + 0.001).astype(F32)
    wf = kt.dequantize_float32(wq, sw)
    sx, zx, sy, zy = F32(0.02), 7, F32(0.9), 3
    bf = (rng.integers(-2000, 2000, co) * sx * sw).astype(F32)
    xs = np.concatenate([x.astype(np.int64) - zx, np.zeros((1, h, 1, c), np.int64)], 2)
    xs = np.concatenate([xs, np.zeros((1, 1, w + 1, c), np.int64)], 1)
    acc = np.einsum("hwckl,ockl->hwo", _patches(xs[0], rowmap, colmap), wq.astype(np.int64))
    v = (acc.astype(F32) * (sx * sw) + bf)[None].astype(F32)      # an estimate, as fp32out
    return x, rowmap, colmap, wf, taps, bf, v, (sx, zx, sy, zy)


def _patches(xs, rowmap, colmap):
    """int64[OH, OW, C, KH, KW] of the padded input (index -1: zero)."""
    p = xs[rowmap[:, None, :, None], colmap[None, :, None, :]]        # [OH, OW, KH, KW, C]
    return p.transpose(0, 1, 4, 2, 3)


@pytest.mark.parametrize("c, co, k, pad_mode, phases", [
    (1, 1, 3, "constant", 1), (3, 8, 9, "reflect", 1), (13, 3, 3, "constant", 1),
    (16, 32, 3, "reflect", 1), (3, 16, 9, "reflect", 2), (8, 12, 9, "edge", 4)])
@pytest.mark.parametrize("parallel", [False, True], ids=["serial", "parallel"])
def test_kernel_matches_reference(c, co, k, pad_mode, phases, parallel):
    """With the margin at 1/2 every element takes the float32 conv: equal to the reference;
    with the real margin the estimate decides the rest: still equal."""
    x, rowmap, colmap, wf, taps, bf, v, (sx, zx, sy, zy) = _case(c, co, k, pad_mode, phases, c)
    ref = kt.reference(x, rowmap, colmap, wf, taps, bf, sx, zx, sy, zy, 0, 255)
    fn = kt.kernel(parallel)
    margin = kt.tie_margin(wf, taps, bf, np.zeros(co), sx, zx, sy)
    for delta in (np.full(co, 0.5, F32), margin):
        out = np.empty(v.shape, np.uint8)
        fn(v, x, rowmap, colmap, wf, taps, bf, delta, F32(sx), np.int32(zx), F32(sy), F32(zy),
           F32(0), F32(255), out)
        np.testing.assert_array_equal(out, ref)
    assert len(np.unique(ref)) > 3
