"""ONNX -> IR.

    graph = import_onnx("multistyle26.onnx", input_shapes={"image": (1, 3, 256, 256)})

One small function per ONNX op (``onnx_nn``: convolutions, pools, norms, resize; ``onnx_math``:
element-wise, reductions, matmul, softmax; ``onnx_tensor``: shapes, constants, data movement),
registered by op type in :data:`IMPORTERS`. Shapes are static: symbolic input dims are fixed from
``input_shapes`` and every IR tensor is shaped by ``mobile_engine.ir.shapes``. Any node whose
inputs are all known at compile time is evaluated at once with the numpy references, so shape
arithmetic (Shape/Slice/Concat/Cast/ConstantOfShape/...) folds away while importing.

Layout contract: IR tensors made for ONNX values keep ONNX's NCHW layout; each 4-D spatial op is
wrapped as TRANSPOSE(0,2,3,1) -> op (NHWC) -> TRANSPOSE(0,3,1,2), left for a later pass to sink.
Weights keep ONNX layouts (conv ``[Co, Ci/g, KH, KW]``, conv-transpose ``[Ci, Co/g, KH, KW]``).
"""
from __future__ import annotations

import os
from collections import deque
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import helper, numpy_helper

from mobile_engine.errors import (EngineError, InputError, ModelFormatError,
                                  UnsupportedOperatorError)
from mobile_engine.importers import onnx_math, onnx_nn, onnx_tensor  # noqa: F401 (registration)
from mobile_engine.importers.onnx_base import (FOLD_ONLY, IMPORTERS, Context, ImportState, Value,
                                               add_const, ir_dtype, onnx_to_numpy_dtype)
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Op
from mobile_engine.ir.verify import verify

