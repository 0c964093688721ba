"""Hostile inputs: hundreds of damaged plans, mutated ONNX models. Each must end in a clear
EngineError: never a crash, a hang, a non-engine exception, or a silent success."""
import copy
import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mobile_engine as me
from tests import onnx_nets


@pytest.fixture(scope="module")
def good_plan(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "good.mplan"
    me.compile(onnx_nets.johnson_like()).save(path)
    return path


def _corruptions(data: bytes, rng: np.random.Generator, count: int):
    yield "empty", b""
    yield "random", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    yield "header-only", data[:64]
    for i in range(count):
        kind = i % 3
        if kind == 0:
            cut = int(rng.integers(0, len(data)))
            yield f"truncated-{cut}", data[:cut]
        elif kind == 1:
            pos = int(rng.integers(0, len(data)))
            bad = bytearray(data)
            bad[pos] ^= 1 << int(rng.integers(0, 8))
            yield f"bitflip-{pos}", bytes(bad)
        else:
            pos = int(rng.integers(0, len(data) - 8))
            bad = bytearray(data)
            bad[pos:pos + 8] = rng.integers(0, 256, 8, dtype=np.uint8).tobytes()
            yield f"scribble-{pos}", bytes(bad)


def test_hundreds_of_damaged_plans_end_in_engine_errors(good_plan, tmp_path):
    data = good_plan.read_bytes()
    rng = np.random.default_rng(7)
    paths = []
    for name, blob in _corruptions(data, rng, 300):
        path = tmp_path / f"{name}.mplan"
        path.write_bytes(blob)
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-m", "tests.fuzz.load_corrupted", *paths],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"the loader crashed (exit {proc.returncode}):\n" \
                                 f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    verdicts = dict(line.split(" ", 1) for line in proc.stdout.splitlines())
    assert len(verdicts) == len(paths), "the worker stopped early"
    bad = {p: v for p, v in verdicts.items() if not v.startswith("engine-error PlanFormatError")}
    assert not bad, f"{len(bad)} damaged plans were not refused: {list(bad.items())[:5]}"


_NETS = [onnx_nets.johnson_like(), onnx_nets.resnet_like(), onnx_nets.mobilenet_like(),
         onnx_nets.unet_like(), onnx_nets.classifier_head()]
_INTS = st.sampled_from([0, -1, 1, 2, 3, 7, 1 << 20, -(1 << 31)])


@st.composite
def mutated_models(draw):
    model = copy.deepcopy(draw(st.sampled_from(_NETS)))
    g = model.graph
    node = g.node[draw(st.integers(0, len(g.node) - 1))]
    what = draw(st.sampled_from(["attr", "input", "dim", "init", "op"]))
    if what == "attr" and node.attribute:
        a = node.attribute[draw(st.integers(0, len(node.attribute) - 1))]
        if a.type == onnx.AttributeProto.INTS and a.ints:
            a.ints[draw(st.integers(0, len(a.ints) - 1))] = draw(_INTS)
        elif a.type == onnx.AttributeProto.INT:
            a.i = draw(_INTS)
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = draw(st.sampled_from([float("nan"), float("inf"), -1.0, 0.0, 1e30]))
        elif a.type == onnx.AttributeProto.STRING:
            a.s = draw(st.sampled_from([b"", b"bogus", b"reflect", b"linear"]))
    elif what == "input" and node.input:
        node.input[draw(st.integers(0, len(node.input) - 1))] = draw(
            st.sampled_from(["", "nope", g.node[0].output[0], node.output[0]]))
    elif what == "dim":
        dims = g.input[0].type.tensor_type.shape.dim
        dims[draw(st.integers(0, len(dims) - 1))].dim_value = draw(st.sampled_from([0, 1, 2, 999]))
    elif what == "init" and g.initializer:
        t = g.initializer[draw(st.integers(0, len(g.initializer) - 1))]
        if t.dims:
            t.dims[draw(st.integers(0, len(t.dims) - 1))] = draw(st.sampled_from([0, 1, 2, 5]))
    else:
        node.op_type = draw(st.sampled_from(["Conv", "Relu", "Gemm", "Resize", "Pad", "Concat",
                                             "Reshape", "NoSuchOp"]))
    return model


@settings(max_examples=80, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(model=mutated_models())
def test_mutated_models_compile_or_raise_engine_errors(model):
    try:
        plan = me.compile(model)
    except me.EngineError:
        return
    feeds = {i["name"]: np.random.default_rng(0).random(i["shape"]).astype(i["dtype"])
             for i in plan.inputs}
    me.Session(plan).run(None, feeds)        # a model that compiles must also run


@settings(max_examples=60, deadline=None, derandomize=True)
@given(data=st.binary(min_size=0, max_size=2048))
def test_random_bytes_are_not_a_model(data):
    with pytest.raises(me.EngineError):
        me.compile(data)
