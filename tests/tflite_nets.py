"""TFLite flatbuffers built in code (the ``tflite`` package's generated builders), for the
importer's tests against LiteRT.

    b = TFLiteBuilder()
    x = b.input("x", (1, 8, 8, 3))
    w = b.const(np.ones((4, 3, 3, 3), np.float32))
    y = b.op("CONV_2D", [x, w, -1], (1, 8, 8, 4), "Conv2DOptions", Padding=0, StrideW=1,
             StrideH=1)
    data = b.build([y])

Every tensor's shape is given by the test (hand-derived); the importer checks its own shapes
against them, LiteRT recomputes them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np
import tflite
from tflite.BuiltinOperator import BuiltinOperator

TYPES = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int32): 2,
         np.dtype(np.uint8): 3, np.dtype(np.int64): 4, np.dtype(np.int8): 9}


@dataclass
class _Tensor:
    name: str
    shape: tuple
    type: int
    data: bytes | None = None
    quant: tuple | None = None          # (scales, zero points, axis)
    sparsity: dict | None = None


@dataclass
class _Op:
    code: str
    inputs: list
    outputs: list
    options: str | None
    values: dict
    custom: bytes = b""


@dataclass
class TFLiteBuilder:
    tensors: list = field(default_factory=list)
    ops: list = field(default_factory=list)
    inputs: list = field(default_factory=list)

    def _add(self, t: _Tensor) -> int:
        self.tensors.append(t)
        return len(self.tensors) - 1

    def input(self, name: str, shape, dtype=np.float32, quant=None) -> int:
        i = self._add(_Tensor(name, tuple(shape), TYPES[np.dtype(dtype)], quant=quant))
        self.inputs.append(i)
        return i

    def const(self, arr, name: str | None = None, quant=None, sparsity=None,
              shape=None) -> int:
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        if arr.dtype == np.int64 and name != "int64":
            arr = arr.astype(np.int32)
        return self._add(_Tensor(name or f"const_{len(self.tensors)}",
                                 tuple(arr.shape if shape is None else shape),
                                 TYPES[arr.dtype], arr.astype(arr.dtype.newbyteorder("<"))
                                 .tobytes(), quant, sparsity))

    def op(self, code: str, inputs, shape, options: str | None = None, custom: bytes = b"",
           dtype=np.float32, name: str | None = None, quant=None, **values) -> int:
        """An operator and its output tensor (``quant``: (scales, zero points, axis) of a
        quantized output, with ``dtype`` int8 or uint8)."""
        out = self._add(_Tensor(name or f"{code.lower()}_{len(self.ops)}", tuple(shape),
                                TYPES[np.dtype(dtype)], quant=quant))
        self.ops.append(_Op(code, list(inputs), [out], options, values, custom))
        return out

    def more_outputs(self, *shapes, names=None) -> list[int]:
        """Further outputs of the last operator (SPLIT and the like), float32."""
        outs = []
        for k, shape in enumerate(shapes):
            name = names[k] if names else f"{self.ops[-1].code.lower()}_out{k + 1}"
            outs.append(self._add(_Tensor(name, tuple(shape), 0)))
        self.ops[-1].outputs.extend(outs)
        return outs

    # --- serialisation --------------------------------------------------------------------
    def build(self, outputs) -> bytes:
        b = flatbuffers.Builder(1024)
        buffers = [self._buffer(b, None)] + [self._buffer(b, t.data) for t in self.tensors]
        tensors = [self._tensor(b, t, i + 1) for i, t in enumerate(self.tensors)]
        codes = sorted({o.code for o in self.ops})
        operators = [self._operator(b, o, codes.index(o.code)) for o in self.ops]
        opcodes = [self._opcode(b, c) for c in codes]
        name = b.CreateString("main")
        sub_tensors = _vector(b, tflite.SubGraphStartTensorsVector, tensors)
        sub_inputs = _ints(b, tflite.SubGraphStartInputsVector, self.inputs)
        sub_outputs = _ints(b, tflite.SubGraphStartOutputsVector, outputs)
        sub_ops = _vector(b, tflite.SubGraphStartOperatorsVector, operators)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, sub_tensors)
        tflite.SubGraphAddInputs(b, sub_inputs)
        tflite.SubGraphAddOutputs(b, sub_outputs)
        tflite.SubGraphAddOperators(b, sub_ops)
        tflite.SubGraphAddName(b, name)
        subgraph = tflite.SubGraphEnd(b)
        m_codes = _vector(b, tflite.ModelStartOperatorCodesVector, opcodes)
        m_subs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph])
        m_bufs = _vector(b, tflite.ModelStartBuffersVector, buffers)
        desc = b.CreateString("built by tests/tflite_nets.py")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, m_codes)
        tflite.ModelAddSubgraphs(b, m_subs)
        tflite.ModelAddBuffers(b, m_bufs)
        tflite.ModelAddDescription(b, desc)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())

    @staticmethod
    def _buffer(b, data):
        vec = None
        if data:
            b.StartVector(1, len(data), 16)
            b.head = b.head - len(data)
            b.Bytes[b.head: b.head + len(data)] = data
            vec = b.EndVector()
        tflite.BufferStart(b)
        if vec is not None:
            tflite.BufferAddData(b, vec)
        return tflite.BufferEnd(b)

    def _tensor(self, b, t: _Tensor, buffer: int):
        name = b.CreateString(t.name)
        shape = _ints(b, tflite.TensorStartShapeVector, t.shape)
        quant = self._quant(b, t.quant) if t.quant else None
        sparsity = self._sparsity(b, t.sparsity) if t.sparsity else None
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, shape)
        tflite.TensorAddType(b, t.type)
        tflite.TensorAddBuffer(b, buffer if t.data is not None else 0)
        tflite.TensorAddName(b, name)
        if quant is not None:
            tflite.TensorAddQuantization(b, quant)
        if sparsity is not None:
            tflite.TensorAddSparsity(b, sparsity)
        return tflite.TensorEnd(b)

    @staticmethod
    def _quant(b, q):
        scales, zeros, axis = q
        s = _floats(b, tflite.QuantizationParametersStartScaleVector, scales)
        z = _longs(b, tflite.QuantizationParametersStartZeroPointVector, zeros)
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, s)
        tflite.QuantizationParametersAddZeroPoint(b, z)
        tflite.QuantizationParametersAddQuantizedDimension(b, axis)
        return tflite.QuantizationParametersEnd(b)

    @staticmethod
    def _sparsity(b, sp):
        """sp: {traversal_order, block_map, dims: [("dense", size) | ("csr", segs, idx)]}."""
        metas = []
        for d in sp["dims"]:
            if d[0] == "dense":
                tflite.DimensionMetadataStart(b)
                tflite.DimensionMetadataAddFormat(b, 0)
                tflite.DimensionMetadataAddDenseSize(b, d[1])
                metas.append(tflite.DimensionMetadataEnd(b))
                continue
            segs = _int32_vector(b, d[1])
            idx = _int32_vector(b, d[2])
            tflite.DimensionMetadataStart(b)
            tflite.DimensionMetadataAddFormat(b, 1)
            tflite.DimensionMetadataAddArraySegmentsType(b, tflite.SparseIndexVector.Int32Vector)
            tflite.DimensionMetadataAddArraySegments(b, segs)
            tflite.DimensionMetadataAddArrayIndicesType(b, tflite.SparseIndexVector.Int32Vector)
            tflite.DimensionMetadataAddArrayIndices(b, idx)
            metas.append(tflite.DimensionMetadataEnd(b))
        order = _ints(b, tflite.SparsityParametersStartTraversalOrderVector,
                      sp["traversal_order"])
        block = _ints(b, tflite.SparsityParametersStartBlockMapVector, sp.get("block_map", []))
        dims = _vector(b, tflite.SparsityParametersStartDimMetadataVector, metas)
        tflite.SparsityParametersStart(b)
        tflite.SparsityParametersAddTraversalOrder(b, order)
        tflite.SparsityParametersAddBlockMap(b, block)
        tflite.SparsityParametersAddDimMetadata(b, dims)
        return tflite.SparsityParametersEnd(b)

    def _operator(self, b, o: _Op, opcode: int):
        opts = None
        if o.options:
            getattr(tflite, f"{o.options}Start")(b)
            for k, v in o.values.items():
                getattr(tflite, f"{o.options}Add{k}")(b, v)
            opts = getattr(tflite, f"{o.options}End")(b)
        ins = _ints(b, tflite.OperatorStartInputsVector, o.inputs)
        outs = _ints(b, tflite.OperatorStartOutputsVector, o.outputs)
        custom = None
        if o.custom:
            b.StartVector(1, len(o.custom), 1)
            for byte in reversed(o.custom):
                b.PrependUint8(byte)
            custom = b.EndVector()
        tflite.OperatorStart(b)
        tflite.OperatorAddOpcodeIndex(b, opcode)
        tflite.OperatorAddInputs(b, ins)
        tflite.OperatorAddOutputs(b, outs)
        if opts is not None:
            tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, o.options))
            tflite.OperatorAddBuiltinOptions(b, opts)
        if custom is not None:
            tflite.OperatorAddCustomOptions(b, custom)
        return tflite.OperatorEnd(b)

    @staticmethod
    def _opcode(b, code: str):
        custom = b.CreateString(code[7:]) if code.startswith("CUSTOM:") else None
        value = getattr(BuiltinOperator, "CUSTOM" if custom is not None else code)
        tflite.OperatorCodeStart(b)
        tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(value, 127))
        tflite.OperatorCodeAddBuiltinCode(b, value)
        tflite.OperatorCodeAddVersion(b, 1)
        if custom is not None:
            tflite.OperatorCodeAddCustomCode(b, custom)
        return tflite.OperatorCodeEnd(b)


def _finish(b, n):
    return b.EndVector()


def _vector(b, start, offsets):
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return _finish(b, len(offsets))


def _ints(b, start, values):
    start(b, len(values))
    for v in reversed(list(values)):
        b.PrependInt32(int(v))
    return _finish(b, len(values))


def _floats(b, start, values):
    start(b, len(values))
    for v in reversed(list(values)):
        b.PrependFloat32(float(v))
    return _finish(b, len(values))


def _longs(b, start, values):
    start(b, len(values))
    for v in reversed(list(values)):
        b.PrependInt64(int(v))
    return _finish(b, len(values))


def _int32_vector(b, values):
    vals = _ints(b, tflite.Int32VectorStartValuesVector, values)
    tflite.Int32VectorStart(b)
    tflite.Int32VectorAddValues(b, vals)
    return tflite.Int32VectorEnd(b)
