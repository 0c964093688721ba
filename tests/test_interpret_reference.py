"""The IR interpreter's numpy references are handed in by the package root (the IR imports no
kernels): wired on ``import mobile_engine``, and a clear error when nothing was handed in."""
from __future__ import annotations

import numpy as np
import pytest

import kernels.reference
from mobile_engine.errors import EngineError
from mobile_engine.ir import GraphBuilder, Op, interpret


def test_the_package_root_hands_in_kernels_reference():
    assert interpret.reference() is kernels.reference


def test_no_reference_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(interpret, "_LOADER", None)
    monkeypatch.setattr(interpret, "_REFERENCE", None)
    b = GraphBuilder("g")
    x = b.input("x", (1, 2, 2, 3))
    graph = b.build(b.node(Op.RELU, x))
    with pytest.raises(EngineError, match="no numpy reference for the IR interpreter"):
        interpret.run_graph(graph, {"x": np.zeros((1, 2, 2, 3), np.float32)})
