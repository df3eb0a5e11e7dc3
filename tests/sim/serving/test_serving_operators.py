"""The operators a serving step is made of: every kernel of a DeepSeek-style prefill batch and decode
step is present with its own shape, and the overlap schedules behave at their limits."""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from moe.operators import Gemm
from sim import comm, timing
from sim.serving.deployment import parse_instance
from sim.serving.stepcost import LayerCost, StepCostModel, decode_pipeline_schedule, two_stream_schedule

M = moe.get("deepseek-v3")
G = gpus.get("H800")


def _cost(role: str, spec: dict, draft: int = 0) -> StepCostModel:
    return StepCostModel(M, G, parse_instance(role, spec, M, G), draft, np.random.default_rng(0))


DECODE = _cost("decode", {"nodes": 16, "ep": 128, "attn_dp": 128})
PREFILL = _cost("prefill", {"nodes": 4, "ep": 32, "attn_dp": 32})


def _names(ops: dict) -> set[str]:
    return {n for v in ops.values() for n, _ in v}


def test_decode_layer_has_every_kernel():
    ops = DECODE.layer_ops(64, DECODE.decode_attention(64, 1, 4096), prefill=False)
    need = {
        "attn_norm", "cast_attn_in", "qkv_a_proj", "q_a_norm", "kv_a_norm", "cast_q_b_in", "q_b_proj",
        "rope", "q_absorb_wuk", "build_q", "kv_cache_write", "core_attention", "o_absorb_wuv",
        "cast_o_in", "o_proj", "ffn_norm", "router_gemm", "gating", "cast_shared_in", "shared_gate_up",
        "shared_act", "shared_down", "experts_gate_up", "experts_act", "experts_down",
        "moe_output_add", "mlp_gate_up", "mlp_down", "ll_dispatch_send", "ll_dispatch_recv",
        "ll_combine_send", "ll_combine_recv_reduce",
    }  # fmt: skip
    assert need <= _names(ops)
    # decode runs MLA absorbed (no K/V up-projection); the low-latency kernels' send and receive-hook
    # kernels cast, pack and reduce (no separate cast or permute)
    assert not {"kv_b_proj", "cast_dispatch", "permute", "unpermute_reduce"} & _names(ops)
    assert all(x > 0 for v in ops.values() for _, x in v)
    # the core attention kernel sits between the query preparation and the output side
    names = [n for n, _ in ops["moe_attention"]]
    assert names.index("q_absorb_wuk") < names.index("core_attention") < names.index("o_absorb_wuv")


def test_prefill_layer_has_every_kernel():
    ops = PREFILL.layer_ops(8192, PREFILL.prefill_attention(4096, 0) * 2, prefill=True)
    names = _names(ops)
    assert {"kv_b_proj", "cast_kv_b_in", "build_qk", "cast_dispatch", "permute", "unpermute_reduce"} <= names
    assert not {"q_absorb_wuk", "o_absorb_wuv"} & names
    assert not any(n.startswith("ll_") for n in names)  # normal kernels run on their own SMs


def test_fp8_casts_vanish_with_bf16_weights():
    bf16 = _cost("decode", {"nodes": 16, "ep": 128, "weight_dtype": "bf16"})
    ops = bf16.layer_ops(64, 1e-4, prefill=False)
    casts = [x for v in ops.values() for n, x in v if n.startswith("cast")]
    assert not casts  # BF16 GEMMs read BF16 inputs: no quantisation kernels
    assert sum(x for v in ops.values() for _, x in v) > 0


def test_batched_gemm_counts_every_member():
    # MLA's absorbed W_UK product: 128 heads of [64, 128] x [128, 512]
    one = timing.gemm_time(G, 64, 512, 128, "bf16")
    absorb = {op.name: op for op, _ in DECODE.timed_layer_ops(64, 1e-4, prefill=False)["dense_attention"]}
    assert absorb["q_absorb_wuk"].work == Gemm(64, 512, 128, "bf16", batch=128)
    t = timing.op_seconds(G, absorb["q_absorb_wuk"])
    roof = max(128 * one.flops / G.peak_flops("bf16"), 128 * 512 * 128 * 2.0 / G.hbm_bandwidth_bytes_per_s)
    assert t > roof
    assert t > one.predicted_s
    assert t == pytest.approx(timing.gemm_time(G, 64, 512, 128, "bf16", batch=128).predicted_s)


