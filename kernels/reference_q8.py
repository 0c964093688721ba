"""Integer numpy references for the quantized (qu8) kernels: the truth they are bit-exact against.

Quantization scheme (DESIGN.md): activations uint8 with a per-tensor scale and zero point
(``real = s * (q - z)``), weights int8 symmetric per output channel (zero point 0), int32
accumulators. Every reference accumulates in int64 (exact), then applies the float32 operations
of the kernels' epilogues one numpy float32 operation at a time (no fused multiply-add):

    conv, uint8 out ("requant"):  y = clip(rint(f32(acc) * m[c]) + zy, qmin, qmax)
                                   m = f32(sx * sw[c] / sy); rint rounds half to even
    conv, float32 out ("fp32out"): y = act(f32(acc) * m[c]),   m = f32(sx * sw[c])
    acc[c] = sum_taps sum_ci x * w + bias_q[c]; padded taps read x = zx (see ``qu8_conv_bias``)
    add:        y = clip(rint(f32(a - za) * ma + f32(b - zb) * mb) + zy, qmin, qmax)
                ma = f32(sa / sy), mb = f32(sb / sy)
    quantize:   q = clip(rint(x * f32(1 / s)) + z, 0, 255)   (a multiply by the rounded
                reciprocal, not a division: what the kernels compute)
    dequantize: x = f32(q - z) * s

Scales given as Python floats are rounded to float32 once, after the float64 division
(``f32(sa / sy)``), as the kernels' helpers do. Written for clarity, not speed.
"""
from __future__ import annotations

import numpy as np

F32 = np.float32
OUT_MODES = ("requant", "fp32out")


def requant_multiplier(sx: float, sw, sy: float | None = None) -> np.ndarray:
    """float32[Co] ``sx * sw[c] / sy`` (``sy=None``: ``sx * sw[c]``, the fp32out mode)."""
    m = float(sx) * np.asarray(sw, np.float64).reshape(-1)
    return (m if sy is None else m / float(sy)).astype(F32)


def conv_bias_q(bias, w_i8: np.ndarray, sx: float, sw, zx: int) -> np.ndarray:
    """int32[Co]: ``rint(b[c] / (sx * sw[c])) - zx * sum(w[c])`` (float64 division, rint half
    to even; no bias: 0). The second term makes padded taps, which read ``zx``, and real taps
    alike contribute ``(x - zx) * w``."""
    w = np.asarray(w_i8)
    co = w.shape[0]
    wsum = w.reshape(co, -1).astype(np.int64).sum(axis=1)
    b = np.zeros(co, np.int64) if bias is None else np.rint(
        np.asarray(bias, np.float64).reshape(co) /
        (float(sx) * np.asarray(sw, np.float64).reshape(-1) * np.ones(co))).astype(np.int64)
    q = b - int(zx) * wsum
    if np.abs(q).max(initial=0) >= 2 ** 31:
        raise OverflowError(f"quantized bias out of int32 range: max |{np.abs(q).max()}|")
    return q.astype(np.int32)


def conv_accumulators(x_u8, w_i8, bias_q, zx, *, strides=(1, 1), dilations=(1, 1),
                      pads=(0, 0, 0, 0), pad_mode="constant", upsample=1, group=1) -> np.ndarray:
    """int64[N, OH, OW, Co]: the exact accumulators of a qu8 convolution.

    x_u8: uint8 [N, H, W, C] NHWC; w_i8: int8 [Co, C/group, KH, KW]; pads (top, left, bottom,
    right) pad the input after nearest ``upsample``; constant padding uses ``zx``.
    """
    x = np.asarray(x_u8).astype(np.int64)
    if upsample > 1:
        x = x.repeat(upsample, axis=1).repeat(upsample, axis=2)
    t, l, b, r = pads
    width = ((0, 0), (t, b), (l, r), (0, 0))
    x = np.pad(x, width, mode="constant", constant_values=int(zx)) if pad_mode == "constant" \
        else np.pad(x, width, mode={"reflect": "reflect", "edge": "edge"}[pad_mode])
    n, h, wd, c = x.shape
    co, cig, kh, kw = w_i8.shape
    (sh, sw), (dh, dw) = strides, dilations
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    cog = co // group
    w = np.asarray(w_i8).astype(np.int64)
    acc = np.zeros((n, oh, ow, co), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i * dh: i * dh + sh * (oh - 1) + 1: sh,
                      j * dw: j * dw + sw * (ow - 1) + 1: sw]
            for g in range(group):
                xs = patch[..., g * cig:(g + 1) * cig]
                acc[..., g * cog:(g + 1) * cog] += np.einsum(
                    "nhwc,oc->nhwo", xs, w[g * cog:(g + 1) * cog, :, i, j])
    acc += np.asarray(bias_q, np.int64)
    if np.abs(acc).max(initial=0) >= 2 ** 31:
        raise OverflowError("accumulator out of int32 range (the kernels would wrap)")
    return acc


