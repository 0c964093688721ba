"""mobile_engine/passes/_reach.py states kernel facts for the passes (which import no kernels):
each must equal the kernels' own rule."""
from __future__ import annotations

from kernels import f32_conv2d_pix
from mobile_engine.passes import _reach


def test_pixel_lane_rule_is_the_kernels():
    assert _reach.PIXEL_MAX_CO == f32_conv2d_pix.MAX_CO
    for co in range(1, 2 * f32_conv2d_pix.MAX_CO + 2):
        for group in (1, 2, 3):
            for stride_w in (1, 2, 3):
                assert _reach.pixel_lane_conv(co, group, stride_w) == \
                    f32_conv2d_pix.applicable(co, group, stride_w), (co, group, stride_w)
