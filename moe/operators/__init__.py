"""The operator inventory both simulators time: one list per layer, every phase, kinds as an enum.

* :mod:`moe.operators.op`: :class:`Op` (name, :class:`OpKind`, :class:`Phase`, stage, the parallel
  degrees that split it, and its work: GEMM, grouped GEMM, bandwidth-bound kernel, attention, gating,
  permute, collective), each work record with its FLOPs and bytes;
* :mod:`moe.operators.attention`: each attention kind as one registered strategy;
* :mod:`moe.operators.lowering`: how a logical operator becomes training kernels (forward, the
  backward's data- and weight-gradient kernels, recomputation) or serving kernels (fused norms,
  shared casts);
* :mod:`moe.operators.inventory`: the layers, the output head and the MTP module, for both;
* :mod:`moe.operators.splits`: :func:`with_splits`, which parallel degrees split each operator.

Nothing here knows a GPU: :func:`sim.timing.op_time` times an operator's work.
"""

from __future__ import annotations

from moe.operators.attention import AttentionStrategy, BlockShape, register, strategy_for
from moe.operators.inventory import (
    ServingShape,
    TrainingShape,
    serving_attention_ops,
    serving_combine_recv_ops,
    serving_decode_core,
    serving_head_ops,
    serving_layer_ops,
    serving_mtp_join_ops,
    serving_prefill_core_ops,
    serving_routed_ops,
    training_unit_ops,
)
from moe.operators.op import (
    Attention,
    Comm,
    Gating,
    Gemm,
    Given,
    GroupedGemm,
    Memory,
    Op,
    OpKind,
    Permute,
    Phase,
    Work,
)
from moe.operators.splits import with_splits

__all__ = [
    "Attention",
    "AttentionStrategy",
    "BlockShape",
    "Comm",
    "Gating",
    "Gemm",
    "Given",
    "GroupedGemm",
    "Memory",
    "Op",
    "OpKind",
    "Permute",
    "Phase",
    "ServingShape",
    "TrainingShape",
    "Work",
    "register",
    "serving_attention_ops",
    "serving_combine_recv_ops",
    "serving_decode_core",
    "serving_head_ops",
    "serving_layer_ops",
    "serving_mtp_join_ops",
    "serving_prefill_core_ops",
    "serving_routed_ops",
    "strategy_for",
    "training_unit_ops",
    "with_splits",
]
