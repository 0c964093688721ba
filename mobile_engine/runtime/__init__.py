"""The runtime: load a plan, bind each step to its kernel, run frames (and profile them).

Imports only the plan format (``mobile_engine.plan``) and the kernels: a phone-side program
that runs a plan never loads the importers, the passes, planning or quantize
(``tests/test_runtime_import.py``). ``binders/`` holds one module per kernel family (kernel id
-> checked ``(function, args)``), ``validate.py`` the checks every binder makes before a kernel
runs, ``session.py`` the Session.
"""
from mobile_engine.runtime.session import NodeArg, Session, SessionOptions

__all__ = ["NodeArg", "Session", "SessionOptions"]
