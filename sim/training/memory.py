"""Per-GPU memory of a training plan: weights, gradients, optimizer state, activations.

Bytes per parameter come from the precision recipe in ``moe.accounting.memory_bytes``
(DeepSeek-V3's "fp8" recipe: bf16 working weights, fp32 gradients and master weights, bf16
AdamW moments, V3-TR 3.3.3). ZeRO-1 (Megatron's distributed optimizer, the default) shards master
weights and moments over the data-parallel group (non-expert parameters over ``dp``, expert
parameters over the expert data-parallel group ``tp*dp/(ep*moe_tp)``); without it
(``distributed_optimizer=False``) every rank holds them whole: Megatron's estimator
(megatron/training/theoretical_memory_usage.py) counts 18 bytes per parameter without and
6 + 12/dp with it. Weights and gradients are whole on every rank; gradients in the plan's gradient
dtype (FP32 by default, BF16 with ``grad_dtype="bf16"``, Megatron ``--grad-reduce-in-bf16``).
Activations: the bytes one micro-batch leaves saved per
layer (inputs of the GEMMs for the weight gradients, the attention inputs and output that
are not recomputed, the expert inputs after dispatch, the SwiGLU input), times the peak number
of micro-batches in flight on the rank, walked from the schedule's own order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sim.training.costs import BF16_BYTES, Unit
from sim.training.schedules import ScheduleLayout

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.plan import TrainingPlan

__all__ = [
    "MemoryReport",
    "activation_bytes_per_token",
    "activation_peaks",
    "memory_report",
    "piece_activation_bytes",
    "rank_memory",
]


@dataclass(frozen=True)
class MemoryReport:
    rank: int
    weights_bytes: float
    gradients_bytes: float
    optimizer_bytes: float
    activations_bytes: float
    capacity_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.optimizer_bytes + self.activations_bytes

    @property
    def headroom_bytes(self) -> float:
        return self.capacity_bytes - self.total_bytes

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_bytes"] = self.total_bytes
        d["headroom_bytes"] = self.headroom_bytes
        return d


def activation_bytes_per_token(model: MoEModel, unit: Unit, plan: TrainingPlan) -> float:
    """Saved activation bytes per token of one unit on one GPU (TP splits the wide tensors).

    What the backward keeps depends on what it recomputes (``plan.modules_recomputed``, Megatron's
    ``--recompute-modules``): without ``layernorm`` the two norm outputs are kept; without
    ``moe_act`` (``dense_act`` for dense and shared FFNs) the SwiGLU output, the down projection's
    input, is kept besides its input; without ``mla_up_proj`` MLA's q, k, v; ``mlp`` and
    ``shared_experts`` keep only their input (standard checkpointing); ``core_attn`` saves nothing
    with a FlashAttention kernel (which keeps only q, k, v, the output and its softmax statistics,
    all inputs or outputs of neighbouring GEMMs). With sequence parallelism the hidden-sized tensors
    and the routed tokens are split over the tensor-parallel ranks too (Korthikanti et al., "Reducing
    Activation Recomputation in Large Transformer Models", MLSys 2023, Table 2: 34sbh/t instead of
    sbh(10 + 24/t)). With expert tensor parallelism each GPU holds ``moe_tp`` times the dispatched
    rows at ``1/moe_tp`` of the intermediate width."""
    if unit.kind == "embedding":
        return 0.0
    h = model.hidden_size
    act = 1.0 if plan.gemm_dtype == "fp8" else BF16_BYTES  # V3-TR 3.3.3: activations cached in FP8
    tp = plan.tp
    narrow = 1.0 / tp if plan.sequence_parallel else 1.0  # hidden-sized tensors on this rank
    modules = plan.modules_recomputed
    if unit.kind == "head":
        return h * BF16_BYTES * narrow * (1 + int(getattr(model, "num_mtp_modules", 0) or 0))
    if plan.recompute == "full":
        return h * BF16_BYTES * narrow  # only the layer input is kept
    a = model.attention
    heads = max(1, a.num_heads // tp)
    total = 0.0
    if "layernorm" not in modules:
        total += 2 * h * BF16_BYTES * narrow  # norm outputs
    if a.kind == "mla":
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        total += h * act * narrow  # input of q_a / kv_a
        total += (a.q_lora_rank + a.kv_lora_rank + a.qk_rope_head_dim) * BF16_BYTES * narrow  # latents
        if "mla_up_proj" not in modules:
            total += heads * (2 * qk + a.v_head_dim) * BF16_BYTES  # q, k, v kept
        total += heads * a.v_head_dim * BF16_BYTES  # attention output (input of o)
    else:
        hd = a.head_dim
        kvh = max(1, a.num_kv_heads // tp)
        total += h * act * narrow + (heads + 2 * kvh) * hd * BF16_BYTES + heads * hd * BF16_BYTES
    is_moe = unit.moe and model.num_routed_experts > 0
    if is_moe:
        k = model.experts_per_token
        inter = model.moe_intermediate_size
        etp = plan.moe_tp
        routed = narrow  # routed tokens per token of this rank (tokens / tp under sequence parallelism)
        total += h * BF16_BYTES * routed  # router input
        # expert inputs after dispatch (moe_tp x the rows) and SwiGLU inputs (1/moe_tp wide)
        total += k * (h * etp + 2 * inter) * act * routed
        if "moe_act" not in modules:
            total += k * inter * act * routed  # SwiGLU output, the down projection's input
        shared = model.shared_intermediate_total
        if shared and "shared_experts" not in modules:
            total += (h * narrow + 2 * shared // tp) * act
            if "dense_act" not in modules:
                total += shared // tp * act
    elif "mlp" not in modules:
        total += (h * narrow + 2 * model.intermediate_size // tp) * act
        if "dense_act" not in modules:
            total += model.intermediate_size // tp * act
    return total


# per model object (held, so that its id is not reused): a plan search checks many plans of one model
_RECIPE_BYTES: dict[tuple[int, str], tuple[Any, tuple[float, float]]] = {}


def _recipe_bytes_per_param(model: MoEModel, recipe: str) -> tuple[float, float]:
    """(weight bytes, master-weight + optimizer-state bytes) per parameter under ``recipe``
    (:func:`moe.accounting.memory_bytes`), remembered per model object."""
    import moe

    held = _RECIPE_BYTES.get((id(model), recipe))
    if held is None or held[0] is not model:
        mem = moe.accounting.memory_bytes(model, recipe)
        params = mem.params if getattr(mem, "params", 0) else 1
        value = (mem.weights_bytes / params, (mem.master_weights_bytes + mem.optimizer_bytes) / params)
        held = _RECIPE_BYTES[(id(model), recipe)] = (model, value)
    return held[1]


def piece_activation_bytes(model: MoEModel, plan: TrainingPlan, pieces: list[list[Unit]]) -> list[float]:
    """Saved activation bytes of one micro-batch in each model piece on one GPU."""
    tokens = plan.micro_batch_seqs * plan.seq_len // plan.cp
    return [tokens * sum(activation_bytes_per_token(model, u, plan) for u in p) for p in pieces]


def activation_peaks(
    model: MoEModel, plan: TrainingPlan, layout: ScheduleLayout, pieces: list[list[Unit]]
) -> list[float]:
    """Each pipeline rank's peak saved activation bytes, walked from the schedule's own order: a
    forward adds its piece's micro-batch activations, a BW or W releases them (a B keeps them for its W)."""
    piece_act = piece_activation_bytes(model, plan, pieces)
    peaks = []
    for order in layout.orders:
        live = peak = 0.0
        for action in order:
            for c in action.chunks:
                if c.kind == "F":
                    live += piece_act[layout.model_piece(c.microbatch, c.stage)]
                    peak = max(peak, live)
            for c in action.chunks:
                if c.kind in ("BW", "W"):
                    live -= piece_act[layout.model_piece(c.microbatch, c.stage)]
        peaks.append(peak)
    return peaks


