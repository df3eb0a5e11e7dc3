"""The operators of every phase, for both simulators: one list per layer, lowered for training or serving.

Training (:func:`training_unit_ops`): the operators of one unit along the layer order (embedding, a
transformer layer, an MTP module, the output head) for one micro-batch on one GPU, in the forward,
backward-for-inputs, backward-for-weights and recompute phases, each tagged with the segment it
belongs to (``stage``: "attention" is the attention block with the router and shared experts,
"experts" the routed experts between dispatch and combine, "post" the un-permute after the combine;
"comm" the collectives). :class:`sim.training.costs.TrainingCostModel` times them and groups them
into the engine's segments.

Serving (:func:`serving_layer_ops` and the per-step pieces): the kernels of one prefill or decode
step's layers by stage ("dense_attention", "dense_ffn", "moe_attention" up to the dispatch,
"moe_shared", "moe_routed"), the output head and the MTP module's entry.
:class:`sim.serving.stepcost.StepCostModel` times them and schedules the two streams.

Both go through the same attention strategy (:mod:`moe.operators.attention`) and the same lowering
calls, so an operator added to a layer's list is timed by both simulators.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from moe.operators.attention import BlockShape, strategy_for
from moe.operators.lowering import (
    BF16,
    CAST_BYTES,
    FP8_SCALE_BYTES_PER_VALUE,
    NORM_ROPE,
    Lowering,
    ServingLowering,
    TrainingLowering,
)
from moe.operators.op import Attention, Comm, Gating, Gemm, GroupedGemm, Memory, Op, OpKind, Permute, Phase

if TYPE_CHECKING:
    from moe.config import MoEModel

__all__ = [
    "ServingShape",
    "serving_attention_ops",
    "TrainingShape",
    "serving_combine_recv_ops",
    "serving_decode_core",
    "serving_head_ops",
    "serving_layer_ops",
    "serving_mtp_join_ops",
    "serving_prefill_core_ops",
    "serving_routed_ops",
    "training_unit_ops",
    "UNIT_KINDS",
]

UNIT_KINDS = ("embedding", "layer", "mtp", "head")


# ---- training ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainingShape:
    """One micro-batch on one GPU under a training plan: ``tokens`` per GPU (``moe_tokens`` of them
    reach the router on this tensor-parallel rank), the parallel degrees, the GEMM and attention
    dtypes, the recompute policy and the dispatch format."""

    tokens: int
    moe_tokens: int
    seq_len: int
    micro_batch_seqs: int = 1
    tp: int = 1
    cp: int = 1
    ep: int = 1
    gemm_dtype: str = "bf16"
    attention_dtype: str = "bf16"
    recompute: str = "selective"
    dispatch_fp8: bool = False
    recompute_modules: frozenset[str] | None = None  # None: the policy's own (default_recompute_modules)
    moe_tp: int = 1  # each expert split over this many GPUs (Megatron --expert-tensor-parallel-size)

    def block(self) -> BlockShape:
        return BlockShape(
            tp=self.tp,
            seq_len=self.seq_len,
            micro_batch_seqs=self.micro_batch_seqs,
            cp=self.cp,
            attention_dtype=self.attention_dtype,
        )


def training_unit_ops(
    model: MoEModel,
    unit: str,
    moe_layer: bool,
    shape: TrainingShape,
    expert_groups: Sequence[int] = (),
    layer: int | None = None,
) -> list[Op]:
    """Operators of one unit (``unit`` in :data:`UNIT_KINDS`) for one micro-batch; ``moe_layer``: the
    layer (or MTP module) has routed experts, ``expert_groups`` the rows of each local expert on the
    busiest expert-parallel rank, ``layer`` the layer's index (its attention window)."""
    if unit not in UNIT_KINDS:
        raise ValueError(f"unknown unit kind {unit!r}; allowed: {', '.join(UNIT_KINDS)}")
    b = TrainingLowering(shape.tokens, shape.gemm_dtype, shape.recompute, modules=shape.recompute_modules)
    h, t = model.hidden_size, shape.tokens
    if unit == "embedding":
        b.emit("embedding", OpKind.EMBEDDING, Memory(t * h * BF16 * 2))
        b.emit("embedding wgrad", OpKind.EMBEDDING, Memory(t * h * BF16 * 3), Phase.WEIGHT)
        return b.ops
    if unit == "head":
        _training_head(model, b, shape)
        return b.ops
    if unit == "mtp":
        # MTP module (V3-TR Sec. 2.2): RMSNorm of the hidden state and of the next token's embedding,
        # their concatenation projected 2h -> h, then one decoder layer
        b.norm("mtp_norms", 2 * t * h)
        b.linear("mtp_eh_proj", h, 2 * h, cast_name="cast_mtp_proj_in")
    block = dataclasses.replace(shape.block(), layer=layer)
    _layer(model, b, block, moe_layer and model.num_routed_experts > 0, shape, expert_groups)
    return b.ops


