"""The operator inventory (moe.operators): shapes from the model, kinds from the enum, every phase,
and GEMM FLOPs that agree with the parameter accounting."""

from __future__ import annotations

import dataclasses

import pytest

import moe
from moe import accounting
from moe.operators import (
    Attention,
    Comm,
    Gemm,
    GroupedGemm,
    OpKind,
    Phase,
    ServingShape,
    TrainingShape,
    serving_decode_core,
    serving_layer_ops,
    strategy_for,
    training_unit_ops,
    with_splits,
)
from moe.operators.attention import (
    CompressedAttention,
    GroupedQueryAttention,
    MultiHeadLatentAttention,
    SparseLatentAttention,
)
from moe.operators.inventory import experts_touched


def _shape(tokens: int = 4096, **kw) -> TrainingShape:  # type: ignore[no-untyped-def]
    args = dict(tokens=tokens, moe_tokens=tokens, seq_len=tokens, gemm_dtype="fp8", dispatch_fp8=True)
    args.update(kw)
    return TrainingShape(**args)  # type: ignore[arg-type]


def test_every_catalog_model_has_one_strategy():
    want = {"mla": MultiHeadLatentAttention, "csa": CompressedAttention, "gqa": GroupedQueryAttention}
    for name in moe.names():
        m = moe.get(name)
        s = strategy_for(m)
        if m.attention.kind == "mla" and m.attention.index_topk:
            assert type(s) is SparseLatentAttention
        else:
            assert type(s) is want["gqa" if m.attention.kind in ("mha", "gqa") else m.attention.kind]


def test_unknown_attention_kind_is_a_clear_error():
    m = moe.get("deepseek-v3")
    odd = dataclasses.replace(m, attention=dataclasses.replace(m.attention, kind="linear"))
    with pytest.raises(ValueError, match="no operator strategy for attention kind 'linear'; registered: "):
        strategy_for(odd)


