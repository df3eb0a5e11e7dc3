"""Exact accounting from a model configuration: parameters, FLOPs, KV cache and memory.

Conventions (fixed in ``DESIGN.md``):

* ``total_params`` and ``active_params`` exclude the multi-token-prediction (MTP) modules, which are
  itemised under ``params_breakdown["mtp"]``; ``active_params`` includes the input embedding, the
  output head and the router. Active routed-expert parameters are ``top_k / num_routed_experts`` of
  a layer's routed experts (the experts of one layer all have the same size).
* ``kv_cache_bytes_per_token(dtype, context_len)``: the cache one sequence of ``context_len`` tokens
  holds, divided by ``context_len``; MTP layers excluded.
* ``training_flops_per_token(seq_len, causal)`` = 6 x active non-embedding parameters (output head
  included) + 3 x forward attention FLOP at ``seq_len`` (Kaplan et al. 2020, "Scaling laws", eq. 2.1
  for the 6N term; the attention term as DeepSeek counts it for the MFU of ISCA'25 Table 4).

Parameter counts are built tensor by tensor from the shapes of the reference implementations
(Hugging Face ``modeling_*.py``; DeepSeek's ``inference/model.py`` for V3.2 and V4), so every term
below names the tensor it counts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from moe.spec import ModelSpec

__all__ = [
    "BYTES_PER_ELEMENT",
    "KV_DTYPES",
    "layer_kv_bytes",
    "RECIPES",
    "FlopsBreakdown",
    "MemoryBreakdown",
    "active_non_embedding_params",
    "active_params_breakdown",
    "attention_flops_per_token",
    "bytes_per_element",
    "forward_flops_per_token",
    "kv_cache_breakdown",
    "kv_cache_bytes_per_token",
    "layer_params",
    "memory_bytes",
    "params_breakdown",
    "training_flops_per_token",
    "weight_scale_bytes",
    "WEIGHT_SCALE_BYTES",
]

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,
}

RECIPES = ("bf16", "fp8", "fp4_experts")

COMPONENTS = (
    "embedding",
    "attention",
    "dense_ffn",
    "routed_experts",
    "shared_experts",
    "router",
    "norms",
    "hyper_connections",
    "head",
)


# Scale bytes per weight value of block-scaled formats: MXFP4 keeps one E8M0 byte per 32 values
# (OCP Microscaling Formats (MX) Specification v1.0, 2023: 32-element blocks, 8-bit shared scale), as
# gpt-oss and DeepSeek-V4's FP4 experts ship. DeepSeek's FP8 keeps one FP32 scale per 128 x 128 block
# (4 / 16,384 bytes per value, V3-TR 3.3.2), too small to count.
WEIGHT_SCALE_BYTES = {"fp4": 1.0 / 32.0}


def weight_scale_bytes(dtype: str) -> float:
    """Bytes of block scales per weight value stored in ``dtype`` (0 for unscaled formats)."""
    return WEIGHT_SCALE_BYTES.get(str(dtype).lower(), 0.0)


def bytes_per_element(dtype: str) -> float:
    """Bytes per stored element for ``dtype``; unknown names raise ValueError listing the known ones."""
    if not isinstance(dtype, str) or dtype.lower() not in BYTES_PER_ELEMENT:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {', '.join(BYTES_PER_ELEMENT)}.")
    return BYTES_PER_ELEMENT[dtype.lower()]


def _check_len(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{what} must be a positive integer number of tokens; got {value!r}.")
    if isinstance(value, float) and (not math.isfinite(value) or value != int(value)):
        raise ValueError(f"{what} must be a positive integer number of tokens; got {value!r}.")
    if value <= 0:
        raise ValueError(f"{what} must be a positive integer number of tokens; got {value!r}.")
    return int(value)


def _check_causal(value: Any) -> bool:
    """``causal`` must be a real bool (a string such as "no" is truthy and would count as causal)."""
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"causal must be True or False; got {value!r}.")
    return bool(value)


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------


@dataclass
class _Count:
    """Parameters of one component, split into GEMM weights (2 FLOP per token each) and the rest."""

    gemm: int = 0
    other: int = 0
    bf16_gemm: int = 0  # the part of ``gemm`` that DeepSeek's FP8 checkpoints keep in BF16

    @property
    def total(self) -> int:
        return self.gemm + self.other


def _attention_params(model: ModelSpec, layer: int | None) -> tuple[_Count, int]:
    """(attention parameters, norm weights inside attention) of one layer.

    ``layer`` None means the MTP module's layer.
    """
    a = model.attention
    h = model.hidden_size
    c = _Count()
    norms = 0
    if a.kind == "mla":
        # DeepSeek-V2/V3 (HF modeling_deepseek.py DeepseekV3Attention).
        q_width = a.num_heads * (a.qk_nope_head_dim + a.qk_rope_head_dim)
        if a.q_lora_rank:
            c.gemm += h * a.q_lora_rank + a.q_lora_rank * q_width  # q_a_proj, q_b_proj
            norms += a.q_lora_rank  # q_a_layernorm
        else:
            c.gemm += h * q_width  # q_proj (V2-Lite)
        c.gemm += h * (a.kv_lora_rank + a.qk_rope_head_dim)  # kv_a_proj_with_mqa
        norms += a.kv_lora_rank  # kv_a_layernorm
        c.gemm += a.kv_lora_rank * a.num_heads * (a.qk_nope_head_dim + a.v_head_dim)  # kv_b_proj
        c.gemm += a.num_heads * a.v_head_dim * h  # o_proj
        if a.qkv_bias:
            c.other += (a.q_lora_rank or q_width) + a.kv_lora_rank + a.qk_rope_head_dim
        if a.o_bias:
            c.other += h
        if a.index_topk:
            # V3.2 lightning indexer (DeepSeek-V3.2-Exp inference/model.py Indexer): wq_b, wk,
            # k_norm (LayerNorm: weight and bias), weights_proj.
            q_in = a.q_lora_rank or h
            c.gemm += q_in * a.index_n_heads * a.index_head_dim + h * a.index_head_dim + h * a.index_n_heads
            c.bf16_gemm += h * a.index_n_heads  # weights_proj is BF16
            norms += 2 * a.index_head_dim
    elif a.kind in ("mha", "gqa"):
        q = a.num_heads * a.head_dim
        kv = a.num_kv_heads * a.head_dim
        c.gemm += h * q + 2 * h * kv + q * h  # q_proj, k_proj, v_proj, o_proj
        if a.qkv_bias:
            c.other += q + 2 * kv
        if a.o_bias:
            c.other += h
        if a.sinks:
            c.other += a.num_heads  # gpt-oss learned attention sinks
        if a.qk_norm:
            norms += 2 * a.head_dim  # Qwen3 q_norm, k_norm
    elif a.kind == "csa":
        # DeepSeek-V4 (inference/model.py Attention, Compressor, Indexer); shapes checked against the
        # V4-Pro safetensors listing: wq_a [1536,7168], wq_b [65536,1536], wkv [512,7168],
        # wo_a [16384,4096], wo_b [7168,16384], compressor wkv [512|1024,7168], ape [128,512]|[4,1024].
        d = a.head_dim
        ratio = a.compress_ratio(model.num_layers if layer is None else layer)
        c.gemm += h * a.q_lora_rank + a.q_lora_rank * a.num_heads * d  # wq_a, wq_b
        norms += a.q_lora_rank + d  # q_norm, kv_norm
        c.gemm += h * d  # wkv (one shared K=V head)
        c.gemm += a.num_heads * d * a.o_lora_rank  # wo_a: o_groups x [o_lora, heads*d/o_groups]
        c.gemm += a.o_groups * a.o_lora_rank * h  # wo_b
        c.other += a.num_heads  # attn_sink
        if ratio:
            coff = 2 if ratio == 4 else 1  # ratio-4 compression uses overlapping windows
            c.gemm += 2 * h * coff * d  # compressor wkv, wgate (BF16 in the checkpoint)
            c.bf16_gemm += 2 * h * coff * d
            c.other += ratio * coff * d  # compressor ape
            norms += d  # compressor norm
        if ratio == 4:
            ihd = a.index_head_dim
            c.gemm += (
                a.q_lora_rank * a.index_n_heads * ihd + h * a.index_n_heads
            )  # indexer wq_b, weights_proj
            c.gemm += 2 * h * 2 * ihd  # indexer compressor wkv, wgate (overlapping: 2 x ihd)
            c.bf16_gemm += h * a.index_n_heads + 2 * h * 2 * ihd  # weights_proj and compressor: BF16
            c.other += 4 * 2 * ihd  # indexer compressor ape
            norms += ihd  # indexer compressor norm
    else:  # pragma: no cover - the parser only builds the kinds above
        raise ValueError(f"unknown attention kind {a.kind!r}")
    return c, norms


def _expert_params(model: ModelSpec, intermediate: int, bias: bool) -> _Count:
    """One SwiGLU expert: gate, up and down projections (+ biases for gpt-oss)."""
    h = model.hidden_size
    c = _Count(gemm=3 * h * intermediate)
    if bias:
        c.other += 2 * intermediate + h
    return c


def layer_params(model: ModelSpec, layer: int | None) -> dict[str, _Count]:
    """Parameters of one main layer (``layer`` index) or of one MTP module's layer (``None``)."""
    h = model.hidden_size
    out = {k: _Count() for k in COMPONENTS}
    attn, attn_norms = _attention_params(model, layer)
    out["attention"] = attn
    out["norms"].other += 2 * h + attn_norms  # input_layernorm, post_attention_layernorm
    is_moe = layer is None or layer >= model.num_layers or model.moe_layers[layer]
    if is_moe:
        e = _expert_params(model, model.moe_intermediate_size, model.expert_bias)
        out["routed_experts"] = _Count(e.gemm * model.num_routed_experts, e.other * model.num_routed_experts)
        if model.shared_expert_intermediate_size:
            s = _expert_params(model, model.shared_expert_intermediate_size, False)
            if model.shared_expert_gate:
                s.gemm += h  # Qwen2-MoE shared_expert_gate: Linear(hidden, 1)
            out["shared_experts"] = s
        router = _Count(gemm=model.num_routed_experts * h)
        hashed = layer is not None and layer < model.num_hash_layers
        if model.router_bias and not hashed:
            router.other += model.num_routed_experts  # gpt-oss router bias / DeepSeek score-correction bias
        out["router"] = router
    else:
        out["dense_ffn"] = _Count(gemm=3 * h * model.intermediate_size)
    if model.hc_mult > 1:
        # V4 manifold-constrained hyper-connections: hc_{attn,ffn}_fn [(2+hc)hc, hc*h], _base, _scale[3].
        mix = (2 + model.hc_mult) * model.hc_mult
        out["hyper_connections"] = _Count(gemm=2 * mix * model.hc_mult * h, other=2 * (mix + 3))
    return out


