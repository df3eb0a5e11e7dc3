"""``sim.estimate_training``: one simulated optimizer step, scaled to a token budget.

The step is simulated (:mod:`sim.training.engine`) for one pipeline replica; every other
replica runs the same program in lock-step, so throughput scales with the number of replicas.
GPU-hours = num_gpus x steps x step time; steps = tokens / (global batch x sequence length).
MFU (ISCA'25 Table 4 convention, DESIGN.md): model FLOPs per token from
``moe.MoEModel.training_flops_per_token`` (6 x active non-embedding parameters + 3 x forward
attention; no recomputation, no MTP), over the dense BF16 peak even for FP8 runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from sim.cost import is_finite_number
from sim.record import Record
from sim.training import engine
from sim.training.costs import BF16_BYTES, TrainingCostModel, Unit, layer_units
from sim.training.memory import memory_report
from sim.training.plan import (
    DISPATCHERS,
    GRAD_DTYPES,
    PIPELINE_SPLITS,
    RECOMPUTE_CHOICES,
    TrainingPlan,
    megatron_layer_counts,
    partition_units,
    pieces_of_ranks,
    recompute_module_set,
    split_by_counts,
)
from sim.training.schedules import Schedule, ScheduleLayout, get_schedule, overlap_steady_pairs

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel

__all__ = [
    "BuiltPlan",
    "PlanCache",
    "TrainingResult",
    "build_plan",
    "check_budget",
    "resolve",
    "simulate_plan",
    "unit_cost_key",
]

SECONDS_PER_HOUR = 3600.0
PHASE_NAMES = {
    "forward": "1F",
    "steady": "1F1B",
    "backward": "1B",
    "weight": "1W",
    "bubble": "bubble",
    "optimizer": "opt",
}


@dataclass(frozen=True)
class TrainingResult(Record):
    """One training configuration's simulated step and its cost at a token budget."""

    model: str
    gpu: str
    num_gpus: int
    tokens: float
    step_time_s: float
    breakdown_s: dict[str, float]
    phases_s: dict[str, float]
    bound_by: str
    tokens_per_s_per_gpu: float
    mfu: float
    mfu_noncausal: float
    gpu_hours: float
    days: float
    cost_usd: float
    cost_usd_range: tuple[float, float]
    usd_per_million_tokens: float
    usd_per_gpu_hour: float
    steps: float
    notes: tuple[str, ...]
    plan: dict[str, Any]
    memory_per_gpu_bytes: float
    memory_capacity_bytes: float
    runners_up: tuple[dict[str, Any], ...] = ()
    simulated_events: int = 0
    wall_time_s: float = 0.0
    layer_times_s: dict[str, float] = field(default_factory=dict)

    @property
    def gpu_hours_per_trillion_tokens(self) -> float:
        """GPU-hours per trillion training tokens at this throughput (the V3 report's headline unit)."""
        return 1e12 / self.tokens_per_s_per_gpu / 3600.0


@dataclass(frozen=True)
class BuiltPlan:
    """What :func:`build_plan` returns: a validated plan and what simulating one step of it needs,
    in the order a simulation uses them (``engine.simulate_step(built.layout, built.cost)``)."""

    plan: TrainingPlan
    """Parallel degrees, schedule, precision and the layer split (which units each piece holds,
    which pieces each pipeline rank runs, each piece's non-expert and expert parameters)."""
    cost: TrainingCostModel
    """The cost model of this plan on its cluster: the timed segments of every chunk."""
    pieces: list[list[Unit]]
    """The units (embedding, layers, MTP modules, head) of each model piece, in pipeline order;
    ``plan.piece_units`` names them."""
    build_layout: Callable[[], ScheduleLayout] = field(repr=False, compare=False)
    """Builds :attr:`layout` (its shape already validated) on first use."""
    notes: tuple[str, ...] = ()
    """What the plan changed on its own that a user should know (e.g. GEMMs in BF16 on a GPU
    without the requested FP8)."""

    @cached_property
    def layout(self) -> ScheduleLayout:
        """The schedule's program: each pipeline rank's ordered actions over micro-batches and stages
        (built on first use: a plan search screens plans without it)."""
        return self.build_layout()


@dataclass
class PlanCache:
    """What the plans of one search share, each part built once: schedule layouts by (schedule, pp,
    micro-batches, virtual stages); each pipeline rank's model pieces by (schedule, pp, virtual stages);
    and, by :func:`unit_cost_key` (the plan without the fields a unit's cost does not read), the units'
    timed segments and the layer splits (by the layer counts asked for and the number of pieces). Unit
    costs are shared only under unskewed routing (a skewed draw differs per plan). One cache serves one
    model object on one GPU profile and GPU count (ValueError otherwise)."""

    layouts: dict[tuple[str, int, int, int], ScheduleLayout] = field(default_factory=dict)
    pieces_of_rank: dict[tuple[str, int, int], tuple[tuple[int, ...], ...]] = field(default_factory=dict)
    unit_costs: dict[Any, dict[Any, Any]] = field(default_factory=dict)
    splits: dict[Any, _Split] = field(default_factory=dict)
    owner: tuple[Any, Any, int] | None = None

    def check(self, model: MoEModel, gpu: GPUProfile, num_gpus: int) -> None:
        if self.owner is None:
            self.owner = (model, gpu, num_gpus)
        elif self.owner[0] is not model or self.owner[1] is not gpu or self.owner[2] != num_gpus:
            raise ValueError("a PlanCache serves one model object on one GPU profile and GPU count.")


