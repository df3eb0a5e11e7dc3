"""Training plan search: ``sim.plan_training`` and ``estimate_training(plan="auto")``.

The space (:class:`TrainingSpace`): TP, PP, virtual stages, the largest expert-parallel degrees,
MoE tensor parallelism, context parallelism, micro-batch size and five schedules, each plan with the
least recomputation that fits (selective, then none where selective fits, else full).

Two stages: every valid plan that fits in memory is screened by a bound that needs no simulation
(:func:`screen_bound_s`: the busiest rank's total chunk time, with communication counted as exposed
unless the schedule overlaps F&B pairs), computed from the same chunk costs the discrete-event engine
runs; the ``refine_top`` best by that bound are then simulated, and the fastest (or cheapest)
simulated step wins. This is the only training plan search: the V4 projections
(:func:`sim.training.run.projections`) and the CLI call it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sim.calibration import files_held
from sim.record import Record
from sim.training.api import BuiltPlan, PlanCache, TrainingResult, build_plan, simulate_plan, unit_cost_key
from sim.training.memory import memory_report, piece_activation_bytes, rank_memory
from sim.training.schedules import Schedule, get_schedule

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.costs import LayerCost, TrainingCostModel
    from sim.training.schedules import Chunk, ScheduleLayout

__all__ = [
    "TrainingSearch",
    "TrainingSpace",
    "plan_training",
    "screen_bound_s",
]


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


Group = tuple[int, tuple[tuple["Chunk", int], ...], bool]
"""Actions of one rank that cost the same: (how many, one action's chunks with their model pieces,
whether they overlap)."""


@dataclass(frozen=True)
class LayoutSummary:
    """What the plan search needs of a schedule layout, per pipeline rank: its actions grouped by what
    they cost (:data:`Group`, in order of first appearance), and the Pareto front of its in-flight
    micro-batch counts per model piece (in ``pieces`` order) taken at each forward: the peak of saved
    activations is the largest activation sum over the front. Only for unskewed routing (one routing
    sample: a chunk's cost depends on its kind and model piece alone)."""

    pieces: tuple[tuple[int, ...], ...]
    groups: tuple[tuple[Group, ...], ...]
    fronts: tuple[tuple[tuple[int, ...], ...], ...]

    @staticmethod
    def of(layout: ScheduleLayout) -> LayoutSummary:
        pieces, groups, fronts = [], [], []
        for rank, order in enumerate(layout.orders):
            held = layout.pieces_on_rank(rank)
            position = {p: i for i, p in enumerate(held)}
            live = [0] * len(held)
            seen: set[tuple[int, ...]] = set()
            grouped: dict[tuple[Any, ...], list[Any]] = {}
            for action in order:
                specs = tuple((c, layout.model_piece(c.microbatch, c.stage)) for c in action.chunks)
                key = (tuple((c.kind, p) for c, p in specs), action.overlapped)
                entry = grouped.get(key)
                if entry is None:
                    grouped[key] = [1, specs, action.overlapped]
                else:
                    entry[0] += 1
                for c, p in specs:
                    if c.kind == "F":
                        live[position[p]] += 1
                        seen.add(tuple(live))
                for c, p in specs:
                    if c.kind in ("BW", "W"):
                        live[position[p]] -= 1
            pieces.append(held)
            groups.append(tuple((int(n), specs, bool(o)) for n, specs, o in grouped.values()))
            fronts.append(_pareto_front(seen))
        return LayoutSummary(tuple(pieces), tuple(groups), tuple(fronts))

    def activation_peaks(self, piece_act: list[float]) -> list[float]:
        """Each rank's peak saved activation bytes, given each model piece's bytes per micro-batch
        (equal to :func:`sim.training.memory.activation_peaks` up to rounding: a sum, not a walk)."""
        peaks = []
        for held, front in zip(self.pieces, self.fronts, strict=True):
            acts = [piece_act[p] for p in held]
            peaks.append(max([0.0] + [sum(n * a for n, a in zip(v, acts, strict=True)) for v in front]))
        return peaks

    def shape(self) -> tuple[Any, ...]:
        """Everything but the group counts (and the representative chunks)."""
        kinds = tuple(
            tuple((tuple((c.kind, p) for c, p in specs), o) for _, specs, o in g) for g in self.groups
        )
        return self.pieces, kinds, self.fronts

    def counts(self) -> list[int]:
        return [n for g in self.groups for n, _, _ in g]


def _pareto_front(vectors: set[tuple[int, ...]]) -> tuple[tuple[int, ...], ...]:
    """The vectors no other vector is at least as large as in every position, sorted."""
    ordered = sorted(vectors, reverse=True)
    front: list[tuple[int, ...]] = []
    for v in ordered:
        if not any(all(a >= b for a, b in zip(u, v, strict=True)) for u in front):
            front.append(v)
    return tuple(sorted(front))


class LayoutSummaries:
    """Layout summaries of one search by (schedule, pp, micro-batches, virtual stages).

    A long layout is summarised without being built. Every schedule here runs a warm-up, a steady
    loop and a cool-down, and its steady loop repeats after a period of micro-batches (1 for 1F1B, ZB1P
    and DualPipeV, 2 for DualPipe's two directions, pp for interleaved 1F1B: the least of 1, 2, pp, 2*pp
    that the schedule accepts as a step of micro-batches): one period more adds the same actions to each
    rank's groups and no new in-flight counts. So the summaries of ``n1``, ``n1 + period`` and
    ``n1 + 2 period`` (``n1`` the least of ``n``'s residue class at or above 2*pp) are built and checked
    to be affine in the micro-batches, and the summary of ``n`` is extrapolated from them; if the check
    fails for a few starts, the layout of ``n`` is built whole.
    ``tests/sim/training/test_plan_training.py`` checks extrapolated summaries against built ones."""

    def __init__(self, cache: PlanCache) -> None:
        self.cache = cache
        self.summaries: dict[tuple[str, int, int, int], LayoutSummary] = {}
        self.built: dict[tuple[str, int, int, int], LayoutSummary] = {}

    def get(self, schedule: str, pp: int, n: int, virtual_stages: int) -> LayoutSummary:
        key = (schedule, pp, n, virtual_stages)
        held = self.summaries.get(key)
        if held is None:
            held = self.summaries[key] = self._summarise(schedule, pp, n, virtual_stages)
        return held

    def _summarise(self, schedule: str, pp: int, n: int, virtual_stages: int) -> LayoutSummary:
        sched = get_schedule(schedule)
        for period in (1, 2, pp, 2 * pp):
            n1 = 2 * pp + (n - 2 * pp) % period
            try:
                for k in range(3):
                    sched.validate(pp, n1 + k * period, virtual_stages)
            except ValueError:
                continue
            for _ in range(3):  # a few starts, in case the steady loop has not settled at the first
                if n < n1 + 2 * period:
                    break
                s1, s2, s3 = (self._built(sched, pp, n1 + k * period, virtual_stages) for k in range(3))
                extrapolated = _extrapolate(s1, s2, s3, (n - n1) // period)
                if extrapolated is not None:
                    return extrapolated
                n1 += period
            break
        return self._built(sched, pp, n, virtual_stages)

    def _built(self, sched: Schedule, pp: int, n: int, virtual_stages: int) -> LayoutSummary:
        """The summary of the layout built whole."""
        key = (sched.name, pp, n, virtual_stages)
        held = self.built.get(key)
        if held is None:
            held = self.built[key] = LayoutSummary.of(sched.build(pp, n, virtual_stages))
        return held


def _extrapolate(s1: LayoutSummary, s2: LayoutSummary, s3: LayoutSummary, steps: int) -> LayoutSummary | None:
    """``s1`` with each group count advanced ``steps`` times by its step from ``s1`` to ``s2``, when
    ``s1``, ``s2``, ``s3`` (one period apart) have the same shape (:meth:`LayoutSummary.shape`) and
    counts that grow by the same step twice; else None."""
    if not s1.shape() == s2.shape() == s3.shape():
        return None
    c1, c2, c3 = s1.counts(), s2.counts(), s3.counts()
    if any(b - a != c - b for a, b, c in zip(c1, c2, c3, strict=True)):
        return None
    advanced = iter([a + steps * (b - a) for a, b in zip(c1, c2, strict=True)])
    groups = tuple(tuple((next(advanced), specs, o) for _, specs, o in g) for g in s1.groups)
    return LayoutSummary(s1.pieces, groups, s1.fronts)


def summary_bound_s(summary: LayoutSummary, action_s: Callable[[int, Group], float]) -> float:
    """The no-wait bound (:func:`screen_bound_s`) from a layout's grouped actions: each rank's sum of
    group count x one action's time (``action_s(rank, group)``), the largest over the ranks."""
    worst = 0.0
    for rank, groups in enumerate(summary.groups):
        total = 0.0
        for group in groups:
            total += group[0] * action_s(rank, group)
        worst = max(worst, total)
    return worst


def action_time_s(cost: TrainingCostModel, rank: int, group: Group) -> float:
    """One action's time without waiting: the larger of its compute and communication when its chunks
    overlap, their sum otherwise."""
    _, specs, overlapped = group
    compute = comm = 0.0
    for chunk, piece in specs:
        for seg in cost.chunk_segments(chunk, piece, rank, overlapped):
            if seg.stream == "compute":
                compute += seg.duration_s
            else:
                comm += seg.duration_s
    return max(compute, comm) if overlapped else compute + comm


# ------------------------------------------------------------------------------------------------
# plan_training

TRAINING_SCHEDULES = ("dualpipe", "dualpipev", "zb1p", "1f1b", "interleaved-1f1b")
RECOMPUTE_LADDER = ("selective", "none", "full")


@dataclass(frozen=True)
class TrainingSpace(Record):
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


ESTIMATE_RELATIVE_ERROR = 1e-9
"""How far :meth:`_Screen.estimate_s` may be from the bound, relative (its sums are regrouped: rounding
only, about 1e-13): plans whose estimate puts them clearly outside the ranks shown are not bounded."""


class _Screen:
    """The screen of one search, with what plans share built once (layouts, splits and unit costs in a
    :class:`PlanCache`; layout summaries; each unit cost's summed segments; piece activations by the
    plan's unit-cost key): a plan's memory overflow, an estimate of its no-wait bound, and the bound."""

    def __init__(self, model: MoEModel, gpu: GPUProfile) -> None:
        self.model, self.gpu = model, gpu
        self.cache = PlanCache()
        self.summaries = LayoutSummaries(self.cache)
        self.piece_acts: dict[tuple[Any, ...], list[float]] = {}
        self.unit_sums: dict[int, tuple[LayerCost, dict[str, tuple[float, float, float]]]] = {}
        self.piece_sums: dict[tuple[Any, ...], dict[str, tuple[float, float, float]]] = {}

    def summary(self, built: BuiltPlan) -> LayoutSummary:
        plan = built.plan
        return self.summaries.get(plan.schedule, plan.pp, plan.num_microbatches, plan.virtual_stages)

    def overflow_and_estimate(self, built: BuiltPlan) -> tuple[float, float]:
        """(bytes by which the fullest pipeline rank overflows its GPU, negative when the plan fits, as
        :func:`sim.training.memory.memory_report` finds; :meth:`estimate_s` when the plan fits, else
        infinity)."""
        plan = built.plan
        summary = self.summary(built)
        ukey = unit_cost_key(plan)
        acts = self.piece_acts.get((ukey, plan.piece_units))
        if acts is None:
            acts = self.piece_acts[(ukey, plan.piece_units)] = piece_activation_bytes(
                self.model, plan, built.pieces
            )
        capacity = float(self.gpu.hbm_bytes)
        ranks = rank_memory(self.model, self.gpu, plan, summary.activation_peaks(acts))
        worst = max(r.total_bytes - capacity for r in ranks)
        if abs(worst) <= 1e-6 * capacity:  # too close to call on a sum: walk the layout
            ranks = memory_report(self.model, self.gpu, plan, built.layout, built.pieces)
            worst = max(r.total_bytes - capacity for r in ranks)
        return worst, (self.estimate_s(built, summary, ukey) if worst <= 0 else float("inf"))

    def estimate_s(self, built: BuiltPlan, summary: LayoutSummary, ukey: tuple[Any, ...]) -> float:
        """:meth:`bound_s` from each piece's summed unit segments (compute, its math-bound part,
        communication) instead of each chunk's merged segments: equal but for rounding."""
        cost = built.cost
        stretch = cost.sm_scale - 1.0
        pieces = []
        for units, names in zip(built.pieces, built.plan.piece_units, strict=True):
            held = self.piece_sums.get((ukey, names))
            if held is None:
                sums = [self._unit_sums(cost.unit_cost(u)) for u in units]
                held = self.piece_sums[(ukey, names)] = {
                    kind: (
                        sum(s[kind][0] for s in sums),
                        sum(s[kind][1] for s in sums),
                        sum(s[kind][2] for s in sums),
                    )
                    for kind in ("F", "B", "W", "BW")
                }
            pieces.append(held)

        def action_s(rank: int, group: Group) -> float:
            _, specs, overlapped = group
            compute = comm = 0.0
            for chunk, piece in specs:
                busy, math, talk = pieces[piece][chunk.kind]
                compute += busy + math * stretch if overlapped else busy
                comm += talk
            return max(compute, comm) if overlapped else compute + comm

        return summary_bound_s(summary, action_s)

    def _unit_sums(self, lc: LayerCost) -> dict[str, tuple[float, float, float]]:
        """Per chunk kind, one unit's summed segments: (compute seconds, of which math-bound,
        communication seconds)."""
        held = self.unit_sums.get(id(lc))
        if held is None or held[0] is not lc:
            sums = {}
            for kind, segs in (
                ("F", lc.forward),
                ("B", lc.backward),
                ("W", lc.weight),
                ("BW", lc.backward + lc.weight),
            ):
                busy = math = talk = 0.0
                for seg in segs:
                    if seg.stream == "compute":
                        busy += seg.duration_s
                        math += seg.compute_bound_s
                    else:
                        talk += seg.duration_s
                sums[kind] = (busy, math, talk)
            held = self.unit_sums[id(lc)] = (lc, sums)
        return held[1]

    def bound_s(self, built: BuiltPlan) -> float:
        """The no-wait bound (:func:`screen_bound_s`) from the layout's summary."""
        return summary_bound_s(
            self.summary(built), lambda rank, group: action_time_s(built.cost, rank, group)
        )


@files_held()
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
    costed = 0
    space_size = len(cands) * len(RECOMPUTE_LADDER)
    screen = _Screen(m, g)
    fitting: list[dict[str, tuple[float, dict[str, Any], BuiltPlan]]] = []  # per candidate, by recomputation
    for i, cand in enumerate(cands):
        fits: dict[str, tuple[float, dict[str, Any], BuiltPlan]] = {}
        for recompute in RECOMPUTE_LADDER:
            if recompute == "none" and "selective" not in fits:
                continue  # more activations than selective, which did not fit
            if recompute == "full" and "selective" in fits:
                continue  # slower than selective, which fits
            kwargs = {**cand, **common, "recompute": recompute}
            try:
                built = build_plan(m, g, num_gpus, **kwargs, cache=screen.cache)
            except ValueError as err:
                rejected["not valid"] += 1
                if len(examples) < 3:
                    examples.append(f"not valid: {cand}: {err}")
                break
            costed += 1
            worst, estimate = screen.overflow_and_estimate(built)
            if worst > 0:
                rejected["does not fit"] += 1
                if recompute == "full" and len([e for e in examples if e.startswith("does")]) < 3:
                    examples.append(
                        f"does not fit: {cand}: {worst / 1e9:.1f} GB over even with full recomputation"
                    )
                continue
            fits[recompute] = (estimate, kwargs, built)
        if fits:
            fitting.append(fits)
        if progress is not None and (i % 16 == 0 or i == len(cands) - 1):
            progress(i + 1, len(cands), g.name)
    # The bound of every plan that may rank among the refine_top + 20 shown: the others' estimates
    # (within ESTIMATE_RELATIVE_ERROR of their bounds) put them after those, in an order never shown.
    tolerance = ESTIMATE_RELATIVE_ERROR
    estimates = [min(e for e, _, _ in fits.values()) for fits in fitting]
    shown = refine_top + 20
    cutoff = (
        sorted(e * (1 + tolerance) for e in estimates)[shown - 1] if len(estimates) >= shown else float("inf")
    )
    screened: list[tuple[float, dict[str, Any]]] = []
    for estimate, fits in zip(estimates, fitting, strict=True):
        if estimate * (1 - tolerance) <= cutoff:
            bounds = [(screen.bound_s(built), kwargs) for _, kwargs, built in fits.values()]
            screened.append(min(bounds, key=lambda x: x[0]))
        else:
            screened.append(min(((e, kw) for e, kw, _ in fits.values()), key=lambda x: x[0]))
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
