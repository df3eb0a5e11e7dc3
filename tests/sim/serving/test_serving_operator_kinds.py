"""Every serving operator has a kind, looked up by exact name; an operator without one raises.

The breakdown of a serving step books each operator's time under its kind
(sim.serving.operator_kinds); before, a substring of the name chose the category and an unmatched
name fell silently into "dense_gemm".
"""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from sim.serving.deployment import parse_instance
from sim.serving.operator_kinds import OPERATOR_KINDS, OpKind, operator_kind
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


def _emitted(cost: StepCostModel) -> set[str]:
    """Names of every operator the cost model builds steps from: both layer forms, head, MTP entry."""
    names = set()
    for prefill in (True, False):
        for ops in cost.layer_ops(256, 1e-4, prefill).values():
            names |= {name for name, _ in ops}
    names |= {name for name, _ in cost.head_ops(64, 256)}
    names |= {name for name, _ in cost.mtp_join_ops(64)}
    return names


CATEGORIES = {kind.value for kind in OpKind} | {"dispatch", "combine", "tp_allreduce"}


@pytest.fixture(scope="module")
def emitted() -> dict[str, set[str]]:
    return {f"{c[0]}/{c[1]}": _emitted(_model(c)) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}" if isinstance(c, tuple) else "")
def test_every_operator_has_a_kind_and_every_category_is_one(case, emitted):
    names = emitted[f"{case[0]}/{case[1]}"]
    assert names - set(OPERATOR_KINDS) == set()
    cost = _model(case)
    steps = [cost.decode_step(32, 2048), cost.prefill_step(4096, 1e-3), cost.mixed_step(16, 2048, 1024, 1e-4)]
    for step in steps:
        assert set(step.breakdown_s) <= CATEGORIES
        assert all(x >= 0 for x in step.breakdown_s.values())


def test_the_cases_emit_every_operator_the_table_names(emitted):
    """No stale entry: each name in the table is an operator some case builds."""
    assert set().union(*emitted.values()) == set(OPERATOR_KINDS)


def test_kinds_of_operators_a_substring_would_have_misread():
    assert operator_kind("experts_act_cast") is OpKind.ACTIVATION  # not an FP8 cast, not an expert GEMM
    assert operator_kind("unpermute_reduce") is OpKind.PERMUTE
    assert operator_kind("ll_combine_recv_reduce") is OpKind.LOW_LATENCY_COMM
    assert operator_kind("final_norm") is OpKind.HEAD and operator_kind("mtp_norms") is OpKind.MTP


def test_unknown_operator_raises():
    with pytest.raises(ValueError, match="'ffn_rmsnorm' has no kind: add it to OPERATOR_KINDS"):
        operator_kind("ffn_rmsnorm")


def test_a_renamed_operator_fails_the_step_instead_of_moving_its_time(monkeypatch):
    cost = _model(CASES[0])
    original = StepCostModel.dense_ffn_ops

    def renamed(self, tokens):  # type: ignore[no-untyped-def]
        return [("ffn_rmsnorm" if n == "ffn_norm" else n, x) for n, x in original(self, tokens)]

    monkeypatch.setattr(StepCostModel, "dense_ffn_ops", renamed)
    with pytest.raises(ValueError, match="ffn_rmsnorm"):
        cost.decode_step(8, 1024)
