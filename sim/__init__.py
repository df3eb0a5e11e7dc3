"""Timing model, SimPy training and serving simulators, cost model, and the public API.

``sim.estimate_training`` and ``sim.estimate_serving`` are the public entry points
(see DESIGN.md); they are imported on first use so that ``import sim`` stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["estimate_training", "estimate_serving"]


def __getattr__(name: str) -> Any:
    if name == "estimate_training":
        from sim.training.api import estimate_training

        return estimate_training
    if name == "estimate_serving":
        from sim.serving.api import estimate_serving

        return estimate_serving
    raise AttributeError(f"module 'sim' has no attribute {name!r}")
