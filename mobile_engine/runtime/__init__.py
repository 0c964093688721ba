"""The runtime: Session (load, bind, run) and its per-op profiler."""
from mobile_engine.runtime.session import NodeArg, Session, SessionOptions

__all__ = ["NodeArg", "Session", "SessionOptions"]
