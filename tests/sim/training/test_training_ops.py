"""Named per-layer operators of the training cost model (sim.training.costs)."""

from __future__ import annotations

import pytest


def _layer_ops(**kw):  # type: ignore[no-untyped-def]
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.costs import Unit

    args = dict(
        tp=1, pp=16, ep=64, seq_len=4096, global_batch_seqs=15360, precision="fp8", schedule="dualpipe"
    )
    args.update(kw)
    m = moe.get("deepseek-v3")
    cost = build_plan(m, gpus.get("H800"), 2048, **args).cost
    first_moe = next(i for i, is_moe in enumerate(m.moe_layers) if is_moe)
    return cost.unit_cost(Unit("layer", first_moe, True)).ops


def _names(ops, phase):  # type: ignore[no-untyped-def]
    return [o.name for o in ops[phase]]


def test_fp8_recipe_adds_casts_and_transposed_copies() -> None:
    """V3-TR 3.3: every FP8 linear casts its input (forward), dY (dgrad) and transposed X, dY
    (wgrad); the BF16 recipe has none of these."""
    fp8 = _layer_ops()
    bf16 = _layer_ops(precision="bf16")
    for proj in ("q_a_proj", "q_b_proj", "kv_a_proj", "kv_b_proj", "o_proj", "shared_gate_up"):
        assert f"cast {proj} X" in _names(fp8, "forward")
        assert f"cast {proj} dY" in _names(fp8, "backward")
        assert f"cast {proj} X^T,dY^T" in _names(fp8, "weight")
    assert not any(o.name.startswith("cast ") for ph in bf16.values() for o in ph)
    assert sum(o.seconds for o in fp8["weight"]) > 0


def test_selective_recompute_and_expert_wgrad_shapes() -> None:
    """V3-TR 3.2.3: norms, MLA up-projections and SwiGLU run again in the backward; the expert
    weight gradients are one GEMM per local expert (reduction over that expert's tokens)."""
    ops = _layer_ops()
    back = _names(ops, "backward")
    for name in (
        "q_b_proj (recompute)",
        "kv_b_proj (recompute)",
        "attn_norm (recompute)",
        "experts_act (recompute)",
    ):
        assert name in back
    wgrads = [n for n in _names(ops, "weight") if n.startswith("experts_gate_up wgrad")]
    assert len(wgrads) == 256 // 64  # 4 local experts
    none = _names(_layer_ops(recompute="none"), "backward")
    assert not any("(recompute)" in n for n in none)


def test_context_parallel_up_projects_gathered_keys() -> None:
    """With context parallelism the gathered MLA latents are up-projected on every rank."""
    base = _layer_ops(dp=128, global_batch_seqs=1920, seq_len=32768, cp=8)
    names = _names(base, "forward")
    assert "kv_b_proj (gathered context keys)" in names
    one = _layer_ops()
    assert "kv_b_proj (gathered context keys)" not in _names(one, "forward")
    t_cp = sum(o.seconds for o in base["forward"] if "gathered" in o.name)
    t_own = sum(o.seconds for o in base["forward"] if o.name == "kv_b_proj")
    assert t_cp == pytest.approx(7 * t_own, rel=0.25)  # seven other chunks of the same size
