"""mobile-engine: compile ONNX models into fused plan files and run them with Numba kernels.

    import mobile_engine as me
    plan = me.compile("multistyle26.onnx", input_shapes={"image": (1, 3, 480, 640)})
    plan.save("style.mplan")
    sess = me.Session("style.mplan", threads=2)
    out, = sess.run(None, {"image": x, "style_weights": w})
"""
from mobile_engine.errors import (EngineError, GraphError, InputError, KernelBundleWarning,
                                  ModelFormatError, PlanFormatError, PlanTargetWarning,
                                  PlanVersionWarning, ResourceLimitError, ShapeError,
                                  UnsupportedOperatorError)

from mobile_engine.version import __version__

# NOTE: compile, Plan and Session load the compiler, every kernel family and Numba; they are
# imported on first use so that `import mobile_engine.ir` stays light and free of import cycles.
_LAZY = {"compile": ("mobile_engine.compiler", "compile"),
         "Plan": ("mobile_engine.plan", "Plan"),
         "Session": ("mobile_engine.runtime", "Session"),
         "SessionOptions": ("mobile_engine.runtime", "SessionOptions"),
         "build_id": ("mobile_engine.build", "build_id")}


def _load_reference():
    from kernels import reference
    return reference


def _wire_layers() -> None:
    """The IR interpreter evaluates ops with kernels/reference.py, which the IR may not import
    (the IR is the bottom layer): the package root hands it in, loaded on first evaluation."""
    from mobile_engine.ir import interpret
    interpret.use_reference(_load_reference)


_wire_layers()


def __getattr__(name):
    """``compile``, ``Plan``, ``Session``, ``SessionOptions`` and ``build_id``, imported on
    first use."""
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mobile_engine' has no attribute {name!r}")


__all__ = ["EngineError", "GraphError", "InputError", "KernelBundleWarning", "ModelFormatError",
           "Plan", "PlanFormatError", "PlanTargetWarning", "PlanVersionWarning",
           "ResourceLimitError", "Session", "SessionOptions", "ShapeError",
           "UnsupportedOperatorError", "__version__", "build_id", "compile"]


def __dir__():
    """``dir(mobile_engine)`` lists the lazy names too (``compile``, ``Plan``, ``Session``)."""
    return sorted(set(globals()) | set(__all__))
