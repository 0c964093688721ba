"""The .mplan file: round trip, zero-copy weights, and damaged files refused with clear errors."""
import json
import struct

import numpy as np
import pytest

import mobile_engine as me
from mobile_engine.ir import GraphBuilder, Op
from mobile_engine.ir.interpret import run_graph
from mobile_engine.plan import format as fmt
from tests.tolerances import assert_f32_close


def tiny_graph():
    rng = np.random.default_rng(0)
    b = GraphBuilder("tiny")
    x = b.input("x", (1, 9, 11, 3))
    y = b.node(Op.CONV2D, x, b.const(rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
               b.const(rng.standard_normal(8).astype(np.float32)), pads=(1, 1, 1, 1))
    y = b.node(Op.RELU, y)
    return b.build(y)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("plan") / "tiny.mplan"
    me.compile(tiny_graph()).save(path)
    return path


def test_round_trip_matches_reference(plan_file):
    g = tiny_graph()
    x = np.random.default_rng(1).standard_normal((1, 9, 11, 3)).astype(np.float32)
    (expected,) = run_graph(g, {"x": x}).values()
    plan = me.Plan.load(plan_file)
    (out,) = me.Session(plan).run(None, {"x": x})
    assert_f32_close(out, expected, 27, "tiny conv+relu")
    # weights are views of the mapped file, read-only, 64-byte aligned
    assert all(not b.flags.writeable for b in plan.blobs)
    assert all(b.ctypes.data % 64 == 0 for b in plan.blobs if b.nbytes)


def test_manifest_is_plain_json_with_provenance(plan_file):
    data = plan_file.read_bytes()
    header = fmt.HEADER.unpack_from(data)
    manifest = json.loads(data[header[4]:header[4] + header[5]])
    assert manifest["format"] == [fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR]
    assert manifest["provenance"]["engine_version"] == me.__version__
    assert manifest["passes"], "the passes applied are recorded"


def _damaged(plan_file, tmp_path, data: bytes):
    path = tmp_path / "bad.mplan"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("cut", [0, 10, 63, 64, 200, -1])
def test_truncated_file_is_refused(plan_file, tmp_path, cut):
    data = plan_file.read_bytes()
    with pytest.raises(me.PlanFormatError, match="bad.mplan"):
        me.Plan.load(_damaged(plan_file, tmp_path, data[:cut] if cut >= 0 else data[:-1]))


def test_bit_flips_are_refused(plan_file, tmp_path):
    data = bytearray(plan_file.read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(0, len(data), 40):
        bad = bytearray(data)
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(me.PlanFormatError):
            me.Plan.load(_damaged(plan_file, tmp_path, bytes(bad)))


def test_newer_major_version_names_the_need(plan_file, tmp_path):
    data = bytearray(plan_file.read_bytes())
    struct.pack_into("<H", data, 8, fmt.FORMAT_MAJOR + 1)
    with pytest.raises(me.PlanFormatError, match="needs a newer mobile-engine"):
        me.Plan.load(_damaged(plan_file, tmp_path, bytes(data)))


def test_not_a_plan(tmp_path):
    path = tmp_path / "x.mplan"
    path.write_bytes(b"\x89PNG" + b"\0" * 100)
    with pytest.raises(me.PlanFormatError, match="not a mobile-engine plan"):
        me.Plan.load(path)


def _rewrite_manifest(plan_file, tmp_path, edit):
    """A plan whose manifest was edited and re-checksummed: only the schema can catch it."""
    plan = me.Plan.load(plan_file)
    manifest = json.loads(json.dumps(plan.manifest))
    edit(manifest)
    path = tmp_path / "edited.mplan"
    fmt.write(path, manifest, [memoryview(np.ascontiguousarray(b)).cast("B") for b in plan.blobs])
    return path


@pytest.mark.parametrize("edit,match", [
    (lambda m: m["tensors"][next(iter(m["tensors"]))].update(offset=1 << 40), "outside the arena"),
    (lambda m: m["blobs"][0].update(nbytes=m["blobs"][0]["nbytes"] + 4), "does not match"),
    (lambda m: m["steps"][0].update(kernel="f32_conv2d_from_the_future"), "unknown kernel"),
    (lambda m: m["steps"][0]["inputs"].append("ghost"), "unknown tensor"),
    (lambda m: m["tensors"][next(iter(m["tensors"]))].update(shape=[-1]), "invalid shape"),
    (lambda m: m.pop("steps"), "missing field 'steps'"),
])
def test_edited_manifest_is_refused(plan_file, tmp_path, edit, match):
    # the file's structure is checked at Plan.load, its kernel ids when a Session binds them
    with pytest.raises(me.PlanFormatError, match=match):
        me.Session(me.Plan.load(_rewrite_manifest(plan_file, tmp_path, edit)))


def test_feeds_are_checked(plan_file):
    sess = me.Session(plan_file)
    x = np.zeros((1, 9, 11, 3), np.float32)
    with pytest.raises(me.InputError, match="'x' is missing"):
        sess.run(None, {})
    with pytest.raises(me.InputError, match=r"expected shape \[1, 9, 11, 3\], got \[1, 9, 11, 4\]"):
        sess.run(None, {"x": np.zeros((1, 9, 11, 4), np.float32)})
    with pytest.raises(me.InputError, match="expected dtype float32, got float64"):
        sess.run(None, {"x": x.astype(np.float64)})
    with pytest.raises(me.InputError, match="unknown input 'y'"):
        sess.run(None, {"x": x, "y": x})
    with pytest.raises(ValueError):          # InputError is also a ValueError
        sess.run(["nope"], {"x": x})
    with pytest.raises(me.InputError, match="feeds must be a dict"):
        sess.run(None, [("x", x)])
    # the fast path (a dict of exactly the inputs, ndarrays of their shape and dtype) and the
    # checked one (ndarray subclasses, other array-likes) give the same outputs

    class Frame(np.ndarray):
        pass
    x = np.random.default_rng(0).random((1, 9, 11, 3), dtype=np.float32)
    want = sess.run(None, {"x": x})
    for feed in (x.view(Frame), np.ma.masked_array(x), memoryview(x)):
        got = sess.run(None, {"x": feed})
        assert all(np.array_equal(g, w) for g, w in zip(got, want))
