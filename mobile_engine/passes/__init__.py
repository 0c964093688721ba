"""Graph passes (IR -> IR rewrites), one per module, run in the order of ``pipeline.PIPELINE``."""
from mobile_engine.passes.pipeline import PASS_NAMES, PIPELINE, Pass, PassReport, optimize

__all__ = ["PASS_NAMES", "PIPELINE", "Pass", "PassReport", "optimize"]
