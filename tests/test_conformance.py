"""ONNX operator conformance: every cached ONNX node test whose ops the importer supports is
imported with the test data's static shapes, run with the IR's numpy interpreter
(``mobile_engine.ir.interpret.run_graph``) and compared to the expected outputs stored by ONNX.

The selection (:func:`conformance_cases`) is shared with later stages (compiled plans), so it
lives in one place: a case is selected when every node's op type is in
``mobile_engine.importers.onnx.supported_ops()``.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from mobile_engine import zoo
from mobile_engine.importers.onnx import import_onnx, supported_ops
from mobile_engine.ir import interpret

RTOL, ATOL = 1e-4, 1e-5           # atol is scaled by the expected output's range (at least 1)
IR_DTYPES = {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64, onnx.TensorProto.INT32,
             onnx.TensorProto.UINT8, onnx.TensorProto.INT8, onnx.TensorProto.BOOL}

# Cases the importer selects but cannot pass, each with the honest reason. Cases whose graph
# inputs or outputs have a dtype the IR lacks (float16, float64, bfloat16, float8, int16, ...,
# strings) are expected to fail by rule, see _dtype_reason.
def _names(reason: str, *cases: str) -> dict[str, str]:
    return dict.fromkeys(cases, reason)


EXPECTED_FAILURES: dict[str, str] = {
    **_names("per-axis QuantizeLinear on run-time tensors: refused (per-tensor ones run on the "
             "int8 kernels; per-axis DequantizeLinear runs in float)",
             "test_quantizelinear_axis", "test_quantizelinear_blocked_asymmetric"),
    **_names("training mode (batch statistics, random dropout masks): inference only",
             "test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode",
             "test_training_dropout", "test_training_dropout_default",
             "test_training_dropout_default_mask", "test_training_dropout_mask"),
    **_names("MaxPool's Indices output is not supported",
             "test_maxpool_with_argmax_2d_precomputed_pads",
             "test_maxpool_with_argmax_2d_precomputed_strides"),
    # NOTE: ONNX's expected values are rounded to 4 decimals here (0.1511 for 0.151056);
    # onnxruntime agrees with the importer to 1e-7
    "test_averagepool_2d_ceil_last_window_starts_on_pad": "expected data rounded to 1e-4",
    **_names("Max/Min of unsigned ints computed at run time: the decomposition a + relu(b - a) "
             "would wrap around", "test_max_uint8", "test_min_uint8"),
    **_names("crop sizes fed as a run-time input: Pad needs its pads when compiling",
             "test_center_crop_pad_crop_and_pad_expanded",
             "test_center_crop_pad_crop_axes_chw_expanded",
             "test_center_crop_pad_crop_axes_hwc_expanded", "test_center_crop_pad_crop_expanded",
             "test_center_crop_pad_crop_negative_axes_hwc_expanded",
             "test_center_crop_pad_pad_expanded"),
}


def _roots() -> list[Path]:
    return [d for d in (zoo.node_tests_dir(), zoo.pytorch_tests_dir()) if d.is_dir()]


if not _roots():
    pytest.skip(f"no ONNX conformance cases in {zoo.node_tests_dir()} (run `mobile-engine zoo "
                f"fetch`)", allow_module_level=True)


def _model_ops(model: onnx.ModelProto) -> frozenset[str]:
    return frozenset(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                     for n in model.graph.node)


@functools.lru_cache(maxsize=1)
def conformance_cases() -> tuple[tuple[Path, frozenset[str]], ...]:
    """(case directory, op types) of every cached conformance case whose ops are all supported."""
    supported = set(supported_ops())
    cases = []
    for root in _roots():
        for case in sorted(p for p in root.iterdir() if (p / "model.onnx").is_file()):
            model = onnx.load(str(case / "model.onnx"), load_external_data=False)
            ops = _model_ops(model)
            if ops and ops <= supported and (case / "test_data_set_0").is_dir():
                cases.append((case, ops))
    return tuple(cases)


def _dtype_reason(model: onnx.ModelProto) -> str | None:
    for vi in list(model.graph.input) + list(model.graph.output):
        tt = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            return f"{vi.name!r} is not a tensor (sequence/optional values are not supported)"
        if tt.elem_type not in IR_DTYPES:
            name = onnx.TensorProto.DataType.Name(tt.elem_type)
            return f"dtype {name} of {vi.name!r} is not an IR dtype"
    return None


# Inputs that configure an op rather than carry data (pads, scales, axes, shapes, bounds). The
# engine specialises on them when compiling, so when a case feeds them as graph inputs the
# harness turns those inputs into initializers holding the test data's values.
COMPILE_TIME_INPUTS: dict[str, tuple[int, ...]] = {
    "Clip": (1, 2), "Pad": (1, 2, 3), "Reshape": (1,), "Resize": (1, 2, 3), "Upsample": (1,),
    "Slice": (1, 2, 3, 4), "Squeeze": (1,), "Unsqueeze": (1,), "ReduceMean": (1,),
    "ReduceSum": (1,), "ReduceSumSquare": (1,), "ReduceL1": (1,), "ReduceL2": (1,),
    "ConstantOfShape": (0,), "Dropout": (1, 2), "Split": (1,), "Expand": (1,), "Tile": (1,),
    "QuantizeLinear": (1, 2), "DequantizeLinear": (1, 2),          # scales, zero points
    "Range": (0, 1, 2),
}


def freeze_compile_time_inputs(model: onnx.ModelProto, feeds: dict[str, np.ndarray],
                               extra: dict[str, tuple[int, ...]] | None = None
                               ) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` whose compile-time graph inputs (COMPILE_TIME_INPUTS, plus ``extra``
    slots such as conv weights for compiled plans) are initializers with the fed values, and
    the remaining feeds."""
    slots = {op: set(COMPILE_TIME_INPUTS.get(op, ())) | set((extra or {}).get(op, ()))
             for op in set(COMPILE_TIME_INPUTS) | set(extra or {})}
    frozen = {n.input[i] for n in model.graph.node
              for i in slots.get(n.op_type, ())
              if i < len(n.input) and n.input[i] in feeds}
    if not frozen:
        return model, feeds
    model = onnx.ModelProto.FromString(model.SerializeToString())
    keep = [vi for vi in model.graph.input if vi.name not in frozen]
    del model.graph.input[:]
    model.graph.input.extend(keep)
    model.graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in sorted(frozen))
    return model, {k: v for k, v in feeds.items() if k not in frozen}


