"""Expert tensor parallelism (``moe_tp``) and the dispatcher key of serving deployments."""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from sim.serving.api import estimate_serving
from sim.serving.deployment import parse_deployment, weight_bytes_per_gpu
from sim.serving.stepcost import StepCostModel

V3, H200 = moe.get("deepseek-v3"), gpus.get("H200")
NODE = {"mode": "colocated", "nodes": 1, "gpus_per_node": 8, "tp": 8, "weight_dtype": "fp8"}


def _inst(**keys):
    return parse_deployment({**NODE, **keys}, V3, H200).colocated


def test_tp8_ep1_serves_v3_on_one_h200_node():
    """vLLM / SGLang / TensorRT-LLM without expert parallelism shard every expert over the TP group:
    8 x H200 then hold V3 (each GPU an eighth of every expert), where whole experts on one GPU
    (ep=1, moe_tp=1) could not fit."""
    inst = _inst(ep=1)
    assert (inst.ep, inst.moe_tp, inst.dispatcher) == (1, 8, "allgather")
    r = estimate_serving(
        "deepseek-v3",
        "H200",
        {**NODE, "ep": 1},
        {"input_len": 1024, "output_len": 128, "concurrency": 8, "mtp_draft_tokens": 0},
        duration_s=30,
        seed=0,
    )
    assert r.output_tokens_per_s > 0 and r.breakdown_s["colocated"]["dispatch"] == 0.0
    with pytest.raises(ValueError, match="ep x moe_tp must equal"):
        parse_deployment({**NODE, "ep": 2, "moe_tp": 2}, V3, H200)


def test_sharded_experts_hold_the_same_bytes_as_spread_experts():
    """Routed-expert weights per GPU are the model's over the instance's GPUs whether experts are
    spread whole (ep=8) or sliced (moe_tp=8) or both (ep=4 x moe_tp=2)."""
    ref = weight_bytes_per_gpu(V3, _inst(ep=8), include_mtp=False)
    assert weight_bytes_per_gpu(V3, _inst(ep=1), include_mtp=False) == pytest.approx(ref, rel=1e-12)
    assert weight_bytes_per_gpu(V3, _inst(ep=4), include_mtp=False) == pytest.approx(ref, rel=1e-12)
    assert _inst(ep=4).moe_tp == 2


@pytest.mark.parametrize(
    "keys, match",
    [
        ({"ep": 8, "dispatcher": "nccl"}, "dispatcher 'nccl' is unknown; allowed"),
        ({"ep": 1, "dispatcher": "deepep"}, "only 'allgather' applies"),
        ({"moe_tp": 3}, "moe_tp=3 must divide the instance's 8 GPUs"),
    ],
)
def test_bad_expert_parallel_keys_say_what_is_allowed(keys, match):
    with pytest.raises(ValueError, match=match):
        parse_deployment({**NODE, **keys}, V3, H200)


def test_moe_tp_must_divide_the_expert_width():
    """Qwen3-30B-A3B's experts are 768 wide: five slices of them are not whole."""
    m = moe.get("qwen3-30b-a3b")
    five = {"mode": "colocated", "nodes": 1, "gpus_per_node": 5, "tp": 1, "ep": 1}
    with pytest.raises(ValueError, match="moe_tp=5 must divide the experts' intermediate size 768"):
        parse_deployment(five, m, H200)
    assert parse_deployment({**five, "gpus_per_node": 4}, m, H200).colocated.moe_tp == 4


def test_sliced_experts_compute_the_same_flops_per_gpu():
    """At the same batch, an eighth of every expert over all rows (moe_tp=8) and whole experts over an
    eighth of the rows (ep=8, all-gather dispatcher) run the same routed FLOPs per GPU."""

    def routed_flops(**keys):
        cost = StepCostModel(V3, H200, _inst(**keys), 0, np.random.default_rng(0))
        ops = cost.timed_layer_ops(4096, 0.0, prefill=True)["moe_routed"]
        return sum(op.flops for op, _ in ops if op.kind.name == "EXPERTS")

    assert routed_flops(ep=1) == pytest.approx(routed_flops(ep=8, dispatcher="allgather"), rel=0.02)


def test_plain_all_to_all_sends_more_than_deepep_across_nodes():
    """DeepEP's normal kernels send a token once per remote node it needs; a plain all-to-all once per
    remote expert, so across nodes its dispatch takes longer."""
    dep = {"mode": "colocated", "nodes": 2, "gpus_per_node": 8, "tp": 1, "ep": 16, "weight_dtype": "fp8"}

    def dispatch(name):
        inst = parse_deployment({**dep, "dispatcher": name}, V3, H200).colocated
        return StepCostModel(V3, H200, inst, 0, np.random.default_rng(0)).all_to_all(4096, 2.0, True)

    assert dispatch("alltoall") > 1.3 * dispatch("deepep")
