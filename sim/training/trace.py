"""Side-by-side of one simulated MoE layer's forward+backward pair with DeepSeek's H800 trace.

The trace (``deepseek-ai/profile-data`` ``train.json``, copied to
``reference/deepseek_v3_train_profile_h800.json.gz``) is one DualPipe chunk pair: the
forward of 4 MoE layers overlapped with the backward of 4 MoE layers, EP64, TP1, one 4K
sequence per micro-batch, balanced routing, on one H800 (rank 0 of 64). Its kernels are
grouped here into the categories the simulator uses; per-layer figures are the totals over 4.

The simulated side runs the same thing through the engine: one rank, a forward chunk and a
full-backward chunk of four MoE layers as one overlapped F&B action, with the V3 plan's cost
model (so with 20 of 132 SMs held by communication while they overlap).

:func:`compare_kernels` goes kernel by kernel: the trace's compute kernels and the simulator's
named operators (:class:`sim.training.costs.OpCost`) fall into the same families (dense FP8
GEMMs, expert grouped GEMMs, weight-gradient GEMMs, attention forward / backward / its pre- and
post-process, FP8 casts and transposes, RMSNorm, RoPE and q/k assembly, SwiGLU, permute), with
time and count per layer on each side.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moe.operators import Attention, Gemm, GroupedGemm, OpKind
from sim.calibration.published import span_union, trace_kernel_events

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.costs import OpCost, TrainingCostModel, Unit

__all__ = [
    "TRACE_LAYERS",
    "KERNEL_FAMILIES",
    "categorize_kernel",
    "kernel_family",
    "op_family",
    "trace_per_layer",
    "trace_families_per_layer",
    "simulated_per_layer",
    "simulated_families_per_layer",
    "compare",
    "compare_kernels",
]

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


# Kernel families the trace and the simulator's named operators both map onto, in table order.
KERNEL_FAMILIES = (
    "dense FP8 GEMMs: fwd, dgrad, recompute (fp8_ptp128c)",
    "expert grouped GEMMs: fwd, dgrad (m_grouped_fp8_ptp128c)",
    "weight-gradient GEMMs, dense + experts (fp8_dptp128c_acc)",
    "BF16 GEMMs: router (cuBLAS)",
    "attention fwd (FlashAttention)",
    "attention bwd (FlashAttnBwd)",
    "attention bwd pre/post-process",
    "FP8 casts and transposes",
    "RMSNorm fwd/bwd/recompute",
    "RoPE and q/k assembly copies",
    "SwiGLU fwd/bwd/recompute",
    "permute / unpermute",
    "gating, residual adds, small ops",
)


def kernel_family(name: str) -> str | None:
    """Family (of :data:`KERNEL_FAMILIES`) of a trace kernel; None for communication kernels."""
    n = name.lower()
    f = KERNEL_FAMILIES
    if "::ep::" in n or "dpsk::ep" in n:
        return None
    head = n.split("<", 1)[0]  # the kernel's own name, without template arguments
    if "transpose" in head or "cast" in head:
        return f[10] if "swiglu" in head else f[7]
    for needles, family in _NAME_FAMILIES:
        if any(needle in n for needle in needles):
            return f[family]
    return f[12]


# (substrings of a kernel's lower-cased name, its KERNEL_FAMILIES index), first match wins
_NAME_FAMILIES: tuple[tuple[tuple[str, ...], int], ...] = (
    (("fp8_dptp128c_acc",), 2),
    (("m_grouped_fp8",), 1),
    (("fp8_ptp128c",), 0),
    (("gemm",), 3),  # cuBLAS xmma_gemm and any other GEMM
    (("flashattnbwdpre", "flashattnbwdpost"), 6),
    (("flashattnbwd",), 5),
    (("flash",), 4),
    (("swiglu",), 10),
    (("cast", "transpose"), 7),
    (("layer_norm", "ln_fwd", "ln_bwd"), 8),
    (("rotary", "copy_tensor", "direct_copy"), 9),
    (("fused", "clean_and_count_expert"), 11),
)


def op_family(op: OpCost) -> str:
    """Family of a simulated operator (:class:`sim.training.costs.OpCost`), from its kind and work."""
    f = KERNEL_FAMILIES
    kind, work = op.kind, op.work
    if kind is OpKind.ROUTER_GEMM:
        return f[3]
    if isinstance(work, Gemm | GroupedGemm):
        if isinstance(work, Gemm) and work.wgrad:
            return f[2]
        return f[1] if isinstance(work, GroupedGemm) else f[0]
    if kind is OpKind.ATTENTION:
        if isinstance(work, Attention):
            return f[5] if work.backward else f[4]
        return f[6]
    by_kind = {
        OpKind.FP8_CAST: f[7],
        OpKind.ACTIVATION: f[10],
        OpKind.NORM: f[8],
        OpKind.ROPE_QK_KV: f[9],
        OpKind.PERMUTE: f[11],
    }
    return by_kind.get(kind, f[12]) if kind is not None else f[12]


def trace_families_per_layer(path: str | Path) -> dict[str, tuple[float, float]]:
    """Per family: (kernel seconds per layer, kernel calls per layer) over the compute kernels."""
    out: dict[str, list[float]] = {k: [0.0, 0.0] for k in KERNEL_FAMILIES}
    for e in trace_kernel_events(path):
        fam = kernel_family(e["name"])
        if fam is not None:
            out[fam][0] += e["dur"] * 1e-6 / TRACE_LAYERS
            out[fam][1] += 1.0 / TRACE_LAYERS
    return {k: (v[0], v[1]) for k, v in out.items()}


def simulated_families_per_layer(
    model: str | MoEModel = "deepseek-v3", gpu: str | GPUProfile = "H800"
) -> dict[str, tuple[float, float]]:
    """Per family: (simulated seconds per layer, operators per layer) for one MoE layer's forward,
    backward and weight-gradient operators, as in the overlapped pair (math-bound operators
    stretched by the SMs that communication holds)."""
    import gpus
    import moe

    cost, unit = _v3_pair_cost(moe.get(model), gpus.get(gpu))
    lc = cost.unit_cost(unit)
    out: dict[str, list[float]] = {k: [0.0, 0.0] for k in KERNEL_FAMILIES}
    for phase in ("forward", "backward", "weight"):
        for op in lc.ops.get(phase, []):
            seconds = op.seconds * (cost.sm_scale if op.compute_bound else 1.0)
            fam = op_family(op)
            out[fam][0] += seconds
            out[fam][1] += 1.0
    return {k: (v[0], v[1]) for k, v in out.items()}


def trace_per_layer(path: str | Path) -> dict[str, Any]:
    """Kernel milliseconds per layer by category, compute-stream busy time, and the span."""
    kernels = trace_kernel_events(path)
    per_stream: dict[Any, float] = defaultdict(float)
    for e in kernels:
        per_stream[e["tid"]] += e["dur"]
    compute_tid = max(per_stream, key=lambda t: sum(1 for e in kernels if e["tid"] == t))
    totals: dict[str, float] = defaultdict(float)
    for e in kernels:
        totals[categorize_kernel(e["name"])] += e["dur"] * 1e-6  # us -> s
    start = min(e["ts"] for e in kernels)
    end = max(e["ts"] + e["dur"] for e in kernels)
    # Wall time with any compute kernel running (the weight-gradient GEMMs also run on a second
    # stream, concurrently with the main compute stream): the union of their intervals.
    union = span_union(
        [
            (e["ts"], e["ts"] + e["dur"])
            for e in kernels
            if categorize_kernel(e["name"]) not in ("ep_dispatch", "ep_combine")
        ]
    )
    return {
        "per_layer_s": {k: v / TRACE_LAYERS for k, v in sorted(totals.items())},
        "compute_busy_per_layer_s": per_stream[compute_tid] * 1e-6 / TRACE_LAYERS,
        "compute_wall_per_layer_s": union * 1e-6 / TRACE_LAYERS,
        "span_per_layer_s": (end - start) * 1e-6 / TRACE_LAYERS,
    }


def _v3_pair_cost(model: MoEModel, gpu: GPUProfile) -> tuple[TrainingCostModel, Unit]:
    """The V3 plan's cost model over four consecutive MoE layers, and the first of them."""
    import gpus
    from sim.training.api import build_plan
    from sim.training.costs import TrainingCostModel, Unit

    plan = build_plan(
        model,
        gpu,
        2048,
        tp=1,
        pp=16,
        ep=64,
        seq_len=4096,
        global_batch_seqs=15360,
        precision="fp8",
        schedule="dualpipe",
    ).plan
    first_moe = next(i for i, is_moe in enumerate(model.moe_layers) if is_moe)
    units = [Unit("layer", first_moe + i, True) for i in range(TRACE_LAYERS)]
    cluster = gpus.cluster(gpu, num_gpus=2048)
    cost = TrainingCostModel(model=model, gpu=gpu, cluster=cluster, plan=plan, pieces=[units])
    return cost, units[0]


