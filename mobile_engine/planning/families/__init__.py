"""Op families: each module registers its lowerings (compile time) and binders (load time).

Importing this package imports every family module, so the registries in ``step.py`` are full.
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