def requantize(acc: np.ndarray, m, zy: int, qmin: int, qmax: int) -> np.ndarray:
    """uint8: ``clip(rint(f32(acc) * m) + zy, qmin, qmax)`` in float32 steps."""
    v = np.rint(acc.astype(F32) * np.asarray(m, F32)) + F32(zy)
    return np.clip(v, F32(qmin), F32(qmax)).astype(np.uint8)


def qu8_conv2d_reference(x_u8, w_i8, bias_q, m, zx, zy, qmin, qmax, strides=(1, 1),
                         dilations=(1, 1), pads=(0, 0, 0, 0), pad_mode="constant", upsample=1,
                         group=1, out_mode="requant", act=0, act_params=()) -> np.ndarray:
    """A qu8 convolution: uint8 [N, OH, OW, Co] (``out_mode="requant"``) or float32
    (``"fp32out"``: ``act(f32(acc) * m)``; zy, qmin, qmax unused; ``act`` an Activation code).

    bias_q: int32[Co] from ``conv_bias_q``; m: float32[Co] from ``requant_multiplier``.
    """
    if out_mode not in OUT_MODES:
        raise ValueError(f"out_mode {out_mode!r}; expected one of {OUT_MODES}")
    acc = conv_accumulators(x_u8, w_i8, bias_q, zx, strides=strides, dilations=dilations,
                            pads=pads, pad_mode=pad_mode, upsample=upsample, group=group)
    if out_mode == "requant":
        return requantize(acc, m, zy, qmin, qmax)
    from kernels import reference
    y = acc.astype(F32) * np.asarray(m, F32)
    return reference.activation(y, act, act_params).astype(F32)


def add_multipliers(sa: float, sb: float, sy: float) -> tuple[np.float32, np.float32]:
    """(ma, mb) = (f32(sa / sy), f32(sb / sy))."""
    return F32(float(sa) / float(sy)), F32(float(sb) / float(sy))


def qu8_add_reference(a, sa, za, b, sb, zb, sy, zy, qmin=0, qmax=255) -> np.ndarray:
    """uint8 ``clip(rint(f32(a - za) * ma + f32(b - zb) * mb) + zy, qmin, qmax)``; a and b
    broadcast as numpy does."""
    ma, mb = add_multipliers(sa, sb, sy)
    da = (np.asarray(a, np.int32) - int(za)).astype(F32) * ma
    db = (np.asarray(b, np.int32) - int(zb)).astype(F32) * mb
    v = np.rint(da + db) + F32(zy)
    return np.clip(v, F32(qmin), F32(qmax)).astype(np.uint8)


def quantize_u8_reference(x, s: float, z: int) -> np.ndarray:
    """uint8 ``clip(rint(x * f32(1 / s)) + z, 0, 255)`` (NaN: unspecified)."""
    v = np.rint(np.asarray(x, F32) * F32(1.0 / float(s))) + F32(z)
    return np.clip(v, F32(0), F32(255)).astype(np.uint8)


def dequantize_u8_reference(q, s: float, z: int) -> np.ndarray:
    """float32 ``f32(q - z) * f32(s)``."""
    return (np.asarray(q, np.int32) - int(z)).astype(F32) * F32(s)


def qu8_conv2d_instnorm_reference(x_u8, w_i8, bias_q, m, zx, scale, bias, s: float, z: int,
                                  eps: float = 1e-5, act=0, act_params=(), residual=None,
                                  rs: float = 1.0, rz: int = 0, qmin: int = 0, qmax: int = 255,
                                  **geometry) -> np.ndarray:
    """The fused conv + instance norm step (``qu8_conv2d_igemm_*_instance_norm[_add]``): uint8
    ``clip(rint((act(norm(y)) [+ f32(r - rz) * rs]) * f32(1 / s)) + z, qmin, qmax)`` with
    ``y = f32(acc) * m`` the conv's fp32out output (``qu8_conv2d_reference``, no activation),
    the norm in float64 (``kernels.reference.instance_norm``: per-image statistics over
    H, W), then the float32 steps of the norm kernels' epilogue. ``scale``, ``bias``: f32[C] or
    [N, C]. The kernels' float32 statistics and coefficients may round a value across a .5
    boundary: they agree with this within one step."""
    y = qu8_conv2d_reference(x_u8, w_i8, bias_q, m, zx, 0, 0, 255, out_mode="fp32out",
                             **geometry)
    from kernels import reference
    v = reference.instance_norm(y, scale, bias, epsilon=eps, activation_kind=act,
                                act_params=act_params).astype(F32)
    if residual is not None:
        v = v + (np.asarray(residual, np.int32) - np.int32(rz)).astype(F32) * F32(rs)
    v = np.rint(v * F32(1.0 / float(s))) + F32(z)
    return np.clip(v, F32(qmin), F32(qmax)).astype(np.uint8)
