"""A decode step never beats the hardware: the bytes it must read over the GPU's peak bandwidth and
the FLOPs it must run over its peak, counted from the model alone (not from the step model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gpus
import moe
from sim.serving.deployment import parse_deployment
from sim.serving.stepcost import StepCostModel

MODEL = moe.get("deepseek-v2-lite")  # one GPU of every profile holds it in BF16
GPU_NAMES = [n for n in gpus.names() if not n.lower().startswith("cpu")]
BATCHES = (1, 2, 3, 4, 8, 16, 32, 64, 128, 256)


def floor_s(gpu: gpus.GPUProfile, batch: int, kv_len: int) -> float:
    """max(bytes / peak HBM bandwidth, FLOPs / peak BF16 FLOP/s) of one decode step on one GPU holding
    the whole model: every weight but the routed experts, the experts that ``batch`` tokens touch at
    least (whole experts of the expected count under uniform top-k routing, rounded down) and the
    KV cache of every request; two FLOPs per active weight per token and the absorbed MLA attention's
    ``2 x heads x (2 x kv_lora_rank + rope dims) x kv_len`` per token and layer."""
    m = MODEL
    p = m.params_breakdown
    e, k = m.num_routed_experts, m.experts_per_token
    touched = math.floor(e * (1.0 - (1.0 - k / e) ** batch))
    expert = p["routed_experts"] / e
    weights = p["attention"] + p["dense_ffn"] + p["shared_experts"] + p["router"] + p["head"]
    weight_bytes = 2.0 * (weights + touched * expert)
    kv_bytes = batch * kv_len * m.kv_cache_bytes_per_token("bf16", kv_len)
    a = m.attention
    attention_flops = 2.0 * a.num_heads * (2 * a.kv_lora_rank + a.qk_rope_head_dim) * kv_len * m.num_layers
    flops = batch * (2.0 * (weights + k * expert) + attention_flops)
    return max(
        (weight_bytes + kv_bytes) / gpu.hbm_bandwidth_bytes_per_s,
        flops / gpu.peak_flops("bf16"),
    )


@pytest.mark.parametrize("gpu_name", GPU_NAMES)
def test_decode_step_is_never_below_its_hbm_and_flop_floor(gpu_name):
    g = gpus.get(gpu_name)
    dep = {"mode": "colocated", "nodes": 1, "gpus_per_node": 1, "weight_dtype": "bf16", "kv_dtype": "bf16"}
    inst = parse_deployment(dep, MODEL, g).colocated
    cost = StepCostModel(MODEL, g, inst, 0, np.random.default_rng(0))
    for kv_len in (512, 8192):
        for batch in BATCHES:
            step = cost.decode_step(batch, kv_len).time_s
            bound = floor_s(g, batch, kv_len)
            assert step >= bound, f"{gpu_name} batch {batch} kv {kv_len}: {step:.3e} s < floor {bound:.3e} s"
