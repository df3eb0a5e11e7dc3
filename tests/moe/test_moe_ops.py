"""The per-layer operator list agrees with the accounting and carries the right shapes."""

from __future__ import annotations

import numpy as np
import pytest

import moe
from moe import ops, routing

COMPUTE = ("gemm", "grouped_gemm", "attention", "gating")


@pytest.mark.parametrize("name", moe.names())
def test_forward_ops_sum_to_forward_flops(name):
    m = moe.get(name)
    tokens = length = 512
    total = sum(ops.ops_flops(m.layer_ops(i, tokens, length), COMPUTE) for i in range(m.num_layers))
    total += ops.ops_flops(m.head_ops(tokens), COMPUTE)
    expected = m.forward_flops_per_token(length).total_flops * tokens
    # gating adds the router's top-k bookkeeping (4 FLOP per token and expert), nothing else differs.
    router_extra = 4.0 * tokens * m.num_routed_experts * m.num_moe_layers
    assert total == pytest.approx(expected + router_extra, rel=1e-9)


def test_v3_training_layer_shapes():
    # DeepSeek profile-data train.json: EP64, TP1, 4K sequence; each GPU's grouped GEMM has 32,768 rows
    # (4096 tokens x top-8 / 64 ranks x 64 ranks' tokens) over its 4 experts, N x K = 4096 x 7168 and
    # 7168 x 2048 (reference deepseek_figures.md sec. 1.7).
    m = moe.get("deepseek-v3")
    layer = {op.name: op for op in m.layer_ops(10, 4096, 4096, "forward", ep=64, precision="fp8")}
    up, down = layer["experts_gate_up"], layer["experts_down"]
    assert up.group_sizes == (8192,) * 4 and (up.n, up.k) == (4096, 7168) and up.dtype == "fp8"
    assert (down.n, down.k) == (7168, 2048)
    # FP8 dispatch: 4096 tokens x 8 copies x (7168 B + 56 FP32 scales), 63/64 of them leave the GPU.
    assert layer["dispatch"].comm_bytes == pytest.approx(4096 * 8 * (7168 + 224) * 63 / 64)
    assert layer["combine"].comm_bytes == pytest.approx(4096 * 8 * 7168 * 2 * 63 / 64)
    att = layer["attention"]
    assert (att.num_heads, att.qk_head_dim, att.v_head_dim, att.q_len, att.kv_len, att.causal) == (
        128,
        192,
        128,
        4096,
        4096,
        True,
    )
    assert layer["o_proj"].k == 128 * 128 and layer["gate"].dtype == "bf16"
    dense = {op.name for op in m.layer_ops(0, 4096, 4096)}
    assert "mlp_gate_up" in dense and "dispatch" not in dense


def test_decode_reads_the_kv_cache():
    m = moe.get("deepseek-v3")
    batch, length = 64, 8192
    layer_ops = m.layer_ops(5, batch, length, "decode", kv_dtype="bf16")
    att = next(op for op in layer_ops if op.kind == "attention")
    per_layer_cache = m.kv_cache_bytes_per_token("bf16", length) * length / m.num_layers
    assert att.bytes_read >= batch * per_layer_cache
    assert (att.qk_head_dim, att.v_head_dim, att.q_len) == (576, 512, 1)  # absorbed MLA, as FlashMLA
    names = [op.name for op in layer_ops]
    assert "q_absorb" in names and "kv_b_proj" not in names


def test_backward_doubles_gemms_and_scales_attention():
    m = moe.get("mixtral-8x7b")
    fwd = m.layer_ops(3, 1024, 1024)
    bwd = m.layer_ops(3, 1024, 1024, "backward")
    assert ops.ops_flops(bwd, ["gemm", "grouped_gemm"]) == pytest.approx(
        2 * ops.ops_flops(fwd, ["gemm", "grouped_gemm"])
    )
    assert ops.ops_flops(bwd, ["attention"]) == pytest.approx(2.5 * ops.ops_flops(fwd, ["attention"]))