def _mtp_params(model: ModelSpec) -> int:
    """One MTP module: its own decoder layer plus the projection that joins embedding and hidden state.

    DeepSeek-V3 (README_WEIGHTS.md): enorm, hnorm, eh_proj [h, 2h], a transformer layer and the
    shared head's norm; embedding and output head are shared with the main model and not counted.
    DeepSeek-V4 (V4-Pro safetensors listing): e_proj and h_proj [h, h], enorm, hnorm, norm,
    hc_head_* and a layer with its own hyper-connections.
    """
    if not model.num_mtp_modules:
        return 0
    h = model.hidden_size
    per_module = sum(c.total for c in layer_params(model, None).values())
    per_module += 2 * h * h + 3 * h
    if model.hc_mult > 1:
        per_module += model.hc_mult * model.hc_mult * h + model.hc_mult + 1
    return per_module * model.num_mtp_modules


def _all_layers(model: ModelSpec) -> list[dict[str, _Count]]:
    return [layer_params(model, i) for i in range(model.num_layers)]


def _global_params(model: ModelSpec) -> dict[str, _Count]:
    h = model.hidden_size
    out = {k: _Count() for k in COMPONENTS}
    out["embedding"] = _Count(other=model.vocab_size * h)  # a lookup, not a GEMM
    out["head"] = _Count(gemm=0 if model.tie_word_embeddings else model.vocab_size * h)
    out["norms"] = _Count(other=h)  # final norm
    if model.hc_mult > 1:
        hc = model.hc_mult
        out["hyper_connections"] = _Count(gemm=hc * hc * h, other=hc + 1)  # hc_head_fn, _base, _scale
    return out


