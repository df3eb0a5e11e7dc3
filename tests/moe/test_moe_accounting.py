"""Accounting formulas: closed forms against brute force, and hypothesis properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import moe
from moe import accounting

SETTINGS = settings(deadline=None, max_examples=25)


@SETTINGS
@given(length=st.integers(1, 3000), cap=st.integers(1, 600), ratio=st.sampled_from([1, 2, 4, 7, 128]))
def test_reach_sums_match_brute_force(length, cap, ratio):
    i = np.arange(1, length + 1)
    assert accounting._sum_min(length, cap) == int(np.minimum(i, cap).sum())
    assert accounting._sum_floor(length, ratio) == int((i // ratio).sum())
    assert accounting._sum_min_floor(length, ratio, cap) == int(np.minimum(cap, i // ratio).sum())


def test_causal_attention_is_about_half_of_non_causal():
    m = moe.get("deepseek-v3")
    causal = m.attention_flops_per_token(4096, causal=True)
    full = m.attention_flops_per_token(4096, causal=False)
    assert causal / full == pytest.approx(4097 / 2 / 4096)
    # MLA in multi-head form: 2 x 128 heads x (192 + 128) FLOP per query-key pair, 61 layers.
    assert full == 2 * 128 * 320 * 4096 * 61


def test_forward_flops_split():
    m = moe.get("deepseek-v3")
    f = m.forward_flops_per_token(4096)
    assert f.total_flops == pytest.approx(f.dense_gemm_flops + f.expert_gemm_flops + f.attention_flops)
    # routed experts: 58 MoE layers x 8 experts x 3 x 7168 x 2048 weights, 2 FLOP each.
    assert f.expert_gemm_flops == 2 * 58 * 8 * 3 * 7168 * 2048
    assert f.indexer_flops == 0
    # 2 x active GEMM weights ~ 2 x active non-embedding params (norms and biases are not GEMMs).
    assert f.gemm_flops == pytest.approx(2 * m.active_non_embedding_params, rel=1e-4)


def test_training_flops_convention():
    m = moe.get("deepseek-v2")
    expected = 6 * m.active_non_embedding_params + 3 * m.attention_flops_per_token(4096, True)
    assert m.training_flops_per_token(4096, True) == pytest.approx(expected)


def test_kv_cache_layouts():
    # Mixtral-8x7B GQA: 2 (K, V) x 8 KV heads x 128 x 32 layers x 2 B = 131,072 B per token.
    assert moe.get("mixtral-8x7b").kv_cache_bytes_per_token("bf16", 4096) == 131_072
    # V2 MLA: (512 + 64) x 60 layers x 2 B = 69,120 B (V2-TR p.9: 2.25 groups-equivalent).
    assert moe.get("deepseek-v2").kv_cache_bytes_per_token("bf16", 4096) == 69_120
    # FP8 halves it.
    assert moe.get("deepseek-v3").kv_cache_bytes_per_token("fp8", 4096) == 35_136
    # V3.2 adds the indexer's 128-d key per token and layer.
    assert moe.get("deepseek-v3.2").kv_cache_breakdown("bf16", 4096)["indexer"] == 128 * 61 * 2
    # gpt-oss: 18 full layers plus 18 layers holding at most 128 tokens.
    oss = moe.get("gpt-oss-120b")
    per_layer = 2 * 8 * 64 * 2
    assert oss.kv_cache_bytes_per_token("bf16", 8192) == pytest.approx(per_layer * (18 + 18 * 128 / 8192))


def test_v4_kv_cache_by_hand():
    # V4-Flash at L = 1024: 2 window-only layers (128 entries), 21 ratio-4 layers (128 + 256 entries,
    # indexer 256 x 128-d keys), 20 ratio-128 layers (128 + 8 entries); 512-d entries, BF16.
    m = moe.get("deepseek-v4-flash")
    parts = m.kv_cache_breakdown("bf16", 1024)
    entries = 2 * 128 + 21 * (128 + 256) + 20 * (128 + 8)
    assert parts["attention"] * 1024 == entries * 512 * 2
    assert parts["indexer"] * 1024 == 21 * 256 * 128 * 2
    state = 21 * (2 * 8 * 1024 * 4 + 2 * 8 * 256 * 4) + 20 * (2 * 128 * 512 * 4)
    assert parts["compressor_state"] * 1024 == state


def _mixtral(**overrides):
    cfg = dict(moe.get("mixtral-8x7b").hf_config)
    cfg.update(overrides)
    return moe.from_hf_config(cfg)


def _deepseek(**overrides):
    cfg = dict(moe.get("deepseek-v2-lite").hf_config)
    cfg.update(overrides)
    return moe.from_hf_config(cfg)


@SETTINGS
@given(
    hidden=st.sampled_from([64, 128, 256]),
    layers=st.integers(1, 6),
    experts=st.integers(1, 64),
    top_k=st.integers(1, 8),
    inter=st.integers(1, 512),
)
def test_active_at_most_total_and_totals_grow_with_experts(hidden, layers, experts, top_k, inter):
    top_k = min(top_k, experts)
    a = _mixtral(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_local_experts=experts,
        num_experts_per_tok=top_k,
        intermediate_size=inter,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    b = _mixtral(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_local_experts=experts + 1,
        num_experts_per_tok=top_k,
        intermediate_size=inter,
        num_attention_heads=8,
        num_key_value_heads=4,
    )
    assert a.active_params <= a.total_params
    assert b.total_params > a.total_params
    assert b.active_params == a.active_params + layers * hidden  # one more router row per layer
    assert (a.active_params == a.total_params) == (top_k == experts)


@SETTINGS
@given(experts=st.integers(8, 96), shared=st.integers(0, 3), first_dense=st.integers(0, 3))
def test_deepseek_active_at_most_total(experts, shared, first_dense):
    a = _deepseek(
        n_routed_experts=experts,
        n_shared_experts=shared,
        first_k_dense_replace=first_dense,
        num_hidden_layers=4,
    )
    b = _deepseek(
        n_routed_experts=experts + 8,
        n_shared_experts=shared,
        first_k_dense_replace=first_dense,
        num_hidden_layers=4,
    )
    assert a.active_params <= a.total_params
    assert b.total_params > a.total_params or first_dense >= 4


@SETTINGS
@given(length=st.integers(1, 200_000), factor=st.integers(2, 8))
def test_full_attention_kv_grows_linearly(length, factor):
    for name in ("deepseek-v3", "qwen3-30b-a3b"):
        m = moe.get(name)
        total = m.kv_cache_bytes_per_token("bf16", length) * length
        total_k = m.kv_cache_bytes_per_token("bf16", length * factor) * length * factor
        assert total_k == pytest.approx(factor * total)


@SETTINGS
@given(length=st.integers(128, 4_000_000))
def test_windowed_and_compressed_kv_stays_bounded_per_token(length):
    # Sliding-window only (Mixtral with a 4096 window): total cache stops growing past the window.
    win = _mixtral(sliding_window=4096, num_hidden_layers=2)
    if length >= 4096:
        assert win.kv_cache_bytes_per_token("bf16", length) * length == pytest.approx(
            win.kv_cache_bytes_per_token("bf16", 4096) * 4096
        )
    # V4: per-token cache never exceeds its value at the window length (128).
    for name in ("deepseek-v4-flash", "deepseek-v4-pro"):
        m = moe.get(name)
        assert m.kv_cache_bytes_per_token("bf16", length) <= m.kv_cache_bytes_per_token("bf16", 128)


def test_memory_recipes():
    m = moe.get("deepseek-v3")
    bf16 = m.memory_bytes("bf16", include_mtp=False)
    assert bf16.params == m.total_params
    assert bf16.total_bytes == pytest.approx(18 * m.total_params)
    fp8 = m.memory_bytes("fp8")
    # V3-TR Sec. 3.3.3: FP32 master weights and gradients, BF16 AdamW moments.
    assert fp8.master_weights_bytes == 4 * fp8.params
    assert fp8.gradients_bytes == 4 * fp8.params
    assert fp8.optimizer_bytes == 4 * fp8.params
    # FP8 weights: ~1 B per parameter (embedding, head, router, norms in BF16).
    assert 1.0 < fp8.weights_bytes / fp8.params < 1.01
    assert fp8.params == m.total_params + m.params_breakdown["mtp"]


@pytest.mark.parametrize(("name", "gib"), [("deepseek-v4-flash", 148.65), ("deepseek-v4-pro", 805.32)])
def test_v4_weights_match_checkpoint_size(name, gib):
    # Sum of the safetensors tensors, scales included: V4-Flash 148.65 GiB (listing, code-index file id
    # 62608729298), V4-Pro 805.32 GiB (id 62525154746). The fp4_experts recipe reproduces that layout;
    # tolerance 0.1% (the listing rounds to 0.01 GiB; FP32 vectors such as attention sinks and compressor
    # position biases are counted at 2 B).
    weights = moe.get(name).memory_bytes("fp4_experts").weights_bytes
    assert abs(weights / (gib * 2**30) - 1) <= 0.001, weights / 2**30


def test_fp8_mixed_kv_layout():
    # FlashMLA README (FP8 sparse decoding): 656 B per token and layer = 512 FP8 + 4 FP32 scales + 64 BF16
    # RoPE values, so V3/V3.2 hold 656 x 61 = 40,016 B per token (reference deepseek_figures.md sec. 2.2);
    # V3.2's FP8 indexer key: 128 FP8 values + one FP32 scale = 132 B per token and layer.
    assert moe.get("deepseek-v3").kv_cache_bytes_per_token("fp8_mixed", 4096) == 40_016
    parts = moe.get("deepseek-v3.2").kv_cache_breakdown("fp8_mixed", 4096)
    assert parts["indexer"] == 132 * 61


def test_qwen2_moe_from_config():
    # Qwen/Qwen1.5-MoE-A2.7B config.json (copies via the code index, e.g. file id 54591096139); Qwen blog
    # "Qwen1.5-MoE: Matching 7B Model Performance with 1/3 Activated Parameters" (Mar 2024): 14.3B total,
    # 2.7B activated. Tolerance 1% / 3%.
    cfg = {
        "architectures": ["Qwen2MoeForCausalLM"],
        "model_type": "qwen2_moe",
        "hidden_size": 2048,
        "intermediate_size": 5632,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "num_key_value_heads": 16,
        "vocab_size": 151936,
        "num_experts": 60,
        "num_experts_per_tok": 4,
        "moe_intermediate_size": 1408,
        "shared_expert_intermediate_size": 5632,
        "decoder_sparse_step": 1,
        "tie_word_embeddings": False,
        "max_window_layers": 21,
        "use_sliding_window": False,
        "sliding_window": 32768,
    }
    m = moe.from_hf_config(cfg)
    assert m.attention.qkv_bias and m.shared_expert_gate and m.num_moe_layers == 24
    assert abs(m.total_params / 14.3e9 - 1) <= 0.01
    assert abs(m.active_params / 2.7e9 - 1) <= 0.03
    assert m.attention.window(0) is None  # use_sliding_window false
