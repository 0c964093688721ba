"""The intermediate representation: ops, dtypes, graphs, a builder, invariants, a dump."""
from mobile_engine.ir.builder import GraphBuilder, normalize_attrs
from mobile_engine.ir.dtypes import DType, QuantParams
from mobile_engine.ir.dump import dump
from mobile_engine.ir.graph import Graph, Node, Tensor
from mobile_engine.ir.ops import Activation, Op
from mobile_engine.ir.verify import verify

__all__ = ["Activation", "DType", "Graph", "GraphBuilder", "Node", "Op", "QuantParams", "Tensor",
           "dump", "normalize_attrs", "verify"]
