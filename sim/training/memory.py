"""Per-GPU memory of a training plan: weights, gradients, optimizer state, activations.

Bytes per parameter come from the precision recipe in ``moe.accounting.memory_bytes``
(DeepSeek-V3's "fp8" recipe: bf16 working weights, fp32 gradients and master weights, bf16
AdamW moments, V3-TR 3.3.3). ZeRO-1 shards master weights and moments over the data-parallel
group (non-expert parameters over ``dp``, expert parameters over ``tp*dp/ep``); weights and
gradients are whole on every rank. Activations: the bytes one micro-batch leaves saved per
layer (inputs of the GEMMs for the weight gradients, the attention inputs and output that
are not recomputed, the expert inputs after dispatch, the SwiGLU input), times the peak number
of micro-batches in flight on the rank, walked from the schedule's own order.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sim.training.costs import BF16_BYTES, Unit
from sim.training.schedules import ScheduleLayout

if TYPE_CHECKING:
    from gpus import GPUProfile
    from moe import MoEModel
    from sim.training.plan import TrainingPlan

__all__ = ["MemoryReport", "activation_bytes_per_token", "memory_report"]


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
    """Saved activation bytes per token of one unit on one GPU (TP splits the wide tensors)."""
    if unit.kind == "embedding":
        return 0.0
    h = model.hidden_size
    act = 1.0 if plan.gemm_dtype == "fp8" else BF16_BYTES  # V3-TR 3.3.3: activations cached in FP8
    tp = plan.tp
    if unit.kind == "head":
        return h * BF16_BYTES * (1 + int(getattr(model, "num_mtp_modules", 0) or 0))
    a = model.attention
    heads = max(1, a.num_heads // tp)
    total = 0.0
    if plan.recompute == "none":
        total += 2 * h * BF16_BYTES  # norm inputs
    if a.kind == "mla":
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        total += h * act  # input of q_a / kv_a
        total += (a.q_lora_rank + a.kv_lora_rank + a.qk_rope_head_dim) * BF16_BYTES  # latents
        if plan.recompute == "none":
            total += heads * (2 * qk + a.v_head_dim) * BF16_BYTES  # q, k, v kept
        total += heads * a.v_head_dim * BF16_BYTES  # attention output (input of o)
    else:
        hd = a.head_dim
        kvh = max(1, a.num_kv_heads // tp)
        total += h * act + (heads + 2 * kvh) * hd * BF16_BYTES + heads * hd * BF16_BYTES
    if plan.recompute == "full":
        return h * BF16_BYTES  # only the layer input is kept
    is_moe = unit.moe and model.num_routed_experts > 0
    if is_moe:
        k = model.experts_per_token
        inter = model.moe_intermediate_size
        total += h * BF16_BYTES  # router input
        total += k * (h + 2 * inter) * act  # expert inputs after dispatch and SwiGLU inputs
        shared = model.shared_intermediate_total
        total += (h + 2 * shared // tp) * act
    else:
        total += (h + 2 * model.intermediate_size // tp) * act
    return total


def memory_report(
    model: MoEModel, gpu: GPUProfile, plan: TrainingPlan, layout: ScheduleLayout, pieces: list[list[Unit]]
) -> list[MemoryReport]:
    """Memory of each pipeline rank (every DP/EP peer of a rank holds the same)."""
    import moe

    recipe = "fp8" if plan.gemm_dtype == "fp8" else "bf16"
    mem = moe.accounting.memory_bytes(model, recipe)
    params = mem.params if getattr(mem, "params", 0) else 1
    w = mem.weights_bytes / params
    g = mem.gradients_bytes / params
    o = (mem.master_weights_bytes + mem.optimizer_bytes) / params
    tokens = plan.micro_batch_seqs * plan.seq_len // plan.cp
    piece_act = [tokens * sum(activation_bytes_per_token(model, u, plan) for u in p) for p in pieces]
    reports = []
    for rank in range(layout.num_ranks):
        dense = sum(plan.piece_params[p][0] for p in plan.pieces_of_rank[rank]) / plan.tp
        expert = sum(plan.piece_params[p][1] for p in plan.pieces_of_rank[rank]) / plan.ep
        live = peak = 0.0
        for action in layout.orders[rank]:
            for c in action.chunks:
                if c.kind == "F":
                    live += piece_act[layout.model_piece(c.microbatch, c.stage)]
                    peak = max(peak, live)
            for c in action.chunks:
                if c.kind in ("BW", "W"):
                    live -= piece_act[layout.model_piece(c.microbatch, c.stage)]
        reports.append(
            MemoryReport(
                rank=rank,
                weights_bytes=(dense + expert) * w,
                gradients_bytes=(dense + expert) * g,
                optimizer_bytes=dense / plan.dp * o + expert / max(1, plan.expert_dp) * o,
                activations_bytes=peak,
                capacity_bytes=float(gpu.hbm_bytes),
            )
        )
    return reports
