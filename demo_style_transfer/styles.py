"""The 26 styles of multistyle26: names, ``--style`` / ``--blend`` parsing, weight vectors.

multistyle26 (TensorFlow's Android "stylize" demo, Dumoulin et al. 2017) mixes 26 painting styles by a
weight vector ``style_weights: f32[26]``. The model ships no style names, so the demo calls them
"style 0" ... "style 25".
"""
from __future__ import annotations

import numpy as np

NUM_STYLES = 26
STYLE_NAMES = tuple(f"style {i}" for i in range(NUM_STYLES))


class StyleError(ValueError):
    """A ``--style`` or ``--blend`` value that does not name valid styles."""


def check_index(index: int) -> int:
    if not 0 <= index < NUM_STYLES:
        raise StyleError(f"style index must be 0 to {NUM_STYLES - 1}, got {index}")
    return index


def parse_style(text: str) -> int:
    """``"7"`` -> 7 (``--style``)."""
    try:
        return check_index(int(text))
    except ValueError as exc:
        if isinstance(exc, StyleError):
            raise
        raise StyleError(f"--style {text!r}: give a style index 0 to {NUM_STYLES - 1}") from None


def parse_blend(text: str) -> dict[int, float]:
    """``"3:0.5,19:0.5"`` -> ``{3: 0.5, 19: 0.5}`` (``--blend``); a bare index counts as weight 1.

    Weights are relative (normalised by ``weights()``); repeated indices add up.
    """
    mix: dict[int, float] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        idx, _, wt = part.partition(":")
        try:
            index, weight = check_index(int(idx)), float(wt) if wt else 1.0
        except ValueError as exc:
            if isinstance(exc, StyleError):
                raise
            raise StyleError(f"--blend {text!r}: use INDEX:WEIGHT pairs such as 3:0.5,19:0.5") from None
        if not weight >= 0:  # also rejects nan
            raise StyleError(f"--blend {text!r}: weight of style {index} must be >= 0, got {weight}")
        mix[index] = mix.get(index, 0.0) + weight
    if not mix or sum(mix.values()) <= 0:
        raise StyleError(f"--blend {text!r}: needs at least one style with a positive weight")
    return mix


def weights(mix: dict[int, float], out: np.ndarray | None = None) -> np.ndarray:
    """The model's ``style_weights`` f32[26] for a mix ``{index: weight}``, normalised to sum 1."""
    w = np.zeros(NUM_STYLES, np.float32) if out is None else out
    w[:] = 0
    total = sum(mix.values())
    for index, weight in mix.items():
        w[check_index(index)] += weight / total
    return w


def label(mix: dict[int, float]) -> str:
    """HUD text: ``"style 7"`` or ``"blend 3:0.50 + 19:0.50"``."""
    live = {i: v for i, v in sorted(mix.items()) if v > 0}
    if len(live) == 1:
        return STYLE_NAMES[next(iter(live))]
    total = sum(live.values())
    return "blend " + " + ".join(f"{i}:{v / total:.2f}" for i, v in live.items())
