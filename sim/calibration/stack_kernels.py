"""Fit the kernel tables of serving stacks: a library kernel's published times, as its own parameters.

``python -m sim.calibration.stack_kernels [--write] [NAME ...]``

A serving stack can run a kernel other than the one the device's calibration was fitted to: vLLM
0.7 runs DeepSeek-V3's experts with its Triton fused MoE, not DeepGEMM. A kernel table
(``gpus/calibration/kernels/<name>.json``) holds that kernel's published times with their source and
setup; this module predicts each row with the timing model's own terms for the kernel's grouped
GEMMs (``sim.timing.grouped_gemm_time``: FLOPs padded to whole tiles and waves over the peak, bytes
over the bandwidth, on the GPU the table was timed on), fits the four parameters of
``sim.calibration`` to the rows on the fixed even half of the shapes
(``sim.calibration.split_fit_holdout``) and reports the error on the odd half (:func:`fit`). ``--write``
stores the fit in the file's ``fitted`` entry (:func:`write_fit`), which ``sim.calibration.kernel_params``
reads. A table whose rows
cannot tell two parameters apart names the ones it fits (``free_parameters``, with its reason); the
others keep the uncalibrated defaults (``gpus/calibration/defaults.json``).

What a row's time covers: ``fused_experts`` runs the gate/up GEMM, the SiLU-and-mul with its FP8
cast and the down GEMM; the model's rows are the two GEMMs (the activation kernel, a few percent of
the time at these batches, is absorbed by the fit, and the serving step charges it again: a small
double count, stated here).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

import gpus
import moe
from moe.operators.inventory import experts_touched
from sim import calibration as cal
from sim import timing


def _rows(table: dict[str, Any]) -> list[tuple[tuple[int, int], float]]:
    """((tp, batch), measured seconds) for every row of the table."""
    out = []
    for tp, by_batch in table["measured_us_by_tp_and_batch"].items():
        for batch, us in by_batch.items():
            out.append(((int(tp), int(batch)), float(us) * 1e-6))
    return sorted(out)


def _terms(table: dict[str, Any], tp: int, batch: int) -> list[tuple[float, float]]:
    """(padded compute seconds, memory seconds) of the row's two grouped GEMMs on the timed GPU."""
    setup = table["setup"]
    model = moe.get(setup["model"])
    experts, top_k = int(setup["num_experts"]), int(setup["top_k"])
    hidden, inter, dtype = int(setup["hidden"]), int(setup["intermediate"]) // tp, str(setup["dtype"])
    rows = batch * top_k  # random routing over all experts of one GPU (benchmark_moe.py)
    active = experts_touched(model, experts, rows)
    groups = [int(math.ceil(rows / active))] * active
    gpu = gpus.get(table["device"])
    out = []
    for n, k in ((2 * inter, hidden), (hidden, inter)):
        t = timing.grouped_gemm_time(gpu, groups, n, k, dtype)
        out.append((t.compute_s, t.memory_s))
    return out


def fit(name: str) -> dict[str, Any]:
    """The ``fitted`` entry of kernel table ``name``: parameters, the rule, and the held-out errors."""
    table = cal.kernel_table(name)
    rows = _rows(table)
    keys = [key for key, _ in rows]
    measured = [t for _, t in rows]
    terms = [_terms(table, tp, batch) for tp, batch in keys]

    def predict(params: cal.FamilyParams, i: int) -> float:
        return sum(cal.predict_seconds(params, c, m) for c, m in terms[i])

    fit_idx, held_idx = cal.split_fit_holdout(keys)
    free = tuple(table.get("free_parameters", cal.PARAMETER_NAMES))
    params = cal.fit_params(predict, measured, fit_idx, cal.default_params("gpu"), free, max_efficiency=1.0)
    errors = cal.abs_pct_errors([predict(params, i) for i in held_idx], [measured[i] for i in held_idx])
    return {
        "params": params.to_dict(),
        "rule": "sim.calibration.split_fit_holdout over (tp, batch): even positions fit, odd held out",
        "free_parameters": list(free),
        "fit_n": len(fit_idx),
        "held_out_n": len(held_idx),
        "held_out_median_abs_error_pct": round(float(np.median(errors)), 2),
        "held_out_max_abs_error_pct": round(float(np.max(errors)), 2),
        "timed_on": table["device"],
    }


def write_fit(name: str, fitted: dict[str, Any]) -> Path:
    """Store ``fitted`` (:func:`fit`'s entry) in kernel table ``name``'s file; return its path."""
    path = cal.calibration_dir() / cal.KERNELS_FOLDER / f"{name}.json"
    data = json.loads(path.read_text())
    data["fitted"] = fitted
    return cal.write_json(path, data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sim.calibration.stack_kernels", description=__doc__.splitlines()[0]
    )
    parser.add_argument("names", nargs="*", help="kernel tables (default: all)")
    parser.add_argument("--write", action="store_true", help="store each fit in its file")
    args = parser.parse_args(argv)
    try:
        names = args.names or cal.kernel_table_names()
        for name in names:
            fitted = fit(name)
            p = fitted["params"]
            print(
                f"{name}: memory efficiency {p['memory_efficiency']:.3f}, "
                f"compute {p['compute_efficiency']:.3f}, "
                f"launch {p['launch_s'] * 1e6:.1f} us, overlap {p['overlap_exponent']:.2f}; held out "
                f"{fitted['held_out_n']}: median |error| {fitted['held_out_median_abs_error_pct']} %, "
                f"max {fitted['held_out_max_abs_error_pct']} %"
            )
            if args.write:
                write_fit(name, fitted)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
