"""The kind of every operator a serving step is made of, which decides its breakdown category.

:class:`sim.serving.stepcost.StepCostModel` builds a step from named operators, ``(name, seconds)``
pairs. The breakdown of a result (``ServingResult.breakdown_s``) books each operator's time under
its kind, looked up by exact name in :data:`OPERATOR_KINDS`: an operator that is renamed or added
without an entry here raises instead of silently moving its time to another category.
"""

from __future__ import annotations

import enum

__all__ = ["OpKind", "OPERATOR_KINDS", "operator_kind"]


class OpKind(enum.Enum):
    """What an operator does; the value is its breakdown category's name."""

    ATTENTION = "attention"  # the core attention kernel (FlashMLA, FlashAttention)
    DENSE_GEMM = "dense_gemm"  # projections and dense FFN GEMMs
    FP8_CAST = "fp8_casts"  # quantisation of a GEMM's or the dispatch's input
    NORM = "norms"  # RMSNorm, fused with the residual add where the block starts
    ROPE_QK_KV = "rope_qk_kv"  # RoPE, assembling queries and keys, the KV-cache write
    MLA_ABSORB = "mla_absorb"  # MLA's absorbed W_UK / W_UV batched GEMMs
    ROUTING = "routing"  # router GEMM and top-k gating
    PERMUTE = "permute"  # token permute into expert order and un-permute + reduce
    ACTIVATION = "activation"  # SwiGLU fused with the FP8 cast of its output
    EXPERTS = "experts"  # shared and routed expert GEMMs
    LOW_LATENCY_COMM = "ll_comm_kernels"  # DeepEP low-latency send and receive-hook kernels
    RESIDUAL_ADD = "residual_adds"  # shared + routed expert outputs added
    HEAD = "head"  # embedding, final norm, output head and sampling
    MTP = "mtp"  # the multi-token-prediction module's entry


_K = OpKind

OPERATOR_KINDS: dict[str, OpKind] = {
    # attention block (StepCostModel.attention_ops and the core kernel that layer_ops inserts)
    "core_attention": _K.ATTENTION,
    "attn_norm": _K.NORM,
    "q_a_norm": _K.NORM,
    "kv_a_norm": _K.NORM,
    "qk_norm": _K.NORM,
    "attn_inner_norms": _K.NORM,
    "cast_attn_in": _K.FP8_CAST,
    "cast_q_b_in": _K.FP8_CAST,
    "cast_kv_b_in": _K.FP8_CAST,
    "cast_o_in": _K.FP8_CAST,
    "qkv_a_proj": _K.DENSE_GEMM,
    "q_b_proj": _K.DENSE_GEMM,
    "q_proj": _K.DENSE_GEMM,
    "kv_a_proj": _K.DENSE_GEMM,
    "kv_b_proj": _K.DENSE_GEMM,
    "qkv_proj": _K.DENSE_GEMM,
    "o_proj": _K.DENSE_GEMM,
    "attn_proj": _K.DENSE_GEMM,
    "indexer_q": _K.DENSE_GEMM,
    "indexer_k": _K.DENSE_GEMM,
    "indexer_weights": _K.DENSE_GEMM,
    "rope": _K.ROPE_QK_KV,
    "build_q": _K.ROPE_QK_KV,
    "build_qk": _K.ROPE_QK_KV,
    "kv_cache_write": _K.ROPE_QK_KV,
    "q_absorb_wuk": _K.MLA_ABSORB,
    "o_absorb_wuv": _K.MLA_ABSORB,
    # dense FFN (dense_ffn_ops)
    "ffn_norm": _K.NORM,
    "cast_ffn_in": _K.FP8_CAST,
    "mlp_gate_up": _K.DENSE_GEMM,
    "mlp_act_cast": _K.ACTIVATION,
    "mlp_down": _K.DENSE_GEMM,
    # MoE layer up to the dispatch (moe_pre_ops; ffn_norm above)
    "router_gemm": _K.ROUTING,
    "gating": _K.ROUTING,
    "cast_dispatch": _K.FP8_CAST,
    "ll_dispatch_send": _K.LOW_LATENCY_COMM,
    # shared experts (shared_ops)
    "cast_shared_in": _K.FP8_CAST,
    "shared_gate_up": _K.EXPERTS,
    "shared_act_cast": _K.ACTIVATION,
    "shared_down": _K.EXPERTS,
    # routed experts (routed_ops) and the combine's receive hook (combine_recv_ops)
    "permute": _K.PERMUTE,
    "ll_dispatch_recv": _K.LOW_LATENCY_COMM,
    "experts_gate_up": _K.EXPERTS,
    "experts_act_cast": _K.ACTIVATION,
    "experts_down": _K.EXPERTS,
    "unpermute_reduce": _K.PERMUTE,
    "ll_combine_send": _K.LOW_LATENCY_COMM,
    "ll_combine_recv_reduce": _K.LOW_LATENCY_COMM,
    "moe_output_add": _K.RESIDUAL_ADD,
    # output head (head_ops)
    "embedding": _K.HEAD,
    "final_norm": _K.HEAD,
    "lm_head": _K.HEAD,
    "sampling": _K.HEAD,
    # MTP module entry (mtp_join_ops)
    "mtp_embedding": _K.MTP,
    "mtp_norms": _K.MTP,
    "cast_mtp_proj_in": _K.MTP,
    "mtp_eh_proj": _K.MTP,
}


def operator_kind(name: str) -> OpKind:
    """The kind of the serving operator ``name``; raises ``ValueError`` for a name without one."""
    try:
        return OPERATOR_KINDS[name]
    except KeyError:
        raise ValueError(
            f"serving operator {name!r} has no kind: add it to OPERATOR_KINDS in "
            "sim/serving/operator_kinds.py, so that its time is booked under the right breakdown category"
        ) from None