def _training_head(model: MoEModel, b: TrainingLowering, shape: TrainingShape) -> None:
    """Final RMSNorm, output head (BF16, V3-TR 3.3) and softmax cross-entropy in FP32, once per head
    (the MTP modules share it)."""
    h, t = model.hidden_size, shape.tokens
    v = max(1, model.vocab_size // shape.tp)
    bf = shape.attention_dtype
    for _ in range(1 + int(getattr(model, "num_mtp_modules", 0) or 0)):
        b.emit("final_norm", OpKind.NORM, Memory(t * h * BF16 * 2, NORM_ROPE))
        b.emit("lm_head", OpKind.LM_HEAD, Gemm(t, v, h, bf))
        b.emit("cross_entropy", OpKind.LOGITS, Memory(t * v * 4.0 * 2))
        b.emit("lm_head dgrad", OpKind.LM_HEAD, Gemm(t, h, v, bf), Phase.BACKWARD)
        b.emit("cross_entropy bwd", OpKind.LOGITS, Memory(t * v * 4.0 * 2), Phase.BACKWARD)
        # BF16 cuBLAS, timed with the forward GEMM family (the wgrad family is DeepSeek's FP8 kernel)
        b.emit("lm_head wgrad", OpKind.LM_HEAD, Gemm(h, v, t, bf), Phase.WEIGHT)


def _layer(
    model: MoEModel,
    b: Lowering,
    block: BlockShape,
    moe_layer: bool,
    shape: TrainingShape | None,
    expert_groups: Sequence[int],
) -> None:
    """One transformer layer of training (serving assembles its stages in :func:`serving_layer_ops`)."""
    assert isinstance(b, TrainingLowering) and shape is not None
    h, t = model.hidden_size, b.tokens
    add_bytes = t * h * BF16 * 3  # residual add: read two, write one
    b.norm("attn_norm", t * h, residual=True)
    strategy_for(model).block(model, b, block)
    b.memory("residual_add", OpKind.RESIDUAL_ADD, add_bytes, add_bytes)
    b.norm("ffn_norm", t * h, residual=True)
    if shape.cp > 1:
        per_token = strategy_for(model).cp_bytes_per_token(model)
        b.emit("cp_allgather", OpKind.CP_ALLGATHER, Comm(t * shape.cp, per_token, shape.cp), stage="comm")
    if shape.tp > 1:
        b.emit("attn_allreduce", OpKind.TP_ALLREDUCE, Comm(t, h * BF16, shape.tp), stage="comm")
    if moe_layer:
        _training_moe(model, b, shape, expert_groups)
        return
    inter = model.intermediate_size / shape.tp
    b.module = "mlp"
    dense_ffn(b, h, inter)
    b.module = ""
    b.memory("residual_add", OpKind.RESIDUAL_ADD, add_bytes, add_bytes)
    if shape.tp > 1:
        b.emit("mlp_allreduce", OpKind.TP_ALLREDUCE, Comm(t, h * BF16, shape.tp), stage="comm")


def dense_ffn(b: Lowering, hidden: int, inter: float) -> None:
    """Dense SwiGLU FFN: gate/up GEMM (with the cast of its input), SwiGLU (writing the down GEMM's
    input quantised), down GEMM."""
    b.linear("mlp_gate_up", 2 * inter, hidden, cast_name="cast_ffn_in")
    b.activation("mlp_act", b.tokens, inter)
    b.linear("mlp_down", hidden, inter, cast=False)


def _training_moe(model: MoEModel, b: TrainingLowering, shape: TrainingShape, groups: Sequence[int]) -> None:
    h, bf = model.hidden_size, shape.attention_dtype
    e, k, inter = model.num_routed_experts, model.experts_per_token, model.moe_intermediate_size
    inter = max(1, inter // max(1, shape.moe_tp))  # this GPU's slice of each expert
    tm = shape.moe_tokens
    g = shape.gemm_dtype
    b.emit("router_gemm", OpKind.ROUTER_GEMM, Gemm(tm, e, h, bf))  # BF16 (V3-TR 3.3)
    b.emit("gating", OpKind.GATING, Gating(tm, e, k))
    b.emit("router_gemm dgrad", OpKind.ROUTER_GEMM, Gemm(tm, h, e, bf), Phase.BACKWARD)
    b.emit("router_gemm wgrad", OpKind.ROUTER_GEMM, Gemm(h, e, tm, bf), Phase.WEIGHT)
    shared = model.shared_intermediate_total
    if shared:
        s = max(1, shared // shape.tp)
        b.module = "shared_experts"
        b.linear("shared_gate_up", 2 * s, h, rows=tm, kind=OpKind.EXPERTS)
        b.activation("shared_act", tm, s)
        b.linear("shared_down", h, s, rows=tm, cast=False, kind=OpKind.EXPERTS)
        b.module = ""
    rows = sum(groups)
    b.emit("permute", OpKind.PERMUTE, Permute(tm, h, k, "bf16"))
    b.stage = "experts"
    # The permute's backward sums each token's top-k expert-row gradients back into the token (a
    # reduce shaped like the forward un-permute).
    b.emit("permute bwd", OpKind.PERMUTE, Permute(tm, h, k, "bf16", combine=True), Phase.BACKWARD)
    for name, n, kk in (("experts_gate_up", 2 * inter, h), ("experts_down", h, inter)):
        b.emit(name, OpKind.EXPERTS, GroupedGemm(tuple(groups), n, kk, g))
        b.emit(f"{name} dgrad", OpKind.EXPERTS, GroupedGemm(tuple(groups), kk, n, g), Phase.BACKWARD)
        # weight gradient per expert: dW_e = X_e^T dY_e, a reduction over that expert's tokens
        for rows_e in groups:
            if rows_e > 0:
                b.emit(f"{name} wgrad", OpKind.EXPERTS, Gemm(kk, n, rows_e, g, wgrad=True), Phase.WEIGHT)
        if b.fp8:
            b.emit(f"cast {name} dY", OpKind.FP8_CAST, Memory(rows * n * CAST_BYTES), Phase.BACKWARD)
            b.emit(
                f"cast {name} X^T,dY^T", OpKind.FP8_CAST, Memory(rows * (n + kk) * CAST_BYTES), Phase.WEIGHT
            )
    b.module = "experts"
    b.activation("experts_act", rows, inter)
    b.module = ""
    if b.fp8:
        # V3-TR 3.3.4: the SwiGLU input of the MoE layer is cached in FP8 (and the SwiGLU recomputed
        # from it), so the forward casts the up-projection output and the backward casts it back
        swi_in = rows * 2 * inter * CAST_BYTES
        b.memory(
            "cast experts_act input cache",
            OpKind.FP8_CAST,
            swi_in,
            swi_in,
            backward_name="cast experts_act input back",
        )
    b.stage = "post"
    unpermute = Permute(tm, h, k, "bf16", combine=True)
    b.emit("unpermute", OpKind.PERMUTE, unpermute)
    b.emit("unpermute bwd", OpKind.PERMUTE, unpermute, Phase.BACKWARD)
    add_bytes = b.tokens * h * BF16 * 3
    b.memory("residual_add", OpKind.RESIDUAL_ADD, add_bytes, add_bytes)
    # expert all-to-all: FP8 with one scale per 128 values, or BF16, dispatch; BF16 combine (V3-TR 3.3.3)
    dispatch_bytes = h * ((1.0 + FP8_SCALE_BYTES_PER_VALUE) if shape.dispatch_fp8 else BF16)
    b.emit("dispatch", OpKind.EP_DISPATCH, Comm(tm, dispatch_bytes, shape.ep), stage="comm")
    b.emit("combine", OpKind.EP_COMBINE, Comm(tm, h * BF16, shape.ep), stage="comm")


# ---- serving -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ServingShape:
    """One GPU of a serving instance: tensor- and expert-parallel degrees, GEMM dtypes of the dense
    layers and of the routed experts, KV-cache bytes per element, routed experts hosted per GPU, the
    slice of each expert it holds (``moe_tp``) and whether DeepEP moves the routed tokens (its FP8
    dispatch cast, its low-latency kernels at decode) or a dispatcher that sends them as they are."""

    tp: int = 1
    ep: int = 1
    dense_dtype: str = "bf16"
    expert_dtype: str = "bf16"
    kv_bytes_per_element: float = 2.0
    experts_per_gpu: int = 1
    moe_tp: int = 1
    deepep: bool = True
    expert_compute_dtype: str = ""
    swap_ab: bool = False
    moe_kernel: str = ""  # the routed experts' kernel table (sim.serving.stack: moe_kernel); "": the device's

    def block(self) -> BlockShape:
        return BlockShape(tp=self.tp, kv_bytes_per_element=self.kv_bytes_per_element)


def _lowering(
    shape: ServingShape, tokens: float, phase: Phase, stage: str, core_s: float = 0.0
) -> ServingLowering:
    return ServingLowering(max(1, int(tokens)), shape.dense_dtype, phase, stage, core_s)


def serving_attention_ops(
    model: MoEModel, shape: ServingShape, tokens: int, phase: Phase, core_s: float
) -> list[Op]:
    """The attention block of one layer: fused residual-add + RMSNorm, then the kind's operators
    with the core attention kernel (``core_s``, timed over the step's requests) in its place."""
    b = _lowering(shape, tokens, phase, "attention", core_s)
    b.norm("attn_norm", b.tokens * model.hidden_size, residual=True)
    strategy_for(model).block(model, b, shape.block())
    return b.ops


def serving_layer_ops(
    model: MoEModel,
    shape: ServingShape,
    tokens: int,
    phase: Phase,
    core_s: float,
    expert_rows_per_gpu: float,
) -> dict[str, list[Op]]:
    """Operators of one micro-batch of ``tokens`` tokens through one dense and one MoE layer, by
    stage: "dense_attention", "dense_ffn", "moe_attention" (the previous layer's combine receive and
    output add, the attention block, the MoE layer up to the dispatch), "moe_shared", "moe_routed".
    ``expert_rows_per_gpu``: routed rows on the busiest GPU (its imbalance included)."""
    attention = serving_attention_ops(model, shape, tokens, phase, core_s)
    b = _lowering(shape, tokens, phase, "dense_ffn")
    b.norm("ffn_norm", b.tokens * model.hidden_size, residual=True)
    dense_ffn(b, model.hidden_size, model.intermediate_size / shape.tp)
    h, t = model.hidden_size, max(1, int(tokens))
    add = Op("moe_output_add", OpKind.RESIDUAL_ADD, Memory(t * h * 2.0 * 3.0), phase, "moe_attention")
    return {
        "dense_attention": attention,
        "dense_ffn": b.ops,
        "moe_attention": serving_combine_recv_ops(model, shape, tokens, phase)
        + [add]
        + attention
        + _moe_pre_ops(model, shape, tokens, phase),
        "moe_shared": _shared_ops(model, shape, tokens, phase),
        "moe_routed": serving_routed_ops(model, shape, phase, expert_rows_per_gpu),
    }


def _moe_pre_ops(model: MoEModel, shape: ServingShape, tokens: int, phase: Phase) -> list[Op]:
    """MoE layer up to the dispatch: fused residual-add + RMSNorm, the router GEMM (BF16), group-limited
    top-k gating, and for DeepEP's normal (prefill) kernels the FP8 cast of the dispatched hidden
    state; the low-latency decode kernels cast in their send kernel (``ll_dispatch_send``, which the
    published latency holds)."""
    b = _lowering(shape, tokens, phase, "moe_attention")
    h, t = model.hidden_size, b.tokens
    td = max(1, int(math.ceil(t / shape.tp)))
    e, k = int(model.num_routed_experts), int(model.experts_per_token)
    scoring = "softmax" if model.scoring_func == "softmax" else "sigmoid"
    b.norm("ffn_norm", t * h, residual=True)
    b.gemm("router_gemm", OpKind.ROUTER_GEMM, td, e, h, "bf16")
    b.emit("gating", OpKind.GATING, Gating(td, e, k, scoring, max(1, int(model.n_group or 1))))
    if phase is Phase.PREFILL and shape.deepep:
        b.cast("cast_dispatch", td * h)
    elif phase is Phase.DECODE and shape.ep > 1 and shape.deepep:
        # DeepEP low-latency dispatch, send half (a kernel on the compute stream when its receive is
        # deferred to a hook): FP8 cast of each token into the send buffer, RDMA puts issued
        b.emit("ll_dispatch_send", OpKind.LOW_LATENCY_COMM, Memory(td * h * CAST_BYTES))
    return b.ops


def _shared_ops(model: MoEModel, shape: ServingShape, tokens: int, phase: Phase) -> list[Op]:
    """Shared experts: FP8 cast of their input, gate/up GEMM, SwiGLU + cast, down GEMM."""
    inter = model.shared_intermediate_total
    if not inter:
        return []
    b = _lowering(shape, tokens, phase, "moe_shared")
    inter_tp = inter / shape.tp
    b.linear(
        "shared_gate_up", 2 * inter_tp, model.hidden_size, kind=OpKind.EXPERTS, cast_name="cast_shared_in"
    )
    b.activation("shared_act", b.tokens, inter_tp)
    b.linear("shared_down", model.hidden_size, inter_tp, cast=False, kind=OpKind.EXPERTS)
    return b.ops


def experts_touched(model: MoEModel, experts_per_gpu: int, rows: float) -> int:
    """Local experts that receive at least one of ``rows`` routed rows, in expectation: a step reads
    and multiplies only those (an expert with no rows costs a grouped GEMM no weight read and no
    tile). Each token picks ``k`` of the ``E`` routed experts, so an expert is missed by one token with
    probability ``1 - k/E``; ``rows / experts_per_gpu`` rows per local expert on average come from
    ``rows * E / (k * experts_per_gpu)`` tokens, which miss a given expert with probability
    ``(1 - k/E) ** tokens`` (about ``exp(-rows per expert)``: a decode batch of 4 tokens on V3, top-8
    of 256, touches at most 32 of 256 experts). Uniform routing; rounded to whole experts, at least one."""
    epg = max(1, int(experts_per_gpu))
    e, k = int(model.num_routed_experts), int(model.experts_per_token)
    if e <= k or rows <= 0:
        return epg
    tokens = float(rows) * e / (k * epg)
    missed = (1.0 - k / e) ** tokens
    return min(epg, max(1, int(round(epg * (1.0 - missed)))))


def serving_routed_ops(model: MoEModel, shape: ServingShape, phase: Phase, rows: float) -> list[Op]:
    """This GPU's routed experts for ``rows`` routed rows (the busiest GPU's): grouped gate/up GEMM,
    SwiGLU + FP8 cast, grouped down GEMM, each expert ``1 / moe_tp`` of its width; in the contiguous
    layout (prefill, and every step of a dispatcher other than DeepEP's low-latency kernels: vLLM's
    and TensorRT-LLM's MoE kernels sort rows by expert and reduce each token's top-k outputs at decode
    too) the received rows are permuted into expert order (FP8 after DeepEP's cast, else BF16) and the
    outputs un-permuted and weight-reduced; DeepEP's low-latency dispatch writes the masked layout
    and its combine reduces in-kernel."""
    b = _lowering(shape, 1, phase, "moe_routed")
    h, k = model.hidden_size, int(model.experts_per_token)
    active = experts_touched(model, shape.experts_per_gpu, rows)
    per_group = max(1, int(math.ceil(rows / active)))
    groups = (per_group,) * active
    inter = max(1, int(model.moe_intermediate_size) // max(1, shape.moe_tp))
    recv = max(1, int(math.ceil(per_group * active / k)))
    received = per_group * active
    low_latency = phase is Phase.DECODE and shape.ep > 1 and shape.deepep
    if not low_latency:
        b.emit("permute", OpKind.PERMUTE, Permute(recv, h, k, "fp8" if shape.deepep else "bf16"))
    else:
        # low-latency dispatch, receive hook: unpack the received FP8 rows into the per-expert
        # (masked) layout (the published latency hides this copy under the arrivals)
        b.emit(
            "ll_dispatch_recv",
            OpKind.LOW_LATENCY_COMM,
            Memory(received * h * (1.0 + FP8_SCALE_BYTES_PER_VALUE) * 2.0),
        )
    dtypes = (shape.expert_dtype, shape.expert_compute_dtype, shape.swap_ab, shape.moe_kernel)
    b.emit("experts_gate_up", OpKind.EXPERTS, GroupedGemm(groups, 2 * inter, h, *dtypes))
    b.activation("experts_act", received, inter)
    b.emit("experts_down", OpKind.EXPERTS, GroupedGemm(groups, h, inter, *dtypes))
    if not low_latency:
        b.emit("unpermute_reduce", OpKind.PERMUTE, Permute(recv, h, k, "bf16", combine=True))
    else:
        # low-latency combine, send half: expert outputs (BF16) into the send buffer, puts issued
        b.emit("ll_combine_send", OpKind.LOW_LATENCY_COMM, Memory(received * h * 2.0 * 2.0))
    return b.ops


def serving_combine_recv_ops(model: MoEModel, shape: ServingShape, tokens: int, phase: Phase) -> list[Op]:
    """Low-latency combine, receive hook: the weighted sum of each token's top-k expert outputs (the
    normal prefill kernels reduce on their own SMs)."""
    if phase is not Phase.DECODE or shape.ep <= 1 or not shape.deepep:
        return []
    k = int(model.experts_per_token)
    td = max(1, int(math.ceil(max(1, int(tokens)) / shape.tp)))
    work = Memory(td * model.hidden_size * 2.0 * (k + 1.0))
    return [Op("ll_combine_recv_reduce", OpKind.LOW_LATENCY_COMM, work, phase, "moe_attention")]


def serving_head_ops(
    model: MoEModel, shape: ServingShape, rows: int, embedded: int, phase: Phase
) -> list[Op]:
    """Per step: embedding gather of the ``embedded`` input tokens, final RMSNorm (fused with the
    residual add), output head (BF16, as V3 keeps it) and sampling (softmax / top-p over FP32 logits:
    about three passes) for the ``rows`` positions that need logits."""
    b = _lowering(shape, rows, phase, "head")
    h, r = model.hidden_size, b.tokens
    vocab = model.vocab_size / shape.tp
    b.emit("embedding", OpKind.EMBEDDING, Memory(max(1, int(embedded)) * h * 2.0 * 2.0))
    b.emit("final_norm", OpKind.NORM, Memory(r * h * BF16 * 4.0, NORM_ROPE))
    b.gemm("lm_head", OpKind.LM_HEAD, r, vocab, h, "bf16")
    b.emit("sampling", OpKind.LOGITS, Memory(r * vocab * 4.0 * 3.0))
    return b.ops


def serving_mtp_join_ops(model: MoEModel, shape: ServingShape, tokens: int, phase: Phase) -> list[Op]:
    """MTP module entry (V3-TR section 2.2): the next token's embedding, RMSNorm of the hidden state and
    of that embedding, their concatenation projected 2h -> h (FP8 cast first when FP8)."""
    b = _lowering(shape, tokens, phase, "mtp")
    h, t = model.hidden_size, b.tokens
    b.emit("mtp_embedding", OpKind.EMBEDDING, Memory(t * h * 2.0 * 2.0))
    b.norm("mtp_norms", 2 * t * h)
    b.linear("mtp_eh_proj", h, 2 * h, cast_name="cast_mtp_proj_in")
    return b.ops


def serving_prefill_core_ops(
    model: MoEModel, shape: ServingShape, new_tokens: int, cached_tokens: int
) -> list[Op]:
    """Causal attention of ``new_tokens`` queries after ``cached_tokens`` of prefix in one layer: full
    causal attention over the context scaled by the layer-averaged reach (windowed, chunked, sparse
    layers), and what re-reads a cached prefix (MLA's up-projection of the prefix latents)."""
    s = strategy_for(model)
    qk, v = s.pair_dims(model, decode=False)
    context = new_tokens + cached_tokens
    keys = s.effective_keys(model, context, False, qk, v)
    scale = keys / context if context else 1.0
    work = Attention(1, new_tokens, context, s.heads(model, shape.tp), qk, v, True, "bf16", scale=scale)
    ops = [Op("core_attention", OpKind.ATTENTION, work, Phase.PREFILL, "attention")]
    if cached_tokens > 0:
        b = _lowering(shape, new_tokens, Phase.PREFILL, "attention")
        s.prefix_ops(model, b, cached_tokens, shape.tp)
        ops += b.ops
    return ops


def serving_decode_core(
    model: MoEModel, shape: ServingShape, batch: int, q_len: int, kv_len: int, kv_bytes_per_layer: float
) -> Op:
    """The decode core attention of ``batch`` requests, each ``q_len`` new tokens over ``kv_len`` cached
    ones (the layer-averaged keys per query), reading ``kv_bytes_per_layer`` of cache per request."""
    s = strategy_for(model)
    qk, v = s.pair_dims(model, decode=True)
    keys = s.effective_keys(model, kv_len, False, qk, v)
    work = Attention(
        batch,
        q_len,
        max(1, int(round(keys))),
        s.heads(model, shape.tp),
        qk,
        v,
        True,
        "bf16",
        kv_bytes=batch * kv_bytes_per_layer,
    )
    return Op("core_attention", OpKind.ATTENTION, work, Phase.DECODE, "attention")
