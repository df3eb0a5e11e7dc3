"""The per-layer operator list that the simulators time.

``layer_ops(model, layer, num_tokens, context_len, phase)`` returns, in execution order, the
operators one rank runs for one main layer: GEMMs (with their m x n x k shape), grouped expert GEMMs
(with tokens per local expert from a routing load), attention (with its batch, query and key
lengths), norms, gating, the expert-parallel dispatch and combine (with the bytes this rank sends)
and tensor-parallel all-reduces. FLOP counts agree with :mod:`moe.accounting`: for the "forward"
phase with uniform routing, the ops of all layers plus :func:`head_ops` sum to
``forward_flops_per_token(context_len) x num_tokens`` (up to the norms and other vector work, which
accounting leaves out).

Shapes: a GEMM computes [m, k] x [k, n] (m = tokens); ``batch`` > 1 is a batched GEMM of that many
independent products. Bytes are what the op reads and writes in HBM (weights once per op, activations
once), a roofline's view; communication ops carry ``comm_bytes`` sent by this rank and
``comm_group`` ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from moe import accounting

if TYPE_CHECKING:
    from moe.config import MoEModel

__all__ = ["OP_KINDS", "PHASES", "Op", "head_ops", "layer_ops", "ops_flops"]

OP_KINDS = (
    "gemm",
    "grouped_gemm",
    "attention",
    "norm",
    "elementwise",
    "gating",
    "dispatch",
    "combine",
    "allreduce",
)
PHASES = ("forward", "prefill", "decode", "backward")
PRECISIONS = accounting.RECIPES


@dataclass(frozen=True)
class Op:
    """One operator on one rank. SI units: FLOP and bytes.

    GEMMs: ``m``, ``n``, ``k`` (and ``batch`` for batched GEMMs); grouped GEMMs: ``group_sizes``
    (rows per local expert), ``n``, ``k``. Attention: ``num_seqs`` sequences of ``q_len`` queries,
    each scoring ``kv_len`` keys (for causal full attention ``causal`` is True and ``kv_len`` is the
    sequence length; for windowed, compressed or top-k attention ``kv_len`` is the mean number of
    keys per query and ``causal`` False), ``num_heads`` heads of ``qk_head_dim`` / ``v_head_dim``.
    Communication: ``comm_bytes`` sent by this rank to the other ``comm_group - 1`` ranks.
    Norms and elementwise ops: ``m`` is the number of elements touched.
    """

    name: str
    kind: str
    layer: int = -1
    m: int = 0
    n: int = 0
    k: int = 0
    batch: int = 1
    group_sizes: tuple[int, ...] = ()
    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0
    comm_bytes: float = 0.0
    comm_group: int = 1
    dtype: str = "bf16"
    num_seqs: float = 0.0
    q_len: int = 0
    kv_len: float = 0.0
    num_heads: int = 0
    qk_head_dim: int = 0
    v_head_dim: int = 0
    causal: bool = False

    @property
    def bytes_moved(self) -> float:
        return self.bytes_read + self.bytes_written

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["group_sizes"] = list(self.group_sizes)
        return d


def ops_flops(ops: Sequence[Op], kinds: Sequence[str] | None = None) -> float:
    """Sum of ``flops`` over ``ops`` (optionally only the given kinds)."""
    return float(sum(op.flops for op in ops if kinds is None or op.kind in kinds))


# ---------------------------------------------------------------------------------------------


_ACT = 2.0  # bytes per BF16 activation element


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
        raise ValueError(f"{what} must be a positive integer; got {value!r}.")
    return int(value)


class _Builder:
    def __init__(self, layer: int, precision: str):
        self.layer = layer
        self.precision = precision
        self.ops: list[Op] = []

    def weight_dtype(self, expert: bool = False, bf16: bool = False) -> str:
        if bf16 or self.precision == "bf16":
            return "bf16"
        if expert and self.precision == "fp4_experts":
            return "fp4"
        return "fp8"

    def gemm(
        self, name: str, m: int, n: int, k: int, *, expert: bool = False, bf16: bool = False, batch: int = 1
    ) -> None:
        dtype = self.weight_dtype(expert, bf16)
        w = accounting.bytes_per_element(dtype)
        a_in = 1.0 if dtype in ("fp8", "fp4") else _ACT
        self.ops.append(
            Op(
                name=name,
                kind="gemm",
                layer=self.layer,
                m=m,
                n=n,
                k=k,
                batch=batch,
                flops=2.0 * m * n * k * batch,
                bytes_read=batch * (m * k * a_in + k * n * w),
                bytes_written=batch * m * n * _ACT,
                dtype=dtype,
            )
        )

    def grouped(self, name: str, group_sizes: tuple[int, ...], n: int, k: int) -> None:
        dtype = self.weight_dtype(expert=True)
        w = accounting.bytes_per_element(dtype)
        a_in = 1.0 if dtype in ("fp8", "fp4") else _ACT
        rows = sum(group_sizes)
        active = sum(1 for g in group_sizes if g > 0)
        self.ops.append(
            Op(
                name=name,
                kind="grouped_gemm",
                layer=self.layer,
                m=rows,
                n=n,
                k=k,
                group_sizes=group_sizes,
                flops=2.0 * rows * n * k,
                bytes_read=rows * k * a_in + active * k * n * w,
                bytes_written=rows * n * _ACT,
                dtype=dtype,
            )
        )

    def vector(
        self, name: str, kind: str, elements: float, flops_per_element: float = 4.0, dtype: str = "bf16"
    ) -> None:
        b = accounting.bytes_per_element(dtype)
        self.ops.append(
            Op(
                name=name,
                kind=kind,
                layer=self.layer,
                m=int(elements),
                flops=flops_per_element * elements,
                bytes_read=elements * b,
                bytes_written=elements * b,
                dtype=dtype,
            )
        )

    def comm(self, name: str, kind: str, comm_bytes: float, group: int, dtype: str) -> None:
        self.ops.append(
            Op(
                name=name,
                kind=kind,
                layer=self.layer,
                comm_bytes=comm_bytes,
                comm_group=group,
                dtype=dtype,
                bytes_read=comm_bytes,
                bytes_written=comm_bytes,
            )
        )

    def attention(
        self,
        name: str,
        *,
        flops: float,
        num_seqs: float,
        q_len: int,
        kv_len: float,
        heads: int,
        qk: int,
        v: int,
        causal: bool,
        bytes_read: float,
        bytes_written: float,
    ) -> None:
        self.ops.append(
            Op(
                name=name,
                kind="attention",
                layer=self.layer,
                flops=flops,
                bytes_read=bytes_read,
                bytes_written=bytes_written,
                dtype="bf16",
                num_seqs=num_seqs,
                q_len=q_len,
                kv_len=kv_len,
                num_heads=heads,
                qk_head_dim=qk,
                v_head_dim=v,
                causal=causal,
            )
        )


def _split(value: int, tp: int, what: str) -> int:
    if value % tp:
        raise ValueError(f"{what} ({value}) must divide by tp={tp}.")
    return value // tp


def _local_group_sizes(
    model: MoEModel, tokens: int, ep: int, ep_rank: int, expert_loads: Any, group_sizes: Any
) -> tuple[int, ...]:
    from moe import routing

    if group_sizes is not None:
        sizes = tuple(int(g) for g in group_sizes)
        if any(g < 0 for g in sizes):
            raise ValueError("group_sizes must be non-negative token counts.")
        return sizes
    experts = model.num_routed_experts
    if experts % ep:
        raise ValueError(
            f"{model.name} has {experts} routed experts, which do not divide by ep={ep}; pass group_sizes "
            "(e.g. from routing.redundant_placement) for uneven placements."
        )
    if not 0 <= ep_rank < ep:
        raise ValueError(f"ep_rank must be from 0 to {ep - 1}; got {ep_rank}.")
    if expert_loads is None:
        loads = routing.expert_loads(tokens * ep, experts, model.experts_per_token, skew=0.0)
    else:
        loads = np.asarray(expert_loads)
        if loads.shape != (experts,) or np.any(loads < 0):
            raise ValueError(
                f"expert_loads must hold {experts} non-negative token counts, one per routed expert."
            )
    per_rank = experts // ep
    return tuple(int(x) for x in loads[ep_rank * per_rank : (ep_rank + 1) * per_rank])


def layer_ops(
    model: MoEModel,
    layer: int,
    num_tokens: int,
    context_len: int,
    phase: str = "forward",
    *,
    tp: int = 1,
    ep: int = 1,
    ep_rank: int = 0,
    expert_loads: Any = None,
    group_sizes: Any = None,
    precision: str = "bf16",
    kv_dtype: str = "bf16",
    dispatch_dtype: str | None = None,
) -> list[Op]:
    """Operators of layer ``layer`` on one rank.

    ``layer`` counts main layers from 0; ``num_layers + j`` is MTP module j's layer (its joining
    projection and one MoE decoder layer; the shared output head is in :func:`head_ops`).

    ``num_tokens``: tokens this rank's attention processes. Phases: "forward" (training forward),
    "prefill" (same shapes: sequences of ``context_len`` tokens, causal), "decode" (``num_tokens``
    sequences, one new token each, attending to ``context_len`` cached tokens; MLA runs absorbed, as
    FlashMLA does), "backward" (each GEMM becomes a data-gradient and a weight-gradient GEMM, attention
    2.5x its forward FLOP (FlashAttention-2: five matrix products against two), dispatch and combine
    swap roles and both carry BF16 gradients).

    Parallelism: ``tp`` splits attention heads, dense FFN and shared experts (an all-reduce follows
    each block when tp > 1; tokens enter dispatch sequence-parallel, num_tokens / tp per rank);
    ``ep`` spreads routed experts over ranks; ``expert_loads`` (tokens per routed expert over the
    whole EP group) or ``group_sizes`` (tokens per expert hosted on this rank) set the grouped-GEMM
    groups, uniform routing by default. ``precision`` is a recipe of :func:`accounting.memory_bytes`:
    "fp8" runs linear GEMMs in FP8 and dispatches in FP8 (DeepSeek-V3), "fp4_experts" also stores
    routed-expert weights in FP4.
    """
    model.check_layer(layer, allow_mtp=True)
    tokens = _positive_int(num_tokens, "num_tokens")
    length = _positive_int(context_len, "context_len")
    tp = _positive_int(tp, "tp")
    ep = _positive_int(ep, "ep")
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}.")
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; allowed: {', '.join(PRECISIONS)}.")
    accounting.entry_bytes(1, 0, kv_dtype)
    if dispatch_dtype is None:
        dispatch_dtype = "bf16" if precision == "bf16" else "fp8"
    accounting.bytes_per_element(dispatch_dtype)
    fwd_phase = "forward" if phase == "backward" else phase
    b = _Builder(layer, precision)
    if layer >= model.num_layers:
        # MTP module (V3-TR Sec. 2.2, Fig. 3): RMSNorm the hidden state and the next token's embedding,
        # concatenate, project 2h -> h (V4 splits it into e_proj and h_proj), then one decoder layer.
        h = model.hidden_size
        b.vector("mtp_norms", "norm", 2 * tokens * h)
        b.gemm("mtp_proj", tokens, h, 2 * h)
    _attention_ops(b, model, layer, tokens, length, fwd_phase, tp, kv_dtype)
    if tp > 1:
        b.comm("attn_allreduce", "allreduce", tokens * model.hidden_size * _ACT, tp, "bf16")
    _ffn_ops(b, model, layer, tokens, tp, ep, ep_rank, expert_loads, group_sizes, dispatch_dtype)
    if phase == "backward":
        return _backward(b.ops)
    return b.ops


def _attention_ops(
    b: _Builder, model: MoEModel, layer: int, tokens: int, length: int, phase: str, tp: int, kv_dtype: str
) -> None:
    a = model.attention
    h = model.hidden_size
    hc = model.hc_mult if model.hc_mult > 1 else 0
    if hc:
        mix = (2 + hc) * hc
        b.gemm("hc_attn_pre", tokens, mix, hc * h, bf16=True)
        b.vector("hc_attn_sinkhorn", "elementwise", tokens * hc * h, 4.0)
    b.vector("attn_norm", "norm", tokens * h)
    heads = _split(a.num_heads, tp, "num_attention_heads")
    decode = phase == "decode"
    kv_b = accounting.entry_bytes(128, 0, kv_dtype) / 128  # bytes per cached element (scales included)
    main_per_token, idx_per_token = accounting.layer_attention_flops_per_token(
        model, layer, length, not decode
    )
    reach_keys = main_per_token / accounting.pair_flops(model)[0]
    num_seqs = tokens if decode else tokens / length
    q_len = 1 if decode else length
    kv_layer_bytes = accounting.layer_kv_bytes(model, layer, length, kv_dtype)["attention"]

    if a.kind in ("mha", "gqa"):
        kv_heads = max(1, a.num_kv_heads // tp)  # KV heads are replicated when tp exceeds them
        b.gemm("qkv_proj", tokens, (heads + 2 * kv_heads) * a.head_dim, h)
        if a.qk_norm:
            b.vector("qk_norm", "norm", tokens * (heads + kv_heads) * a.head_dim)
        # sliding-window and chunked (Llama 4) layers score the mean reach, not the causal square
        full = a.window(layer) is None and a.chunk(layer) is None
        flops = tokens * main_per_token / tp
        b.attention(
            "attention",
            flops=flops,
            num_seqs=num_seqs,
            q_len=q_len,
            kv_len=length if (full and not decode) else reach_keys,
            heads=heads,
            qk=a.head_dim,
            v=a.head_dim,
            causal=full and not decode,
            bytes_read=(
                num_seqs * kv_layer_bytes / tp
                if decode
                else tokens * (heads + 2 * kv_heads) * a.head_dim * _ACT
            ),
            bytes_written=tokens * heads * a.head_dim * _ACT,
        )
        b.gemm("o_proj", tokens, h, heads * a.head_dim)
    elif a.kind == "mla":
        qk = a.qk_nope_head_dim + a.qk_rope_head_dim
        if a.q_lora_rank:
            b.gemm("q_a_proj", tokens, a.q_lora_rank, h)
            b.vector("q_a_norm", "norm", tokens * a.q_lora_rank)
            b.gemm("q_b_proj", tokens, heads * qk, a.q_lora_rank)
        else:
            b.gemm("q_proj", tokens, heads * qk, h)
        b.gemm("kv_a_proj", tokens, a.kv_lora_rank + a.qk_rope_head_dim, h)
        b.vector("kv_a_norm", "norm", tokens * a.kv_lora_rank)
        absorbed = decode or bool(a.index_topk)
        if a.index_topk:
            q_in = a.q_lora_rank or h
            b.gemm("indexer_q", tokens, a.index_n_heads * a.index_head_dim, q_in)
            b.gemm("indexer_k", tokens, a.index_head_dim, h)
            b.gemm("indexer_weights", tokens, a.index_n_heads, h, bf16=True)
            idx_keys = idx_per_token / accounting.pair_flops(model)[1]
            b.attention(
                "indexer",
                flops=tokens * idx_per_token,
                num_seqs=num_seqs,
                q_len=q_len,
                kv_len=length if not decode else idx_keys,
                heads=a.index_n_heads,
                qk=a.index_head_dim,
                v=0,
                causal=not decode,
                bytes_read=num_seqs * length * a.index_head_dim * kv_b
                + tokens * a.index_n_heads * a.index_head_dim,
                bytes_written=tokens * min(a.index_topk, length) * 4.0,
            )
        if absorbed:
            # Absorb W_UK into the query and W_UV into the output (MQA form over the latent cache).
            b.gemm("q_absorb", tokens, a.kv_lora_rank, a.qk_nope_head_dim, batch=heads, bf16=True)
            lat = a.kv_lora_rank + a.qk_rope_head_dim
            if a.index_topk:
                flops = tokens * main_per_token / tp
            else:
                flops = tokens * reach_keys * 2.0 * heads * (lat + a.kv_lora_rank)
            b.attention(
                "attention",
                flops=flops,
                num_seqs=num_seqs,
                q_len=q_len,
                kv_len=reach_keys if (decode or a.index_topk) else length,
                heads=heads,
                qk=lat,
                v=a.kv_lora_rank,
                causal=not (decode or a.index_topk),
                bytes_read=(num_seqs * kv_layer_bytes if decode else tokens * lat * kv_b)
                + tokens * heads * lat * _ACT,
                bytes_written=tokens * heads * a.kv_lora_rank * _ACT,
            )
            b.gemm("o_absorb", tokens, a.v_head_dim, a.kv_lora_rank, batch=heads, bf16=True)
        else:
            b.gemm("kv_b_proj", tokens, heads * (a.qk_nope_head_dim + a.v_head_dim), a.kv_lora_rank)
            b.attention(
                "attention",
                flops=tokens * main_per_token / tp,
                num_seqs=num_seqs,
                q_len=q_len,
                kv_len=length,
                heads=heads,
                qk=qk,
                v=a.v_head_dim,
                causal=True,
                bytes_read=tokens * heads * (2 * qk + a.v_head_dim) * _ACT,
                bytes_written=tokens * heads * a.v_head_dim * _ACT,
            )
        b.gemm("o_proj", tokens, h, heads * a.v_head_dim)
    else:  # csa (DeepSeek-V4)
        d = a.head_dim
        ratio = a.compress_ratio(layer)
        b.gemm("wq_a", tokens, a.q_lora_rank, h)
        b.vector("q_norm", "norm", tokens * a.q_lora_rank)
        b.gemm("wq_b", tokens, heads * d, a.q_lora_rank)
        b.gemm("wkv", tokens, d, h)
        b.vector("kv_norm", "norm", tokens * d)
        if ratio:
            coff = 2 if ratio == 4 else 1
            b.gemm("compressor", tokens, 2 * coff * d, h, bf16=True)
            b.vector("compressor_pool", "elementwise", tokens * coff * d, 6.0)
        if ratio == 4:
            b.gemm("indexer_wq_b", tokens, a.index_n_heads * a.index_head_dim, a.q_lora_rank)
            b.gemm("indexer_weights", tokens, a.index_n_heads, h, bf16=True)
            b.gemm("indexer_compressor", tokens, 2 * 2 * a.index_head_dim, h, bf16=True)
            idx_keys = idx_per_token / accounting.pair_flops(model)[1]
            b.attention(
                "indexer",
                flops=tokens * idx_per_token,
                num_seqs=num_seqs,
                q_len=q_len,
                kv_len=idx_keys,
                heads=a.index_n_heads,
                qk=a.index_head_dim,
                v=0,
                causal=False,
                bytes_read=num_seqs * (length // 4) * a.index_head_dim * kv_b,
                bytes_written=tokens * min(a.index_topk, max(1, length // 4)) * 4.0,
            )
        b.attention(
            "attention",
            flops=tokens * main_per_token / tp,
            num_seqs=num_seqs,
            q_len=q_len,
            kv_len=reach_keys,
            heads=heads,
            qk=d,
            v=d,
            causal=False,
            bytes_read=(num_seqs * kv_layer_bytes if decode else tokens * d * kv_b)
            + tokens * heads * d * _ACT,
            bytes_written=tokens * heads * d * _ACT,
        )
        groups = _split(a.o_groups, tp, "o_groups")
        b.gemm("wo_a", tokens, a.o_lora_rank, a.num_heads * d // a.o_groups, batch=groups)
        b.gemm("wo_b", tokens, h, groups * a.o_lora_rank)
    if hc:
        b.vector("hc_attn_post", "elementwise", tokens * hc * h, 2.0 * hc)


def _ffn_ops(
    b: _Builder,
    model: MoEModel,
    layer: int,
    tokens: int,
    tp: int,
    ep: int,
    ep_rank: int,
    expert_loads: Any,
    group_sizes: Any,
    dispatch_dtype: str,
) -> None:
    h = model.hidden_size
    hc = model.hc_mult if model.hc_mult > 1 else 0
    if hc:
        mix = (2 + hc) * hc
        b.gemm("hc_ffn_pre", tokens, mix, hc * h, bf16=True)
        b.vector("hc_ffn_sinkhorn", "elementwise", tokens * hc * h, 4.0)
    b.vector("ffn_norm", "norm", tokens * h)
    if not model.is_moe_layer(layer):
        inter = _split(model.intermediate_size, tp, "intermediate_size")
        b.gemm("mlp_gate_up", tokens, 2 * inter, h)
        b.vector("mlp_act", "elementwise", tokens * inter, 4.0)
        b.gemm("mlp_down", tokens, h, inter)
        if tp > 1:
            b.comm("mlp_allreduce", "allreduce", tokens * h * _ACT, tp, "bf16")
        if hc:
            b.vector("hc_ffn_post", "elementwise", tokens * hc * h, 2.0 * hc)
        return
    experts = model.num_routed_experts
    top_k = model.experts_per_token
    disp_tokens = math.ceil(tokens / tp)
    b.ops.append(
        Op(
            name="gate",
            kind="gating",
            layer=layer,
            m=disp_tokens,
            n=experts,
            k=h,
            flops=2.0 * disp_tokens * experts * h + 4.0 * disp_tokens * experts,
            bytes_read=disp_tokens * h * _ACT + experts * h * _ACT,
            bytes_written=disp_tokens * top_k * 8.0,
            dtype="bf16",
        )
    )
    sizes = _local_group_sizes(model, disp_tokens, ep, ep_rank, expert_loads, group_sizes)
    d_b = accounting.bytes_per_element(dispatch_dtype)
    # FP8 dispatch carries one FP32 scale per 128 channels (DeepEP / V3-TR Sec. 3.3.4).
    per_token = h * d_b + (h / 128 * 4.0 if dispatch_dtype == "fp8" else 0.0)
    remote = (ep - 1) / ep
    if ep > 1:
        b.comm("dispatch", "dispatch", disp_tokens * top_k * per_token * remote, ep, dispatch_dtype)
    inter = model.moe_intermediate_size
    b.grouped("experts_gate_up", sizes, 2 * inter, h)
    b.vector("experts_act", "elementwise", sum(sizes) * inter, 4.0)
    b.grouped("experts_down", sizes, h, inter)
    if ep > 1:
        b.comm("combine", "combine", disp_tokens * top_k * h * _ACT * remote, ep, "bf16")
    if model.shared_expert_intermediate_size:
        s_inter = _split(model.shared_expert_intermediate_size, tp, "shared expert intermediate size")
        b.gemm("shared_gate_up", tokens, 2 * s_inter, h)
        b.vector("shared_act", "elementwise", tokens * s_inter, 4.0)
        b.gemm("shared_down", tokens, h, s_inter)
        if model.shared_expert_gate:
            b.gemm("shared_expert_gate", tokens, 1, h, bf16=True)
    b.vector("moe_combine_sum", "elementwise", disp_tokens * top_k * h, 2.0)
    if tp > 1:
        b.comm("moe_allreduce", "allreduce", tokens * h * _ACT, tp, "bf16")
    if hc:
        b.vector("hc_ffn_post", "elementwise", tokens * hc * h, 2.0 * hc)


def _backward(forward: list[Op]) -> list[Op]:
    """Backward operators, in reverse order of the forward ones."""
    out: list[Op] = []
    for op in reversed(forward):
        if op.kind == "gemm":
            w = accounting.bytes_per_element(op.dtype)
            a_in = 1.0 if op.dtype in ("fp8", "fp4") else _ACT
            out.append(
                replace(
                    op,
                    name=op.name + "_dgrad",
                    m=op.m,
                    n=op.k,
                    k=op.n,
                    bytes_read=op.batch * (op.m * op.n * a_in + op.k * op.n * w),
                    bytes_written=op.batch * op.m * op.k * _ACT,
                )
            )
            out.append(
                replace(
                    op,
                    name=op.name + "_wgrad",
                    m=op.k,
                    n=op.n,
                    k=op.m,
                    bytes_read=op.batch * (op.m * op.k + op.m * op.n) * a_in,
                    bytes_written=op.batch * op.k * op.n * 4.0,
                )
            )
        elif op.kind == "grouped_gemm":
            out.append(
                replace(
                    op,
                    name=op.name + "_dgrad",
                    n=op.k,
                    k=op.n,
                    bytes_read=op.bytes_read,
                    bytes_written=op.m * op.k * _ACT,
                )
            )
            out.append(
                replace(
                    op,
                    name=op.name + "_wgrad",
                    bytes_written=sum(1 for g in op.group_sizes if g > 0) * op.n * op.k * 4.0,
                )
            )
        elif op.kind == "attention":
            out.append(
                replace(
                    op,
                    name=op.name + "_bwd",
                    flops=2.5 * op.flops,
                    bytes_read=2.0 * op.bytes_read + op.bytes_written,
                    bytes_written=op.bytes_read,
                )
            )
        elif op.kind == "dispatch":
            scale = 2.0 / accounting.bytes_per_element(op.dtype) if op.dtype != "bf16" else 1.0
            out.append(
                replace(
                    op,
                    name="dispatch_bwd",
                    kind="combine",
                    comm_bytes=op.comm_bytes * scale,
                    bytes_read=op.comm_bytes * scale,
                    bytes_written=op.comm_bytes * scale,
                    dtype="bf16",
                )
            )
        elif op.kind == "combine":
            out.append(replace(op, name="combine_bwd", kind="dispatch", dtype="bf16"))
        elif op.kind == "allreduce":
            out.append(replace(op, name=op.name + "_bwd"))
        else:
            out.append(
                replace(op, name=op.name + "_bwd", flops=2.0 * op.flops, bytes_read=2.0 * op.bytes_read)
            )
    return out


def head_ops(model: MoEModel, num_tokens: int, phase: str = "forward", *, tp: int = 1) -> list[Op]:
    """Embedding lookup, final norm and output head (logits) for ``num_tokens`` tokens.

    In "decode" only the new tokens reach the head (one per sequence): pass the batch size.
    """
    tokens = _positive_int(num_tokens, "num_tokens")
    tp = _positive_int(tp, "tp")
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}; allowed: {', '.join(PHASES)}.")
    h = model.hidden_size
    b = _Builder(-1, "bf16")
    b.vector("embedding", "elementwise", tokens * h, 0.0)
    if model.hc_mult > 1:
        b.gemm("hc_head", tokens, model.hc_mult, model.hc_mult * h, bf16=True)
    b.vector("final_norm", "norm", tokens * h)
    vocab = math.ceil(model.vocab_size / tp)
    b.gemm("lm_head", tokens, vocab, h, bf16=True)
    if phase == "backward":
        return _backward(b.ops)
    return b.ops
