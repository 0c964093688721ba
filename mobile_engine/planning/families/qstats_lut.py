"""Lowering of a channel-statistics chain (``passes/fusions/stats_table.py`` marks it) -> one
``qu8_stats_lut_nhwc_{u8,f32}`` step at the chain's last node.

Step: inputs [x, per-channel inputs (f32 or u8)...]; outputs [y]; weights prog i32[K, 4] (one
row per member: opcode, destination, operands), fpar f32[K, 4] (its float params), consts
f32[Kc, C] (scalar or per-channel constants); params x_reg, out_reg, ext_regs, const_regs,
n_regs.
"""
from __future__ import annotations

import numpy as np

from kernels import qu8_stats_lut as ksl
from mobile_engine.ir import fusion
from mobile_engine.ir.dtypes import DType
from mobile_engine.ir.graph import Graph, Node
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.planning.step import Step, lowers_fusion

F32 = np.float32
# the kernel's opcode of each member op (DEQUANTIZE, QUANTIZE, RESHAPE and the means below)
OPCODES = {Op.SQRT: "SQRT", Op.RECIPROCAL: "RECIP", Op.SIGMOID: "SIGMOID", Op.RELU: "RELU",
           Op.TANH: "TANH", Op.NEG: "NEG", Op.EXP: "EXP", Op.ADD: "ADD", Op.SUB: "SUB",
           Op.MUL: "MUL", Op.DIV: "DIV", Op.GLOBAL_AVG_POOL: "MEAN", Op.REDUCE_MEAN: "MEAN",
           Op.RESHAPE: "COPY"}
BINARY = (Op.ADD, Op.SUB, Op.MUL, Op.DIV)


@lowers_fusion("stats_members")
def lower_stats_chain(head: Node, graph: Graph) -> list[Step]:
    rec = fusion.fusion(head)
    x, externals, out = rec["stats_x"], rec["stats_externals"], rec["stats_out"]
    members = [graph.node(name) for name in rec["stats_members"]]
    c = graph.tensors[x].shape[3]
    regs = {x: 0}
    ext_regs = []
    for e in externals:
        regs[e] = len(regs)
        ext_regs.append(regs[e])
    consts, const_regs = [], []

    def reg(name: str) -> int:
        if name in regs:
            return regs[name]
        data = np.asarray(graph.const(name), F32).reshape(-1)
        consts.append(np.broadcast_to(data, (c,)) if data.size in (1, c) else None)
        regs[name] = len(regs)
        const_regs.append(regs[name])
        return regs[name]

    prog, fpar = [], []
    for n in members:
        a = reg(n.inputs[0])
        b = reg(n.inputs[1]) if n.op in BINARY else -1
        d = regs[n.outputs[0]] = len(regs)
        p = [0.0, 0.0, 0.0, 0.0]
        if n.op is Op.DEQUANTIZE:
            q = graph.tensors[n.inputs[0]].quant
            name, p[:2] = "DQ", [q.scale[0], q.zero_point[0]]
        elif n.op is Op.QUANTIZE:
            q = graph.tensors[n.outputs[0]].quant
            name, p = "Q", [q.scale[0], q.zero_point[0], 0.0, 255.0]
        else:
            name = OPCODES[n.op]
            if n.op in BINARY:
                p[0] = float(Activation(n.attrs.get("activation", 0)) is Activation.RELU)
        prog.append([ksl.OPCODE[name], d, a, b])
        fpar.append(p)
    weights = {"prog": np.asarray(prog, np.int32).reshape(-1, 4),
               "fpar": np.asarray(fpar, F32).reshape(-1, 4),
               # NOTE: at least one row: a plan file cannot hold a 0-byte blob
               "consts": np.asarray(consts or [np.zeros(c, F32)], F32).reshape(-1, c)}
    y = graph.tensors[out]
    kernel = ksl.KERNEL_U8 if y.dtype is DType.UINT8 else ksl.KERNEL_F32
    params = {"x_reg": 0, "out_reg": regs[out], "ext_regs": ext_regs,
              "const_regs": const_regs, "n_regs": len(regs)}
    size = int(np.prod(y.shape))
    return [Step(members[-1].name, kernel, [x] + externals, [out], params, weights,
                 flops=2 * size)]