def test_tensor_parallel_splits_and_allreduces():
    m = moe.get("deepseek-v3")
    layer = m.layer_ops(1, 256, 4096, "prefill", tp=4)
    names = {op.name: op for op in layer}
    assert names["q_b_proj"].n == 32 * 192 and names["mlp_gate_up"].n == 2 * 18432 // 4
    assert names["attn_allreduce"].comm_bytes == 256 * 7168 * 2 and names["attn_allreduce"].comm_group == 4
    with pytest.raises(ValueError, match="must divide by tp=3"):
        m.layer_ops(1, 256, 4096, tp=3)


def test_skewed_loads_set_group_sizes():
    m = moe.get("deepseek-v3")
    rng = np.random.default_rng(0)
    loads = routing.expert_loads(4096 * 8, 256, 8, skew=1.0, rng=rng)
    a = m.layer_ops(5, 4096, 4096, ep=8, ep_rank=0, expert_loads=loads)
    up = next(op for op in a if op.name == "experts_gate_up")
    assert up.group_sizes == tuple(int(x) for x in loads[:32])
    placement = routing.redundant_placement(loads, 32, 8)
    b = m.layer_ops(5, 4096, 4096, ep=8, group_sizes=placement.rank_group_sizes[0])
    assert next(op for op in b if op.name == "experts_gate_up").group_sizes == placement.rank_group_sizes[0]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"phase": "sideways"}, "unknown phase"),
        ({"precision": "fp3"}, "unknown precision"),
        ({"ep": 3}, "do not divide by ep=3"),
        ({"ep": 4, "ep_rank": 4}, "ep_rank must be from 0 to 3"),
        ({"expert_loads": [1, 2, 3]}, "expert_loads must hold 256"),
    ],
)
def test_bad_op_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        moe.get("deepseek-v3").layer_ops(5, 64, 64, **kwargs)
    with pytest.raises(ValueError, match="num_tokens must be a positive integer"):
        moe.get("deepseek-v3").layer_ops(5, 0, 64)


def test_v4_layer_ops():
    m = moe.get("deepseek-v4-flash")
    csa = {op.name: op for op in m.layer_ops(2, 64, 65536, "decode", precision="fp4_experts")}
    hca = {op.name: op for op in m.layer_ops(3, 64, 65536, "decode")}
    swa = {op.name: op for op in m.layer_ops(0, 64, 65536, "decode")}
    assert "indexer" in csa and "indexer" not in hca and "compressor" not in swa
    assert csa["attention"].kv_len == 128 + 512  # window + top-k compressed entries
    assert hca["attention"].kv_len == 128 + 65536 // 128
    assert swa["attention"].kv_len == 128
    assert csa["experts_gate_up"].dtype == "fp4" and csa["wq_b"].dtype == "fp8"
    assert csa["wo_a"].batch == 8 and csa["wo_a"].k == 64 * 512 // 8


def test_ops_are_records():
    op = moe.get("qwen3-30b-a3b").layer_ops(0, 8, 8)[0]
    assert isinstance(op.to_dict(), dict)
    with pytest.raises(AttributeError):
        op.flops = 1.0  # type: ignore[misc]


def test_mtp_module_ops():
    # V3 MTP module (V3-TR Sec. 2.2): projection 2h -> h, then a decoder layer like the main MoE layers.
    m = moe.get("deepseek-v3")
    mtp = m.layer_ops(m.num_layers, 256, 256)
    last = m.layer_ops(m.num_layers - 1, 256, 256)
    extra = ops.ops_flops(mtp, COMPUTE) - ops.ops_flops(last, COMPUTE)
    assert extra == pytest.approx(2 * 256 * 7168 * 2 * 7168)
    # V4's MTP layer has compress ratio 0: sliding window only, no compressor or indexer.
    v4 = moe.get("deepseek-v4-flash")
    names = {op.name: op for op in v4.layer_ops(v4.num_layers, 8, 65536, "decode")}
    assert "compressor" not in names and names["attention"].kv_len == 128
    with pytest.raises(ValueError, match="MTP modules from 43"):
        v4.layer_ops(v4.num_layers + 1, 8, 8)
