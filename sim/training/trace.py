"""Side-by-side of one simulated MoE layer's forward+backward pair with DeepSeek's H800 trace.

The trace (``deepseek-ai/profile-data`` ``train.json``, copied to
``reference/deepseek_v3_train_profile_h800.json.gz``) is one DualPipe chunk pair: the
forward of 4 MoE layers overlapped with the backward of 4 MoE layers, EP64, TP1, one 4K
sequence per micro-batch, balanced routing, on one H800 (rank 0 of 64). Its kernels are
grouped here into the categories the simulator uses; per-layer figures are the totals over 4.

The simulated side runs the same thing through the engine: one rank, a forward chunk and a
full-backward chunk of four MoE layers as one overlapped F&B action, with the V3 plan's cost
model (so with 20 of 132 SMs held by communication while they overlap).
"""

from __future__ import annotations

import gzip
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

__all__ = ["TRACE_LAYERS", "categorize_kernel", "trace_per_layer", "simulated_per_layer", "compare"]

TRACE_LAYERS = 4  # PROF README: 4 MoE layers per chunk


def categorize_kernel(name: str) -> str:
    """Simulator category of a CUDA kernel name from the training trace."""
    n = name.lower()
    if "flashattnbwd" in n or ("flash" in n and "bwd" in n):
        return "attention_backward"
    if "flash" in n and ("fwd" in n or "compute_attn" in n):
        return "attention_forward"
    if "::ep::" in n or "dpsk::ep" in n:
        if "combine" in n:
            return "ep_combine"
        return "ep_dispatch"  # dispatch, notify_dispatch, cached_notify, layout
    if "gemm" in n or "xmma" in n:
        return "gemm"
    return "other"


def trace_per_layer(path: str | Path) -> dict[str, Any]:
    """Kernel milliseconds per layer by category, compute-stream busy time, and the span."""
    raw = Path(path).read_bytes()
    data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    kernels = [e for e in data["traceEvents"] if e.get("cat") == "kernel" and e.get("ph") == "X"]
    if not kernels:
        raise ValueError(f"{path} holds no kernel events")
    per_stream: dict[Any, float] = defaultdict(float)
    for e in kernels:
        per_stream[e["tid"]] += e["dur"]
    compute_tid = max(per_stream, key=lambda t: sum(1 for e in kernels if e["tid"] == t))
    totals: dict[str, float] = defaultdict(float)
    for e in kernels:
        totals[categorize_kernel(e["name"])] += e["dur"] * 1e-6  # us -> s
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    return {
        "per_layer_s": {k: v / TRACE_LAYERS for k, v in sorted(totals.items())},
        "compute_busy_per_layer_s": per_stream[compute_tid] * 1e-6 / TRACE_LAYERS,
        "span_per_layer_s": (end - start) * 1e-6 / TRACE_LAYERS,
    }


def simulated_per_layer(model: Any = "deepseek-v3", gpu: Any = "H800") -> dict[str, Any]:
    """The V3 plan's cost model on one overlapped F&B pair of four MoE layers, per layer."""
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.costs import TrainingCostModel, Unit
    from sim.training.engine import simulate_step
    from sim.training.schedules import Action, Chunk, ScheduleLayout

    m, g = moe.get(model), gpus.get(gpu)
    plan, _, _, _, _ = build_plan(
        m,
        g,
        2048,
        tp=1,
        pp=16,
        ep=64,
        seq_len=4096,
        global_batch_seqs=15360,
        precision="fp8",
        schedule="dualpipe",
    )
    first_moe = next(i for i, is_moe in enumerate(m.moe_layers) if is_moe)
    units = [Unit("layer", first_moe + i, True) for i in range(TRACE_LAYERS)]
    cluster = gpus.cluster(g, num_gpus=2048)
    cost = TrainingCostModel(model=m, gpu=g, cluster=cluster, plan=plan, pieces=[units])
    layout = ScheduleLayout(
        name="pair",
        num_ranks=1,
        num_microbatches=2,
        num_stages=1,
        orders=(
            (Action((Chunk("F", 1, 0),), "forward"), Action((Chunk("F", 0, 0), Chunk("BW", 1, 0)), "steady")),
        ),
        stage_owner=((0,),),
        microbatch_direction=(0, 0),
        parameter_copies=1,
        model_stage=((0,),),
    )
    result = simulate_step(layout, cost)
    tl = result.timelines[0]
    _, pair_start, pair_end, _, _ = tl.actions[1]
    cats: dict[str, float] = defaultdict(float)
    busy = 0.0
    for start, end, mix, _ in tl.compute:
        if start >= pair_start - 1e-12 and end <= pair_end + 1e-12:
            busy += end - start
            for k, share in mix:
                cats[k] += (end - start) * share
    for start, end, category, _ in tl.comm:
        if start >= pair_start - 1e-12 and end <= pair_end + 1e-12:
            cats[category] += end - start
    return {
        "per_layer_s": {k: v / TRACE_LAYERS for k, v in sorted(cats.items())},
        "compute_busy_per_layer_s": busy / TRACE_LAYERS,
        "span_per_layer_s": (pair_end - pair_start) / TRACE_LAYERS,
    }


def compare(trace_path: str | Path) -> list[tuple[str, float, float]]:
    """Rows (what, trace ms per layer, simulated ms per layer)."""
    t = trace_per_layer(trace_path)
    s = simulated_per_layer()
    tp, sp = t["per_layer_s"], s["per_layer_s"]
    rows = [
        ("GEMMs (FP8 dense + grouped, BF16)", tp.get("gemm", 0.0), sp.get("gemm", 0.0)),
        (
            "attention fwd + bwd",
            tp.get("attention_forward", 0.0) + tp.get("attention_backward", 0.0),
            sp.get("attention", 0.0),
        ),
        ("other compute (norms, casts, SwiGLU, permute)", tp.get("other", 0.0), sp.get("other", 0.0)),
        (
            "EP dispatch + combine kernels (comm stream)",
            tp.get("ep_dispatch", 0.0) + tp.get("ep_combine", 0.0),
            sp.get("ep_comm", 0.0),
        ),
        ("compute stream busy", t["compute_busy_per_layer_s"], s["compute_busy_per_layer_s"]),
        ("layer fwd+bwd pair (span)", t["span_per_layer_s"], s["span_per_layer_s"]),
    ]
    return [(name, a * 1e3, b * 1e3) for name, a, b in rows]
