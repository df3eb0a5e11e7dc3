"""``plan="auto"``: search TP/PP/EP/schedule combinations that fit, return the fastest.

The space: tp in {1, 2, 4, 8} (dividing the heads and a node), pp in {4, 8, 16} (at most the
layers), ep among the three largest powers of two that divide the experts and tp*dp,
schedules dualpipe, zb1p and 1f1b, one sequence per micro-batch; each with selective
recomputation, or full recomputation when selective does not fit. Plans that fail validation
or the memory check are skipped; each fitting plan is simulated, and the fastest step wins.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from sim.training.api import TrainingResult, simulate_plan

__all__ = ["candidate_plans", "search_plans"]

SEARCH_SCHEDULES = ("dualpipe", "zb1p", "1f1b")


def candidate_plans(model: Any, gpu: Any, num_gpus: int, global_batch_seqs: int) -> list[dict[str, Any]]:
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
            eps = [
                e
                for e in (8, 16, 32, 64, 128, 256)
                if model.num_routed_experts % e == 0 and (tp * dp) % e == 0
            ]
            for ep in eps[-3:]:
                for schedule in SEARCH_SCHEDULES:
                    out.append({"tp": tp, "pp": pp, "ep": ep, "schedule": schedule})
    return out


def search_plans(
    model: Any,
    gpu: Any,
    num_gpus: int,
    *,
    seq_len: int,
    global_batch_seqs: int,
    tokens: float,
    precision: str,
    usd_per_gpu_hour: float | None,
    max_candidates: int | None = None,
) -> TrainingResult:
    results: list[TrainingResult] = []
    rejected: list[str] = []
    candidates = candidate_plans(model, gpu, num_gpus, global_batch_seqs)
    if max_candidates is not None:
        candidates = candidates[:max_candidates]
    for cand in candidates:
        for recompute in ("selective", "full"):
            try:
                results.append(
                    simulate_plan(
                        model,
                        gpu,
                        num_gpus,
                        tokens,
                        usd_per_gpu_hour,
                        seq_len=seq_len,
                        global_batch_seqs=global_batch_seqs,
                        precision=precision,
                        recompute=recompute,
                        **cand,
                    )
                )
                break
            except ValueError as err:
                if recompute == "full" or "does not fit" not in str(err):
                    rejected.append(f"{cand} recompute={recompute}: {err}")
                    break
    if not results:
        raise ValueError(
            f"no plan for {model.name} on {num_gpus} {gpu.name} fits and is valid; first reasons: "
            + " | ".join(rejected[:3])
        )
    results.sort(key=lambda r: r.step_time_s)
    best = results[0]
    runners = tuple(
        {"plan": r.plan, "step_time_s": r.step_time_s, "gpu_hours": r.gpu_hours, "bound_by": r.bound_by}
        for r in results[1:6]
    )
    notes = best.notes + (f"plan search: {len(results)} fitting plans simulated, {len(rejected)} rejected.",)
    return dataclasses.replace(best, runners_up=runners, notes=notes)
