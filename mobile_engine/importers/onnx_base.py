"""The ONNX importer's registry and the context every per-op import function receives.

A *value* is what an ONNX tensor name stands for while importing: a numpy array when it is
known at compile time (initializers, Constant, anything folded), or the name of a runtime IR
tensor. Import functions read values through :class:`Context`, add IR nodes with
:meth:`Context.emit` (which folds eagerly when every input is a constant) and return one value
per ONNX output.

Layout contract: every IR tensor made for an ONNX value keeps ONNX's (NCHW) layout; spatial IR
ops are NHWC, so :meth:`Context.spatial` wraps them in NCHW->NHWC->NCHW transposes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Union

import numpy as np
import onnx
from onnx import helper, numpy_helper

from mobile_engine.errors import ModelFormatError, UnsupportedOperatorError
from mobile_engine.ir import interpret, shapes
from mobile_engine.ir.builder import normalize_attrs
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op

Value = Union[str, np.ndarray]          # runtime IR tensor name, or a compile-time constant
ImportFn = Callable[["Context"], "list[Value | None] | Value"]

# ONNX op type -> import function; the only place where ONNX op strings meet the IR.
IMPORTERS: dict[str, ImportFn] = {}
# Op types imported only on values known when compiling (shape arithmetic of dynamic exports,
# a known condition): no kernel runs them, so they are not among the supported ops.
FOLD_ONLY: set[str] = set()

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)


def importer(*op_types: str, fold_only: bool = False):
    """Register the decorated function as the importer of ``op_types`` (``fold_only``: it
    imports them only on values known when compiling, see FOLD_ONLY)."""
    def register(fn: ImportFn) -> ImportFn:
        for t in op_types:
            IMPORTERS[t] = fn
            if fold_only:
                FOLD_ONLY.add(t)
        return fn
    return register


def onnx_to_numpy_dtype(elem_type: int) -> np.dtype:
    try:
        return np.dtype(helper.tensor_dtype_to_np_dtype(elem_type))
    except Exception:
        name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in \
            onnx.TensorProto.DataType.values() else str(elem_type)
        raise UnsupportedOperatorError(f"ONNX element type {name} is not supported") from None


def ir_dtype(dtype: np.dtype, where: str) -> DType:
    """The IR dtype of a numpy dtype; float64 is narrowed to float32 (no f64 kernels)."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return DType.FLOAT32
    try:
        return DType.from_numpy(dtype)
    except UnsupportedOperatorError as e:
        raise UnsupportedOperatorError(f"{where}: {e}") from None


@dataclass
class ImportState:
    """What the importer keeps across nodes."""
    node_names: set[str] = field(default_factory=set)
    # id(array) -> (array, IR constant name): each constant array becomes one IR tensor
    const_tensors: dict[int, tuple[np.ndarray, str]] = field(default_factory=dict)
    # id(array) -> the ONNX name to give it (initializers keep their names)
    const_labels: dict[int, str] = field(default_factory=dict)


