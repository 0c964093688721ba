"""A readable text dump of a graph, for debugging and ``--report``."""
from __future__ import annotations

from mobile_engine.ir.graph import Graph
from mobile_engine.ir.ops import Activation


def _fmt(value) -> str:
    if isinstance(value, Activation):
        return value.name.lower()
    return str(value)


def dump(graph: Graph) -> str:
    def sig(name: str) -> str:
        if not name:
            return "-"
        t = graph.tensors[name]
        kind = "const " if t.is_const else ""
        return f"{name}:{kind}{t.dtype.value}{list(t.shape)}"

    lines = [f"graph {graph.name}",
             "  inputs:  " + ", ".join(sig(i) for i in graph.inputs),
             "  outputs: " + ", ".join(sig(o) for o in graph.outputs)]
    for n in graph.nodes:
        attrs = " ".join(f"{k}={_fmt(v)}" for k, v in n.attrs.items())
        lines.append(f"  {n.name}: {n.op.name}({', '.join(sig(i) for i in n.inputs)}) -> "
                     f"{', '.join(sig(o) for o in n.outputs)} {attrs}".rstrip())
    return "\n".join(lines)
