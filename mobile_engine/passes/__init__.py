"""Passes (IR -> IR), one per module: the graph rewrites run in the order of
``pipeline.PIPELINE``, the kernel-fusion marks (``passes/fusions``) in that of
``pipeline.FUSION_PASSES``."""
from mobile_engine.passes.pipeline import (FUSION_PASSES, PASS_NAMES, PIPELINE, FusionPass, Pass,
                                           PassReport, fuse, optimize)

__all__ = ["FUSION_PASSES", "PASS_NAMES", "PIPELINE", "FusionPass", "Pass", "PassReport", "fuse",
           "optimize"]
