"""SimPy serving simulator: workloads, deployments, KV cache, step costs, metrics, fleet sizing.

Public entry points: ``sim.estimate_serving`` (``sim.serving.api``) and ``sim.plan_serving``
(``sim.serving.plan``: the cheapest deployment that meets a target, across GPUs; projections are
plan searches). Also: ``sim.serving.size_fleet`` and ``sim.serving.pareto_sweep``. Imports are lazy.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "estimate_serving",
    "plan_serving",
    "size_fleet",
    "pareto_sweep",
    "isca_decode_bound",
]


def __getattr__(name: str) -> Any:
    if name == "estimate_serving":
        from sim.serving.api import estimate_serving

        return estimate_serving
    if name == "plan_serving":
        from sim.serving.plan import plan_serving

        return plan_serving
    if name in ("size_fleet", "isca_decode_bound"):
        from sim.serving import fleet

        return getattr(fleet, name)
    if name == "pareto_sweep":
        from sim.serving.sweep import pareto_sweep

        return pareto_sweep
    raise AttributeError(f"module 'sim.serving' has no attribute {name!r}")