def simulated_per_layer(
    model: str | MoEModel = "deepseek-v3", gpu: str | GPUProfile = "H800"
) -> dict[str, Any]:
    """The V3 plan's cost model on one overlapped F&B pair of four MoE layers, per layer."""
    import gpus
    import moe
    from sim.training.engine import simulate_step
    from sim.training.schedules import Action, Chunk, ScheduleLayout

    cost, _ = _v3_pair_cost(moe.get(model), gpus.get(gpu))
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
        (
            "compute kernels running, any stream (wall)",
            t["compute_wall_per_layer_s"],
            s["compute_busy_per_layer_s"],
        ),
        ("layer fwd+bwd pair (span)", t["span_per_layer_s"], s["span_per_layer_s"]),
    ]
    return [(name, a * 1e3, b * 1e3) for name, a, b in rows]


def compare_kernels(trace_path: str | Path) -> list[tuple[str, float, float, float, float]]:
    """Kernel-family rows (family, trace ms per layer, simulated ms per layer, trace kernels per
    layer, simulated operators per layer) for one MoE layer's forward + backward + weight
    gradient, then a total row. Trace times are summed kernel durations (kernels that run
    concurrently on the second compute stream count fully)."""
    t = trace_families_per_layer(trace_path)
    s = simulated_families_per_layer()
    rows = [(k, t[k][0] * 1e3, s[k][0] * 1e3, t[k][1], s[k][1]) for k in KERNEL_FAMILIES]
    rows.append(
        (
            "total compute kernels",
            sum(r[1] for r in rows),
            sum(r[2] for r in rows),
            sum(r[3] for r in rows),
            sum(r[4] for r in rows),
        )
    )
    return rows