# Plan fields a unit's segments do not read (TrainingCostModel reads them for the pipeline, the
# gradient synchronisation and the optimizer step only): left out of :func:`unit_cost_key`, so that a
# field added later keeps plans apart until it is listed here.
_PIPELINE_FIELDS = frozenset(
    {
        "pp",
        "dp",
        "schedule",
        "virtual_stages",
        "num_microbatches",
        "global_batch_seqs",
        "precision",
        "comm_sm_count",
        "pp_across_nodes",
        "layers_per_piece",
        "piece_units",
        "piece_params",
        "pieces_of_rank",
        "weight_bytes_per_param",
        "grad_bytes_per_param",
        "optimizer_bytes_moved_per_param",
        "a2a_overlap",
        "distributed_optimizer",
    }
)
_UNIT_FIELDS = tuple(f.name for f in dataclasses.fields(TrainingPlan) if f.name not in _PIPELINE_FIELDS)


def unit_cost_key(plan: TrainingPlan, free_comm: bool = False) -> tuple[Any, ...]:
    """What a unit's timed segments depend on: the plan's fields but its pipeline, gradient and
    optimizer ones (the GEMM dtype, tp, cp, ep, moe_tp, the micro-batch, recomputation, the dispatcher
    and its routing limit stay), and whether communication is free. Plans of one search with equal keys
    share their units' costs (:class:`PlanCache`)."""
    return (*(getattr(plan, name) for name in _UNIT_FIELDS), bool(free_comm))


def resolve(model: str | MoEModel, gpu: str | GPUProfile) -> tuple[MoEModel, GPUProfile]:
    import gpus
    import moe

    return moe.get(model), gpus.get(gpu)


