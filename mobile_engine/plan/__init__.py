"""The plan schema and the .mplan reader/writer."""
from mobile_engine.plan.plan import Plan, as_plan

__all__ = ["Plan", "as_plan"]
