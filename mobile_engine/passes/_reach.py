"""What the kernels can run, as far as a pass must know it to choose a rewrite.

Passes rewrite IR only and import no kernel module; the few kernel facts a legality or a
profitability rule rests on are stated here once, each naming its source.
tests/passes/test_reach.py holds them equal to the kernels' own rules.
"""
from __future__ import annotations

PIXEL_MAX_CO = 8    # kernels/f32_conv2d_pix.py MAX_CO: more output channels fill the igemm tiles


def pixel_lane_conv(co: int, group: int, stride_w: int) -> bool:
    """A CONV2D the fp32 pixel-lane kernel runs (kernels/f32_conv2d_pix.py ``applicable``):
    group 1, at most ``PIXEL_MAX_CO`` output channels, column stride 1."""
    return group == 1 and co <= PIXEL_MAX_CO and stride_w == 1