@dataclass
class Context:
    """What an import function sees: the graph under construction, the ONNX node, its opset."""
    graph: Graph
    node: onnx.NodeProto
    name: str                                # the node's name (generated when ONNX left it empty)
    attrs: dict[str, Any]
    opset: int
    values: list[Value | None]               # the node's inputs ("" inputs are None)
    state: ImportState = field(default_factory=ImportState)

    # --- errors ---------------------------------------------------------------------------
    def where(self) -> str:
        return f"node {self.name!r} (op {self.node.op_type!r}, opset {self.opset})"

    def unsupported(self, why: str) -> UnsupportedOperatorError:
        return UnsupportedOperatorError(f"{self.where()}: {why}")

    def bad_attr(self, attr: str, value) -> UnsupportedOperatorError:
        return self.unsupported(f"attribute {attr}={value!r} is not supported")

    def malformed(self, why: str) -> ModelFormatError:
        return ModelFormatError(f"{self.where()}: {why}")

    # --- inputs and attributes ------------------------------------------------------------
    def attr(self, name: str, default=None):
        value = self.attrs.get(name, default)
        return value.decode() if isinstance(value, bytes) else value

    def input(self, i: int) -> Value | None:
        return self.values[i] if i < len(self.values) else None

    def const(self, i: int, what: str | None = None) -> np.ndarray | None:
        """Input ``i`` as a constant array (None when omitted); raises when it is computed at
        run time, because the IR needs it at compile time."""
        v = self.input(i)
        if v is None or isinstance(v, np.ndarray):
            return v
        raise self.unsupported(f"input {i} ({what or self.node.input[i]!r}) must be a constant "
                               f"(known when compiling), but it is computed at run time")

    def ints(self, i: int, what: str, attr: str | None = None) -> list[int] | None:
        """An int list given as attribute ``attr`` (older opsets) or as constant input ``i``."""
        if attr is not None and attr in self.attrs:
            return [int(v) for v in self.attrs[attr]]
        arr = self.const(i, what)
        return None if arr is None else [int(v) for v in np.asarray(arr).reshape(-1)]

    def shape(self, v: Value) -> tuple[int, ...]:
        return tuple(v.shape) if isinstance(v, np.ndarray) else self.graph.tensors[v].shape

    def dtype(self, v: Value) -> np.dtype:
        return v.dtype if isinstance(v, np.ndarray) else self.graph.tensors[v].dtype.np

    def rank(self, v: Value) -> int:
        return len(self.shape(v))

    # --- building -------------------------------------------------------------------------
    def materialize(self, v: Value) -> str:
        """The IR tensor name of ``v``; a constant becomes a graph constant (float64 narrowed
        to float32, since the IR has no float64)."""
        if isinstance(v, str):
            return v
        key = id(v)
        known = self.state.const_tensors.get(key)
        if known is not None and known[0] is v and known[1] in self.graph.tensors:
            return known[1]                      # one IR constant per array, however often used
        arr = np.asarray(v)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        ir_dtype(arr.dtype, self.where())
        label = self.state.const_labels.get(key)
        if label is None or label in self.graph.tensors:
            label = self.graph.fresh_name(f"{self.name}/const")
        name = add_const(self.graph, label, arr)
        self.state.const_tensors[key] = (v, name)
        return name

    def _node_name(self, suffix: str | None) -> str:
        base = self.name if suffix is None else f"{self.name}/{suffix}"
        name, k = base, 1
        while name in self.state.node_names:
            name, k = f"{base}_{k}", k + 1
        self.state.node_names.add(name)
        return name

    def emit(self, op: Op, *inputs: Value | None, suffix: str | None = None, **attrs) -> Value:
        """Add an IR node (or, when every input is a constant, evaluate it now) and return its
        output value."""
        try:
            attrs = normalize_attrs(op, attrs)
        except Exception as e:
            raise self.unsupported(str(e)) from None
        if all(v is None or isinstance(v, np.ndarray) for v in inputs):
            node = Node(self.name, op, [], [], attrs)
            (out,) = interpret.evaluate(node, list(inputs))
            return np.asarray(out)
        names = [self.materialize(v) if v is not None else "" for v in inputs]
        node = Node(self._node_name(suffix), op, names, [], attrs)
        node.outputs = [self.graph.fresh_name(node.name)]
        for o, (shape, dtype) in zip(node.outputs, shapes.infer(node, self.graph)):
            self.graph.add_tensor(o, shape, dtype)
        self.graph.nodes.append(node)
        return node.outputs[0]

    def reshape(self, v: Value, shape, suffix: str | None = "reshape") -> Value:
        shape = tuple(int(d) for d in shape)
        if self.shape(v) == shape and isinstance(v, np.ndarray):
            return v
        return self.emit(Op.RESHAPE, v, suffix=suffix, shape=shape)

    def spatial(self, op: Op, x: Value, *others: Value | None, **attrs) -> Value:
        """A 4-D NCHW value through an NHWC spatial op: TRANSPOSE -> op -> TRANSPOSE."""
        t = self.emit(Op.TRANSPOSE, x, suffix="to_nhwc", perm=TO_NHWC)
        y = self.emit(op, t, *others, **attrs)
        return self.emit(Op.TRANSPOSE, y, suffix="to_nchw", perm=TO_NCHW)

    def cast(self, v: Value, dtype: np.dtype) -> Value:
        if self.dtype(v) == np.dtype(dtype):
            return v
        if isinstance(v, np.ndarray):
            return v.astype(dtype)
        return self.emit(Op.CAST, v, suffix="cast", to=ir_dtype(dtype, self.where()).value)


def add_const(graph: Graph, name: str, arr: np.ndarray) -> str:
    """graph.add_const, but a 0-d array stays 0-d (np.ascontiguousarray would make it 1-d)."""
    if arr.ndim:
        return graph.add_const(name, arr)
    graph.add_tensor(name, (), DType.from_numpy(arr.dtype), arr.copy())
    return name


def constant_from_attribute(ctx_name: str, attr: onnx.AttributeProto) -> np.ndarray:
    """The array of a Constant node's ``value*`` attribute."""
    kind = attr.name
    if kind == "value":
        return numpy_helper.to_array(attr.t)
    if kind == "value_float":
        return np.array(attr.f, dtype=np.float32)
    if kind == "value_floats":
        return np.array(list(attr.floats), dtype=np.float32)
    if kind == "value_int":
        return np.array(attr.i, dtype=np.int64)
    if kind == "value_ints":
        return np.array(list(attr.ints), dtype=np.int64)
    if kind == "sparse_value":
        sp = attr.sparse_tensor
        dense = np.zeros(list(sp.dims), dtype=numpy_helper.to_array(sp.values).dtype)
        vals = numpy_helper.to_array(sp.values)
        idx = numpy_helper.to_array(sp.indices)
        if idx.ndim == 1:
            dense.reshape(-1)[idx] = vals
        else:
            dense[tuple(idx.T)] = vals
        return dense
    raise UnsupportedOperatorError(f"node {ctx_name!r} (op 'Constant'): attribute {kind!r} "
                                   f"(string constants) is not supported")