def params_breakdown(model: ModelSpec) -> dict[str, int]:
    """Total parameters by component; "mtp" is listed but not part of ``total_params``."""
    totals = {k: 0 for k in COMPONENTS}
    for part in [_global_params(model), *_all_layers(model)]:
        for k, c in part.items():
            totals[k] += c.total
    totals["mtp"] = _mtp_params(model)
    return totals


@lru_cache(maxsize=256)
def _active_parts(model: ModelSpec) -> dict[str, _Count]:
    """Per-token active parameters by component, as GEMM / other counts (MTP excluded).

    Cached per model (models are frozen and hashable); callers must not mutate the result.
    """
    acc = {k: _Count() for k in COMPONENTS}
    frac_num, frac_den = model.experts_per_token, model.num_routed_experts
    for part in [_global_params(model), *_all_layers(model)]:
        for k, c in part.items():
            if k == "routed_experts":
                acc[k].gemm += c.gemm * frac_num // frac_den
                acc[k].other += c.other * frac_num // frac_den
            else:
                acc[k].gemm += c.gemm
                acc[k].other += c.other
    return acc


def active_params_breakdown(model: ModelSpec) -> dict[str, int]:
    """Parameters used per token by component (embedding, head and router included; MTP excluded)."""
    return {k: c.total for k, c in _active_parts(model).items()}


