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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.training.api import TrainingResult, build_plan, simulate_plan
from sim.training.memory import memory_report

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.costs import TrainingCostModel
    from sim.training.schedules import ScheduleLayout

__all__ = [
    "TrainingSearch",
    "TrainingSpace",
    "candidate_plans",
    "plan_training",
    "screen_bound_s",
    "search_plans",
]

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


def _action_counts(
    layout: ScheduleLayout, routing_samples: int = 1
) -> list[list[tuple[int, tuple[Any, ...], bool]]]:
    """Each rank's actions grouped by what they cost (chunk kinds, model pieces, routing sample, as
    :meth:`TrainingCostModel.chunk_segments` keys them): (count, one action's chunks, overlapped)."""
    out = []
    for order in layout.orders:
        groups: dict[tuple[Any, ...], list[Any]] = {}
        for action in order:
            key = (
                tuple(
                    (
                        c.kind,
                        layout.model_piece(c.microbatch, c.stage),
                        (c.microbatch * 7919 + c.stage) % routing_samples,
                    )
                    for c in action.chunks
                ),
                action.overlapped,
            )
            entry = groups.get(key)
            if entry is None:
                groups[key] = [1, action.chunks, action.overlapped]
            else:
                entry[0] += 1
        out.append([(int(n), chunks, bool(o)) for n, chunks, o in groups.values()])
    return out


def fast_screen_bound_s(
    layout: ScheduleLayout, cost: TrainingCostModel, counts: list[list[tuple[int, tuple[Any, ...], bool]]]
) -> float:
    """:func:`screen_bound_s` from the layout's grouped actions (:func:`_action_counts`): the same sum,
    each distinct action costed once (routing samples make actions distinct only with skewed routing)."""
    worst = 0.0
    for rank, groups in enumerate(counts):
        total = 0.0
        for n, chunks, overlapped in groups:
            compute = comm = 0.0
            for chunk in chunks:
                piece = layout.model_piece(chunk.microbatch, chunk.stage)
                for seg in cost.chunk_segments(chunk, piece, rank, overlapped):
                    if seg.stream == "compute":
                        compute += seg.duration_s
                    else:
                        comm += seg.duration_s
            total += n * (max(compute, comm) if overlapped else compute + comm)
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


# ------------------------------------------------------------------------------------------------
# plan_training: the wider search (virtual stages, micro-batch size, context parallelism, expert
# tensor parallelism, recomputation, five schedules)

TRAINING_SCHEDULES = ("dualpipe", "dualpipev", "zb1p", "1f1b", "interleaved-1f1b")
RECOMPUTE_LADDER = ("selective", "none", "full")


@dataclass(frozen=True)
class TrainingSpace:
    """The plan keys searched. ``ep_choices``: how many of the largest expert-parallel degrees (powers
    of two dividing the experts and tp*dp) to try; ``virtual_stages`` apply to interleaved 1F1B."""

    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2, 4, 8, 16)
    virtual_stages: tuple[int, ...] = (2, 4)
    ep_choices: int = 3
    moe_tp: tuple[int, ...] = (1, 2)
    cp: tuple[int, ...] = (1, 2)
    micro_batch_seqs: tuple[int, ...] = (1, 2)
    schedules: tuple[str, ...] = TRAINING_SCHEDULES

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class TrainingSearch:
    """A training plan search: the best plan simulated (``best``), the screened plans ranked by their
    no-wait bound with the simulated step where refined, rejections by reason, and the space's size."""

    model: str
    gpu: str
    num_gpus: int
    objective: str
    best: TrainingResult
    ranked: tuple[dict[str, Any], ...]
    rejected: dict[str, int]
    rejected_examples: tuple[str, ...]
    space_size: int
    configurations_costed: int
    refined: int
    wall_s: float
    screen_wall_s: float
    notes: tuple[str, ...] = ()

    @property
    def configurations_per_s(self) -> float:
        return self.configurations_costed / self.screen_wall_s if self.screen_wall_s > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["best"] = self.best.to_dict()
        out["configurations_per_s"] = self.configurations_per_s
        return out


