"""Shared builders for the quantization tests (no tests here): a tiny multistyle26-like net
built with GraphBuilder, image feeds on the 8-bit grid, SQNR/PSNR helpers."""
from __future__ import annotations

import numpy as np

from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.graph import Graph

STYLES = 4


def sqnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    noise = float(np.sum((ref - np.asarray(test, np.float64)) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(ref * ref)) / noise)


def psnr_db(ref: np.ndarray, test: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(ref, np.float64) - test) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def style_net(h: int = 14, w: int = 18, c: int = 8, seed: int = 0) -> Graph:
    """multistyle26 in miniature, as the optimised float IR looks: image NCHW -> TRANSPOSE ->
    conv 5x5 (reflect) -> norm+relu -> conv 3x3 s2 -> norm+relu (r) -> two residual blocks
    (conv, norm+relu, conv, norm, ADD) -> conv with nearest 2x upsample -> norm+relu -> conv
    3x3 -> norm+sigmoid -> TRANSPOSE. Every norm's scale and bias are computed at run time
    from the ``style`` input (``sum_s style[s] * gamma[s, c]``), as in multistyle26."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder("style_net")
    img = b.input("image", (1, 3, h, w))
    style = b.input("style", (STYLES,))
    s2d = b.node(Op.RESHAPE, style, shape=(STYLES, 1))

    def mix(values) -> str:
        prod = b.node(Op.MUL, s2d, b.const(values.astype(np.float32)))
        return b.node(Op.REDUCE_SUM, prod, axes=(0,), keepdims=False)

    def conv(x, ci, co, k, stride=1, upsample=1, name=None):
        wt = (rng.standard_normal((co, ci, k, k)) / np.sqrt(ci * k * k)).astype(np.float32)
        return b.node(Op.CONV2D, x, b.const(wt), strides=(stride, stride),
                      pads=(k // 2,) * 4, pad_mode="reflect", upsample=upsample, name=name)

    def norm(x, co, act):
        gamma = rng.uniform(0.3, 2.0, (STYLES, co)) * rng.uniform(0.2, 1.0, co)
        beta = rng.normal(0, 0.5, (STYLES, co))
        return b.node(Op.INSTANCE_NORM, x, mix(gamma), mix(beta), activation=act)

    relu = Activation.RELU
    x = b.node(Op.TRANSPOSE, img, perm=(0, 2, 3, 1))
    y = norm(conv(x, 3, c, 5, name="conv0"), c, relu)
    r = norm(conv(y, c, c, 3, stride=2, name="conv1"), c, relu)
    for i in range(2):
        t = norm(conv(r, c, c, 3, name=f"res{i}a"), c, relu)
        t = norm(conv(t, c, c, 3, name=f"res{i}b"), c, Activation.NONE)
        r = b.node(Op.ADD, r, t, name=f"add{i}")
    u = norm(conv(r, c, c, 3, upsample=2, name="up"), c, relu)
    o = norm(conv(u, c, 3, 3, name="out"), 3, Activation.SIGMOID)
    out = b.node(Op.TRANSPOSE, o, perm=(0, 3, 1, 2))
    return b.build(out)


def image_feeds(graph: Graph, n: int, seed: int = 0, on_grid: bool = True) -> list[dict]:
    """``n`` smooth random images (k/255 values when ``on_grid``) with one-hot styles."""
    rng = np.random.default_rng(seed)
    _, _, h, w = graph.tensors["image"].shape
    feeds = []
    for k in range(n):
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        img = np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (rng.uniform(0.5, 2) * xx
                                                          + rng.uniform(0.5, 2) * yy + c))
                        for c in range(3)])[None]
        img = img + rng.normal(0, 0.05, img.shape)
        img = np.clip(img, 0, 1).astype(np.float32)
        if on_grid:
            img = (np.rint(img * 255) / np.float32(255)).astype(np.float32)
        style = np.zeros(STYLES, np.float32)
        style[k % STYLES] = 1
        feeds.append({"image": img, "style": style})
    return feeds
