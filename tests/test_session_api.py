"""The Python surface a user coming from onnxruntime expects: ``providers=`` and ``sess_options=``,
``close()`` and ``with``, ``threads`` as an integer, ``input_shapes`` as tuples or strings,
``dir(mobile_engine)``, docstrings on every public function, the ``py.typed`` marker.

Outputs are checked against onnxruntime on the same model and feeds.
"""
import inspect
from pathlib import Path

import numpy as np
import pytest

import mobile_engine as me
from tests.conftest import ort_run
from tests.test_cli import H, W, model, reference  # noqa: F401 (the fixture)


@pytest.fixture(scope="module")
def plan(model):  # noqa: F811
    return me.compile(model, input_shapes={"image": (1, 3, H, W)})


def feed():
    return {"image": np.random.default_rng(0).random((1, 3, H, W), dtype=np.float32)}


def test_providers_and_options_as_onnxruntime(plan, ort, model):  # noqa: F811
    x = feed()
    expected = ort_run(ort, model, x)[0]
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    for sess in (me.Session(plan, providers=["CPUExecutionProvider"]),
                 me.Session(plan, so),                                  # positional, as ort
                 me.Session(plan, sess_options=so, providers=[("CPUExecutionProvider", {})]),
                 me.Session(plan, sess_options=me.SessionOptions(intra_op_num_threads=1))):
        np.testing.assert_allclose(sess.run(None, x)[0], expected, atol=1e-5)
        assert sess.get_providers() == ["CPUExecutionProvider"]
    assert me.Session(plan, so).threads == 1


def test_other_providers_are_a_clear_error(plan):
    with pytest.raises(me.EngineError, match="'CUDAExecutionProvider' is not available.*CPU only"):
        me.Session(plan, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_threads_and_options_that_disagree(plan, ort):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    with pytest.raises(me.EngineError, match="disagree"):
        me.Session(plan, threads=2, sess_options=so)


@pytest.mark.parametrize("threads", ["2", 1.5, True, [1]])
def test_threads_must_be_an_integer(plan, threads):
    with pytest.raises(me.EngineError, match="must be an integer"):
        me.Session(plan, threads=threads)


def test_numpy_integer_threads(plan):
    assert me.Session(plan, threads=np.int64(1)).threads == 1


def test_close_and_context_manager(plan):
    x = feed()
    with me.Session(plan) as sess:
        (out,) = sess.run(None, x)
    np.testing.assert_allclose(out, reference(x["image"]), atol=1e-5)
    with pytest.raises(me.EngineError, match="closed"):
        sess.run(None, x)
    sess.close()                                 # twice is fine
    assert "closed" in repr(sess)


@pytest.mark.parametrize("shapes", [{"image": f"1x3x{H}x{W}"}, {"image": [1, 3, H, W]},
                                    {"image": np.array([1, 3, H, W])}])
def test_input_shapes_as_strings_or_sequences(model, shapes):  # noqa: F811
    plan = me.compile(model, input_shapes=shapes)
    assert plan.inputs[0]["shape"] == [1, 3, H, W]
    assert plan.manifest["provenance"]["input_shapes"] == {"image": [1, 3, H, W]}


@pytest.mark.parametrize("shapes,match", [
    ({"image": "1x3xHx8"}, "give a tuple of sizes"),
    ({"image": 5}, "give a tuple of sizes"),
    ({"image": (1, 3, 2.5, 8)}, "give a tuple of sizes"),
    ((1, 3, 8, 8), "must be a dict"),
])
def test_bad_input_shapes_are_clear_errors(model, shapes, match):  # noqa: F811
    with pytest.raises(me.InputError, match=match):
        me.compile(model, input_shapes=shapes)


def test_dir_lists_the_public_api():
    names = dir(me)
    for name in ("compile", "Session", "SessionOptions", "Plan", "EngineError", "InputError",
                 "PlanFormatError", "PlanVersionWarning"):
        assert name in names and name in me.__all__
        assert getattr(me, name) is not None


def test_public_functions_and_methods_have_docstrings():
    missing = []
    for obj in (me.compile, me.Session, me.Plan, me.SessionOptions):
        if not inspect.getdoc(obj):
            missing.append(obj.__name__)
        if inspect.isclass(obj):
            for name, member in vars(obj).items():
                fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else \
                    member.fget if isinstance(member, property) else member
                if not name.startswith("_") and callable(fn) and not fn.__doc__:
                    missing.append(f"{obj.__name__}.{name}")
    assert not missing


def test_py_typed_marker_ships():
    root = Path(me.__file__).parent
    assert (root / "py.typed").is_file()
    text = (root.parent / "pyproject.toml").read_text()
    assert "py.typed" in text
