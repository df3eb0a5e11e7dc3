"""``plan="auto"``: search TP/PP/EP/schedule combinations that fit, return the fastest.

The space: tp in {1, 2, 4, 8} (dividing the heads and a node), pp in {4, 8, 16} (at most the
layers), ep among the three largest powers of two that divide the experts and tp*dp,
schedules dualpipe, zb1p and 1f1b, one sequence per micro-batch; each with selective
recomputation, or full recomputation when selective does not fit.

Two stages: every valid plan that fits in memory is screened by a bound that needs no
simulation (the busiest rank's total chunk time, with communication counted as exposed
unless the schedule overlaps F&B pairs); the ``simulate_top`` best by that bound are then
simulated with the discrete-event engine, and the fastest simulated step wins.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from sim.training.api import TrainingResult, build_plan, simulate_plan
from sim.training.memory import memory_report

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.costs import TrainingCostModel
    from sim.training.schedules import ScheduleLayout

__all__ = ["candidate_plans", "screen_bound_s", "search_plans"]

SEARCH_SCHEDULES = ("dualpipe", "zb1p", "1f1b")


def candidate_plans(
    model: MoEModel, gpu: GPUProfile, num_gpus: int, global_batch_seqs: int
) -> list[dict[str, Any]]:
    gpn = int(gpu.node.gpus_per_node)
    out = []
    for tp in (1, 2, 4, 8):
        if tp > gpn or model.attention.num_heads % tp or num_gpus % tp:
            continue
        for pp in (4, 8, 16):
            if num_gpus % (tp * pp) or pp > model.num_layers:
                continue
            dp = num_gpus // (tp * pp)
            if global_batch_seqs % dp:
                continue
            experts = model.num_routed_experts
            eps = [e for e in (8, 16, 32, 64, 128, 256) if experts % e == 0 and (tp * dp) % e == 0]
            for ep in eps[-3:]:
                for schedule in SEARCH_SCHEDULES:
                    out.append({"tp": tp, "pp": pp, "ep": ep, "schedule": schedule})
    return out


def screen_bound_s(layout: ScheduleLayout, cost: TrainingCostModel) -> float:
    """Busiest rank's chunk time without waiting: a lower bound for overlapped pairs (compute
    only), and the serial sum (compute plus communication) for chunks run alone."""
    worst = 0.0
    for rank, order in enumerate(layout.orders):
        total = 0.0
        for action in order:
            compute = comm = 0.0
            for chunk in action.chunks:
                piece = layout.model_piece(chunk.microbatch, chunk.stage)
                for seg in cost.chunk_segments(chunk, piece, rank, action.overlapped):
                    if seg.stream == "compute":
                        compute += seg.duration_s
                    else:
                        comm += seg.duration_s
            total += max(compute, comm) if action.overlapped else compute + comm
        worst = max(worst, total)
    return worst


def search_plans(
    model: MoEModel,
    gpu: GPUProfile,
    num_gpus: int,
    *,
    seq_len: int,
    global_batch_seqs: int,
    tokens: float,
    precision: str,
    usd_per_gpu_hour: float | None,
    max_candidates: int | None = None,
    simulate_top: int = 4,
) -> TrainingResult:
    screened: list[tuple[float, dict[str, Any]]] = []
    rejected: list[str] = []
    candidates = candidate_plans(model, gpu, num_gpus, global_batch_seqs)
    if max_candidates is not None:
        candidates = candidates[:max_candidates]
    common = {"seq_len": seq_len, "global_batch_seqs": global_batch_seqs, "precision": precision}
    for cand in candidates:
        for recompute in ("selective", "full"):
            kwargs = {**cand, **common, "recompute": recompute}
            try:
                built = build_plan(model, gpu, num_gpus, **kwargs)
            except ValueError as err:
                rejected.append(f"{cand}: {err}")
                break
            report = memory_report(model, gpu, built.plan, built.layout, built.pieces)
            worst = max(r.total_bytes - r.capacity_bytes for r in report)
            if worst <= 0:
                screened.append((screen_bound_s(built.layout, built.cost), kwargs))
                break
            if recompute == "full":
                rejected.append(f"{cand}: does not fit by {worst / 1e9:.1f} GB even with full recomputation")
    if not screened:
        raise ValueError(
            f"no plan for {model.name} on {num_gpus} {gpu.name} fits and is valid; first reasons: "
            + " | ".join(rejected[:3])
        )
    screened.sort(key=lambda x: x[0])
    results = [
        simulate_plan(model, gpu, num_gpus, tokens, usd_per_gpu_hour, **kwargs)
        for _, kwargs in screened[: max(1, simulate_top)]
    ]
    results.sort(key=lambda r: r.step_time_s)
    best = results[0]
    runners = tuple(
        {"plan": r.plan, "step_time_s": r.step_time_s, "gpu_hours": r.gpu_hours, "bound_by": r.bound_by}
        for r in results[1:]
    ) + tuple(
        {"plan": kw, "screen_bound_s": bound} for bound, kw in screened[len(results) : len(results) + 5]
    )
    notes = best.notes + (
        f"plan search: {len(screened)} plans fit; the {len(results)} best by a no-wait bound were simulated; "
        f"{len(rejected)} rejected.",
    )
    return dataclasses.replace(best, runners_up=runners, notes=notes)
