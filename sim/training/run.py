"""A whole training run: phases with their own sequence length, batch and step count.

Each phase is one simulated step (``estimate_training``) times its steps; phases given in
GPU-hours (post-training) are added as given. ``deepseek_v3_run()`` is DeepSeek-V3's run as
the V3 report describes it (V3-TR section 4.2-4.3): pre-training on 14.8T tokens with the
batch ramp 3,072 -> 15,360 sequences over the first 469B tokens, then context extension at
32K (batch 1,920) and 128K (batch 480), 1,000 steps each, and 5K GPU-hours of post-training.

The ramp is represented by four equal-token segments at their middle batch (4,608, 7,680,
10,752, 13,824 sequences): DualPipe needs at least 2*PP micro-batches per replica, which the
very first batches (3,072 / 128 replicas = 24) do not give, so the ramp's low end is
approximated by its first segment's mean. Context extension keeps 4,096 tokens per GPU per
micro-batch by context parallelism (cp = seq_len / 4,096), an assumption (the V3 report does
not give the long-context parallel layout).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.record import Record
from sim.training.api import TrainingResult
from sim.training.estimate import estimate_training

if TYPE_CHECKING:
    from sim.training.search import TrainingSpace

__all__ = ["Phase", "RunResult", "estimate_run", "deepseek_v3_run", "projections"]


@dataclass(frozen=True)
class Phase:
    name: str
    tokens: float = 0.0
    seq_len: int = 4096
    global_batch_seqs: int = 15360
    steps: int | None = None  # when given, tokens = steps * batch * seq_len
    context_parallel: int = 1
    gpu_hours: float | None = None  # taken as given (not simulated)


@dataclass(frozen=True)
class RunResult(Record):
    phases: tuple[dict[str, Any], ...]
    gpu_hours: float
    days: float
    cost_usd: float


def estimate_run(phases: Sequence[Phase], usd_per_gpu_hour: float | None = None, **plan: Any) -> RunResult:
    rows: list[dict[str, Any]] = []
    total_h = total_days = total_usd = 0.0
    num_gpus = int(plan.get("num_gpus", 2048))
    for ph in phases:
        if ph.gpu_hours is not None:
            price = usd_per_gpu_hour if usd_per_gpu_hour is not None else 2.0
            rows.append(
                {
                    "name": ph.name,
                    "gpu_hours": ph.gpu_hours,
                    "given": True,
                    "days": ph.gpu_hours / num_gpus / 24,
                    "cost_usd": ph.gpu_hours * price,
                }
            )
            total_h += ph.gpu_hours
            total_days += ph.gpu_hours / num_gpus / 24
            total_usd += ph.gpu_hours * price
            continue
        tokens = ph.tokens if ph.steps is None else float(ph.steps) * ph.global_batch_seqs * ph.seq_len
        r: TrainingResult = estimate_training(
            tokens=tokens,
            seq_len=ph.seq_len,
            global_batch_seqs=ph.global_batch_seqs,
            context_parallel=ph.context_parallel,
            usd_per_gpu_hour=usd_per_gpu_hour,
            **plan,
        )
        rows.append(
            {
                "name": ph.name,
                "tokens": tokens,
                "seq_len": ph.seq_len,
                "batch": ph.global_batch_seqs,
                "step_time_s": r.step_time_s,
                "steps": r.steps,
                "gpu_hours": r.gpu_hours,
                "days": r.days,
                "cost_usd": r.cost_usd,
                "mfu": r.mfu,
                "bound_by": r.bound_by,
                "given": False,
            }
        )
        total_h += r.gpu_hours
        total_days += r.days
        total_usd += r.cost_usd
    return RunResult(tuple(rows), total_h, total_days, total_usd)


def deepseek_v3_phases() -> list[Phase]:
    ramp_tokens = 469e9  # V3-TR 4.2
    ramp = [Phase(f"pretrain-ramp-{b}", ramp_tokens / 4, 4096, b) for b in (4608, 7680, 10752, 13824)]
    return ramp + [
        Phase("pretrain", 14.8e12 - ramp_tokens, 4096, 15360),
        Phase("context-32k", seq_len=32768, global_batch_seqs=1920, steps=1000, context_parallel=8),
        Phase("context-128k", seq_len=131072, global_batch_seqs=480, steps=1000, context_parallel=32),
        Phase("post-training", gpu_hours=5e3),  # V3-TR Table 1, as given
    ]


def deepseek_v3_run(usd_per_gpu_hour: float = 2.0, gpu: str = "H800") -> RunResult:
    """V3's whole run at its published configuration on ``gpu`` (``"H800@2025-02"``: with the
    kernel tables of February 2025, :func:`gpus.kernel_vintages`)."""
    return estimate_run(
        deepseek_v3_phases(),
        usd_per_gpu_hour=usd_per_gpu_hour,
        model="deepseek-v3",
        gpu=gpu,
        num_gpus=2048,
        tp=1,
        pp=16,
        ep=64,
        precision="fp8",
        schedule="dualpipe",
    )


PROJECTION_MODELS = {"deepseek-v4-flash": 32e12, "deepseek-v4-pro": 33e12}  # tokens: deepseek_figures.md s7
PROJECTION_GPUS = ("H100", "H800", "H20", "A800")


def projections(
    models: Sequence[str] = tuple(PROJECTION_MODELS),
    gpus_: Sequence[str] = PROJECTION_GPUS,
    num_gpus: int = 2048,
    space: TrainingSpace | None = None,
    refine_top: int = 4,
) -> list[dict[str, Any]]:
    """V4 pre-training on 2,048 GPUs of each kind with the fastest plan :func:`sim.plan_training`
    finds in ``space`` (its default when None; FP8 where supported).

    Assumes V3's sequence length and batch (4,096 x 15,360); V4's own are not published.
    """
    import gpus as gpu_registry
    import moe
    from sim.training.search import plan_training

    rows: list[dict[str, Any]] = []
    for name in models:
        m = moe.get(name)
        tokens = PROJECTION_MODELS.get(name, 14.8e12)
        for gname in gpus_:
            g = gpu_registry.get(gname)
            try:
                r = plan_training(
                    m,
                    g,
                    num_gpus,
                    seq_len=4096,
                    global_batch_seqs=15360,
                    tokens=tokens,
                    precision="fp8",
                    space=space,
                    refine_top=refine_top,
                ).best
            except ValueError as err:
                rows.append({"model": name, "gpu": gname, "error": str(err)})
                continue
            rows.append(
                {
                    "model": name,
                    "gpu": gname,
                    "tokens": tokens,
                    "days": r.days,
                    "gpu_hours": r.gpu_hours,
                    "usd": r.cost_usd,
                    "usd_low": r.cost_usd_range[0],
                    "usd_high": r.cost_usd_range[1],
                    "usd_per_gpu_hour": r.usd_per_gpu_hour,
                    "bound_by": r.bound_by,
                    "mfu": r.mfu,
                    "plan": _plan_label(r.plan),
                    "notes": list(r.notes),
                }
            )
    return rows


def _plan_label(plan: dict[str, Any]) -> str:
    """A plan in a few words: schedule, parallel degrees (those above one beyond TP, PP and EP),
    micro-batch size and recomputation."""
    parts = [str(plan["schedule"]), f"TP{plan['tp']}", f"PP{plan['pp']}"]
    if plan.get("virtual_stages", 1) > 1:
        parts.append(f"V{plan['virtual_stages']}")
    parts.append(f"EP{plan['ep']}")
    for key, tag in (("moe_tp", "MoE-TP"), ("cp", "CP"), ("micro_batch_seqs", "mbs")):
        if plan.get(key, 1) > 1:
            parts.append(f"{tag}{plan[key]}")
    parts.append(f"{plan.get('recompute', 'selective')} recompute")
    return " ".join(parts)


def format_projections(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table of :func:`projections` rows."""
    head = (
        f"{'model':<18} {'gpu':<6} {'plan':<52} {'days':>6} {'GPU-hours':>11} {'USD (M)':>8} "
        f"{'USD range (M)':>15} {'$/GPU-h':>7} {'bound':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<18} {r['gpu']:<6} no plan fits: {r['error'][:80]}")
            continue
        lines.append(
            f"{r['model']:<18} {r['gpu']:<6} {r['plan']:<52} {r['days']:>6.1f} "
            f"{r['gpu_hours'] / 1e3:>10,.0f}K "
            f"{r['usd'] / 1e6:>8.2f} {r['usd_low'] / 1e6:>7.2f}-{r['usd_high'] / 1e6:<7.2f} "
            f"{r['usd_per_gpu_hour']:>7.2f} {r['bound_by']:>8}"
        )
    return "\n".join(lines)