def test_decode_dispatch_is_the_low_latency_all_to_all():
    k = M.experts_per_token
    row = M.hidden_size * (1 + 4 / 128)
    want = comm.all_to_all_time(DECODE.cluster, 128 * k * row, num_gpus=128).predicted_s
    assert DECODE.all_to_all(128, 1 + 4 / 128, dedupe_per_node=False) == pytest.approx(want)
    # DeepEP low-latency dispatch, EP128, 128 tokens: 192 us (deepseek_figures.md 4.2); 20%
    assert want == pytest.approx(192e-6, rel=0.2)


@pytest.mark.parametrize("gpu", ["H800", "H800@2025-02"])
def test_low_latency_send_and_receive_kernels_are_charged_once(gpu):
    # DeepEP's low-latency table times one kernel doing the send phase, the transfer and the receive
    # phase (tests/test_low_latency.py; sim.calibration.published.deepep_tables). The step
    # charges the phases as kernels on the compute stream, so the communication stream carries the
    # fitted table time less those the table holds outside the transfer (send kernels, combine's
    # weighted sum); the dispatch's receive copy is hidden under the arrivals in the table.
    g = gpus.get(gpu)
    spec = {"nodes": 16, "ep": 128, "attn_dp": 128, "micro_batches": 1}
    cost = StepCostModel(M, g, parse_instance("decode", spec, M, g), 0, np.random.default_rng(0))
    tokens, kv = 128, 4096
    attention = cost.decode_attention(tokens, 1, kv)
    ops = {n: x for v in cost.layer_ops(tokens, attention, prefill=False).values() for n, x in v}
    values = tokens * M.experts_per_token * M.hidden_size
    table_dispatch = comm.all_to_all_time(cost.cluster, values * (1 + 4 / 128), num_gpus=128).predicted_s
    table_combine = comm.all_to_all_time(cost.cluster, values * 2.0, num_gpus=128).predicted_s
    held = cost.low_latency_in_transfer()
    # the 2025-06 combine is timed zero-copy (its staging copy outside the table), the launch one not
    launch = {"ll_combine_send"} if gpu == "H800@2025-02" else set()
    assert set(held) == {"ll_dispatch_send", "ll_combine_recv_reduce"} | launch
    held_s = sum(ops[n] for n in held)

    layers, _ = cost._layers(tokens, attention, prefill=False)
    moe_layer = layers[-1]
    assert 0 < moe_layer.dispatch_s < table_dispatch and 0 < moe_layer.combine_s < table_combine
    assert moe_layer.dispatch_s + ops["ll_dispatch_send"] == pytest.approx(table_dispatch, rel=1e-12)
    assert moe_layer.dispatch_s + moe_layer.combine_s + held_s == pytest.approx(
        table_dispatch + table_combine, rel=1e-12
    )

    # the whole step: communication stream + the kernels the table holds = the MoE layers' table times
    step = cost.decode_step(tokens, kv)
    n_moe = sum(cost.moe_layer_flags)
    assert step.comm_s + n_moe * held_s == pytest.approx(n_moe * (table_dispatch + table_combine), rel=1e-9)
    assert step.comm_s == pytest.approx(step.breakdown_s["dispatch"] + step.breakdown_s["combine"])
    # every low-latency kernel is still charged on the compute stream
    kernels = sum(x for n, x in ops.items() if n.startswith("ll_"))
    assert step.breakdown_s["ll_comm_kernels"] == pytest.approx(n_moe * kernels)


def test_decode_pipeline_limits():
    comm_only = [LayerCost(0.0, 0.0, 1.0, 2.0)] * 5
    assert decode_pipeline_schedule(comm_only, 2).total_s == pytest.approx(5 * 2 * 3.0)
    compute_only = [LayerCost(1.0, 2.0, 0.0, 0.0, 0.5, 0.25)] * 5
    assert decode_pipeline_schedule(compute_only, 2).total_s == pytest.approx(5 * 2 * 3.5)
    serial = [LayerCost(1.0, 1.0, 1.0, 1.0, 0.5, 0.5)] * 10
    # one micro-batch: only the shared expert overlaps its own dispatch (attention 1, dispatch 1 over
    # shared 0.5, experts 1, combine 1)
    assert decode_pipeline_schedule(serial, 1).total_s == pytest.approx(10 * 4.0)
    overlapped = decode_pipeline_schedule(serial, 2)
    assert overlapped.total_s < 2 * 10 * 4.0
    assert overlapped.total_s >= max(overlapped.compute_busy_s, overlapped.comm_busy_s)


