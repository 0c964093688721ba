"""Op families: each module registers its lowerings (compile time; the binders of the same
families live in mobile_engine/runtime/binders).

Importing this package imports every family module, so the registries in ``step.py`` are full.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
