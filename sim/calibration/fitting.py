"""Fitting the efficiency parameters to measured times, the fixed held-out split, and error summaries.

Generic over where the times come from: a caller gives a function predicting sample ``i`` from a
:class:`~sim.calibration.params.FamilyParams`, and the measured seconds. The kernels measured on
the hardware at hand (:mod:`sim.calibration.devices`), DeepSeek's published tables
(:mod:`sim.calibration.published`) and the serving stacks' kernel tables
(:mod:`sim.calibration.stack_kernels`) are all fitted and scored with these.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sim.calibration.params import PARAMETER_BOUNDS, PARAMETER_NAMES, FamilyParams


def split_fit_holdout(keys: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Fixed rule: sort the distinct shape keys; even positions fit, odd positions are held out.

    Keys are tuples of numbers and strings (lists count as tuples) and sort naturally; whole
    shapes are held out (every implementation of a shape falls on the same side), and the rule
    depends neither on the measured times nor on a random draw.
    """
    normal = [_hashable(k) for k in keys]
    try:
        distinct = sorted(set(normal))
    except TypeError:
        distinct = sorted(set(normal), key=repr)
    side = {k: (i % 2) for i, k in enumerate(distinct)}
    fit = [i for i, k in enumerate(normal) if side[k] == 0]
    held = [i for i, k in enumerate(normal) if side[k] == 1]
    return fit, held


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple((k, _hashable(value[k])) for k in sorted(value))
    return value


# Convergence tolerance of the least-squares fits (scipy's default is 1e-8). At the default, a fit
# stops where the cost has stopped falling by 1e-8 of itself, which in a flat direction (the overlap
# exponent) leaves the parameters uncertain at about 1e-6: the same data fitted on two CPUs gave
# values 1.2e-6 apart, enough to fail the check that a committed file is what the fit produces.
# Converged this tightly, the optimum no longer depends on the machine's last-bit rounding.
FIT_TOLERANCE = 1e-14


def fit_params(
    predict: Callable[[FamilyParams, int], float],
    measured_s: Sequence[float],
    indices: Sequence[int],
    initial: FamilyParams,
    free: Sequence[str] = PARAMETER_NAMES,
    max_efficiency: float = PARAMETER_BOUNDS["compute_efficiency"][1],
) -> FamilyParams:
    """Least-squares fit of ``free`` parameters on log(predicted / measured) over ``indices``.

    ``predict(params, i)`` gives the predicted time of sample ``i``. Parameters not in
    ``free`` keep their ``initial`` values (used when a table cannot constrain them).
    ``max_efficiency`` caps both efficiencies: 1 for a GPU against its datasheet peaks; above 1
    is physical on a CPU whose caches beat the measured DRAM copy ceiling.
    """
    from scipy.optimize import least_squares

    names = [n for n in PARAMETER_NAMES if n in free]
    if not names or not indices:
        return initial
    base = initial.to_dict()
    lo = np.array([PARAMETER_BOUNDS[n][0] for n in names])
    hi = np.array([max_efficiency if n.endswith("efficiency") else PARAMETER_BOUNDS[n][1] for n in names])

    # Optimise log of the positive parameters, and the launch time in microseconds.
    def unpack(x: np.ndarray) -> FamilyParams:
        values = dict(base)
        for name, value in zip(names, x, strict=True):
            values[name] = float(value)
        return FamilyParams(**values)

    target = np.log(np.asarray([measured_s[i] for i in indices], dtype=float))

    def residual(x: np.ndarray) -> np.ndarray:
        params = unpack(x)
        predicted = np.array([predict(params, i) for i in indices], dtype=float)
        return np.log(np.maximum(predicted, 1e-15)) - target

    x0 = np.clip(np.array([base[n] for n in names], dtype=float), lo, hi)
    scale = np.array([1e-5 if n == "launch_s" else 1.0 for n in names])
    best = None
    for start in _starts(x0, names, lo, hi):
        result = least_squares(
            residual,
            start,
            bounds=(lo, hi),
            x_scale=scale,
            loss="soft_l1",
            f_scale=0.1,
            xtol=FIT_TOLERANCE,
            ftol=FIT_TOLERANCE,
            gtol=FIT_TOLERANCE,
        )
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return unpack(best.x)


def _starts(x0: np.ndarray, names: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """A few deterministic starting points (the fit is non-convex in the overlap exponent)."""
    starts = [x0]
    order = list(names)
    for p in (1.5, 4.0):
        for launch in (None, 1e-6, 2e-5):
            s = x0.copy()
            if "overlap_exponent" in names:
                s[order.index("overlap_exponent")] = p
            if launch is not None and "launch_s" in names:
                s[order.index("launch_s")] = launch
            for name in ("compute_efficiency", "memory_efficiency"):
                if name in names and launch == 1e-6:
                    s[order.index(name)] = 1.0
            starts.append(np.clip(s, lo, hi))
    return starts


def abs_pct_errors(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """|predicted - measured| / measured, in percent."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    return np.abs(p - m) / m * 100.0


def summarise(errors_pct: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Median and 90th percentile (linear interpolation) of absolute percentage errors."""
    e = np.asarray(errors_pct, dtype=float)
    if e.size == 0:
        return {"median_pct": math.nan, "p90_pct": math.nan, "n": 0}
    return {
        "median_pct": round(float(np.median(e)), 2),
        "p90_pct": round(float(np.percentile(e, 90)), 2),
        "n": int(e.size),
    }
