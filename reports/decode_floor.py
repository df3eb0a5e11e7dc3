"""A decode step term by term against its floor: what each part of the step costs in the simulator
and what the hardware could not go under for it (its bytes over the peak HBM bandwidth, its FLOPs
over the peak FLOP/s of its format, a collective's bytes over the link's peak).

    python -m reports.decode_floor            # the two decode steps of the serving-fidelity issue
    python -m reports.decode_floor --json

The floor of a term sums the floors of its operators (each ``max(bytes / HBM, FLOPs / peak)``), so
it assumes perfect kernels and no launch cost; what lies above it is the timing model's named
mechanisms: tiles padded to whole M-blocks and waves (CUTLASS / DeepGEMM Hopper tiles), the fitted
efficiency and launch time of each kernel family (``gpus/calibration``), the links' fitted latency.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import gpus
import moe
from moe.operators import Comm, Given, Op, serving_decode_core, serving_head_ops
from sim.serving.deployment import kv_bytes_per_token_per_gpu, parse_deployment
from sim.serving.stepcost import StepCostModel

__all__ = ["CASES", "Term", "decode_terms", "main"]

# The two decode steps of the serving-fidelity issue (issue 16), served by SGLang 0.4's defaults
# with expert parallelism: V3 on one 8 x H200 node at 4 requests, 2K in / 256 out (KV about 2,176
# tokens); V3 decode on H20, EP16 over 2 nodes, about 15 requests per GPU.
CASES: dict[str, dict[str, Any]] = {
    "v3_8xh200_concurrency4": {
        "model": "deepseek-v3",
        "gpu": "H200",
        "deployment": {
            "mode": "colocated",
            "nodes": 1,
            "gpus_per_node": 8,
            "tp": 8,
            "ep": 8,
            "stack": "sglang-0.4",
        },
        "batch_per_gpu": 4,
        "kv_len": 2176,
    },
    "v3_h20_ep16_15_per_gpu": {
        "model": "deepseek-v3",
        "gpu": "H20",
        "deployment": {
            "mode": "colocated",
            "nodes": 2,
            "gpus_per_node": 8,
            "tp": 1,
            "ep": 16,
            "stack": "sglang-0.4",
        },
        "batch_per_gpu": 15,
        "kv_len": 2176,
    },
}
# the H20 step again with DeepGEMM's swap-AB grouped GEMM (the deployment key ``swap_ab``)
CASES["v3_h20_ep16_15_per_gpu_swap_ab"] = {
    **CASES["v3_h20_ep16_15_per_gpu"],
    "deployment": {**CASES["v3_h20_ep16_15_per_gpu"]["deployment"], "swap_ab": True},
}


@dataclass(frozen=True)
class Term:
    """One breakdown category of a decode step: simulated seconds and its floor."""

    term: str
    simulated_s: float
    floor_s: float | None  # None: no floor counted (a scheduling share, or nothing to bound)

    @property
    def ratio(self) -> float | None:
        return self.simulated_s / self.floor_s if self.floor_s else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def _op_floor(gpu: gpus.GPUProfile, op: Op) -> float:
    work = op.work
    if isinstance(work, Given | Comm):
        return 0.0
    dtype = gpu.nearest_dtype(getattr(work, "compute_dtype", "") or getattr(work, "dtype", "bf16"))
    flops = float(work.flops) / float(gpu.peak_flops(dtype)) if work.flops else 0.0
    return max(float(work.bytes_moved) / float(gpu.hbm_bandwidth_bytes_per_s), flops)


def decode_terms(
    model: str, gpu: str, deployment: Mapping[str, Any], batch_per_gpu: int, kv_len: int
) -> tuple[list[Term], float, float]:
    """The terms of one decode step (no MTP) of ``batch_per_gpu`` requests at KV length ``kv_len`` on
    the deployment's decode (or colocated) instance, and the step's simulated time and floor."""
    m, g = moe.get(model), gpus.get(gpu)
    dep = parse_deployment(dict(deployment), m, g)
    inst = dep.decode or dep.colocated
    assert inst is not None
    cost = StepCostModel(m, g, inst, 0, np.random.default_rng(0))
    step = cost.decode_step(batch_per_gpu, kv_len)
    mb = inst.micro_batches if batch_per_gpu >= 2 else 1
    b_mb = int(math.ceil(batch_per_gpu / mb))
    n_moe = sum(cost.moe_layer_flags)
    n_dense = cost.num_layers - n_moe
    floors: dict[str, float] = {}
    for stage, ops in cost.timed_layer_ops(b_mb, 0.0, prefill=False).items():
        if stage == "dense_ffn" and not m.intermediate_size:
            continue
        count = n_dense if stage.startswith("dense") else n_moe
        for op, _ in ops:
            c = op.kind.category
            floors[c] = floors.get(c, 0.0) + mb * count * _op_floor(g, op)
    kv_layer = kv_bytes_per_token_per_gpu(m, inst, kv_len) * kv_len / cost.num_layers
    core = serving_decode_core(m, cost.shape, b_mb, 1, kv_len, kv_layer)
    floors["attention"] = floors.get("attention", 0.0) + mb * cost.num_layers * _op_floor(g, core)
    head = serving_head_ops(m, cost.shape, batch_per_gpu, batch_per_gpu, core.phase)
    floors["head"] = sum(_op_floor(g, op) for op in head)
    nv = float(g.nvlink_bandwidth_bytes_per_s_per_direction or 0.0)
    if inst.tp > 1 and nv > 0 and step.breakdown_s.get("tp_allreduce"):
        # a ring's bytes over the link, times the all-reduces the step charged
        reductions = step.breakdown_s["tp_allreduce"] / cost.tp_allreduce(b_mb)
        size = b_mb * m.hidden_size * 2.0
        floors["tp_allreduce"] = reductions * 2.0 * (inst.tp - 1) / inst.tp * size / nv
    terms = [
        Term(name, float(seconds), floors.get(name))
        for name, seconds in sorted(step.breakdown_s.items(), key=lambda kv: -kv[1])
    ]
    floor_total = sum(t.floor_s or 0.0 for t in terms)
    return terms, float(step.time_s), floor_total


def _table(name: str, terms: Sequence[Term], step_s: float, floor_s: float) -> str:
    lines = [f"{name}: step {step_s * 1e3:.2f} ms, floor of its terms {floor_s * 1e3:.2f} ms"]
    lines.append(f"  {'term':<18} {'simulated ms':>13} {'floor ms':>10} {'x floor':>8}")
    for t in terms:
        floor = f"{t.floor_s * 1e3:10.3f}" if t.floor_s else f"{'-':>10}"
        ratio = f"{t.ratio:8.1f}" if t.ratio else f"{'-':>8}"
        lines.append(f"  {t.term:<18} {t.simulated_s * 1e3:13.3f} {floor} {ratio}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m reports.decode_floor", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    out: dict[str, Any] = {}
    for name, case in CASES.items():
        terms, step_s, floor_s = decode_terms(**case)
        out[name] = {
            "case": case,
            "step_s": step_s,
            "floor_s": floor_s,
            "terms": [t.to_dict() for t in terms],
        }
        if not args.json:
            print(_table(name, terms, step_s, floor_s))
            print()
    if args.json:
        json.dump(out, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
