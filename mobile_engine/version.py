"""The engine version (a module of its own: the plan reader needs it without loading the package's
compile-time parts)."""
__version__ = "0.1.0"
