"""build_id(): which engine build made a plan, for caches that must not outlive a code change."""
from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

from mobile_engine.version import __version__

PACKAGES = ("mobile_engine", "kernels", "quantize")


@lru_cache(maxsize=None)
def build_id() -> str:
    """``<version>+<8 hex>``: the engine version and a hash of the engine's Python sources
    (mobile_engine, kernels, quantize; found without importing them). The version alone does not
    change while the engine is developed, and a plan cached by an older build may bind but run
    older (slower) steps: caches key on this instead."""
    h = hashlib.sha256()
    for pkg in PACKAGES:
        spec = importlib.util.find_spec(pkg)
        root = Path(spec.origin).parent
        for f in sorted(root.rglob("*.py")):
            h.update(str(f.relative_to(root.parent)).encode())
            h.update(f.read_bytes())
    return f"{__version__}+{h.hexdigest()[:8]}"
