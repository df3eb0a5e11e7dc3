"""Timing model, SimPy training and serving simulators, cost model, and the public API.

``sim.estimate_training`` and ``sim.estimate_serving`` are the public entry points
(see DESIGN.md); ``sim.plan_serving`` and ``sim.plan_training`` search for the cheapest or fastest
plan that meets a target; ``sim.sweep`` runs a grid of configurations (``sim.grid``) and ``sim.query_sweep``
queries its results. They are imported on first use so that ``import sim`` stays cheap.
"""

from __future__ import annotations

from typing import Any

from sim.lazy import lazy_attribute

LAZY_IMPORTS = {
    "estimate_training": "sim.training.estimate",
    "estimate_serving": "sim.serving.api",
    "plan_serving": "sim.serving.plan",
    "plan_training": "sim.training.search",
    "sweep": "sim.grid.runner",
    "query_sweep": "sim.grid.query:query",
    "load_sweep_spec": "sim.grid.spec",
}
__all__ = list(LAZY_IMPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, LAZY_IMPORTS, name)