__all__ = ["IMPORTERS", "import_onnx", "load_model", "supported_ops"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


def supported_ops() -> list[str]:
    """The ONNX op types this importer handles on run-time values (default domain); those it
    only folds (FOLD_ONLY) are left out."""
    return sorted(set(IMPORTERS) - FOLD_ONLY)


def load_model(model) -> onnx.ModelProto:
    """A ModelProto from a path, bytes or a ModelProto; ModelFormatError names a bad file."""
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, label = bytes(model), "<bytes>"
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        label = str(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise ModelFormatError(f"{label}: cannot read the model ({e.strerror})") from None
    else:
        raise TypeError(f"import_onnx expects a path, bytes or onnx.ModelProto, "
                        f"not {type(model).__name__}")
    proto = onnx.ModelProto()
    try:
        proto.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelFormatError(f"{label}: not a valid ONNX model (truncated or not ONNX: "
                               f"{e})") from None
    if proto.ir_version <= 0 or not proto.HasField("graph") or not proto.opset_import:
        raise ModelFormatError(f"{label}: not an ONNX model (no IR version, graph or opset; "
                               f"truncated or another format?)")
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise ModelFormatError(f"{label}: initializer {init.name!r} uses external data, "
                                   f"which is not supported; save the model as one file")
    return proto


def _opset(model: onnx.ModelProto) -> int:
    for imp in model.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            return int(imp.version)
    return 1


def _shape_hint(name: str, dims) -> tuple[str, str]:
    """(Python, command line) ways to fix ``name``'s shape: ``input_shapes={'image': (1, 3, H,
    W)}`` and ``--shape image=1x3xHxW`` (symbolic sizes as H, W, or D<axis>)."""
    if dims is None:
        return f"input_shapes={{{name!r}: (...)}}", f"--shape {name}=DIMxDIMx..."
    rank = len(dims)
    names = []
    for axis, d in enumerate(dims):
        if _fixed(d):
            names.append(str(d.dim_value))
        elif axis == 0:
            names.append("1")
        elif rank == 4 and axis >= 2 and axis - 2 < 2:
            names.append("HW"[axis - 2] if _fixed(dims[1]) else f"D{axis}")
        else:
            names.append(f"D{axis}")
    return (f"input_shapes={{{name!r}: ({', '.join(names)})}}",
            f"--shape {name}={'x'.join(names)}")


def _given_error(cls, vi, given, problem: str):
    """An error about a given shape, in Python and command-line terms."""
    py = f"input_shapes[{vi.name!r}] = {given}"
    cli = f"--shape {vi.name}={'x'.join(map(str, given))}"
    return cls(f"{py}{problem}", cli=f"{cli}{problem}")


def _fixed(d) -> bool:
    """A dim with a size; -1 or 0 stored as a size means symbolic (as onnxruntime reads it)."""
    return d.HasField("dim_value") and d.dim_value > 0


def _input_shape(vi: onnx.ValueInfoProto, given: tuple[int, ...] | None) -> tuple[int, ...]:
    tt = vi.type.tensor_type
    if not tt.HasField("shape"):
        if given is None:
            py, cli = _shape_hint(vi.name, None)
            raise ModelFormatError(f"input {vi.name!r} has no shape in the model: pass {py}",
                                   cli=f"input {vi.name!r} has no shape in the model: give {cli}")
        return tuple(int(d) for d in given)
    dims = list(tt.shape.dim)
    if given is not None:
        given = tuple(int(d) for d in given)
        if len(given) != len(dims):
            raise _given_error(InputError, vi, given, f" has rank {len(given)}, but the model's "
                                                      f"input has rank {len(dims)}")
        for axis, (d, g) in enumerate(zip(dims, given)):
            if _fixed(d) and d.dim_value != g:
                raise _given_error(InputError, vi, given, f": axis {axis} is fixed to "
                                                          f"{d.dim_value} by the model")
            if g < 0:
                raise _given_error(InputError, vi, given, ": sizes must be >= 0")
        return given
    shape = []
    for axis, d in enumerate(dims):
        if _fixed(d):
            shape.append(int(d.dim_value))
        else:
            label = repr(d.dim_param) if d.dim_param else "unknown"
            example = tuple(x.dim_value if _fixed(x) else
                            (x.dim_param or "?") for x in dims)
            py, cli = _shape_hint(vi.name, dims)
            what = f"input {vi.name!r} has a symbolic dim {label} (axis {axis}, shape " \
                   f"{list(example)})"
            raise ModelFormatError(f"{what}: pass {py} with static sizes",
                                   cli=f"{what}: give {cli} with static sizes")
    return tuple(shape)


def _schedule(g: onnx.GraphProto, known: set[str]) -> list[int]:
    """Node indices in topological order; names the missing tensor or the cycle."""
    producers: dict[str, int] = {}
    for i, n in enumerate(g.node):
        for o in n.output:
            if o:
                producers[o] = i
    deps: list[set[str]] = []
    users: dict[str, list[int]] = {}
    for i, n in enumerate(g.node):
        need = {x for x in n.input if x and x not in known}
        for x in need:
            if x not in producers:
                name = n.name or f"{n.op_type}_{i}"
                raise ModelFormatError(f"node {name!r} (op {n.op_type!r}) reads tensor {x!r}, "
                                       f"which is no graph input, initializer or node output "
                                       f"(missing initializer?)")
            users.setdefault(x, []).append(i)
        deps.append(need)
    ready = deque(i for i, d in enumerate(deps) if not d)
    queued = set(ready)
    order: list[int] = []
    while ready:
        i = ready.popleft()
        order.append(i)
        for o in g.node[i].output:
            for u in users.get(o, ()):
                deps[u].discard(o)
                if not deps[u] and u not in queued:
                    queued.add(u)
                    ready.append(u)
    if len(order) != len(g.node):
        stuck = [g.node[i].name or f"{g.node[i].op_type}_{i}"
                 for i in range(len(g.node)) if i not in queued]
        raise ModelFormatError(f"graph {g.name!r} has a cycle through node(s) "
                               f"{', '.join(map(repr, stuck[:6]))}")
    return order


def import_onnx(model, input_shapes: dict[str, tuple[int, ...]] | None = None,
                name: str | None = None) -> Graph:
    """Import an ONNX model as a static-shaped IR graph.

    Parameters
    ----------
    model : str | Path | bytes | onnx.ModelProto
    input_shapes : static shapes (NCHW, as in the model) for inputs with symbolic dims.
    name : the graph's name; defaults to the ONNX graph's name.

    Raises
    ------
    ModelFormatError : unreadable file, missing tensor, cycle, symbolic dim without a shape.
    UnsupportedOperatorError : an op, attribute value or dtype without an importer.
    """
    proto = load_model(model)
    g = proto.graph
    opset = _opset(proto)
    input_shapes = dict(input_shapes or {})
    graph = Graph(name or g.name or "graph")

    consts: dict[str, np.ndarray] = {}
    for init in g.initializer:
        try:
            consts[init.name] = numpy_helper.to_array(init)
        except Exception as e:
            raise ModelFormatError(f"initializer {init.name!r} cannot be read: {e}") from None
    runtime: dict[str, str] = {}                       # ONNX name -> IR tensor name
    input_names = [vi.name for vi in g.input if vi.name not in consts]
    unknown = set(input_shapes) - set(input_names)
    if unknown:
        raise InputError(f"input_shapes names {sorted(unknown)}, which are not model inputs; "
                         f"inputs: {input_names}")
    for vi in g.input:
        if vi.name in consts:                          # old exporters list weights as inputs
            continue
        if not vi.type.HasField("tensor_type"):
            raise UnsupportedOperatorError(f"input {vi.name!r}: only tensor inputs are "
                                           f"supported")
        np_dtype = onnx_to_numpy_dtype(vi.type.tensor_type.elem_type)
        if np_dtype == np.float64:
            raise UnsupportedOperatorError(f"input {vi.name!r}: dtype float64 is not supported")
        dtype = ir_dtype(np_dtype, f"input {vi.name!r}")
        graph.add_tensor(vi.name, _input_shape(vi, input_shapes.get(vi.name)), dtype)
        graph.inputs.append(vi.name)
        runtime[vi.name] = vi.name

    state = ImportState(const_labels={id(v): k for k, v in consts.items()})
    order = _schedule(g, set(consts) | set(runtime))
    for index in order:
        node = g.node[index]
        _import_node(graph, node, index, opset, consts, runtime, state)

    for vi in g.output:
        bound = _bind_output(graph, vi, consts, runtime)    # may replace graph.outputs
        graph.outputs.append(bound)
    graph.prune()
    verify(graph)
    return graph


def _import_node(graph: Graph, node: onnx.NodeProto, index: int, opset: int,
                 consts: dict[str, np.ndarray], runtime: dict[str, str],
                 state: ImportState) -> None:
    name = node.name or f"{node.op_type}_{index}"
    fn = IMPORTERS.get(node.op_type) if node.domain in _DEFAULT_DOMAINS else None
    if fn is None:
        op = node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
        raise UnsupportedOperatorError(
            f"node {name!r} (op {op!r}, opset {opset}) has no importer; supported ops: "
            f"{', '.join(supported_ops())}")
    values: list[Value | None] = []
    for x in node.input:
        values.append(None if not x else consts[x] if x in consts else runtime[x])
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    ctx = Context(graph, node, name, attrs, opset, values, state)
    start = len(graph.nodes)
    try:
        outs = fn(ctx)
    except EngineError:
        raise
    except Exception as e:  # a numpy error while folding: the model's values do not fit
        raise ModelFormatError(f"{ctx.where()}: cannot import ({type(e).__name__}: {e})") \
            from e
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    for k, onnx_out in enumerate(node.output):
        if not onnx_out:
            continue
        if k >= len(outs) or outs[k] is None:
            raise ctx.unsupported(f"output {k} ({onnx_out!r}) is not supported")
        v = outs[k]
        if isinstance(v, np.ndarray):
            consts[onnx_out] = v
            state.const_labels.setdefault(id(v), onnx_out)
        else:
            runtime[onnx_out] = _adopt_name(graph, v, onnx_out, start)


def _adopt_name(graph: Graph, ir_name: str, onnx_name: str, start: int) -> str:
    """Give a tensor made by the current ONNX node the ONNX output's name (readable dumps)."""
    made_here = any(ir_name in n.outputs for n in graph.nodes[start:])
    if not made_here or onnx_name in graph.tensors or onnx_name in graph.inputs:
        return ir_name
    t = graph.tensors.pop(ir_name)
    t.name = onnx_name
    graph.tensors[onnx_name] = t
    for n in graph.nodes[start:]:
        n.inputs = [onnx_name if i == ir_name else i for i in n.inputs]
        n.outputs = [onnx_name if o == ir_name else o for o in n.outputs]
    return onnx_name


def _bind_output(graph: Graph, vi: onnx.ValueInfoProto, consts: dict[str, np.ndarray],
                 runtime: dict[str, str]) -> str:
    """The IR tensor of graph output ``vi``, under the ONNX output's own name."""
    out = vi.name
    if vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
        raise UnsupportedOperatorError(f"output {out!r}: dtype float64 is not supported")
    if out in runtime:
        ir_name = runtime[out]
        if vi.type.tensor_type.elem_type == onnx.TensorProto.INT8 \
                and graph.tensors[ir_name].dtype is DType.UINT8:
            return _int8_output(graph, ir_name, out, runtime)
        if ir_name == out:
            return out
        t = graph.tensors[ir_name]
        if ir_name not in graph.inputs and ir_name not in graph.outputs and not t.is_const \
                and out not in graph.tensors:
            # an Identity-like alias of an intermediate tensor: rename it
            graph.rename_tensor(ir_name, out)
            for k, v in runtime.items():
                if v == ir_name:
                    runtime[k] = out
            return out
        # an alias of an input or of another output: copy it under the output's name
        graph.add_tensor(out, t.shape, t.dtype)
        graph.nodes.append(Node(f"{out}/copy", Op.RESHAPE, [ir_name], [out],
                                {"shape": tuple(t.shape)}))
        return out
    if out in consts:
        arr = consts[out]
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        ir_dtype(arr.dtype, f"output {out!r}")
        if out not in graph.tensors:
            add_const(graph, out, arr)
        return out
    raise ModelFormatError(f"graph output {out!r} is produced by no node")


def _int8_output(graph: Graph, ir_name: str, out: str, runtime: dict[str, str]) -> str:
    """Int8 graph output ``out``, held inside as uint8 with the zero point moved by 128
    (importers/onnx_tensor.py quantize_linear): recoded to int8 under the output's name."""
    t = graph.tensors[ir_name]
    if t.quant is None or t.quant.axis is not None:
        raise UnsupportedOperatorError(f"output {out!r}: declared int8, computed as uint8 "
                                       f"without per-tensor quant params")
    if ir_name == out:                          # free the name for the int8 tensor
        ir_name = graph.fresh_name(f"{out}/uint8")
        graph.rename_tensor(out, ir_name)
        for k, v in runtime.items():
            if v == out:
                runtime[k] = ir_name
    graph.add_tensor(out, t.shape, DType.INT8,
                     quant=QuantParams(t.quant.scale, (t.quant.zero_point[0] - 128,)))
    graph.nodes.append(Node(f"{out}/to_int8", Op.INT8_RECODE, [ir_name], [out], {}))
    return out
