"""Attention kinds as small strategies, registered once: the attention block's operators and the
core attention's geometry for each kind (MHA/GQA, MLA, V3.2's sparse MLA, V4's compressed
attention). Nothing else in the inventory or the simulators branches on the attention kind.

A strategy's :meth:`AttentionStrategy.block` lists the block's operators between its RMSNorm and the
residual add as calls on a lowering (:mod:`moe.operators.lowering`), so that training and serving
time the same list. Where the two runtimes run different kernels the branch says so
(``b.serving``: the KV-cache write, MLA's absorbed decode form; ``b.training``: tensors kept for the
backward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from moe import accounting
from moe.operators.lowering import BF16, FP8_SCALE_BYTES_PER_VALUE, NORM_ROPE, Lowering, TrainingLowering
from moe.operators.op import Attention, Memory, OpKind, Phase

if TYPE_CHECKING:
    from moe.config import AttentionSpec, MoEModel

__all__ = [
    "AttentionStrategy",
    "BlockShape",
    "CompressedAttention",
    "GroupedQueryAttention",
    "MultiHeadLatentAttention",
    "SparseLatentAttention",
    "register",
    "strategy_for",
]


@dataclass(frozen=True)
class BlockShape:
    """What the attention block's shapes depend on besides the model: the tensor-parallel degree, the
    KV-cache bytes per element (serving), and for training the sequence layout (``seq_len`` tokens per
    sequence, ``micro_batch_seqs`` sequences, context-parallel degree ``cp``) and the attention dtype."""

    tp: int = 1
    kv_bytes_per_element: float = 2.0
    seq_len: int = 0
    micro_batch_seqs: int = 1
    cp: int = 1
    attention_dtype: str = "bf16"
    layer: int | None = None  # training: the layer's index, for models whose layers differ in window


class AttentionStrategy:
    """One attention kind. Subclasses list their operators in :meth:`block`."""

    name: ClassVar[str] = ""

    def applies(self, attention: AttentionSpec) -> bool:
        raise NotImplementedError

    def heads(self, model: MoEModel, tp: int) -> int:
        return max(1, model.attention.num_heads // tp)

    def block(self, model: MoEModel, b: Lowering, shape: BlockShape) -> None:
        raise NotImplementedError

    # ---- the core attention kernel -------------------------------------------------------------
    def pair_dims(self, model: MoEModel, decode: bool) -> tuple[int, int]:
        """(qk dim, v dim) of the served core attention's products."""
        a = model.attention
        return int(a.qk_head_dim), int(a.value_head_dim)

    def training_dims(self, model: MoEModel) -> tuple[int, int]:
        """(qk dim, v dim) of the training core attention (MLA runs un-absorbed in training)."""
        a = model.attention
        return int(a.head_dim), int(a.head_dim)

    def effective_keys(self, model: MoEModel, context: int, causal: bool, qk: int, v: int) -> float:
        """Keys per query averaged over layers, from the model's exact per-layer accounting (windowed,
        chunked, compressed and sparse layers; a Llama 4 chunked layer counts min(context, chunk)
        keys when ``causal`` is False)."""
        total = 0.0
        for layer in range(model.num_layers):
            main, idx = accounting.layer_attention_flops_per_token(model, layer, max(1, context), causal)
            total += main + idx
        return total / model.num_layers / (2.0 * model.attention.num_heads * (qk + v))

    def training_core(self, model: MoEModel, shape: BlockShape, tokens: int, backward: bool) -> Attention:
        """The training core attention of one micro-batch: causal over the sequence (the mean reach of
        a sliding window), this GPU's 1/cp share of it under context parallelism. A model whose layers
        alternate windowed and full attention (``layer_windows``, gpt-oss: even layers a 128-token
        window, odd layers full, HF config ``layer_types``) gets the window of ``shape.layer``; without
        a layer index, or for a model without per-layer windows, the model's ``sliding_window``."""
        a = model.attention
        qk, v = self.training_dims(model)
        ctx = shape.seq_len
        window = a.sliding_window
        if a.layer_windows and shape.layer is not None and 0 <= shape.layer < len(a.layer_windows):
            window = a.layer_windows[shape.layer]
        kv_len = min(ctx, window) if window else ctx
        return Attention(
            shape.micro_batch_seqs,
            ctx,
            kv_len,
            self.heads(model, shape.tp),
            qk,
            v,
            True,
            shape.attention_dtype,
            backward,
            None,
            1.0 if shape.cp == 1 else 1.0 / shape.cp,
        )

    def _training_core_ops(
        self, model: MoEModel, b: TrainingLowering, shape: BlockShape, pre_post: bool
    ) -> None:
        """Forward and backward core attention; FlashAttention-2/3's backward preprocess (D =
        rowsum(dO * O), the FP32 dQ accumulator zeroed) and postprocess (dQ converted to BF16) when
        ``pre_post``; the forward again under full recomputation."""
        fwd = self.training_core(model, shape, b.tokens, backward=False)
        b.emit("attention", OpKind.ATTENTION, fwd)
        b.emit(
            "attention bwd",
            OpKind.ATTENTION,
            self.training_core(model, shape, b.tokens, True),
            Phase.BACKWARD,
        )
        if pre_post:
            qk, v = self.training_dims(model)
            heads = self.heads(model, shape.tp)
            t = b.tokens
            pre = t * heads * (2 * v * BF16 + 4.0 + qk * 4.0)
            post = t * heads * qk * (4.0 + BF16)
            b.emit("attention bwd preprocess", OpKind.ATTENTION, Memory(pre), Phase.BACKWARD)
            b.emit("attention bwd dq convert", OpKind.ATTENTION, Memory(post), Phase.BACKWARD)
        if b.recompute == "full" or "core_attn" in b.modules:  # Megatron --recompute-modules core_attn
            b.emit("attention (recompute)", OpKind.ATTENTION, fwd, Phase.RECOMPUTE)

    def prefix_ops(self, model: MoEModel, b: Lowering, cached_tokens: int, tp: int) -> None:
        """Served prefill over a cached prefix: what re-reads it besides the core attention (none)."""

    def cp_bytes_per_token(self, model: MoEModel) -> float:
        """Bytes of one token's keys and values that context parallelism gathers (BF16)."""
        a = model.attention
        return 2 * a.num_kv_heads * a.head_dim * BF16