def test_mtp_step_costs_more_than_plain_step():
    plain = DECODE.decode_step(128, 4096)
    mtp = _cost("decode", {"nodes": 16, "ep": 128, "attn_dp": 128}, draft=1).decode_step(128, 4096)
    assert mtp.time_s > plain.time_s
    assert mtp.breakdown_s["mtp"] > 0
    assert mtp.breakdown_s["head"] > plain.breakdown_s["head"]


def test_llama4_maverick_alternates_dense_and_moe_layers():
    # interleave_moe_layer_step 2: even layers a dense MLP (16384), odd layers the shared expert plus
    # one routed expert, dispatched over the ep group; the step's layer list follows the model's flags
    m, g = moe.get("llama-4-maverick-17b-128e"), gpus.get("H100")
    cost = StepCostModel(m, g, parse_instance("colocated", {"tp": 8}, m, g), 0, np.random.default_rng(0))
    ops = cost.layer_ops(64, cost.decode_attention(64, 1, 2000), prefill=False)
    assert [n for n, _ in ops["dense_ffn"]] == [
        "ffn_norm",
        "cast_ffn_in",
        "mlp_gate_up",
        "mlp_act",
        "mlp_down",
    ]
    assert {"shared_gate_up", "shared_down"} <= {n for n, _ in ops["moe_shared"]}
    assert {"experts_gate_up", "experts_down"} <= {n for n, _ in ops["moe_routed"]}
    layers, _ = cost._layers(64, cost.decode_attention(64, 1, 2000), prefill=False)
    dense, sparse = layers[0], layers[1]
    assert dense.dispatch_s == dense.combine_s == dense.shared_s == 0.0 < dense.ffn_s
    assert sparse.dispatch_s > 0 and sparse.combine_s > 0 and sparse.shared_s > 0
    assert layers == [dense, sparse] * 24


def test_colocated_mtp_iteration_runs_the_mtp_module():
    """A colocated iteration with one draft runs the MTP module over its positions and drafts a token
    per decode request (it verified 1 + draft tokens but skipped both until 2026-12-03): its compute
    is the main layers' (at the same token count) plus the MTP layer's, and its head drafts too."""
    spec = {"nodes": 1, "ep": 8, "attn_dp": 8, "micro_batches": 1}
    cost = _cost("colocated", spec, draft=1)
    batch, kv, chunk = 16, 2048, 512
    attn = cost.prefill_attention(chunk, 0)
    step = cost.mixed_step(batch, kv, chunk, attn)
    tokens = batch * 2 + chunk
    main_layers, _ = cost._layers(tokens, attn + cost.decode_attention(batch, 2, kv), prefill=False)
    main = two_stream_schedule(main_layers, 1)
    mtp_compute = step.compute_s - main.compute_busy_s - step.breakdown_s["head"]
    assert step.breakdown_s["mtp"] > 0
    assert mtp_compute > 0
    assert step.breakdown_s["head"] == pytest.approx(cost.head(batch * 2 + 1) + cost.head(batch), rel=1e-12)
    plain = _cost("colocated", spec, draft=0).mixed_step(batch * 2, kv, chunk, attn)
    assert "mtp" not in plain.breakdown_s


def test_prefill_breakdown_books_the_mtp_module():
    """The MTP layer a prefill batch runs is in its breakdown, not only in its time."""
    with_mtp = _cost("prefill", {"nodes": 4, "ep": 32, "attn_dp": 32}, draft=1).prefill_step(4096, 1e-3)
    plain = PREFILL.prefill_step(4096, 1e-3)
    assert with_mtp.breakdown_s["mtp"] > 0
    assert with_mtp.time_s > plain.time_s
    assert "mtp" not in plain.breakdown_s
