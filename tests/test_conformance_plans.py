"""ONNX conformance through the whole engine: every selected case is compiled to a plan (all
passes, kernel selection, packing, arena), saved, loaded and run by a Session, and compared with
the outputs ONNX stores. The interpreter-level run of the same cases is tests/test_conformance.py.
"""
from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import mobile_engine as me
from tests.test_conformance import (EXPECTED_FAILURES, _compare, _dtype_reason, _read_tensors,
                                    conformance_cases, freeze_compile_time_inputs,
                                    report_line)

# Cases the interpreter passes but compiled plans cannot, each with its reason.
PLAN_FAILURES: dict[str, str] = {}
# A plan packs conv weights at compile time; cases that feed them as graph inputs get them frozen
# (a runtime weight is refused with a clear UnsupportedOperatorError, tested in test_errors.py).
WEIGHT_INPUTS = {"Conv": (1, 2), "ConvTranspose": (1, 2)}
_results: dict[str, bool] = {}


def run_plan_case(case: Path, tmp_path: Path) -> None:
    model = onnx.load(str(case / "model.onnx"))
    inits = {i.name for i in model.graph.initializer}
    inputs = [vi.name for vi in model.graph.input if vi.name not in inits]
    for data in sorted(case.glob("test_data_set_*")):
        feeds = dict(zip(inputs, _read_tensors(data, "input")))
        expected = _read_tensors(data, "output")
        frozen, feeds = freeze_compile_time_inputs(model, feeds, WEIGHT_INPUTS)
        plan = me.compile(frozen, input_shapes={k: v.shape for k, v in feeds.items()})
        sess = me.Session(plan.save(tmp_path / "case.mplan"), threads=2)
        outs = sess.run(None, feeds)
        assert len(outs) == len(expected)
        for out, want, meta in zip(outs, expected, sess.get_outputs()):
            _compare(f"{case.name}:{meta.name}", out, want)


def _params():
    params = []
    for case, _ in conformance_cases():
        model = onnx.load(str(case / "model.onnx"), load_external_data=False)
        reason = EXPECTED_FAILURES.get(case.name) or _dtype_reason(model) \
            or PLAN_FAILURES.get(case.name)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    yield
    if _results:
        report_line(request, f"conformance (compiled plans): {sum(_results.values())} passed / "
                             f"{len(_results)} run")


@pytest.mark.parametrize("case", _params())
def test_conformance_plan(case: Path, tmp_path):
    _results[case.name] = False
    run_plan_case(case, tmp_path)
    _results[case.name] = True