def _read_tensors(folder: Path, prefix: str) -> list[np.ndarray]:
    out = []
    for i in range(len(list(folder.glob(f"{prefix}_*.pb")))):
        t = onnx.TensorProto()
        t.ParseFromString((folder / f"{prefix}_{i}.pb").read_bytes())
        out.append(numpy_helper.to_array(t))
    return out


def _compare(name: str, got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape, f"{name}: shape {got.shape} != expected {want.shape}"
    if want.dtype.kind in "fc":
        assert got.dtype.kind == "f", f"{name}: dtype {got.dtype}, expected {want.dtype}"
        finite = want[np.isfinite(want)]
        scale = max(1.0, float(np.ptp(finite))) if finite.size else 1.0
        np.testing.assert_allclose(got.astype(np.float64), want.astype(np.float64), rtol=RTOL,
                                   atol=ATOL * scale, equal_nan=True, err_msg=name)
    else:
        assert got.dtype == want.dtype, f"{name}: dtype {got.dtype}, expected {want.dtype}"
        np.testing.assert_array_equal(got, want, err_msg=name)


_results: dict[str, bool] = {}


def run_case(case: Path) -> None:
    """Import ``case`` with its data's shapes, run it with the interpreter, compare outputs."""
    model = onnx.load(str(case / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    inputs = [vi.name for vi in model.graph.input if vi.name not in inits]
    for data in sorted(case.glob("test_data_set_*")):
        feeds = dict(zip(inputs, _read_tensors(data, "input")))
        expected = _read_tensors(data, "output")
        frozen, feeds = freeze_compile_time_inputs(model, feeds)
        graph = import_onnx(frozen, input_shapes={k: v.shape for k, v in feeds.items()})
        outs = interpret.run_graph(graph, feeds)
        assert len(expected) == len(graph.outputs)
        for name, want in zip(graph.outputs, expected):
            _compare(f"{case.name}:{name}", outs[name], want)


def _params():
    params = []
    for case, ops in conformance_cases():
        model = onnx.load(str(case / "model.onnx"), load_external_data=False)
        reason = EXPECTED_FAILURES.get(case.name) or _dtype_reason(model)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


def report_line(request, line: str) -> None:
    """Print ``line`` on the terminal even though pytest captures output."""
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + line)
    else:
        print(line)


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    if _results:
        report_line(request, f"conformance: {sum(_results.values())} passed / "
                             f"{len(conformance_cases())} selected ({len(_results)} run)")


@pytest.mark.parametrize("case", _params())
def test_conformance(case: Path):
    _results[case.name] = False
    run_case(case)
    _results[case.name] = True


def test_selection_is_not_empty():
    ops = set().union(*(o for _, o in conformance_cases()))
    assert {"Conv", "ConvTranspose", "Resize", "MaxPool", "Gemm", "Softmax"} <= ops