def memory_report(
    model: MoEModel, gpu: GPUProfile, plan: TrainingPlan, layout: ScheduleLayout, pieces: list[list[Unit]]
) -> list[MemoryReport]:
    """Memory of each pipeline rank (every DP/EP peer of a rank holds the same)."""
    return rank_memory(model, gpu, plan, activation_peaks(model, plan, layout, pieces))


def rank_memory(
    model: MoEModel, gpu: GPUProfile, plan: TrainingPlan, peaks: Sequence[float]
) -> list[MemoryReport]:
    """Memory of each pipeline rank given its peak activation bytes (:func:`activation_peaks`)."""
    recipe = "fp8" if plan.gemm_dtype == "fp8" else "bf16"
    w, o = _recipe_bytes_per_param(model, recipe)
    g = plan.grad_bytes_per_param  # the recipe's, or the plan's gradient dtype
    reports = []
    for rank, peak in enumerate(peaks):
        dense = sum(plan.piece_params[p][0] for p in plan.pieces_of_rank[rank]) / plan.tp
        expert = sum(plan.piece_params[p][1] for p in plan.pieces_of_rank[rank]) / (plan.ep * plan.moe_tp)
        reports.append(
            MemoryReport(
                rank=rank,
                weights_bytes=(dense + expert) * w,
                gradients_bytes=(dense + expert) * g,
                optimizer_bytes=(
                    dense / plan.dp * o + expert / max(1, plan.expert_dp) * o
                    if plan.distributed_optimizer
                    else (dense + expert) * o
                ),
                activations_bytes=peak,
                capacity_bytes=float(gpu.hbm_bytes),
            )
        )
    return reports
