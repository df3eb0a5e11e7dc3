"""Llama 4 (Scout, Maverick): loading, interleaved MoE/dense layers, shared expert, chunked attention,
accounting against Meta's published sizes, and what bad configs get."""

from __future__ import annotations

import copy

import pytest

import moe
from moe import accounting

SCOUT = "llama-4-scout-17b-16e"
MAVERICK = "llama-4-maverick-17b-128e"

# The vision encoder both checkpoints carry (their vision_config: 34 ViT layers of width 1408, MLP
# 5632, patch 14 on 336 px images, pixel-shuffle adapter 5632 -> 4096 -> 4096, projector 4096 -> 5120),
# counted tensor by tensor as in the Scout parameter table of the code index (file id 41112263523):
# 34 x 23,807,872 per layer + class/positional/patch embeddings, pre/post LayerNorms, adapter and
# projector. Meta's published totals include it; our count is the text decoder.
VISION_PARAMS = 34 * 23_807_872 + 1408 + 812_416 + 827_904 + 4 * 1408 + 23_068_672 + 16_777_216 + 20_971_520


def _text_config(name: str) -> dict:
    """The catalog model's text_config (hf_config also holds the outer fields the loader carried in)."""
    outer = ("architectures", "tie_word_embeddings")
    raw = copy.deepcopy(dict(moe.get(name).hf_config))
    return {k: v for k, v in raw.items() if k not in outer and not k.startswith("_")}


def _wrapped(text: dict, **outer) -> dict:
    return {
        "architectures": ["Llama4ForConditionalGeneration"],
        "model_type": "llama4",
        "text_config": text,
        **outer,
    }


@pytest.mark.parametrize(
    ("name", "total", "active", "source"),
    [
        (SCOUT, 109e9, 17e9, "Meta Llama 4 model card: Scout 17B activated / 109B total"),
        (MAVERICK, 400e9, 17e9, "Meta Llama 4 model card: Maverick 17B activated / 400B total"),
    ],
)
def test_published_sizes(name, total, active, source):
    # Tolerances as tests/moe/test_moe_published.py: 1% total (our text decoder plus the vision encoder,
    # which the published total includes), 3% active (embedding, head and router included).
    m = moe.get(name)
    assert abs((m.total_params + VISION_PARAMS) / total - 1) <= 0.01, (source, m.total_params)
    assert abs(m.active_params / active - 1) <= 0.03, (source, m.active_params)


def test_exact_counts_from_the_shapes():
    # h = 5120, 40 query / 8 KV heads of 128, experts and shared expert SwiGLU 8192, dense MLP 16384,
    # vocabulary 202,048 with an untied head; 48 layers.
    h, v = 5120, 202_048
    attention = 48 * (2 * h * 40 * 128 + 2 * h * 8 * 128)
    expert = 3 * h * 8192
    norms = 48 * 2 * h + h
    scout = moe.get(SCOUT)
    assert scout.total_params == 2 * v * h + attention + 48 * (17 * expert + 16 * h) + norms
    assert scout.active_params == 2 * v * h + attention + 48 * (2 * expert + 16 * h) + norms
    maverick = moe.get(MAVERICK)
    moe_part = 24 * (129 * expert + 128 * h)
    assert maverick.total_params == 2 * v * h + attention + moe_part + 24 * 3 * h * 16384 + norms
    # Same active parameters per token in both, up to the router (16 vs 128 experts, 48 vs 24 layers):
    # a dense layer's MLP (16384) costs what the shared expert plus one routed expert (2 x 8192) do.
    assert maverick.active_params - scout.active_params == 24 * 128 * h - 48 * 16 * h


def test_names_and_aliases():
    assert {SCOUT, MAVERICK} <= set(moe.names())
    assert moe.get("meta-llama/Llama-4-Scout-17B-16E-Instruct") is moe.get(SCOUT)
    assert moe.get("Llama-4-Maverick-17B-128E") is moe.get(MAVERICK)