def build_plan(
    model: MoEModel,
    gpu: GPUProfile,
    num_gpus: int,
    *,
    tp: int = 1,
    pp: int = 1,
    ep: int = 1,
    dp: int | None = None,
    cp: int = 1,
    seq_len: int = 4096,
    global_batch_seqs: int = 1024,
    precision: str = "bf16",
    schedule: str = "1f1b",
    virtual_stages: int = 1,
    micro_batch_seqs: int = 1,
    recompute: str = "selective",
    comm_sm_count: int | None = None,
    max_nodes_per_token: int | None = None,
    layers_per_stage: Sequence[int] | None = None,
    free_comm: bool = False,
    routing_skew: float = 0.0,
    seed: int = 0,
    recompute_modules: Sequence[str] | None = None,
    dispatcher: str = "deepep",
    a2a_overlap: bool = False,
    sequence_parallel: bool | None = None,
    distributed_optimizer: bool = True,
    grad_dtype: str | None = None,
    moe_tp: int = 1,
    account_for_embedding_in_pipeline_split: bool = False,
    account_for_loss_in_pipeline_split: bool = False,
    dispatch_dtype: str | None = None,
    pipeline_split: str = "balanced",
    cache: PlanCache | None = None,
) -> BuiltPlan:
    """Validate a plan; build its cost model, and its schedule layout on first use (see :class:`BuiltPlan`).
    ``cache`` shares layouts, layer splits and unit costs among the plans of one search.

    Checks, in this order: the parallel degrees and batch (:func:`_check_degrees`), the Megatron
    plan keys (:func:`_check_megatron_keys`), the schedule, the cluster, the SMs held by
    communication, the routing limit and skew, the layer split.
    """
    import gpus

    notes: list[str] = []
    dp, num_microbatches = _check_degrees(
        model,
        num_gpus,
        tp=tp,
        pp=pp,
        ep=ep,
        dp=dp,
        cp=cp,
        seq_len=seq_len,
        global_batch_seqs=global_batch_seqs,
        micro_batch_seqs=micro_batch_seqs,
        virtual_stages=virtual_stages,
        recompute=recompute,
    )
    modules, sequence_parallel = _check_megatron_keys(
        model,
        tp=tp,
        pp=pp,
        dp=dp,
        ep=ep,
        schedule=schedule,
        recompute=recompute,
        recompute_modules=recompute_modules,
        dispatcher=dispatcher,
        a2a_overlap=a2a_overlap,
        sequence_parallel=sequence_parallel,
        distributed_optimizer=distributed_optimizer,
        grad_dtype=grad_dtype,
        moe_tp=moe_tp,
    )
    if cache is not None:
        cache.check(model, gpu, num_gpus)
    sched = get_schedule(schedule)
    sched.validate(pp, num_microbatches, virtual_stages)
    layout_key = (sched.name, pp, num_microbatches, virtual_stages)

    def build_layout() -> ScheduleLayout:
        layout = cache.layouts.get(layout_key) if cache is not None else None
        if layout is None:
            layout = sched.build(pp, num_microbatches, virtual_stages)
            if cache is not None:
                cache.layouts[layout_key] = layout
        return overlap_steady_pairs(layout) if a2a_overlap else layout

    gemm_dtype = gpu.nearest_dtype(precision)
    if gemm_dtype != precision:
        notes.append(f"{gpu.name} has no {precision} tensor cores; GEMMs run in {gemm_dtype}.")
    cluster = gpus.cluster(gpu, num_gpus=num_gpus)
    gpn = int(cluster.gpus_per_node)
    comm_sms = _check_comm_sm_count(comm_sm_count, sched.name, ep, gpu)
    nodes_per_token = _check_max_nodes_per_token(max_nodes_per_token, model, ep, gpn)
    _check_routing_skew(routing_skew)
    units, params = _units_and_params(model)
    weight_bytes, grad_bytes, optimizer_bytes_moved = _bytes_per_param(model, gemm_dtype, grad_dtype)
    base = TrainingPlan(
        tp=tp,
        pp=pp,
        dp=dp,
        ep=ep,
        cp=cp,
        schedule=sched.name,
        virtual_stages=virtual_stages,
        micro_batch_seqs=micro_batch_seqs,
        num_microbatches=num_microbatches,
        seq_len=seq_len,
        global_batch_seqs=global_batch_seqs,
        precision=precision,
        gemm_dtype=gemm_dtype,
        recompute=recompute,
        comm_sm_count=comm_sms,
        max_nodes_per_token=nodes_per_token,
        dispatch_fp8=_dispatch_fp8(dispatch_dtype, dispatcher, gemm_dtype),
        pp_across_nodes=(num_gpus // pp) >= gpn or pp > gpn,
        layers_per_piece=(),
        piece_units=(),
        piece_params=(),
        pieces_of_rank=(),
        weight_bytes_per_param=weight_bytes,
        grad_bytes_per_param=grad_bytes,
        optimizer_bytes_moved_per_param=optimizer_bytes_moved,
        recompute_modules=modules,
        dispatcher=dispatcher,
        a2a_overlap=bool(a2a_overlap),
        sequence_parallel=sequence_parallel,
        distributed_optimizer=bool(distributed_optimizer),
        moe_tp=int(moe_tp),
    )
    num_pieces = sched.num_model_pieces(pp, virtual_stages)
    shared = cache is not None and routing_skew == 0  # a skewed draw differs per plan
    unit_key = unit_cost_key(base, free_comm) if shared else None
    unit_cache = cache.unit_costs.setdefault(unit_key, {}) if cache is not None and shared else None

    def unit_times() -> tuple[float, ...]:
        """Each unit's forward + backward + weight seconds, from a cost model with one unit per piece."""
        probe = TrainingCostModel(
            model=model,
            gpu=gpu,
            cluster=cluster,
            plan=base,
            pieces=[[u] for u in units],
            free_comm=free_comm,
            routing_skew=0.0,
            unit_cache=unit_cache,
        )
        times = []
        for u in units:
            lc = probe.unit_cost(u)
            times.append(sum(s.duration_s for s in lc.forward + lc.backward + lc.weight))
        return tuple(times)

    if pipeline_split not in PIPELINE_SPLITS:
        raise ValueError(
            f"unknown pipeline_split {pipeline_split!r}; allowed: {', '.join(PIPELINE_SPLITS)} ('balanced': "
            f"the contiguous split that minimises the slowest piece; 'even': Megatron's equal layer counts)."
        )
    flags = account_for_embedding_in_pipeline_split or account_for_loss_in_pipeline_split
    if flags or pipeline_split == "even":
        if layers_per_stage is not None:
            raise ValueError(
                "give either layers_per_stage or Megatron's split (pipeline_split='even', "
                "account_for_*_in_pipeline_split), not both: the latter derive the layer counts."
            )
        layers_per_stage = megatron_layer_counts(
            sum(1 for u in units if u.kind in ("layer", "mtp")),
            num_pieces,
            embedding=bool(account_for_embedding_in_pipeline_split),
            loss=bool(account_for_loss_in_pipeline_split),
        )
    split_key = (unit_key, None if layers_per_stage is None else tuple(layers_per_stage), num_pieces)
    split = cache.splits.get(split_key) if cache is not None and unit_key is not None else None
    if split is None:
        split = _split(units, params, unit_times, layers_per_stage, num_pieces)
        if cache is not None and unit_key is not None:
            cache.splits[split_key] = split
    pieces = [list(p) for p in split.pieces]
    plan = dataclasses.replace(
        base,
        layers_per_piece=split.layers_per_piece,
        piece_units=split.piece_units,
        piece_params=split.piece_params,
        pieces_of_rank=_pieces_of_rank(sched, pp, virtual_stages, cache),
    )
    cost = TrainingCostModel(
        model=model,
        gpu=gpu,
        cluster=cluster,
        plan=plan,
        pieces=pieces,
        free_comm=free_comm,
        routing_skew=routing_skew,
        rng=np.random.default_rng(seed),
        unit_cache=unit_cache,
    )
    return BuiltPlan(plan, cost, pieces, build_layout, tuple(notes))


def _pieces_of_rank(
    sched: Schedule, pp: int, virtual_stages: int, cache: PlanCache | None
) -> tuple[tuple[int, ...], ...]:
    """The model pieces each pipeline rank holds: they depend on the schedule, pp and the virtual
    stages, not on the number of micro-batches, so a layout of 2*pp micro-batches (valid for every
    schedule whose shape was validated) tells them."""
    key = (sched.name, pp, virtual_stages)
    held = cache.pieces_of_rank.get(key) if cache is not None else None
    if held is None:
        held = pieces_of_ranks(sched.build(pp, 2 * pp, virtual_stages))
        if cache is not None:
            cache.pieces_of_rank[key] = held
    return held


def _check_degrees(
    model: MoEModel,
    num_gpus: int,
    *,
    tp: int,
    pp: int,
    ep: int,
    dp: int | None,
    cp: int,
    seq_len: int,
    global_batch_seqs: int,
    micro_batch_seqs: int,
    virtual_stages: int,
    recompute: str,
) -> tuple[int, int]:
    """(dp, micro-batches per replica) of a plan whose degrees and batch are consistent: every count
    a positive whole number, tp*pp*dp = num_gpus (dp = num_gpus / (tp*pp) when None), ep divides the
    routed experts and tp*dp, cp divides dp and seq_len, tp divides the attention heads, a known
    recompute, and a global batch that is a whole number of micro-batches per replica (dp/cp)."""
    for name, value in (
        ("num_gpus", num_gpus),
        ("tp", tp),
        ("pp", pp),
        ("ep", ep),
        ("cp", cp),
        ("seq_len", seq_len),
        ("global_batch_seqs", global_batch_seqs),
        ("micro_batch_seqs", micro_batch_seqs),
        ("virtual_stages", virtual_stages),
    ):
        if not isinstance(value, (int, np.integer)) or int(value) < 1:
            raise ValueError(f"{name} must be a positive whole number, got {value!r}.")
    if dp is None:
        if num_gpus % (tp * pp):
            raise ValueError(
                f"num_gpus ({num_gpus}) must be a multiple of tp*pp ({tp}*{pp}={tp * pp}) "
                "so that dp is whole."
            )
        dp = num_gpus // (tp * pp)
    if tp * pp * dp != num_gpus:
        raise ValueError(
            f"tp*pp*dp must equal num_gpus: {tp}*{pp}*{dp}={tp * pp * dp}, but num_gpus={num_gpus}."
        )
    experts = model.num_routed_experts
    if experts and experts % ep:
        raise ValueError(f"ep ({ep}) must divide the number of routed experts ({experts}).")
    if not experts and ep != 1:
        raise ValueError(f"{model.name} has no routed experts; ep must be 1, got {ep}.")
    if (tp * dp) % ep:
        raise ValueError(
            f"ep ({ep}) must divide tp*dp ({tp}*{dp}={tp * dp}): experts are sharded inside the DP group."
        )
    if dp % cp:
        raise ValueError(
            f"cp ({cp}) must divide dp ({dp}): context-parallel ranks come from the DP dimension."
        )
    if seq_len % cp:
        raise ValueError(f"seq_len ({seq_len}) must be a multiple of cp ({cp}).")
    if model.attention.num_heads % tp:
        raise ValueError(f"tp ({tp}) must divide the attention heads ({model.attention.num_heads}).")
    if recompute not in RECOMPUTE_CHOICES:
        raise ValueError(f"unknown recompute {recompute!r}; allowed: {', '.join(RECOMPUTE_CHOICES)}.")
    replicas = dp // cp
    per_replica = global_batch_seqs / (replicas * micro_batch_seqs)
    if per_replica != int(per_replica):
        raise ValueError(
            f"global_batch_seqs ({global_batch_seqs}) must be a multiple of (dp/cp)*micro_batch_seqs "
            f"({replicas}*{micro_batch_seqs}={replicas * micro_batch_seqs})."
        )
    return dp, int(per_replica)


def _check_megatron_keys(
    model: MoEModel,
    *,
    tp: int,
    pp: int,
    dp: int,
    ep: int,
    schedule: str,
    recompute: str,
    recompute_modules: Sequence[str] | None,
    dispatcher: str,
    a2a_overlap: bool,
    sequence_parallel: bool | None,
    distributed_optimizer: bool,
    grad_dtype: str | None,
    moe_tp: int,
) -> tuple[frozenset[str], bool]:
    """(recomputed modules, sequence parallelism) of the plan keys Megatron-LM names: a known
    dispatcher; 1F1B A2A overlap only on a 1F1B-family schedule with expert parallelism, and with
    virtual stages when pp > 1 (Megatron's requirements: MoE README "EP communication overlap",
    transformer_config.py); sequence parallelism only with tp > 1 (on
    by default then, as Megatron requires it for MoE with TP); a known gradient dtype; an expert
    tensor-parallel degree that, times ep, divides tp*dp."""
    if dispatcher not in DISPATCHERS:
        raise ValueError(
            f"unknown dispatcher {dispatcher!r}; allowed: {', '.join(DISPATCHERS)} (Megatron "
            f"--moe-token-dispatcher-type: flex with DeepEP/HybridEP = 'deepep', 'alltoall', 'allgather')."
        )
    for name, flag in (("a2a_overlap", a2a_overlap), ("distributed_optimizer", distributed_optimizer)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {flag!r}.")
    if a2a_overlap:
        if get_schedule(schedule).name not in ("1f1b", "interleaved-1f1b"):
            raise ValueError(
                f"a2a_overlap (Megatron --overlap-moe-expert-parallel-comm) merges the forward and "
                f"backward of adjacent micro-batches of a 1F1B schedule; schedule {schedule!r} is not "
                f"one (DualPipe overlaps its F&B pairs by construction). Use '1f1b' or 'interleaved-1f1b'."
            )
        if ep <= 1 or model.num_routed_experts == 0:
            raise ValueError(f"a2a_overlap needs expert parallelism (ep > 1), got ep={ep}.")
        if pp > 1 and get_schedule(schedule).name != "interleaved-1f1b":
            raise ValueError(
                "a2a_overlap with pipeline parallelism needs virtual pipeline stages (Megatron-LM "
                "transformer_config.py: 'virtual_pipeline_model_parallel_size must be specified when "
                "pipeline_model_parallel_size > 1'); use schedule='interleaved-1f1b' or pp=1."
            )
    if sequence_parallel is None:
        sequence_parallel = tp > 1
    elif not isinstance(sequence_parallel, (bool, np.bool_)):
        raise ValueError(f"sequence_parallel must be True, False or None, got {sequence_parallel!r}.")
    if sequence_parallel and tp == 1:
        raise ValueError("sequence_parallel splits activations over tensor parallelism; it needs tp > 1.")
    if grad_dtype is not None and grad_dtype not in GRAD_DTYPES:
        raise ValueError(f"unknown grad_dtype {grad_dtype!r}; allowed: {', '.join(GRAD_DTYPES)} (or None).")
    if isinstance(moe_tp, bool) or not isinstance(moe_tp, (int, np.integer)) or moe_tp < 1:
        raise ValueError(f"moe_tp must be a positive whole number, got {moe_tp!r}.")
    if moe_tp > 1:
        inter = model.moe_intermediate_size
        if (tp * dp) % (ep * moe_tp):
            raise ValueError(
                f"ep*moe_tp ({ep}*{moe_tp}) must divide tp*dp ({tp}*{dp}={tp * dp}): each expert is "
                f"split over moe_tp GPUs of its expert-parallel group."
            )
        if inter % moe_tp:
            raise ValueError(f"moe_tp ({moe_tp}) must divide the expert intermediate size ({inter}).")
    if recompute not in RECOMPUTE_CHOICES:
        raise ValueError(f"unknown recompute {recompute!r}; allowed: {', '.join(RECOMPUTE_CHOICES)}.")
    return recompute_module_set(recompute, recompute_modules), bool(sequence_parallel)


def _dispatch_fp8(dispatch_dtype: str | None, dispatcher: str, gemm_dtype: str) -> bool:
    """Whether the expert dispatch travels in FP8: as ``dispatch_dtype`` says ("fp8" needs FP8 GEMMs
    to consume it), else FP8 with DeepEP and FP8 GEMMs (DeepSeek-V3's recipe, V3-TR 3.3.3) and BF16
    with Megatron's NCCL dispatchers ("alltoall", "allgather"), whose wire dtype is BF16 unless an
    MXFP8 payload is asked for on Blackwell (Megatron-LM transformer_config.py,
    ``moe_dispatch_fwd_dtype``: "Defaults to 'bf16' (no quantization on the wire)")."""
    if dispatch_dtype is None:
        return gemm_dtype == "fp8" and dispatcher == "deepep"
    if dispatch_dtype not in ("fp8", "bf16"):
        raise ValueError(f"unknown dispatch_dtype {dispatch_dtype!r}; allowed: fp8, bf16 (or None).")
    if dispatch_dtype == "fp8" and gemm_dtype != "fp8":
        raise ValueError(
            f"dispatch_dtype 'fp8' sends tokens quantised for FP8 expert GEMMs, but the GEMMs run in "
            f"{gemm_dtype}; use precision='fp8' on a GPU with FP8, or dispatch_dtype='bf16'."
        )
    return dispatch_dtype == "fp8"


def _check_comm_sm_count(comm_sm_count: int | None, schedule: str, ep: int, gpu: GPUProfile) -> int:
    """SMs held by communication kernels: the given whole number, which must leave SMs for
    computation; by default 20 for DualPipe with expert parallelism (V3-TR 3.2.2), else 0."""
    if comm_sm_count is None:
        comm_sm_count = 20 if schedule in ("dualpipe", "dualpipev") and ep > 1 else 0  # V3-TR 3.2.2
    if isinstance(comm_sm_count, bool) or not isinstance(comm_sm_count, (int, np.integer)):
        raise ValueError(f"comm_sm_count must be a whole number of SMs, got {comm_sm_count!r}.")
    if not 0 <= int(comm_sm_count) < int(gpu.sm_count):
        raise ValueError(
            f"comm_sm_count must be >= 0 and leave SMs for computation ({gpu.name} has "
            f"{gpu.sm_count}); got {comm_sm_count}."
        )
    return int(comm_sm_count)


def _check_max_nodes_per_token(
    max_nodes_per_token: int | None, model: MoEModel, ep: int, gpus_per_node: int
) -> int:
    """The given limit on EP units per token (a whole number >= 1), or the model's own
    (:func:`_routing_unit_limit`) when None."""
    if max_nodes_per_token is None:
        return _routing_unit_limit(model, ep, gpus_per_node)
    if (
        isinstance(max_nodes_per_token, bool)
        or not isinstance(max_nodes_per_token, (int, np.integer))
        or int(max_nodes_per_token) < 1
    ):
        raise ValueError(
            f"max_nodes_per_token must be a whole number >= 1 (or None for the model's own limit), "
            f"got {max_nodes_per_token!r}."
        )
    return max_nodes_per_token


def _check_routing_skew(routing_skew: float) -> None:
    """The Zipf exponent of expert popularity is a finite number in [0, 10)."""
    if not is_finite_number(routing_skew) or not 0 <= routing_skew < 10:
        raise ValueError(
            f"routing_skew is the Zipf exponent of expert popularity, in [0, 10) (0 = balanced); "
            f"got {routing_skew!r}."
        )


# per model object (held, so that its id is not reused): a plan search builds many plans of one model
_UNITS: dict[int, tuple[Any, tuple[Unit, ...], tuple[tuple[float, float], ...]]] = {}
_BYTES_PER_PARAM: dict[tuple[int, str, str | None], tuple[Any, tuple[float, float, float]]] = {}


def _units_and_params(model: MoEModel) -> tuple[tuple[Unit, ...], tuple[tuple[float, float], ...]]:
    """The model's units (:func:`layer_units`) and each one's (non-expert, expert) parameters
    (:func:`_unit_params_uncached`), remembered per model object."""
    held = _UNITS.get(id(model))
    if held is None or held[0] is not model:
        units = tuple(layer_units(model))
        held = _UNITS[id(model)] = (model, units, tuple(_unit_params_uncached(model, units)))
    return held[1], held[2]


def _unit_params_uncached(model: MoEModel, units: Sequence[Unit]) -> list[tuple[float, float]]:
    """(non-expert, expert) parameters of each unit: the embedding and the head (none when tied to
    the embedding) are non-expert; a layer's or MTP module's routed experts are expert parameters
    and the rest is not, an MTP module adding its entry projection (2h x h)."""
    import moe

    per_layer = [
        moe.accounting.layer_params(model, u.index if u.kind == "layer" else None)
        if u.kind in ("layer", "mtp")
        else None
        for u in units
    ]

    def unit_params(i: int, u: Unit) -> tuple[float, float]:
        if u.kind == "embedding":
            return float(model.vocab_size * model.hidden_size), 0.0
        if u.kind == "head":
            return (0.0 if model.tie_word_embeddings else float(model.vocab_size * model.hidden_size)), 0.0
        parts = per_layer[i]
        assert parts is not None
        total = sum(c.total for c in parts.values())
        expert = parts["routed_experts"].total
        extra = 2 * model.hidden_size * model.hidden_size if u.kind == "mtp" else 0
        return float(total - expert + extra), float(expert)

    return [unit_params(i, u) for i, u in enumerate(units)]


def _bytes_per_param(
    model: MoEModel, gemm_dtype: str, grad_dtype: str | None = None
) -> tuple[float, float, float]:
    """:func:`_bytes_per_param_uncached`, remembered per model object."""
    key = (id(model), gemm_dtype, grad_dtype)
    held = _BYTES_PER_PARAM.get(key)
    if held is None or held[0] is not model:
        held = _BYTES_PER_PARAM[key] = (model, _bytes_per_param_uncached(model, gemm_dtype, grad_dtype))
    return held[1]


def _bytes_per_param_uncached(
    model: MoEModel, gemm_dtype: str, grad_dtype: str | None = None
) -> tuple[float, float, float]:
    """(weight bytes, gradient bytes, optimizer-step bytes moved) per parameter under the precision
    recipe of ``gemm_dtype`` ("fp8" or else "bf16", :func:`moe.accounting.memory_bytes`); a
    ``grad_dtype`` of "bf16" keeps the gradient buffer (and its data-parallel reduction) in BF16
    (Megatron ``--grad-reduce-in-bf16``), "fp32" in FP32, None as the recipe says (FP32)."""
    import moe

    recipe = "fp8" if gemm_dtype == "fp8" else "bf16"
    mem = moe.accounting.memory_bytes(model, recipe)
    n_params = float(mem.params or 1)
    grads = mem.gradients_bytes / n_params
    if grad_dtype is not None:
        grads = {"fp32": 4.0, "bf16": BF16_BYTES}[grad_dtype]
    return (
        mem.weights_bytes / n_params,
        grads,
        # AdamW update: read grad, read+write master and both moments, write the working weights.
        grads + (2 * (mem.master_weights_bytes + mem.optimizer_bytes) + mem.weights_bytes) / n_params,
    )


@dataclass(frozen=True)
class _Split:
    """The units cut into model pieces, and the plan fields that say so."""

    pieces: tuple[tuple[Unit, ...], ...]
    layers_per_piece: tuple[int, ...]
    piece_units: tuple[tuple[str, ...], ...]
    piece_params: tuple[tuple[float, float], ...]


def _split(
    units: Sequence[Unit],
    params: Sequence[tuple[float, float]],
    unit_times: Callable[[], tuple[float, ...]],
    layers_per_stage: Sequence[int] | None,
    num_pieces: int,
) -> _Split:
    """The units cut into the schedule's ``num_pieces`` model pieces: by the given layer counts, or
    else as the contiguous split that minimises the slowest piece's forward + backward + weight time
    (``unit_times()``, one per unit)."""
    if layers_per_stage is not None:
        if len(layers_per_stage) != num_pieces:
            raise ValueError(
                f"layers_per_stage has {len(layers_per_stage)} entries; the schedule needs {num_pieces}."
            )
        pieces = [tuple(p) for p in split_by_counts(units, layers_per_stage)]
    else:
        pieces = [tuple(p) for p in _partition(tuple(units), unit_times(), num_pieces)]
    return _Split(
        pieces=tuple(pieces),
        layers_per_piece=tuple(sum(1 for u in p if u.kind in ("layer", "mtp")) for p in pieces),
        piece_units=tuple(tuple(_unit_name(u) for u in p) for p in pieces),
        piece_params=_piece_params(pieces, params),
    )


@lru_cache(maxsize=4096)
def _partition(
    units: tuple[Unit, ...], costs: tuple[float, ...], num_pieces: int
) -> tuple[tuple[Unit, ...], ...]:
    """:func:`partition_units`, remembered (a plan search splits the same costs many times)."""
    return tuple(tuple(p) for p in partition_units(units, costs, num_pieces))


def _piece_params(
    pieces: Sequence[Sequence[Unit]], params: Sequence[tuple[float, float]]
) -> tuple[tuple[float, float], ...]:
    """(non-expert, expert) parameters of each piece: the sums over its units (the pieces are
    consecutive runs of the units, in order)."""
    piece_params = []
    start = 0
    for p in pieces:
        idx = range(start, start + len(p))
        start += len(p)
        piece_params.append((sum(params[i][0] for i in idx), sum(params[i][1] for i in idx)))
    return tuple(piece_params)


def _routing_unit_limit(model: MoEModel, ep: int, gpus_per_node: int) -> int:
    """Most EP units (nodes when EP spans nodes, else GPUs) one token's experts may sit on.

    Group-limited routing picks ``topk_group`` of ``n_group`` expert groups per token
    (DeepSeek-V3: 4 of 8, one group per node, V3-TR 2.1.2; V2: 3 of 8, one group per device,
    V2-TR 2.2.2). With ``u`` units in the EP group, a group spans ``u / n_group`` units, so the
    limit is ``topk_group * u / n_group`` (at least 1), and never more than the experts a token uses.
    """
    k = int(model.experts_per_token)
    units = ep // gpus_per_node if ep > gpus_per_node else ep
    if model.n_group <= 1 or model.topk_group >= model.n_group:
        return max(1, min(k, units))
    limit = model.topk_group * units / model.n_group
    return max(1, min(k, units, int(round(limit)) if limit >= 1 else 1))


def _unit_name(u: Unit) -> str:
    return {"embedding": "embed", "head": "head"}.get(u.kind, f"{'mtp' if u.kind == 'mtp' else 'L'}{u.index}")


def simulate_plan(
    model: MoEModel,
    gpu: GPUProfile,
    num_gpus: int,
    tokens: float,
    usd_per_gpu_hour: float | None,
    check_memory: bool = True,
    **kwargs: Any,
) -> TrainingResult:
    check_budget(tokens, usd_per_gpu_hour)
    t0 = time.perf_counter()
    built = build_plan(model, gpu, num_gpus, **kwargs)
    plan, notes = built.plan, list(built.notes)
    mem = memory_report(model, gpu, plan, built.layout, built.pieces)
    worst = max(mem, key=lambda r: r.total_bytes)
    if check_memory and worst.headroom_bytes < 0:
        raise ValueError(
            f"plan {plan.short()} does not fit in {gpu.name} memory: pipeline rank {worst.rank} needs "
            f"{worst.total_bytes / 1e9:.1f} GB (weights {worst.weights_bytes / 1e9:.1f}, gradients "
            f"{worst.gradients_bytes / 1e9:.1f}, optimizer {worst.optimizer_bytes / 1e9:.1f}, activations "
            f"{worst.activations_bytes / 1e9:.1f}) of {worst.capacity_bytes / 1e9:.1f} GB, "
            f"{-worst.headroom_bytes / 1e9:.1f} GB too much; use more pipeline/expert parallelism, "
            f"more recomputation or a smaller micro-batch."
        )
    result = engine.simulate_step(built.layout, built.cost)
    critical = result.timelines[result.critical_rank]
    breakdown = engine.breakdown(critical)
    phases = {PHASE_NAMES.get(k, k): v for k, v in engine.phase_breakdown(critical).items()}
    step = result.step_time_s
    tokens_per_step = plan.global_batch_seqs * plan.seq_len
    tps_gpu = tokens_per_step / step / num_gpus
    peak_bf16 = gpu.peak_flops("bf16")
    mfu = model.training_flops_per_token(plan.seq_len, causal=True) * tps_gpu / peak_bf16
    mfu_nc = model.training_flops_per_token(plan.seq_len, causal=False) * tps_gpu / peak_bf16
    steps = tokens / tokens_per_step
    gpu_hours = num_gpus * steps * step / SECONDS_PER_HOUR
    price = gpu.price.usd_per_gpu_hour if usd_per_gpu_hour is None else float(usd_per_gpu_hour)
    low = gpu.price.usd_per_gpu_hour_low if usd_per_gpu_hour is None else price
    high = gpu.price.usd_per_gpu_hour_high if usd_per_gpu_hour is None else price
    if usd_per_gpu_hour is None:
        notes.append(f"price {price} USD/GPU-hour from the {gpu.name} profile ({gpu.price.source}).")
    busy = _resource_busy(critical)
    bound_by = max(busy, key=lambda k: busy[k])
    return TrainingResult(
        model=model.name,
        gpu=gpu.name,
        num_gpus=num_gpus,
        tokens=float(tokens),
        step_time_s=step,
        breakdown_s=breakdown,
        phases_s=phases,
        bound_by=bound_by,
        tokens_per_s_per_gpu=tps_gpu,
        mfu=mfu,
        mfu_noncausal=mfu_nc,
        gpu_hours=gpu_hours,
        days=steps * step / 86400.0,
        cost_usd=gpu_hours * price,
        cost_usd_range=(gpu_hours * low, gpu_hours * high),
        usd_per_million_tokens=gpu_hours * price / (tokens / 1e6) if tokens > 0 else 0.0,
        usd_per_gpu_hour=price,
        steps=steps,
        notes=tuple(notes),
        plan=plan.to_dict(),
        memory_per_gpu_bytes=worst.total_bytes,
        memory_capacity_bytes=worst.capacity_bytes,
        simulated_events=result.num_events,
        wall_time_s=time.perf_counter() - t0,
    )


def _resource_busy(timeline: engine.RankTimeline) -> dict[str, float]:
    """Busy seconds per resource on the critical rank: compute, hbm, nvlink, ib."""
    busy = {"compute": 0.0, "hbm": 0.0, "nvlink": 0.0, "ib": 0.0}
    for start, end, _mix, bound in timeline.compute:
        busy["compute" if bound == "compute" else "hbm"] += end - start
    for start, end, _cat, link in timeline.comm:
        if link in busy:
            busy[link] += end - start
    return busy


def check_budget(tokens: Any, usd_per_gpu_hour: Any) -> None:
    """The token budget and the price are finite and positive (the price may be None: the
    profile's own)."""
    if not is_finite_number(tokens) or tokens <= 0:
        raise ValueError(f"tokens (the training budget to cost) must be a finite number > 0, got {tokens!r}.")
    if usd_per_gpu_hour is not None and (not is_finite_number(usd_per_gpu_hour) or usd_per_gpu_hour <= 0):
        raise ValueError(
            f"usd_per_gpu_hour must be a finite price > 0 (or None for the GPU profile's), "
            f"got {usd_per_gpu_hour!r}."
        )
