"""Real-time video effects on a camera, a video or a picture with mobile-engine: style transfer
(multistyle26), portrait blur, background replacement, stylized background, face blurring.

    python -m demo_style_transfer                      # camera 0 if there is one, else a synthetic camera
    python -m demo_style_transfer --input clip.mp4 --style 7
    python -m demo_style_transfer --style-image starry.jpg   # any picture as the style
    python -m demo_style_transfer --input clip.mp4 --headless --frames 90 --size 480x640 \\
        --output out.mp4 --stats stats.json --threads 2
    python -m demo_style_transfer --effect portrait-blur     # or background IMG, style-background,
                                                       # blur-faces; 'e' switches live
    python -m demo_style_transfer --auto               # `make demo`: a window, or a short headless run

Modules: sources (camera, video, picture, synthetic camera, capture thread), styles (names, --style and
--blend), pipeline (plan cache with int8 calibration, the multistyle26 and arbitrary-style
stylizers), frames (pre/post-processing, stats), effects (the effects, segmentation, mask
smoothing), faces (face detection: anchors, decoding, suppression, pixelation), hud (side-by-side
view), keys (key handling as a pure function), options (command line), app (main loop).
"""
from demo_style_transfer.app import main

__all__ = ["main"]