def test_v3_training_layer_shapes():
    # DeepSeek profile-data train.json: EP64, TP1, 4K sequence; each GPU's grouped GEMM has 32,768 rows
    # over its 4 experts, N x K = 4096 x 7168 and 7168 x 2048 (reference deepseek_figures.md sec. 1.7).
    m = moe.get("deepseek-v3")
    ops = training_unit_ops(m, "layer", True, _shape(ep=64), (8192,) * 4)
    fwd = {op.name: op for op in ops if op.phase is Phase.FORWARD}
    up, down = fwd["experts_gate_up"].work, fwd["experts_down"].work
    assert isinstance(up, GroupedGemm) and isinstance(down, GroupedGemm)
    assert up.groups == (8192,) * 4 and (up.n, up.k) == (4096, 7168) and up.dtype == "fp8"
    assert (down.n, down.k) == (7168, 2048)
    # FP8 dispatch: 7168 B + 56 FP32 scales per token; BF16 combine
    assert isinstance(fwd["dispatch"].work, Comm) and fwd["dispatch"].work.bytes_per_token == 7168 + 224
    assert fwd["combine"].work.bytes_per_token == 7168 * 2  # type: ignore[union-attr]
    att = fwd["attention"].work
    assert isinstance(att, Attention)
    assert (att.heads, att.qk, att.v, att.q_len, att.kv_len, att.causal) == (128, 192, 128, 4096, 4096, True)
    assert fwd["o_proj"].work == Gemm(4096, 7168, 128 * 128, "fp8")
    assert fwd["router_gemm"].work.dtype == "bf16"  # type: ignore[union-attr]
    # every FP8 linear has its data- and weight-gradient GEMMs and the casts they need
    names = {op.name for op in ops}
    for proj in ("q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "o_proj"):
        assert {f"{proj} dgrad", f"{proj} wgrad", f"cast {proj} dY", f"cast {proj} X^T,dY^T"} <= names
    wgrad = next(op for op in ops if op.name == "o_proj wgrad")
    assert wgrad.phase is Phase.WEIGHT and wgrad.work == Gemm(128 * 128, 7168, 4096, "fp8", wgrad=True)
    recomputed = {op.name for op in ops if op.phase is Phase.RECOMPUTE}
    assert {"q_b_proj (recompute)", "kv_b_proj (recompute)", "attn_norm (recompute)"} <= recomputed
    dense = {op.name for op in training_unit_ops(m, "layer", False, _shape())}
    assert "mlp_gate_up" in dense and "dispatch" not in dense


@pytest.mark.parametrize("name", ["deepseek-v3", "deepseek-v2-lite", "qwen3-30b-a3b", "mixtral-8x7b"])
def test_forward_gemm_flops_follow_the_parameter_count(name):
    """One MoE layer's forward GEMMs (projections, router, shared and routed experts, uniform routing)
    cost 2 FLOP per active parameter per token: the shapes agree with the accounting's tensors."""
    m = moe.get(name)
    tokens = 4096
    layer = next(i for i in range(m.num_layers) if m.is_moe_layer(i))
    rows = tokens * m.experts_per_token // m.num_routed_experts
    ops = training_unit_ops(m, "layer", True, _shape(tokens), (rows,) * m.num_routed_experts)
    gemm = sum(
        op.flops for op in ops if op.phase is Phase.FORWARD and isinstance(op.work, Gemm | GroupedGemm)
    )
    p = accounting.layer_params(m, layer)
    active = (
        p["attention"].gemm
        + p["router"].gemm
        + p["shared_experts"].gemm
        + p["routed_experts"].gemm * m.experts_per_token / m.num_routed_experts
    )
    assert gemm == pytest.approx(2.0 * tokens * active, rel=1e-9)


@pytest.mark.parametrize("name", ["deepseek-v2", "deepseek-v2-lite", "deepseek-v3", "llama-4-scout-17b-16e"])
def test_serving_shared_experts_are_as_wide_as_the_parameter_count(name):
    """Shared-expert GEMMs of a serving decode step: 2 FLOP per shared-expert parameter per token
    (DeepSeek-V2's two shared experts are one MLP of twice the width, counted once)."""
    m = moe.get(name)
    layer = next(i for i in range(m.num_layers) if m.is_moe_layer(i))
    ops = serving_layer_ops(m, ServingShape(), 64, Phase.DECODE, 1e-4, 64.0)["moe_shared"]
    flops = sum(op.flops for op in ops if isinstance(op.work, Gemm | GroupedGemm))
    params = accounting.layer_params(m, layer)["shared_experts"].gemm
    assert flops == pytest.approx(2.0 * 64 * params, rel=1e-9)


def test_decode_reads_the_kv_cache_in_absorbed_form():
    m = moe.get("deepseek-v3")
    per_layer = m.kv_cache_bytes_per_token("bf16", 8192) * 8192 / m.num_layers
    op = serving_decode_core(m, ServingShape(), 64, 1, 8192, per_layer)
    assert isinstance(op.work, Attention) and op.kind is OpKind.ATTENTION
    assert (op.work.qk, op.work.v, op.work.q_len, op.work.kv_bytes) == (576, 512, 1, 64 * per_layer)
    names = [
        o.name for o in serving_layer_ops(m, ServingShape(), 64, Phase.DECODE, 1e-4, 512.0)["dense_attention"]
    ]
    assert names.index("q_absorb_wuk") < names.index("core_attention") < names.index("o_absorb_wuv")
    prefill = [
        o.name
        for o in serving_layer_ops(m, ServingShape(), 64, Phase.PREFILL, 1e-4, 512.0)["dense_attention"]
    ]
    assert "kv_b_proj" in prefill and "q_absorb_wuk" not in prefill


def test_tensor_parallel_splits_heads_and_adds_all_reduces():
    m = moe.get("qwen3-30b-a3b")
    one = {
        op.name: op
        for op in training_unit_ops(m, "layer", True, _shape(1024, dispatch_fp8=False), (32,) * 128)
    }
    four = {
        op.name: op
        for op in training_unit_ops(m, "layer", True, _shape(1024, tp=4, dispatch_fp8=False), (32,) * 128)
    }
    assert four["qkv_proj"].work.n * 4 == one["qkv_proj"].work.n  # type: ignore[union-attr]
    assert "attn_allreduce" in four and "attn_allreduce" not in one
    assert four["attn_allreduce"].kind is OpKind.TP_ALLREDUCE and four["attn_allreduce"].kind.is_comm


def test_mtp_module_adds_its_projection():
    m = moe.get("deepseek-v3")
    groups = (128,) * 256
    fwd = lambda unit: sum(  # noqa: E731
        op.flops
        for op in training_unit_ops(m, unit, True, _shape(4096), groups)
        if op.phase is Phase.FORWARD and isinstance(op.work, Gemm)
    )
    assert fwd("mtp") - fwd("layer") == pytest.approx(2 * 4096 * 7168 * 2 * 7168)
    with pytest.raises(ValueError, match="unknown unit kind 'lm'; allowed: embedding, layer, mtp, head"):
        training_unit_ops(m, "lm", True, _shape())


def test_ops_are_frozen_records_with_a_kind():
    ops = training_unit_ops(moe.get("mixtral-8x7b"), "layer", True, _shape(64), (16,) * 8)
    assert all(isinstance(op.kind, OpKind) for op in ops)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ops[0].name = "x"  # type: ignore[misc]
    assert {op.kind.training_category for op in ops} <= {
        "gemm",
        "attention",
        "other",
        "ep_comm",
        "tp_comm",
        "cp_comm",
    }


def test_with_splits_names_the_degrees_that_divide_each_operator():
    """Attention projections after the latent split over TP, the latent projections do not; the expert
    all-to-all is split by EP; doubling CP changes the core attention (its keys gathered over CP)."""
    m = moe.get("deepseek-v3")
    shape = TrainingShape(tokens=1024, moe_tokens=512, seq_len=4096, tp=2, cp=1, ep=8, gemm_dtype="fp8")
    ops = with_splits(lambda s: training_unit_ops(m, "layer", True, s, (16,) * 32), shape, ("tp", "cp", "ep"))
    split = {op.name: op.split for op in ops if op.phase is Phase.FORWARD}
    assert split["q_b_proj"] == ("tp",) and split["o_proj"] == ("tp",) and split["q_a_proj"] == ()
    assert split["attention"] == ("tp", "cp")
    assert split["dispatch"] == ("ep",) and split["combine"] == ("ep",)
    assert [op.work for op in ops] == [
        op.work for op in training_unit_ops(m, "layer", True, shape, (16,) * 32)
    ]
    with pytest.raises(ValueError, match="not a parallel degree.*allowed: .*tp"):
        with_splits(lambda s: [], shape, ("pp",))


def test_experts_touched_by_a_small_batch():
    """V3 routes top-8 of 256: 4 decode tokens reach at most 32 experts, so a GPU holding 32 experts
    (EP8) reads about 4 of them; a large batch reaches all of them; the grouped GEMMs of a decode step
    carry only the touched experts."""
    m = moe.get("deepseek-v3")
    rows_small = 4 * 8 / 8  # 4 tokens x top-8 spread over 8 GPUs
    assert experts_touched(m, 32, rows_small) == 4  # 32 x (1 - (1 - 8/256)^4) = 3.8
    assert experts_touched(m, 32, 32 * 50) == 32
    assert experts_touched(m, 32, 0.01) == 1  # at least one
    ops = serving_layer_ops(m, ServingShape(ep=8, experts_per_gpu=32), 4, Phase.DECODE, 1e-4, rows_small)
    up = next(op for op in ops["moe_routed"] if op.name == "experts_gate_up")
    assert isinstance(up.work, GroupedGemm) and len(up.work.groups) == 4 and sum(up.work.groups) >= rows_small