class GroupedQueryAttention(AttentionStrategy):
    """MHA and GQA (one fused qkv projection; KV heads replicated when tp exceeds them)."""

    name = "gqa"

    def applies(self, attention: AttentionSpec) -> bool:
        return attention.kind in ("mha", "gqa")

    def block(self, model: MoEModel, b: Lowering, shape: BlockShape) -> None:
        a, h, t = model.attention, model.hidden_size, b.tokens
        heads = self.heads(model, shape.tp)
        kvh = max(1, a.num_kv_heads // shape.tp)
        d = int(a.head_dim)
        b.input_projections([("qkv_proj", (heads + 2 * kvh) * d, False)], h, "cast_attn_in")
        if b.serving:
            if getattr(a, "qk_norm", False):
                b.norm("qk_norm", t * (heads + kvh) * d)
            b.memory("rope", OpKind.ROPE_QK_KV, 2.0 * 2.0 * t * (heads + kvh) * d, family=NORM_ROPE)
            b.memory(
                "kv_cache_write", OpKind.ROPE_QK_KV, t * 2 * kvh * d * (2.0 + shape.kv_bytes_per_element)
            )
            b.core_attention()
        elif isinstance(b, TrainingLowering):
            # Per-head RMSNorm of q and k where the model has it (Qwen3: q_norm / k_norm; Megatron
            # qk_layernorm), then RoPE on q and k (Megatron's apply_rotary_pos_emb, TE's fused RoPE
            # kernel: reads and writes q and k; its backward rotates the gradients the same way).
            # Neither is re-run by Megatron's "layernorm" recompute module (the two block norms only).
            qk_elems = t * (heads + kvh) * d
            if getattr(a, "qk_norm", False):
                b.memory("qk_norm", OpKind.NORM, 2.0 * qk_elems * 2.0, 3.0 * qk_elems * 2.0, family=NORM_ROPE)
            rope = 2.0 * 2.0 * qk_elems
            b.memory("rope", OpKind.ROPE_QK_KV, rope, rope, family=NORM_ROPE)
            self._training_core_ops(model, b, shape, pre_post=True)
        b.linear("o_proj", h, heads * d, cast_name="cast_o_in")


class MultiHeadLatentAttention(AttentionStrategy):
    """MLA (DeepSeek-V2/V3): low-rank query and a compressed latent KV with a decoupled RoPE key.
    Served prefill runs it un-absorbed (kv_b up-projection, per-head K/V); decode absorbs W_UK into
    the query and W_UV into the output (MQA over the latent cache, as FlashMLA does); training runs it
    un-absorbed and keeps the attention output in E5M6 for the backward under FP8 (V3-TR 3.3.4)."""

    name = "mla"

    def applies(self, attention: AttentionSpec) -> bool:
        return attention.kind == "mla" and not attention.index_topk

    def absorbed(self, b: Lowering) -> bool:
        return b.serving and b.decode

    def pair_dims(self, model: MoEModel, decode: bool) -> tuple[int, int]:
        a = model.attention
        if decode:
            return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank
        return int(a.qk_head_dim), int(a.value_head_dim)

    def training_dims(self, model: MoEModel) -> tuple[int, int]:
        a = model.attention
        return a.qk_nope_head_dim + a.qk_rope_head_dim, a.v_head_dim

    def effective_keys(self, model: MoEModel, context: int, causal: bool, qk: int, v: int) -> float:
        return float(context)

    def cp_bytes_per_token(self, model: MoEModel) -> float:
        a = model.attention
        return (a.kv_lora_rank + a.qk_rope_head_dim) * BF16

    def indexer(self, model: MoEModel, b: Lowering) -> None:
        """The sparse variant's lightning-indexer projections (none here)."""

    def block(self, model: MoEModel, b: Lowering, shape: BlockShape) -> None:
        a, h, t = model.attention, model.hidden_size, b.tokens
        heads = self.heads(model, shape.tp)
        rope, nope, lat, v = a.qk_rope_head_dim, a.qk_nope_head_dim, a.kv_lora_rank, a.v_head_dim
        qk = nope + rope
        if a.q_lora_rank:
            b.input_projections(
                [("q_a_proj", a.q_lora_rank, False), ("kv_a_proj", lat + rope, False)],
                h,
                "cast_attn_in",
                fused_name="qkv_a_proj",
            )
            b.norm("q_a_norm", t * a.q_lora_rank)
            # V3-TR 3.5.1: the up-projections are recomputed in the backward
            b.linear("q_b_proj", heads * qk, a.q_lora_rank, recomputed=True, cast_name="cast_q_b_in")
        else:
            b.input_projections(
                [("q_proj", heads * qk, False), ("kv_a_proj", lat + rope, False)], h, "cast_attn_in"
            )
        b.norm("kv_a_norm", t * lat)
        # RoPE on the decoupled parts: the query's per head, the key's one shared head
        rope_bytes = 2.0 * 2.0 * t * (heads + 1) * rope
        rerun = isinstance(b, TrainingLowering) and b.again(True)
        b.memory("rope", OpKind.ROPE_QK_KV, rope_bytes, rope_bytes, recompute=rerun, family=NORM_ROPE)
        self.indexer(model, b)
        kv_b = shape.kv_bytes_per_element
        absorbed = self.absorbed(b)
        if absorbed:
            b.gemm("q_absorb_wuk", OpKind.MLA_ABSORB, t, lat, nope, "bf16", batch=heads)
            # query [nope-absorbed 512 | rope 64] per head; latent + rope key appended to the cache
            b.memory("build_q", OpKind.ROPE_QK_KV, 2.0 * 2.0 * t * heads * (lat + rope))
            b.memory("kv_cache_write", OpKind.ROPE_QK_KV, t * (lat + rope) * (2.0 + kv_b))
        else:
            b.linear("kv_b_proj", heads * (nope + v), lat, recomputed=True, cast_name="cast_kv_b_in")
            if b.serving:
                # K = [k_nope | k_pe broadcast over heads], V split out of kv_b's output
                b.memory(
                    "build_qk", OpKind.ROPE_QK_KV, t * heads * (nope + v) * 2.0 + t * heads * (qk + v) * 2.0
                )
                b.memory("kv_cache_write", OpKind.ROPE_QK_KV, t * (lat + rope) * (2.0 + kv_b))
            elif isinstance(b, TrainingLowering):
                self._training_assembly(model, b, shape, heads)
        if b.serving:
            b.core_attention()
        elif isinstance(b, TrainingLowering):
            self._training_core_ops(model, b, shape, pre_post=True)
            if b.fp8:
                # V3-TR 3.3.4: the attention output (the output projection's input, also needed by the
                # attention backward) is cached in E5M6 (12 bits) per 1x128 tile, converted back later
                cached = t * heads * v * (BF16 + 1.5 + FP8_SCALE_BYTES_PER_VALUE)
                b.memory(
                    "cast attention out E5M6 cache",
                    OpKind.FP8_CAST,
                    cached,
                    cached,
                    backward_name="cast attention out E5M6 back",
                )
        if absorbed:
            b.gemm("o_absorb_wuv", OpKind.MLA_ABSORB, t, v, lat, "bf16", batch=heads)
        b.linear("o_proj", h, heads * v, cast_name="cast_o_in")

    def _training_assembly(self, model: MoEModel, b: TrainingLowering, shape: BlockShape, heads: int) -> None:
        """Training's un-absorbed MLA: the query [nope | rope] and the key [nope | rope broadcast over
        heads] assembled as the contiguous [t, heads, qk] tensors the attention kernel reads; the
        backward splits the gradients back (the key's rope part summed over heads). With context
        parallelism every rank up-projects the gathered latents of the other chunks (kv_b over the
        whole sequence: the busiest rank, holding the last chunk, needs all of it) and assembles them
        (their RoPE was applied by the rank that owns them, before the gather)."""
        a, t = model.attention, b.tokens
        r, nope = a.qk_rope_head_dim, a.qk_nope_head_dim
        qk = nope + r
        cp_keys = t * (shape.cp - 1)
        if cp_keys:
            b.linear(
                "kv_b_proj (gathered context keys)",
                heads * (nope + a.v_head_dim),
                a.kv_lora_rank,
                rows=cp_keys,
                recomputed=True,
            )
        assemble = t * heads * (qk + nope + r) * BF16 + 2 * t * heads * qk * BF16
        split = 2 * t * heads * qk * BF16 + t * (heads * (qk + nope) + r) * BF16
        assemble += cp_keys * (heads * (nope + qk) + r) * BF16
        split += cp_keys * (heads * (qk + nope) + r) * BF16
        b.memory(
            "mla q/k assemble",
            OpKind.ROPE_QK_KV,
            assemble,
            split,
            recompute=b.again(True),
            backward_name="mla q/k split bwd",
        )

    def prefix_ops(self, model: MoEModel, b: Lowering, cached_tokens: int, tp: int) -> None:
        """Served prefill over a cached prefix: MLA attends with full per-head keys and values, so the
        prefix (stored as latents) is up-projected again (its FP8 cast, the kv_b GEMM, K/V assembly)."""
        a = model.attention
        heads = self.heads(model, tp)
        c, lat, nope = int(cached_tokens), a.kv_lora_rank, a.qk_nope_head_dim
        qk = nope + a.qk_rope_head_dim
        b.linear(
            "prefix_kv_b_proj", heads * (nope + a.v_head_dim), lat, rows=c, cast_name="cast_prefix_kv_b_in"
        )
        b.memory(
            "prefix_build_kv",
            OpKind.ROPE_QK_KV,
            c * heads * (nope + a.v_head_dim) * 2.0 + c * heads * (qk + a.v_head_dim) * 2.0,
        )


class SparseLatentAttention(MultiHeadLatentAttention):
    """DeepSeek-V3.2's sparse attention: MLA in its MQA (absorbed) form over the top-k keys that a
    lightning indexer selects (DeepSeek-V3.2-Exp paper, Sec. 2), in prefill as in decode."""

    name = "mla_sparse"

    def applies(self, attention: AttentionSpec) -> bool:
        return attention.kind == "mla" and bool(attention.index_topk)

    def absorbed(self, b: Lowering) -> bool:
        return b.serving

    def pair_dims(self, model: MoEModel, decode: bool) -> tuple[int, int]:
        a = model.attention
        return a.kv_lora_rank + a.qk_rope_head_dim, a.kv_lora_rank

    def effective_keys(self, model: MoEModel, context: int, causal: bool, qk: int, v: int) -> float:
        return AttentionStrategy.effective_keys(self, model, context, causal, qk, v)

    def indexer(self, model: MoEModel, b: Lowering) -> None:
        """The indexer's projections (its scoring kernel is counted with the core attention)."""
        if not b.serving:
            return
        a, h, t = model.attention, model.hidden_size, b.tokens
        q_in = a.q_lora_rank or h
        g = b.gemm_dtype
        b.gemm("indexer_q", OpKind.DENSE_GEMM, t, a.index_n_heads * a.index_head_dim, q_in, g)
        b.gemm("indexer_k", OpKind.DENSE_GEMM, t, a.index_head_dim, h, g)
        b.gemm("indexer_weights", OpKind.DENSE_GEMM, t, a.index_n_heads, h, "bf16")

    def prefix_ops(self, model: MoEModel, b: Lowering, cached_tokens: int, tp: int) -> None:
        """Absorbed prefill reads the cached latents directly: no re-up-projection."""


class CompressedAttention(AttentionStrategy):
    """DeepSeek-V4's compressed sparse attention (CSA): low-rank query, one shared 512-d KV head,
    compressed KV with a top-k indexer and a sliding window, grouped low-rank output projection.

    Serving times the block coarsely: its attention weights as one GEMM (from the model's attention
    parameters per layer) and one RMSNorm pass; training lists the projections."""

    name = "csa"

    def applies(self, attention: AttentionSpec) -> bool:
        return attention.kind == "csa"

    def block(self, model: MoEModel, b: Lowering, shape: BlockShape) -> None:
        a, h, t = model.attention, model.hidden_size, b.tokens
        if b.serving:
            n = float(model.params_breakdown.get("attention", 0)) / model.num_layers / h / shape.tp
            b.input_projections([("attn_proj", n, False)], h, "cast_attn_in")
            b.norm("attn_inner_norms", t * h)
            b.core_attention()
            return
        assert isinstance(b, TrainingLowering)
        heads = self.heads(model, shape.tp)
        hd = a.head_dim
        q_in = a.q_lora_rank or h
        b.linear("q_a_proj", q_in, h)
        b.linear("q_b_proj", heads * hd, q_in, recomputed=True)
        b.linear("kv_proj", hd, h)
        if a.o_groups and a.o_lora_rank:
            b.linear("o_a_proj", a.o_groups * a.o_lora_rank, heads * hd // a.o_groups)
            b.linear("o_b_proj", h, a.o_groups * a.o_lora_rank)
        else:
            b.linear("o_proj", h, heads * hd)
        if a.index_n_heads:
            b.linear("indexer_proj", a.index_n_heads * a.index_head_dim, h)
        self._training_core_ops(model, b, shape, pre_post=False)

    def training_core(self, model: MoEModel, shape: BlockShape, tokens: int, backward: bool) -> Attention:
        a = model.attention
        if not a.index_topk:
            return super().training_core(model, shape, tokens, backward)
        # each query attends to the top-k selected compressed entries plus a sliding window (model
        # card: CSA top-k + window); not causal-triangular
        kv_len = min(shape.seq_len, a.index_topk + (a.sliding_window or 0))
        q_len = tokens // shape.micro_batch_seqs
        qk, v = self.training_dims(model)
        return Attention(
            shape.micro_batch_seqs,
            q_len,
            kv_len,
            self.heads(model, shape.tp),
            qk,
            v,
            False,
            shape.attention_dtype,
            backward,
        )


_REGISTRY: list[AttentionStrategy] = []


def register(strategy: AttentionStrategy) -> AttentionStrategy:
    """Add an attention kind; the first registered strategy that applies to a model is used."""
    _REGISTRY.append(strategy)
    return strategy


for _s in (
    SparseLatentAttention(),
    MultiHeadLatentAttention(),
    CompressedAttention(),
    GroupedQueryAttention(),
):
    register(_s)


def strategy_for(model: MoEModel) -> AttentionStrategy:
    """The registered strategy of ``model``'s attention kind."""
    for s in _REGISTRY:
        if s.applies(model.attention):
            return s
    known = ", ".join(s.name for s in _REGISTRY)
    raise ValueError(f"no operator strategy for attention kind {model.attention.kind!r}; registered: {known}")
