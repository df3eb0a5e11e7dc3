"""estimate_training: bad input, properties, and DeepSeek figures (predictions, not fits)."""

from __future__ import annotations

import pytest

from sim import scenarios
from sim.training.estimate import estimate_training

SMALL = dict(
    model="deepseek-v2-lite",
    gpu="H800",
    num_gpus=64,
    tp=1,
    pp=4,
    ep=8,
    seq_len=2048,
    global_batch_seqs=256,
    tokens=1e9,
    precision="bf16",
    schedule="1f1b",
)


@pytest.mark.parametrize(
    "change,match",
    [
        ({"num_gpus": 62}, "multiple of tp\\*pp"),
        ({"dp": 8}, "tp\\*pp\\*dp must equal"),
        ({"ep": 7}, "must divide the number of routed experts"),
        ({"ep": 16, "num_gpus": 32, "global_batch_seqs": 64}, "must divide tp\\*dp"),
        ({"pp": 32, "ep": 2, "num_gpus": 64, "global_batch_seqs": 64}, "no layers"),
        ({"schedule": "gpipe-ish"}, "unknown schedule"),
        ({"model": "deepseek-v3", "pp": 2, "ep": 8, "num_gpus": 16, "global_batch_seqs": 64}, "does not fit"),
        ({"tokens": -1e9}, "tokens .* finite number > 0"),
        ({"tokens": float("nan")}, "tokens .* finite number > 0"),
        ({"tokens": 0}, "tokens .* finite number > 0"),
        ({"usd_per_gpu_hour": -2.0}, "usd_per_gpu_hour must be a finite price > 0"),
        ({"usd_per_gpu_hour": float("nan")}, "usd_per_gpu_hour must be a finite price > 0"),
        ({"routing_skew": -1.0}, "routing_skew .* in \\[0, 10\\)"),
        ({"routing_skew": float("nan")}, "routing_skew .* in \\[0, 10\\)"),
        ({"comm_sm_count": -1}, "comm_sm_count must be >= 0 and leave SMs"),
        ({"comm_sm_count": 132}, "comm_sm_count must be >= 0 and leave SMs"),
        ({"max_nodes_per_token": 0}, "max_nodes_per_token must be a whole number >= 1"),
        ({"recomputation": "full"}, "unknown plan key\\(s\\) recomputation; .* recompute, "),
        ({"cp": 2}, "unknown plan key\\(s\\) cp; .* context_parallel"),
    ],
)
def test_bad_input_is_a_clear_error(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        estimate_training(**{**SMALL, **change})


def test_plan_search_checks_the_budget_first() -> None:
    with pytest.raises(ValueError, match="tokens .* finite number > 0"):
        estimate_training(**{**SMALL, "tokens": float("inf")}, plan="auto")


def test_fp8_on_a800_falls_back_to_bf16_and_says_so() -> None:
    t = estimate_training(**{**SMALL, "gpu": "A800", "precision": "fp8"})
    assert t.plan["gemm_dtype"] == "bf16"
    assert any("fp8" in n for n in t.notes)


def test_breakdowns_sum_to_step_time() -> None:
    t = estimate_training(**SMALL)
    assert sum(t.breakdown_s.values()) == pytest.approx(t.step_time_s)
    assert sum(t.phases_s.values()) == pytest.approx(t.step_time_s)
    assert t.to_dict()["step_time_s"] == t.step_time_s


def test_doubling_dp_doubles_throughput_at_same_step_time() -> None:
    a = estimate_training(**SMALL, free_comm=True)
    b = estimate_training(**{**SMALL, "num_gpus": 128, "global_batch_seqs": 512}, free_comm=True)
    # the pipeline part is identical; only the ZeRO-1 optimizer shard (1/dp of the state) shrinks
    opt_a, opt_b = a.breakdown_s["compute_optimizer"], b.breakdown_s["compute_optimizer"]
    assert b.step_time_s - opt_b == pytest.approx(a.step_time_s - opt_a, rel=1e-12)
    assert opt_b == pytest.approx(opt_a / 2, rel=0.05)
    assert b.tokens_per_s_per_gpu * 128 == pytest.approx(2 * a.tokens_per_s_per_gpu * 64, rel=0.01)
    # with communication, the larger DP group only adds gradient-synchronisation time
    c = estimate_training(**SMALL)
    d = estimate_training(**{**SMALL, "num_gpus": 128, "global_batch_seqs": 512})
    assert d.step_time_s >= c.step_time_s
    assert d.step_time_s - c.step_time_s <= d.breakdown_s.get("exposed_dp_comm", 0.0) + 1e-9


def test_one_gpu_one_microbatch_is_the_sum_of_operator_times() -> None:
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.engine import simulate_step

    m, g = moe.get("deepseek-v2-lite"), gpus.get("H800")
    built = build_plan(
        m, g, 1, pp=1, ep=1, seq_len=1024, global_batch_seqs=1, precision="bf16", schedule="1f1b"
    )
    cost, pieces = built.cost, built.pieces
    result = simulate_step(built.layout, cost)
    ops = 0.0
    for u in pieces[0]:
        lc = cost.unit_cost(u)
        ops += sum(s.duration_s for s in lc.forward + lc.backward + lc.weight)
    ops += sum(s.duration_s for s in cost.tail_segments(0))
    assert result.step_time_s == pytest.approx(ops, rel=1e-9)


# DeepSeek-V3 at its published configuration, costed at one trillion tokens, and its published
# figures with their sources and tolerances (sim/scenarios/v3_pretraining.toml: V3-TR p.5, 180K
# H800 GPU-hours per trillion tokens; ISCA'25 Table 4, 19.926 s per step, MFU 38.94% causal and
# 43.73% non-causal). These are predictions (nothing in the timing model is fitted to them: its
# H800 families come from DeepGEMM/FlashMLA/DeepEP tables and kernel instances of the V3 trace).
V3_SCENARIO = scenarios.get("v3-pretraining")
V3 = V3_SCENARIO.training_kwargs(tokens=1e12)


def within(result, key: str) -> bool:  # type: ignore[no-untyped-def]
    figure = V3_SCENARIO.figure(key)
    return figure.within(figure.of(result))


@pytest.fixture(scope="module")
def v3():  # type: ignore[no-untyped-def]
    return estimate_training(**V3)


def test_v3_runs_and_is_explained(v3) -> None:  # type: ignore[no-untyped-def]
    assert v3.step_time_s > 0 and 0 < v3.mfu < v3.mfu_noncausal < 1
    assert set(v3.phases_s) >= {"1F", "1F1B", "1B", "1W", "bubble", "opt"}
    assert v3.plan["layers_per_piece"][0] >= 1 and len(v3.plan["layers_per_piece"]) == 16


def test_v3_step_time_and_gpu_hours_within_15_percent(v3) -> None:  # type: ignore[no-untyped-def]
    assert within(v3, "v3_step_time_s") and within(v3, "v3_gpu_hours_per_trillion")
    assert v3.gpu_hours == pytest.approx(v3.gpu_hours_per_trillion_tokens, rel=1e-9)  # 1e12 tokens


def test_v3_mfu_within_5_points(v3) -> None:  # type: ignore[no-untyped-def]
    assert within(v3, "v3_mfu_causal") and within(v3, "v3_mfu_noncausal")


def test_v3_with_the_kernels_of_february_2025(v3) -> None:  # type: ignore[no-untyped-def]
    # The earliest public kernel tables (DeepGEMM v1, DeepEP at launch: "H800@2025-02"), closer in
    # time to V3's training (late 2024) than the newest: predicts 19.7 s, 178K GPU-h/T, MFU 39.5%
    feb = estimate_training(**{**V3, "gpu": "H800@2025-02"})
    assert within(feb, "v3_step_time_s") and within(feb, "v3_gpu_hours_per_trillion")
    assert within(feb, "v3_mfu_causal")
    assert feb.step_time_s > v3.step_time_s  # the older kernels are slower
