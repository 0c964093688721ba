"""The pipeline: order, switching passes off, reports, verify_each; and the real multistyle26."""
import numpy as np
import pytest

from mobile_engine.errors import EngineError, GraphError
from mobile_engine.ir import Activation, GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.passes import PASS_NAMES, PIPELINE, optimize, pipeline
from tests.passes.helpers import apply, conv_nchw, counts, nchw_wrapped, rand


def test_pipeline_is_one_ordered_tuple_of_named_passes():
    names = [p.name for p in PIPELINE]
    assert isinstance(PIPELINE, tuple) and all(callable(p.run) for p in PIPELINE)
    first = {n: names.index(n) for n in reversed(names)}
    assert first["fuse_instance_norm"] < first["sink_transposes"] < first["fold_batch_norm"] \
        < first["absorb_pad"] < first["absorb_upsample"]
    assert first["fuse_residual_add"] < first["fuse_activation"]
    qdq = {p.name for p in pipeline.QDQ_PIPELINE}
    assert set(pipeline.GRAPH_PASS_NAMES) == set(names) | qdq
    assert set(PASS_NAMES) == set(names) | qdq | {p.name for p in pipeline.FUSION_PASSES}


def test_unknown_pass_name_lists_the_valid_ones():
    g = GraphBuilder().build()
    with pytest.raises(EngineError, match="fuse_activation") as e:
        optimize(g, disable=["fuse_activations"])
    assert "fuse_activations" in str(e.value)


def importer_style_net():
    """image (NCHW) -> Pad -> conv -> BN -> relu -> resize x2 -> Pad -> conv + x -> relu."""
    b = GraphBuilder()
    x = b.input("image", (1, 3, 6, 5))
    y = b.node(Op.PAD, x, pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="reflect")
    y = conv_nchw(b, y, 3, 4)
    var = b.const(np.abs(rand((4,), 9)) + 0.5)
    y = nchw_wrapped(b, Op.BATCH_NORM, y, *[b.const(rand((4,), s)) for s in (5, 6, 7)], var)
    y = b.node(Op.RELU, y)
    skip = nchw_wrapped(b, Op.RESIZE, y, size=(12, 10), mode="linear")
    y = nchw_wrapped(b, Op.RESIZE, y, size=(12, 10), coordinate_mode="asymmetric",
                     nearest_mode="floor")
    y = b.node(Op.PAD, y, pads=(0, 0, 1, 1, 0, 0, 1, 1), mode="edge")
    y = conv_nchw(b, y, 4, 4, seed=3)
    y = b.node(Op.RELU, b.node(Op.ADD, y, skip))
    return b.build(y)


def test_full_pipeline_on_an_importer_style_net():
    g, _ = apply(lambda gr: len(optimize(gr, verify_each=True)), importer_style_net(), atol=1e-5)
    assert counts(g) == {Op.TRANSPOSE: 2, Op.CONV2D: 2, Op.RESIZE: 1}     # the linear one stays
    c1, c2 = [n for n in g.nodes if n.op is Op.CONV2D]
    assert (c1.attrs["pad_mode"], c1.attrs["activation"]) == ("reflect", Activation.RELU)
    assert c2.attrs["upsample"] == 2 and c2.attrs["pad_mode"] == "edge"
    assert c2.attrs["activation"] is Activation.RELU and len(c2.inputs) == 4


def test_disabled_passes_do_not_run_and_reports_count_ops():
    g = importer_style_net()
    reports = optimize(g, disable=["fuse_activation", "absorb_upsample"])
    assert "fuse_activation" not in [r.name for r in reports]
    assert counts(g)[Op.RELU] == 2 and counts(g)[Op.RESIZE] == 2
    pad = next(r for r in reports if r.name == "absorb_pad")
    assert pad.rewrites == 2 and pad.changes() == {Op.PAD: -2}
    assert reports[-1].ops_after == dict(counts(g))
    assert "absorb_pad: 2 rewrites" in str(pad)


def test_verify_each_names_the_pass_that_broke_the_graph(monkeypatch):
    def breaks(graph):
        graph.nodes[0].attrs["bogus"] = 1
        return 1
    monkeypatch.setattr(pipeline, "PIPELINE", (pipeline.Pass("breaks", breaks),))
    monkeypatch.setattr(pipeline, "PASS_NAMES", ("breaks",))
    with pytest.raises(GraphError, match="after pass 'breaks'"):
        optimize(importer_style_net(), verify_each=True)


# --- the real model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def multistyle(multistyle26_path):
    importer = pytest.importorskip("mobile_engine.importers.onnx",
                                   reason="the ONNX importer is not available")
    return importer.import_onnx(multistyle26_path, input_shapes={"image": (1, 3, 64, 96)})


def _feeds(seed):
    rng = np.random.default_rng(seed)
    return {"image": rng.random((1, 3, 64, 96), dtype=np.float32),
            "style_weights": rng.dirichlet(np.ones(26)).astype(np.float32)}


@pytest.mark.parametrize("disable", [(), ("fuse_instance_norm",)], ids=["all", "no-norm-fusion"])
def test_multistyle26(multistyle, disable):
    """One NHWC region between two transposes; 18 norms (3 contract, 12 residual, 3 expand
    layers: the model has 18 ReduceMean pairs); no PAD or RESIZE left; same output. With
    nchw_tail the few-channel tail runs planar and writes the output: the last transpose goes."""
    g = multistyle.copy()
    optimize(g, disable=disable + ("nchw_tail",), verify_each=True)
    k = counts(g)
    assert k[Op.TRANSPOSE] == 2 and k[Op.PAD] == 0 and k[Op.RESIZE] == 0 and k[Op.CONV2D] == 18
    first, last = [n for n in g.nodes if n.op is Op.TRANSPOSE]
    assert first.inputs == ["image"] and last.outputs == ["stylized"]
    if not disable:
        planar = multistyle.copy()
        optimize(planar, verify_each=True)
        assert counts(planar)[Op.TRANSPOSE] == 1 and planar.nodes[-1].outputs == ["stylized"]
        assert planar.nodes[-1].attrs["layout"] == "nchw"
        for seed in (0, 1):
            feeds = _feeds(seed)
            want = run_graph(multistyle, feeds)["stylized"]
            assert float(np.abs(run_graph(planar, feeds)["stylized"] - want).max()) <= 1e-4
    assert g.tensors["stylized"].shape == (1, 3, 64, 96)
    assert sorted(n.attrs["upsample"] for n in g.nodes if n.op is Op.CONV2D)[-2:] == [2, 2]
    if not disable:
        assert k[Op.INSTANCE_NORM] == 18 and k[Op.REDUCE_MEAN] == 0
        assert sum(n.attrs["activation"] is not Activation.NONE for n in g.nodes
                   if n.op is Op.INSTANCE_NORM) == 12             # 11 ReLU + the final Sigmoid
    for seed in (0, 1):
        feeds = _feeds(seed)
        want = run_graph(multistyle, feeds)["stylized"]
        got = run_graph(g, feeds)["stylized"]
        assert float(np.abs(got - want).max()) <= 1e-4
