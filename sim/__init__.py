"""Timing model, SimPy training and serving simulators, cost model, and the public API.

``sim.estimate_training`` and ``sim.estimate_serving`` are the public entry points
(see DESIGN.md); ``sim.plan_serving`` and ``sim.plan_training`` search for the cheapest or fastest
plan that meets a target; ``sim.sweep`` runs a grid of configurations (``sim.grid``) and ``sim.query_sweep``
queries its results. They are imported on first use so that ``import sim`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "estimate_training",
    "estimate_serving",
    "plan_serving",
    "plan_training",
    "sweep",
    "query_sweep",
    "load_sweep_spec",
]


def __getattr__(name: str) -> Any:
    if name == "estimate_training":
        from sim.training.estimate import estimate_training

        return estimate_training
    if name == "estimate_serving":
        from sim.serving.api import estimate_serving

        return estimate_serving
    if name == "plan_serving":
        from sim.serving.plan import plan_serving

        return plan_serving
    if name == "plan_training":
        from sim.training.search import plan_training

        return plan_training
    if name == "sweep":
        from sim.grid.runner import sweep

        return sweep
    if name == "query_sweep":
        from sim.grid.query import query

        return query
    if name == "load_sweep_spec":
        from sim.grid.spec import load_sweep_spec

        return load_sweep_spec
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