# ---------------------------------------------------------------------------------------------
# Attention reach: how many keys a query at position i (1-based) scores
# ---------------------------------------------------------------------------------------------


def _sum_min(length: int, cap: int) -> int:
    """sum_{i=1..L} min(i, cap)."""
    if length <= cap:
        return length * (length + 1) // 2
    return cap * (cap + 1) // 2 + (length - cap) * cap


def _sum_chunked(length: int, chunk: int) -> int:
    """sum_{i=1..L} (((i - 1) mod chunk) + 1): keys per query summed over a causal sequence in
    chunked local attention (a query sees the tokens of its own chunk up to itself)."""
    q, rem = divmod(length, chunk)
    return q * chunk * (chunk + 1) // 2 + rem * (rem + 1) // 2


def _sum_floor(length: int, ratio: int) -> int:
    """sum_{i=1..L} floor(i / ratio)."""
    q, rem = divmod(length, ratio)
    return ratio * q * (q - 1) // 2 + q * (rem + 1)


def _sum_min_floor(length: int, ratio: int, cap: int) -> int:
    """sum_{i=1..L} min(cap, floor(i / ratio))."""
    if length < cap * ratio:
        return _sum_floor(length, ratio)
    return ratio * cap * (cap - 1) // 2 + (length - cap * ratio + 1) * cap


@dataclass(frozen=True)
class _Reach:
    """Mean keys per query over a sequence: main attention and lightning-indexer keys."""

    keys: float
    indexer_keys: float


