"""The peer of ``mobile-engine bench``: onnxruntime (its threads not spinning between runs), the
model it runs, and the check that both engines take and give the same tensors."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from mobile_engine.errors import EngineError, InputError

# ONNX ops that make a model int8 (QDQ or operator-quantized).
INT8_ONNX_OPS = ("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear")
INT8_KERNEL_PREFIXES = ("qu8_", "qs8_")

def import_onnxruntime():
    """onnxruntime, or an EngineError that says how to get it."""
    try:
        import onnxruntime
    except ImportError:
        raise EngineError("--compare onnxruntime: onnxruntime is not installed in this Python "
                          f"({sys.executable}); install it with `pip install onnxruntime`, or "
                          "run without --compare to measure mobile-engine alone") from None
    return onnxruntime


def _ort_session(ort, model_path: str, threads: int, spinning: bool):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # NOTE: spinning pool threads would keep cores busy into our turn of the alternation.
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])


@dataclass
class Peer:
    """The peer engine (the onnxruntime module) and the ONNX file it runs; ``bench_litert.
    LitertPeer`` has the same fields and methods."""
    ort: object
    spinning: bool
    model: str
    sha256: str
    precision: str
    engine: str = "onnxruntime"

    @classmethod
    def open(cls, ort, spinning: bool, model: str) -> "Peer":
        import onnx
        from google.protobuf.message import DecodeError

        from mobile_engine.zoo import sha256
        path = Path(model)
        if not path.is_file():
            raise InputError(f"--peer-model {model}: no such file (give the ONNX model "
                             f"onnxruntime should run)")
        from mobile_engine.importers.tflite_base import is_tflite
        if is_tflite(path):
            raise InputError(f"--compare onnxruntime: {model} is a TFLite model; compare it "
                             f"with --compare litert")
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except (DecodeError, ValueError, OSError, RuntimeError) as exc:
            raise InputError(f"--peer-model {model}: not an ONNX model ({exc})") from None
        ops = {n.op_type for n in proto.graph.node}
        precision = "int8" if ops & set(INT8_ONNX_OPS) else "fp32"
        return cls(ort, spinning, str(path), sha256(path), precision)

    @property
    def version(self) -> str:
        return self.ort.__version__

    def session(self, threads: int):
        return _ort_session(self.ort, self.model, threads, self.spinning)

    def describe(self) -> dict:
        return {"engine": "onnxruntime", "model": self.model, "sha256": self.sha256,
                "precision": self.precision}


def _check_peer_io(plan, peer_sess, model: str) -> None:
    """The peer must take the plan's inputs (same names; its fixed dimensions equal ours) and give
    the plan's outputs, or the comparison means nothing: InputError naming both sides."""
    theirs = {i.name: i.shape for i in peer_sess.get_inputs()}
    ours = {i["name"]: list(i["shape"]) for i in plan.inputs}
    if set(theirs) != set(ours):
        raise InputError(f"peer model {model}: its inputs {sorted(theirs)} are not the plan's "
                         f"{sorted(ours)}; give --peer-model the ONNX model the plan was "
                         f"compiled from (same input names)")
    for name, shape in ours.items():
        dims = list(theirs[name])
        if len(dims) != len(shape) or any(isinstance(d, int) and d != n
                                          for d, n in zip(dims, shape)):
            raise InputError(f"peer model {model}: input {name!r} has shape {dims}; the plan "
                             f"takes {shape}")
    outs = [o.name for o in peer_sess.get_outputs()]
    missing = [o["name"] for o in plan.outputs if o["name"] not in outs]
    if missing:
        raise InputError(f"peer model {model}: no output {missing[0]!r} (its outputs: "
                         f"{', '.join(outs)}); the outputs cannot be compared")


def plan_precision(plan) -> str:
    """"int8" when the plan runs int8 kernels (compiled with --int8, or a QDQ import), else
    "fp32"."""
    if plan.manifest.get("provenance", {}).get("precision") == "int8":
        return "int8"
    return "int8" if any(s["kernel"].startswith(INT8_KERNEL_PREFIXES) for s in plan.steps) \
        else "fp32"


def _peer_source(plan, model: Path) -> str:
    """The model file the peer runs: the model itself, or the plan's source if it is unchanged."""
    if model.suffix != ".mplan":
        return str(model)
    prov = plan.manifest.get("provenance", {})
    source = prov.get("source")
    if not source or not Path(source).is_file():
        raise EngineError(f"--compare: {model} was compiled from {source!r}, which is "
                          f"not on disk here; bench the source model instead")
    want = prov.get("source_sha256")
    if want:
        from mobile_engine.zoo import sha256
        if sha256(Path(source)) != want:
            raise EngineError(f"--compare: {source} changed since {model} was "
                              f"compiled (sha256 differs); recompile the plan")
    return source


