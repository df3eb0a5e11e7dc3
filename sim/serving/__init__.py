"""SimPy serving simulator: workloads, deployments, KV cache, step costs, metrics, fleet sizing.

Public entry points: ``sim.estimate_serving`` (``sim.serving.api``) and ``sim.plan_serving``
(``sim.serving.plan``: the cheapest deployment that meets a target, across GPUs; projections are
plan searches). Also: ``sim.serving.size_fleet`` and ``sim.serving.pareto_sweep``. Imports are lazy.
"""

from __future__ import annotations

from typing import Any

from sim.lazy import lazy_attribute

LAZY_IMPORTS = dict(
    estimate_serving="sim.serving.api",
    plan_serving="sim.serving.plan",
    size_fleet="sim.serving.fleet",
    isca_decode_bound="sim.serving.fleet",
    pareto_sweep="sim.serving.sweep",
)
__all__ = list(LAZY_IMPORTS)


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, LAZY_IMPORTS, name)
