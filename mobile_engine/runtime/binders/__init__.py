"""Binders by kernel family: load time's half of each family (planning/families holds the
compile-time half). Importing this package imports every family, so ``BINDERS`` is full."""
import importlib
import pkgutil

from mobile_engine.runtime.binders.registry import BINDERS, Binder, binds

for _module in pkgutil.iter_modules(__path__):
    if _module.name != "registry":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["BINDERS", "Binder", "binds"]
