"""mobile-engine: compile ONNX models into fused plan files and run them with Numba kernels.

    import mobile_engine as me
    plan = me.compile("multistyle26.onnx", input_shapes={"image": (1, 3, 480, 640)})
    plan.save("style.mplan")
    sess = me.Session("style.mplan", threads=2)
    out, = sess.run(None, {"image": x, "style_weights": w})
"""
from mobile_engine.compiler import ENGINE_VERSION as __version__
from mobile_engine.compiler import compile
from mobile_engine.errors import (EngineError, GraphError, InputError, ModelFormatError,
                                  PlanFormatError, ResourceLimitError, ShapeError,
                                  UnsupportedOperatorError)
from mobile_engine.plan import Plan
from mobile_engine.runtime import Session

__all__ = ["EngineError", "GraphError", "InputError", "ModelFormatError", "Plan", "PlanFormatError",
           "ResourceLimitError", "Session", "ShapeError", "UnsupportedOperatorError", "__version__",
           "compile"]
