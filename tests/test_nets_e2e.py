"""Networks the engine has never seen, compiled to plans and run, against onnxruntime.

Each net (tests/onnx_nets.py) is compiled through the whole pipeline, saved, loaded and run; the
output must match onnxruntime within 1e-3 of the output's range.
"""
import numpy as np
import pytest

import mobile_engine as me
from tests import onnx_nets
from tests.conftest import ort_run

NETS = ["resnet_like", "mobilenet_like", "unet_like", "johnson_like", "classifier_head"]


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("threads", [1, 2])
def test_net_matches_onnxruntime(ort, tmp_path, net, threads):
    model = getattr(onnx_nets, net)()
    feeds = onnx_nets.random_feeds(model)
    path = me.compile(model).save(tmp_path / f"{net}.mplan")
    sess = me.Session(path, threads=threads)
    ours = sess.run(None, feeds)
    expected = ort_run(ort, model, feeds)
    assert [o.name for o in sess.get_outputs()] == [o.name for o in model.graph.output]
    for got, want in zip(ours, expected):
        assert got.shape == want.shape and got.dtype == want.dtype
        span = max(float(want.max() - want.min()), 1e-6)
        err = float(np.abs(got.astype(np.float64) - want).max())
        assert err <= 1e-3 * span, f"{net}: max abs error {err:.3g} (output range {span:.3g})"


@pytest.mark.parametrize("net", NETS)
def test_every_pass_keeps_the_graph_valid(net):
    """The whole pipeline with verify() after each pass; then every pass switched off in turn."""
    from mobile_engine.passes.pipeline import PASS_NAMES
    model = getattr(onnx_nets, net)()
    me.compile(model, verify_each=True)
    feeds = onnx_nets.random_feeds(model)
    reference = me.Session(me.compile(model)).run(None, feeds)
    for name in PASS_NAMES:
        if name in ("fold_constants",):
            continue   # shape arithmetic needs it before lowering
        out = me.Session(me.compile(model, disable_passes=[name])).run(None, feeds)
        for a, b in zip(out, reference):
            span = max(float(b.max() - b.min()), 1e-6)
            assert float(np.abs(a - b).max()) <= 1e-3 * span, f"{net} without {name}"