def _training_candidates(
    model: MoEModel,
    gpu: GPUProfile,
    num_gpus: int,
    global_batch_seqs: int,
    seq_len: int,
    space: TrainingSpace,
) -> list[dict[str, Any]]:
    gpn = int(gpu.node.gpus_per_node)
    experts = int(model.num_routed_experts)
    inter = int(model.moe_intermediate_size or 0)
    out = []
    for tp in space.tp:
        if tp > gpn or model.attention.num_heads % tp or num_gpus % tp:
            continue
        for pp in space.pp:
            if num_gpus % (tp * pp) or pp > model.num_layers:
                continue
            dp = num_gpus // (tp * pp)
            for cp in space.cp:
                if dp % cp or seq_len % cp:
                    continue
                for mbs in space.micro_batch_seqs:
                    if global_batch_seqs % ((dp // cp) * mbs):
                        continue
                    m = global_batch_seqs // ((dp // cp) * mbs)
                    for moe_tp in space.moe_tp:
                        if moe_tp > 1 and (not inter or inter % moe_tp):
                            continue
                        eps = [
                            e
                            for e in (1, 2, 4, 8, 16, 32, 64, 128, 256)
                            if experts and experts % e == 0 and (tp * dp) % (e * moe_tp) == 0
                        ] or [1]
                        for ep in eps[-space.ep_choices :]:
                            for schedule in space.schedules:
                                vs = space.virtual_stages if schedule == "interleaved-1f1b" else (1,)
                                for v in vs:
                                    if schedule == "interleaved-1f1b" and (pp < 2 or m % pp):
                                        continue
                                    if schedule in ("dualpipe", "dualpipev") and (pp % 2 or m < 2 * pp):
                                        continue
                                    if schedule in ("1f1b", "zb1p") and m < pp:
                                        continue
                                    out.append(
                                        {
                                            "tp": tp,
                                            "pp": pp,
                                            "ep": ep,
                                            "moe_tp": moe_tp,
                                            "cp": cp,
                                            "micro_batch_seqs": mbs,
                                            "schedule": schedule,
                                            "virtual_stages": v,
                                        }
                                    )
    return out


def plan_training(
    model: str | MoEModel,
    gpu: str | GPUProfile = "H800",
    num_gpus: int = 2048,
    *,
    seq_len: int = 4096,
    global_batch_seqs: int = 15360,
    tokens: float = 14.8e12,
    precision: str = "fp8",
    objective: str = "time",
    space: TrainingSpace | None = None,
    refine_top: int = 4,
    usd_per_gpu_hour: float | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> TrainingSearch:
    """Search TP, PP, virtual stages, EP, MoE TP, CP, micro-batch size, recomputation and schedule for
    the fastest plan (``objective="time"``; on a fixed number of GPUs also the cheapest) that fits in
    memory at the global batch ``global_batch_seqs`` (the batch-size constraint: every plan runs that
    batch, as whole micro-batches per data-parallel replica).

    Each candidate is built with its own schedule and cost model (the same the discrete-event engine
    runs), checked against memory with the least recomputation that fits (selective, then none where
    selective fits, else full), and screened by its busiest pipeline rank's chunk time without waiting
    (:func:`screen_bound_s`); the ``refine_top`` best are simulated and the fastest simulated wins.
    """
    import time

    import gpus as gpu_registry
    import moe
    from sim.training.api import check_budget

    t0 = time.perf_counter()
    m = moe.get(model) if isinstance(model, str) else model
    g = gpu_registry.get(gpu) if isinstance(gpu, str) else gpu
    if objective not in ("time", "cost"):
        raise ValueError(f"objective must be 'time' (fastest) or 'cost' (cheapest), got {objective!r}.")
    if isinstance(num_gpus, bool) or not isinstance(num_gpus, int) or num_gpus < 1:
        raise ValueError(f"num_gpus must be a whole number >= 1, got {num_gpus!r}.")
    if isinstance(refine_top, bool) or not isinstance(refine_top, int) or refine_top < 1:
        raise ValueError(f"refine_top must be a whole number >= 1, got {refine_top!r}.")
    check_budget(tokens, usd_per_gpu_hour)
    sp = space or TrainingSpace()
    for name in sp.schedules:
        if name not in TRAINING_SCHEDULES:
            raise ValueError(
                f"unknown schedule {name!r} in the space; allowed: {', '.join(TRAINING_SCHEDULES)}."
            )
    cands = _training_candidates(m, g, num_gpus, global_batch_seqs, seq_len, sp)
    common = {"seq_len": seq_len, "global_batch_seqs": global_batch_seqs, "precision": precision}
    rejected = {"does not fit": 0, "not valid": 0}
    examples: list[str] = []
    screened: list[tuple[float, dict[str, Any]]] = []
    costed = 0
    space_size = len(cands) * len(RECOMPUTE_LADDER)
    unit_caches: dict[tuple[Any, ...], dict[Any, Any]] = {}
    layouts: dict[tuple[str, int, int, int], ScheduleLayout] = {}
    counts: dict[int, list[list[tuple[int, tuple[Any, ...], bool]]]] = {}
    for i, cand in enumerate(cands):
        fits: dict[str, tuple[float, dict[str, Any]]] = {}
        for recompute in RECOMPUTE_LADDER:
            if recompute == "none" and "selective" not in fits:
                continue  # more activations than selective, which did not fit
            if recompute == "full" and "selective" in fits:
                continue  # slower than selective, which fits
            kwargs = {**cand, **common, "recompute": recompute}
            shared = unit_caches.setdefault(
                (cand["tp"], cand["ep"], cand["cp"], cand["micro_batch_seqs"], cand["moe_tp"], recompute), {}
            )
            try:
                built = build_plan(m, g, num_gpus, **kwargs, unit_cache=shared, layouts=layouts)
            except ValueError as err:
                rejected["not valid"] += 1
                if len(examples) < 3:
                    examples.append(f"not valid: {cand}: {err}")
                break
            costed += 1
            report = memory_report(m, g, built.plan, built.layout, built.pieces)
            worst = max(r.total_bytes - r.capacity_bytes for r in report)
            if worst > 0:
                rejected["does not fit"] += 1
                if recompute == "full" and len([e for e in examples if e.startswith("does")]) < 3:
                    examples.append(
                        f"does not fit: {cand}: {worst / 1e9:.1f} GB over even with full recomputation"
                    )
                continue
            grouped = counts.get(id(built.layout))
            if grouped is None:
                grouped = counts[id(built.layout)] = _action_counts(built.layout, built.cost.routing_samples)
            fits[recompute] = (fast_screen_bound_s(built.layout, built.cost, grouped), kwargs)
        if fits:
            screened.append(min(fits.values(), key=lambda x: x[0]))
        if progress is not None and (i % 16 == 0 or i == len(cands) - 1):
            progress(i + 1, len(cands), g.name)
    screen_wall = time.perf_counter() - t0
    if not screened:
        raise ValueError(
            f"no plan for {m.name} on {num_gpus} {g.name} fits and is valid at a global batch of "
            f"{global_batch_seqs} sequences; first reasons: " + " | ".join(examples[:3])
        )
    screened.sort(key=lambda x: x[0])
    results = []
    for bound, kwargs in screened[:refine_top]:
        r = simulate_plan(m, g, num_gpus, tokens, usd_per_gpu_hour, **kwargs)
        results.append((r, bound, kwargs))
    results.sort(key=lambda x: x[0].step_time_s if objective == "time" else x[0].cost_usd)
    best = results[0][0]
    ranked = tuple(
        {"plan": kw, "screen_step_s": b, "simulated_step_s": r.step_time_s, "bound_by": r.bound_by}
        for r, b, kw in results
    ) + tuple({"plan": kw, "screen_step_s": b} for b, kw in screened[len(results) : len(results) + 20])
    notes = best.notes + (
        f"plan search: {costed} of {space_size} configurations costed ({len(cands)} parallel layouts x "
        f"recomputation), {len(screened)} fit; the {len(results)} best by a no-wait bound were simulated.",
    )
    runners = tuple(
        {"plan": r.plan, "step_time_s": r.step_time_s, "gpu_hours": r.gpu_hours, "bound_by": r.bound_by}
        for r, _, _ in results[1:]
    )
    best = dataclasses.replace(best, runners_up=runners, notes=notes)
    return TrainingSearch(
        model=str(m.name),
        gpu=str(g.name),
        num_gpus=num_gpus,
        objective=objective,
        best=best,
        ranked=ranked,
        rejected=rejected,
        rejected_examples=tuple(examples),
        space_size=space_size,
        configurations_costed=costed,
        refined=len(results),
        wall_s=time.perf_counter() - t0,
        screen_wall_s=screen_wall,
        notes=notes,
    )