def _layer_reach(model: ModelSpec, layer: int, context_len: int, causal: bool) -> _Reach:
    """Mean number of keys per query in ``layer`` over a sequence of ``context_len`` tokens.

    Causal: the query at position i (1-based, itself included) sees the i tokens up to it, averaged
    over i = 1..L. Non-causal: every query sees all L tokens (equivalently, one decode step at
    position L).

    Chunked local attention (Llama 4, chunk C): causal, the query at i sees ((i - 1) mod C) + 1
    tokens; non-causal (a decode step), min(L, C) keys, the most its chunk holds. That is exact up to
    L = C; past it a single decode step at L would see ((L - 1) mod C) + 1, a saw-tooth between 1
    and C, and min(L, C) is its upper bound: the serving simulator evaluates decode at a batch's mean
    KV length, where the saw-tooth of the mean says nothing about the mean of the saw-tooth.
    """
    a = model.attention
    length = context_len

    def mean(total_causal: int, total_full: float) -> float:
        return total_causal / length if causal else total_full

    window = a.window(layer)
    chunk = a.chunk(layer)
    if a.kind in ("mha", "gqa"):
        if chunk is not None:
            return _Reach(mean(_sum_chunked(length, chunk), min(length, chunk)), 0.0)
        if window is None:
            return _Reach(mean(length * (length + 1) // 2, length), 0.0)
        return _Reach(mean(_sum_min(length, window), min(length, window)), 0.0)
    if a.kind == "mla":
        if a.index_topk:
            keys = mean(_sum_min(length, a.index_topk), min(length, a.index_topk))
            return _Reach(keys, mean(length * (length + 1) // 2, length))
        return _Reach(mean(length * (length + 1) // 2, length), 0.0)
    # csa: a sliding window of raw entries plus compressed entries.
    assert window is not None
    keys = mean(_sum_min(length, window), min(length, window))
    ratio = a.compress_ratio(layer)
    indexer = 0.0
    if ratio == 4:
        keys += mean(_sum_min_floor(length, 4, a.index_topk), min(a.index_topk, length // 4))
        indexer = mean(_sum_floor(length, 4), length // 4)
    elif ratio:
        keys += mean(_sum_floor(length, ratio), length // ratio)
    return _Reach(keys, indexer)


def pair_flops(model: ModelSpec) -> tuple[float, float]:
    """(main attention FLOP per query-key pair, indexer FLOP per query-key pair) of one layer.

    Score and value products, 2 FLOP per multiply-add. MLA without the sparse indexer is counted in
    its multi-head form (q.k over nope+rope dims, value over v_head_dim), as DeepSeek counts training
    FLOPs; V3.2's DSA runs MLA in its MQA form (DeepSeek-V3.2-Exp paper, Sec. 2), where a query
    scores the 576-d latent entry and reads 512-d values. V4 uses one 512-d entry as key and value.
    The indexer scores each key with index_n_heads dot products of index_head_dim, then a weighted
    sum over heads.
    """
    a = model.attention
    if a.kind == "mla" and a.index_topk:
        main = 2.0 * a.num_heads * ((a.kv_lora_rank + a.qk_rope_head_dim) + a.kv_lora_rank)
    else:
        main = 2.0 * a.num_heads * (a.qk_head_dim + a.value_head_dim)
    indexer = 2.0 * a.index_n_heads * a.index_head_dim + 2.0 * a.index_n_heads if a.index_n_heads else 0.0
    return main, indexer


def layer_attention_flops_per_token(
    model: ModelSpec, layer: int, context_len: int, causal: bool
) -> tuple[float, float]:
    """(main attention, indexer) forward FLOP per token in one layer, averaged over the sequence."""
    reach = _layer_reach(model, layer, context_len, _check_causal(causal))
    main, indexer = pair_flops(model)
    return reach.keys * main, reach.indexer_keys * indexer


def attention_flops_per_token(model: ModelSpec, context_len: int = 4096, causal: bool = True) -> float:
    """Forward attention FLOP per token (score, value and indexer products), MTP excluded."""
    length = _check_len(context_len, "context_len")
    causal = _check_causal(causal)
    total = 0.0
    for layer in range(model.num_layers):
        main, idx = layer_attention_flops_per_token(model, layer, length, bool(causal))
        total += main + idx
    return total


@dataclass(frozen=True)
class FlopsBreakdown:
    """Forward FLOP per token, averaged over a sequence of ``context_len`` tokens (MTP excluded).

    ``dense_gemm_flops``: attention projections, dense FFNs, shared experts, router, hyper-connection
    mixers and the output head (2 x their weights). ``expert_gemm_flops``: the routed experts a token
    visits. ``attention_flops``: score and value products plus, where present, the lightning
    indexer's scores (``indexer_flops``, a part of ``attention_flops``).
    """

    dense_gemm_flops: float
    expert_gemm_flops: float
    attention_flops: float
    indexer_flops: float
    context_len: int
    causal: bool

    @property
    def total_flops(self) -> float:
        return self.dense_gemm_flops + self.expert_gemm_flops + self.attention_flops

    @property
    def gemm_flops(self) -> float:
        return self.dense_gemm_flops + self.expert_gemm_flops

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["total_flops"] = self.total_flops
        return d


def forward_flops_per_token(model: ModelSpec, context_len: int = 4096, causal: bool = True) -> FlopsBreakdown:
    """Forward FLOP per token split into dense GEMMs, routed-expert GEMMs and attention."""
    length = _check_len(context_len, "context_len")
    causal = _check_causal(causal)
    parts = _active_parts(model)
    expert = 2.0 * parts["routed_experts"].gemm
    dense = 2.0 * sum(c.gemm for k, c in parts.items() if k != "routed_experts")
    main_total = 0.0
    idx_total = 0.0
    for layer in range(model.num_layers):
        main, idx = layer_attention_flops_per_token(model, layer, length, bool(causal))
        main_total += main
        idx_total += idx
    return FlopsBreakdown(
        dense_gemm_flops=dense,
        expert_gemm_flops=expert,
        attention_flops=main_total + idx_total,
        indexer_flops=idx_total,
        context_len=length,
        causal=bool(causal),
    )


@lru_cache(maxsize=256)
def active_non_embedding_params(model: ModelSpec) -> int:
    """Active parameters minus the input embedding (output head kept); remembered per model, as
    ``MoEModel`` remembers its counts."""
    return sum(active_params_breakdown(model).values()) - params_breakdown(model)["embedding"]


def training_flops_per_token(model: ModelSpec, seq_len: int = 4096, causal: bool = True) -> float:
    """DESIGN.md: 6 x active non-embedding params (head included) + 3 x forward attention FLOP."""
    length = _check_len(seq_len, "seq_len")
    causal = _check_causal(causal)
    return 6.0 * active_non_embedding_params(model) + 3.0 * attention_flops_per_token(model, length, causal)


# ---------------------------------------------------------------------------------------------
# KV cache
# ---------------------------------------------------------------------------------------------


KV_DTYPES = (*BYTES_PER_ELEMENT, "fp8_mixed")


def entry_bytes(nope: int, rope: int, dtype: str) -> float:
    """Bytes of one cached vector of ``nope`` position-free and ``rope`` rotary elements.

    "fp8_mixed" is FlashMLA's FP8 KV layout (github deepseek-ai/FlashMLA README, FP8 sparse decoding:
    656 B per token and layer for V3.2 = 512 FP8 values + 4 FP32 scales + 64 BF16 RoPE values): FP8
    E4M3 with one FP32 scale per 128 values for the position-free part, BF16 for the RoPE part.
    """
    if not isinstance(dtype, str) or dtype.lower() not in KV_DTYPES:
        raise ValueError(f"unknown KV-cache dtype {dtype!r}; allowed: {', '.join(KV_DTYPES)}.")
    if dtype.lower() == "fp8_mixed":
        return nope + math.ceil(nope / 128) * 4.0 + rope * 2.0
    return (nope + rope) * BYTES_PER_ELEMENT[dtype.lower()]


def layer_kv_bytes(model: ModelSpec, layer: int, context_len: int, dtype: str = "bf16") -> dict[str, float]:
    """KV-cache bytes one sequence of ``context_len`` tokens holds in main layer ``layer``, by part.

    Parts as in :func:`kv_cache_breakdown` (total bytes, not per token).
    """
    length = _check_len(context_len, "context_len")
    a = model.attention
    window = a.window(layer)
    attn = indexer = state = 0.0
    if a.kind in ("mha", "gqa"):
        entries = length if window is None else min(length, window)
        chunk = a.chunk(layer)
        if chunk is not None:
            # chunked local attention: only the current chunk's keys are read again, so a server
            # need keep no more than one chunk per sequence in this layer
            entries = min(entries, chunk)
        attn = entries * 2 * a.num_kv_heads * entry_bytes(a.head_dim, 0, dtype)
    elif a.kind == "mla":
        attn = length * entry_bytes(a.kv_lora_rank, a.qk_rope_head_dim, dtype)
        if a.index_topk:
            indexer = length * entry_bytes(a.index_head_dim, 0, dtype)
    else:  # csa
        assert window is not None
        ratio = a.compress_ratio(layer)
        entries = min(length, window) + (length // ratio if ratio else 0)
        attn = entries * entry_bytes(a.head_dim - a.qk_rope_head_dim, a.qk_rope_head_dim, dtype)
        if ratio:
            coff = 2 if ratio == 4 else 1
            state += 2 * (coff * ratio) * (coff * a.head_dim) * 4.0
        if ratio == 4:
            indexer = (length // 4) * entry_bytes(a.index_head_dim, 0, dtype)
            state += 2 * (2 * 4) * (2 * a.index_head_dim) * 4.0
    return {"attention": attn, "indexer": indexer, "compressor_state": state}


def kv_cache_breakdown(model: ModelSpec, dtype: str = "bf16", context_len: int = 4096) -> dict[str, float]:
    """KV-cache bytes per token for one sequence of ``context_len`` tokens, by part.

    * "attention": cached keys/values. MHA/GQA: 2 x kv_heads x head_dim per token and layer, a
      sliding-window layer keeping at most ``window`` tokens, a chunked-attention layer (Llama 4)
      at most ``chunk_size`` tokens. MLA: kv_lora_rank + qk_rope_head_dim
      per token and layer (V3: (512 + 64) x 61 x 2 B = 70,272 B, ISCA'25 Table 1). V4 ("csa"): the
      last ``sliding_window`` raw 512-d entries plus floor(L / ratio) compressed 512-d entries.
    * "indexer": the lightning indexer's key cache (V3.2: index_head_dim per token and layer;
      V4 ratio-4 layers: index_head_dim per compressed entry), counted at the same ``dtype``.
    * "compressor_state": V4's pending-compression buffers (kv and gate score for the last
      (1 + overlap) x ratio tokens, FP32 as in DeepSeek's inference/model.py), per sequence.

    ``dtype``: a uniform element type ("bf16", "fp8", ...) or "fp8_mixed" (FlashMLA's FP8 layout,
    see :func:`entry_bytes`). Divided by ``context_len`` (DESIGN.md); MTP layers excluded.
    """
    length = _check_len(context_len, "context_len")
    entry_bytes(1, 0, dtype)
    totals = {"attention": 0.0, "indexer": 0.0, "compressor_state": 0.0}
    for layer in range(model.num_layers):
        for k, v in layer_kv_bytes(model, layer, length, dtype).items():
            totals[k] += v
    return {k: v / length for k, v in totals.items()}


def kv_cache_bytes_per_token(model: ModelSpec, dtype: str = "bf16", context_len: int = 4096) -> float:
    """Total KV-cache bytes for one sequence of ``context_len`` tokens, divided by ``context_len``."""
    return sum(kv_cache_breakdown(model, dtype, context_len).values())


# ---------------------------------------------------------------------------------------------
# Weights, gradients and optimizer states
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes for the whole model (not per GPU) under one precision recipe."""

    recipe: str
    weights_bytes: float
    gradients_bytes: float
    master_weights_bytes: float
    optimizer_bytes: float
    params: int
    notes: tuple[str, ...] = field(default=())

    @property
    def total_bytes(self) -> float:
        return self.weights_bytes + self.gradients_bytes + self.master_weights_bytes + self.optimizer_bytes

    @property
    def training_bytes_per_param(self) -> float:
        return self.total_bytes / self.params if self.params else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["notes"] = list(self.notes)
        d["total_bytes"] = self.total_bytes
        return d


def _param_classes(model: ModelSpec, include_mtp: bool) -> dict[str, int]:
    """Parameters grouped by how the recipes store them."""
    parts = [_global_params(model), *_all_layers(model)]
    if include_mtp and model.num_mtp_modules:
        mtp_layer = layer_params(model, None)
        h = model.hidden_size
        extra = {k: _Count() for k in COMPONENTS}
        extra["attention"] = _Count(gemm=2 * h * h)  # eh_proj / e_proj + h_proj
        extra["norms"] = _Count(other=3 * h)
        if model.hc_mult > 1:
            extra["hyper_connections"] = _Count(gemm=model.hc_mult**2 * h, other=model.hc_mult + 1)
        for _ in range(model.num_mtp_modules):
            parts += [mtp_layer, extra]
    classes = {
        "embed_head": 0,
        "router": 0,
        "experts": 0,
        "linear": 0,
        "bf16_linear": 0,
        "vector": 0,
        "hc": 0,
    }
    for part in parts:
        for k, c in part.items():
            if k in ("embedding", "head"):
                classes["embed_head"] += c.total
            elif k == "router":
                classes["router"] += c.gemm
                classes["vector"] += c.other
            elif k == "routed_experts":
                classes["experts"] += c.gemm
                classes["vector"] += c.other
            elif k == "hyper_connections":
                classes["hc"] += c.total
            else:
                classes["linear"] += c.gemm - c.bf16_gemm
                classes["bf16_linear"] += c.bf16_gemm
                classes["vector"] += c.other
    return classes


def memory_bytes(model: ModelSpec, recipe: str = "bf16", include_mtp: bool = True) -> MemoryBreakdown:
    """Weight, gradient, master-weight and optimizer-state bytes for the whole model.

    Recipes:

    * "bf16": BF16 weights, FP32 gradients (accumulated in FP32), FP32 master weights, AdamW
      moments in FP32 (2 + 4 + 4 + 8 = 18 bytes per parameter, the usual mixed-precision recipe).
    * "fp8": DeepSeek-V3 (V3-TR Sec. 3.3.1-3.3.3, p.15-18): linear-layer weights in FP8 E4M3 with
      one FP32 scale per 128x128 block; embedding, output head, router and norms kept in BF16 (as are
      the few projections DeepSeek's checkpoints store in BF16: indexer weights_proj, V4 compressors);
      master weights and gradients in FP32; AdamW first and second moments in BF16.
    * "fp4_experts": DeepSeek-V4 checkpoint layout (config.json quantization_config and the V4-Pro
      safetensors listing): routed-expert weights FP4 E2M1 with one UE8M0 scale per 32 values; other
      linear weights FP8 E4M3 with one UE8M0 scale per 128x128 block; embedding, head, router,
      compressors and indexer weights_proj in BF16; hyper-connection weights FP32. Training state
      as the "fp8" recipe (FP32 master and gradients, BF16 moments): V4's optimizer-state precision
      is not published (the Muon optimizer would keep one momentum buffer instead of two moments for
      matrices; not modelled).

    ``include_mtp`` (default True) counts the MTP modules, which are held in memory for training
    and for speculative decoding.
    """
    if recipe not in RECIPES:
        raise ValueError(f"unknown precision recipe {recipe!r}; allowed: {', '.join(RECIPES)}.")
    cls = _param_classes(model, include_mtp)
    n = sum(cls.values())
    notes: list[str] = []
    if recipe == "bf16":
        weights = 2.0 * n
        grads = 4.0 * n
        master = 4.0 * n
        opt = 8.0 * n
    elif recipe == "fp8":
        fp8_params = cls["linear"] + cls["experts"]
        weights = fp8_params * (1.0 + 4.0 / (128 * 128)) + 2.0 * (n - fp8_params)
        grads = 4.0 * n
        master = 4.0 * n
        opt = 4.0 * n
        notes.append(
            "DeepSeek-V3 recipe: FP8 GEMM weights, BF16 AdamW moments, FP32 master weights and gradients."
        )
    else:
        weights = (
            cls["experts"] * (0.5 + 1.0 / 32)
            + cls["linear"] * (1.0 + 1.0 / (128 * 128))
            + 2.0 * (cls["embed_head"] + cls["router"] + cls["vector"] + cls["bf16_linear"])
            + 4.0 * cls["hc"]
        )
        grads = 4.0 * n
        master = 4.0 * n
        opt = 4.0 * n
        notes.append(
            "FP4 routed experts, FP8 other linear weights (V4 checkpoint layout); optimizer-state "
            "precision of V4 unpublished: BF16 moments assumed as in V3."
        )
    return MemoryBreakdown(
        recipe=recipe,
        weights_bytes=weights,
        gradients_bytes=grads,
        master_weights_bytes=master,
        optimizer_bytes=opt,
        params=n,
        notes=tuple(notes),
    )
