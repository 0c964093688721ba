"""Model importers (ONNX): file -> IR graph. ``parse_input_shapes`` is how every entry point
takes the ``input_shapes`` argument."""
from __future__ import annotations

import numbers

from mobile_engine.errors import InputError


def parse_input_shapes(input_shapes) -> dict[str, tuple[int, ...]] | None:
    """``{name: (1, 3, 64, 64)}`` or ``{name: "1x3x64x64"}`` -> ``{name: (1, 3, 64, 64)}``.

    ``InputError`` for anything else (a bare tuple, sizes that are not whole numbers >= 0).
    """
    if input_shapes is None:
        return None
    if not isinstance(input_shapes, dict):
        raise InputError(f"input_shapes must be a dict of input name -> shape, e.g. "
                         f"{{'image': (1, 3, 480, 640)}} or {{'image': '1x3x480x640'}}; got "
                         f"{type(input_shapes).__name__}")
    out = {}
    for name, shape in input_shapes.items():
        dims = shape.lower().split("x") if isinstance(shape, str) else shape
        try:
            if isinstance(shape, str):
                dims = tuple(int(d) for d in dims)
            elif all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
                dims = tuple(int(d) for d in dims)
            else:
                raise TypeError
        except (TypeError, ValueError):
            raise InputError(f"input_shapes[{name!r}] = {shape!r}: give a tuple of sizes such as "
                             f"(1, 3, 480, 640) or a string such as '1x3x480x640'") from None
        if any(d < 0 for d in dims):                     # () is a scalar input
            raise InputError(f"input_shapes[{name!r}] = {shape!r}: sizes must be >= 0")
        out[name] = dims
    return out