def test_layer_pattern_and_ffn_sizes():
    scout, maverick = moe.get(SCOUT), moe.get(MAVERICK)
    assert scout.moe_layers == (True,) * 48 and scout.intermediate_size == 0
    assert maverick.moe_layers == tuple(i % 2 == 1 for i in range(48))  # interleave_moe_layer_step 2
    assert (maverick.num_dense_layers, maverick.intermediate_size) == (24, 16384)
    for m in (scout, maverick):
        assert (m.num_shared_experts, m.shared_expert_intermediate_size, m.moe_intermediate_size) == (
            1,
            8192,
            8192,
        )
        assert m.experts_per_token == 1 and not m.shared_expert_gate and not m.router_bias
        assert not m.tie_word_embeddings and m.params_breakdown["head"] == 202_048 * 5120
        a = m.attention
        assert (a.kind, a.num_heads, a.num_kv_heads, a.head_dim, a.chunk_size) == ("gqa", 40, 8, 128, 8192)
        # RoPE layers chunked, every fourth (3, 7, ..., 47) a NoPE layer with full attention
        assert a.layer_chunked == (True, True, True, False) * 12
        assert [a.chunk(i) for i in range(4)] == [8192, 8192, 8192, None]
    assert "config.json" in scout.source and "config.json" in maverick.source


def test_defaults_match_the_explicit_lists():
    # Scout's config lists moe_layers and no_rope_layers; without them the HF defaults derive the same.
    text = _text_config(SCOUT)
    del text["moe_layers"], text["no_rope_layers"]
    derived = moe.from_hf_config(_wrapped(text), name="scout-derived")
    scout = moe.get(SCOUT)
    assert derived.moe_layers == scout.moe_layers
    assert derived.attention.layer_chunked == scout.attention.layer_chunked
    assert derived.total_params == scout.total_params
    text["no_rope_layers"] = []  # HF: an empty list falls back to the interval rule too
    assert moe.from_hf_config(_wrapped(text)).attention.layer_chunked == scout.attention.layer_chunked


def test_outer_fields_reach_the_text_model():
    text = _text_config(SCOUT)
    tied = moe.from_hf_config(_wrapped(text, tie_word_embeddings=True, _source="a note"), name="tied")
    assert tied.tie_word_embeddings and tied.params_breakdown["head"] == 0
    assert tied.source == "a note"
    assert moe.get(SCOUT).total_params - tied.total_params == 202_048 * 5120
    # the text model's own setting wins; a bare text config (Llama4ForCausalLM) loads as well
    text["tie_word_embeddings"] = False
    assert not moe.from_hf_config(_wrapped(text, tie_word_embeddings=True)).tie_word_embeddings
    bare = moe.from_hf_config({**text, "architectures": ["Llama4ForCausalLM"], "model_type": None})
    assert bare.architecture == "llama4_text" and bare.total_params == moe.get(SCOUT).total_params


def test_kv_cache_caps_the_chunked_layers():
    # 8 KV heads x 128 x (K, V) x 2 B = 4,096 B per token and layer; 36 chunked layers keep at most
    # 8,192 tokens, the 12 NoPE layers every token.
    m = moe.get(SCOUT)
    per_layer = 2 * 8 * 128 * 2
    assert m.kv_cache_bytes_per_token("bf16", 1000) == 48 * per_layer
    assert m.kv_cache_bytes_per_token("bf16", 8192) == 48 * per_layer
    assert m.kv_cache_bytes_per_token("bf16", 32768) == 12 * per_layer + 36 * per_layer * 8192 / 32768
    assert m.kv_cache_bytes_per_token("fp8", 32768) == m.kv_cache_bytes_per_token("bf16", 32768) / 2
    assert moe.get(MAVERICK).kv_cache_bytes_per_token("bf16", 32768) == m.kv_cache_bytes_per_token(
        "bf16", 32768
    )


