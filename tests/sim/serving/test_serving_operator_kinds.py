"""Every serving operator carries its kind (moe.operators.OpKind), and the kind alone decides the
breakdown category its time is booked under: renaming an operator moves none of its time (before the
operator inventory, a substring of the name chose the category and an unmatched name fell silently
into "dense_gemm"; then an exact-name table did).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from moe.operators import Op, OpKind
from sim.serving import stepcost
from sim.serving.deployment import parse_instance
from sim.serving.stepcost import StepCostModel

H800 = gpus.get("H800")

# (model, role, instance, MTP draft tokens): MLA (V3, V2-Lite without a q LoRA, V3.2 with its
# indexer), GQA (Qwen3 with q/k norms, Mixtral, gpt-oss, Llama 4 with a shared expert and dense
# layers), V4's compressed attention; decode with ep > 1 (low-latency kernels) and ep = 1, prefill
# (normal kernels: permute), tensor-parallel attention, and MTP.
CASES = [
    ("deepseek-v3", "decode", {"nodes": 16, "ep": 128, "attn_dp": 128}, 1),
    ("deepseek-v3", "prefill", {"nodes": 4, "ep": 32, "attn_dp": 32}, 1),
    ("deepseek-v3.2", "decode", {"nodes": 4, "ep": 32}, 0),
    ("deepseek-v2-lite", "colocated", {"nodes": 1, "tp": 2}, 0),
    ("qwen3-235b-a22b", "decode", {"nodes": 2, "ep": 16}, 0),
    ("mixtral-8x7b", "colocated", {"nodes": 1, "gpus_per_node": 1, "tp": 1}, 0),
    ("gpt-oss-120b", "prefill", {"nodes": 1, "ep": 8}, 0),
    ("llama-4-maverick-17b-128e", "decode", {"nodes": 2, "ep": 16}, 0),
    ("deepseek-v4-flash", "decode", {"nodes": 2, "ep": 16}, 1),
]


def _model(case: tuple) -> StepCostModel:
    name, role, spec, draft = case
    m = moe.get(name)
    return StepCostModel(m, H800, parse_instance(role, spec, m, H800), draft, np.random.default_rng(0))


def _emitted(cost: StepCostModel) -> list[Op]:
    """Every layer operator the cost model builds steps from, in both layer forms."""
    ops: list[Op] = []
    for prefill in (True, False):
        for timed in cost.timed_layer_ops(256, 1e-4, prefill).values():
            ops += [op for op, _ in timed]
    return ops


CATEGORIES = {kind.category for kind in OpKind} | {"dispatch", "combine", "tp_allreduce", "mtp", "head"}


@pytest.fixture(scope="module")
def emitted() -> dict[str, list[Op]]:
    return {f"{c[0]}/{c[1]}": _emitted(_model(c)) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}" if isinstance(c, tuple) else "")
def test_every_operator_has_a_kind_and_every_category_is_one(case, emitted):
    ops = emitted[f"{case[0]}/{case[1]}"]
    assert ops and all(isinstance(op.kind, OpKind) and not op.kind.is_comm for op in ops)
    cost = _model(case)
    steps = [cost.decode_step(32, 2048), cost.prefill_step(4096, 1e-3), cost.mixed_step(16, 2048, 1024, 1e-4)]
    for step in steps:
        assert set(step.breakdown_s) <= CATEGORIES
        assert all(x >= 0 for x in step.breakdown_s.values())


def test_kinds_of_operators_a_substring_would_have_misread(emitted):
    kinds = {op.name: op.kind for ops in emitted.values() for op in ops}
    assert kinds["experts_act"] is OpKind.ACTIVATION  # not an FP8 cast, not an expert GEMM
    assert kinds["unpermute_reduce"] is OpKind.PERMUTE
    assert kinds["ll_combine_recv_reduce"] is OpKind.LOW_LATENCY_COMM
    assert kinds["router_gemm"].category == kinds["gating"].category == "routing"


def test_a_renamed_operator_keeps_its_time_in_its_category(monkeypatch):
    cost = _model(CASES[0])
    before = cost.decode_step(8, 1024).breakdown_s
    original = stepcost.serving_layer_ops

    def renamed(*args, **kwargs):  # type: ignore[no-untyped-def]
        out = original(*args, **kwargs)
        out["dense_ffn"] = [
            Op(f"renamed_{op.name}", op.kind, op.work, op.phase, op.stage) for op in out["dense_ffn"]
        ]
        return out

    monkeypatch.setattr(stepcost, "serving_layer_ops", renamed)
    fresh = _model(CASES[0])
    assert [op.name for op, _ in fresh.timed_layer_ops(8, 1e-4, False)["dense_ffn"]][0] == "renamed_ffn_norm"
    assert fresh.decode_step(8, 1024).breakdown_s == before
