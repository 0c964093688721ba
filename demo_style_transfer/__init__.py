"""Real-time style transfer on a camera, a video or a picture, running multistyle26 with mobile-engine.

    python -m demo_style_transfer                      # camera 0 if there is one, else a synthetic camera
    python -m demo_style_transfer --input clip.mp4 --style 7
    python -m demo_style_transfer --style-image starry.jpg   # any picture as the style
    python -m demo_style_transfer --input clip.mp4 --headless --frames 90 --size 480x640 \\
        --output out.mp4 --stats stats.json --threads 2
    python -m demo_style_transfer --auto               # `make demo`: a window, or a short headless run

Modules: sources (camera, video, picture, synthetic camera, capture thread), styles (names, --style and
--blend), pipeline (pre/post-processing, plan cache with int8 calibration, the multistyle26 and
arbitrary-style stylizers, stats), hud (side-by-side view), keys (key handling as a pure
function), app (command line and main loop).
"""
from demo_style_transfer.app import main

__all__ = ["main"]
