"""NaN and Inf in the input propagate as in onnxruntime: same positions of NaN and Inf in the
output (kernels use fastmath without nnan/ninf)."""
import numpy as np
import pytest

import mobile_engine as me
from tests import onnx_nets
from tests.conftest import ort_run


@pytest.mark.parametrize("net", ["johnson_like", "resnet_like", "unet_like", "mobilenet_like"])
def test_nan_and_inf_propagate_like_onnxruntime(ort, net):
    model = getattr(onnx_nets, net)()
    feeds = onnx_nets.random_feeds(model)
    name = next(iter(feeds))
    x = feeds[name].copy()
    x.flat[17] = np.nan
    x.flat[x.size // 2] = np.inf
    feeds[name] = x
    outs = me.Session(me.compile(model)).run(None, feeds)
    for ours, expected in zip(outs, ort_run(ort, model, feeds)):
        np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(expected))
        finite = np.isfinite(expected)
        span = max(float(np.ptp(expected[finite])), 1e-6) if finite.any() else 1.0
        assert float(np.abs(ours[finite] - expected[finite]).max(initial=0)) <= 1e-3 * span