def test_chunked_attention_reach():
    assert all(
        accounting._sum_chunked(n, c) == sum((i - 1) % c + 1 for i in range(1, n + 1))
        for n in (1, 7, 8, 9, 100)
        for c in (1, 8, 13)
    )
    m = moe.get(SCOUT)
    pair = 2.0 * 40 * (128 + 128)
    # up to one chunk, chunked layers attend like full ones
    full, _ = accounting.layer_attention_flops_per_token(m, 3, 8192, True)
    chunked, _ = accounting.layer_attention_flops_per_token(m, 0, 8192, True)
    assert full == chunked == pair * (8192 + 1) / 2
    # at two chunks a chunked layer's query sees (C + 1) / 2 keys on average, a full one (2C + 1) / 2
    full, _ = accounting.layer_attention_flops_per_token(m, 3, 16384, True)
    chunked, _ = accounting.layer_attention_flops_per_token(m, 0, 16384, True)
    assert (full, chunked) == (pair * (16384 + 1) / 2, pair * (8192 + 1) / 2)
    # a decode step (non-causal) is counted at the chunk cap
    assert accounting.layer_attention_flops_per_token(m, 0, 20000, False)[0] == pair * 8192
    assert accounting.layer_attention_flops_per_token(m, 3, 20000, False)[0] == pair * 20000


def test_operators_follow_the_layer_kind():
    from moe.operators import Phase, ServingShape, serving_layer_ops

    m = moe.get(MAVERICK)
    shape = ServingShape(tp=8, ep=8, experts_per_gpu=16)
    stages = serving_layer_ops(m, shape, 64, Phase.DECODE, 0.0, 64.0)
    dense = {op.name for op in stages["dense_ffn"]}
    sparse = {op.name for v in ("moe_attention", "moe_shared", "moe_routed") for op in stages[v]}
    assert {"mlp_gate_up", "mlp_down"} <= dense and not any(
        n.startswith(("shared_", "experts_")) for n in dense
    )
    assert {"shared_gate_up", "shared_down", "experts_gate_up", "experts_down", "router_gemm"} <= sparse
    assert "mlp_gate_up" not in sparse
    # Maverick alternates them: layer 0 dense, layer 1 MoE
    assert (m.is_moe_layer(0), m.is_moe_layer(1)) == (False, True)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"moe_layers": [1, 48]}, r"moe_layers \[48\] but has only 48 layers"),
        ({"moe_layers": "odd"}, "'moe_layers' must be a list of integers"),
        ({"no_rope_layers": [1, 0]}, "'no_rope_layers' must hold one 0 or 1 per layer"),
        ({"no_rope_layers": [2] * 48}, "'no_rope_layers' must hold one 0 or 1 per layer"),
        ({"attention_chunk_size": 0}, "'attention_chunk_size' must be a positive integer"),
        ({"interleave_moe_layer_step": 0}, "'interleave_moe_layer_step' must be a positive integer"),
        ({"num_experts_per_tok": 17}, "num_experts_per_tok must not exceed"),
        ({"num_key_value_heads": 7}, "must be a multiple of num_key_value_heads"),
        ({"intermediate_size": -1}, "'intermediate_size' must be a positive integer"),
    ],
)
def test_bad_configs(change, match):
    text = {**_text_config(SCOUT), **change}
    with pytest.raises(ValueError, match=match):
        moe.from_hf_config(_wrapped(text))


def test_dense_layers_need_their_mlp_width():
    text = _text_config(MAVERICK)
    del text["intermediate_size_mlp"]
    with pytest.raises(ValueError, match="missing required field 'intermediate_size_mlp'"):
        moe.from_hf_config(_wrapped(text))
    # an all-MoE model (Scout) does not need it
    scout = _text_config(SCOUT)
    del scout["intermediate_size_mlp"]
    assert moe.from_hf_config(_wrapped(scout)).total_params == moe.get(SCOUT).total_params
