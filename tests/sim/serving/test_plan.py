"""sim.plan_serving: the closed-form screen against the discrete-event simulation, bad input, and
DeepSeek's own setting (V3 on H800, the Day-6 request mix, TPOT <= 50 ms)."""

from __future__ import annotations

import math

import pytest

import sim
from sim.serving.plan import ServingSearch, framework_flags, plan_serving

# Small spaces so that each search and its refinement take a few seconds on two cores.
SMALL_SPACE = {
    "nodes": [1],
    "prefill_nodes": [1],
    "tp": [1, 2],
    "moe_tp": [1, 8],
    "stacks": ["deepseek"],
    "kv_dtypes": ["fp8"],
    "mtp": [False],
    "batch_caps": [16, 64, 256],
    "prefill_tokens_per_gpu": [8192],
}
# Output lengths spread out so that the closed loop's requests do not finish in lockstep.
WORKLOAD = {
    "input_len": 1024,
    "output_len": {"dist": "uniform", "low": 64, "high": 192},
    "cache_hit_rate": 0.5,
}
TARGETS = {"tokens_per_s_per_user": 50.0, "ttft_p99_s": 2.0}
CASES = [
    ("qwen3-30b-a3b", "H100", "disaggregated", "fp8"),
    ("deepseek-v2-lite", "H20", "colocated", "fp8"),
    ("mixtral-8x7b", "A800", "disaggregated", "bf16"),
]


@pytest.fixture(scope="module")
def searches() -> dict[tuple[str, str], ServingSearch]:
    out = {}
    for model, gpu, mode, dtype in CASES:
        space = {**SMALL_SPACE, "modes": [mode], "weight_dtypes": [dtype], "kv_dtypes": [dtype]}
        out[(model, gpu)] = plan_serving(
            model, gpu, WORKLOAD, TARGETS, space=space, refine_top=2, duration_s=20.0, seed=0
        )
    return out


@pytest.mark.parametrize("model,gpu", [(c[0], c[1]) for c in CASES])
def test_screen_agrees_with_simulation(
    searches: dict[tuple[str, str], ServingSearch], model: str, gpu: str
) -> None:
    """On the refined plans the screen and the simulation agree within 10% on tokens/s per GPU and
    TPOT p50, and the plan the screen ranks first is within 5% of the cheapest simulated one."""
    search = searches[(model, gpu)]
    refined = [p for p in search.plans if p.simulated is not None]
    assert len(refined) == 2
    for plan in refined:
        sim_out = plan.simulated
        assert sim_out is not None
        tps = sim_out["output_tokens_per_s_per_gpu"]
        assert abs(plan.output_tokens_per_s_per_gpu - tps) / tps < 0.10, (plan.summary(), sim_out)
        assert abs(plan.tpot_s - sim_out["tpot_p50_s"]) / sim_out["tpot_p50_s"] < 0.10, (
            plan.summary(),
            sim_out,
        )
    screen_first = min(refined, key=lambda p: p.usd_per_million_output_tokens)
    best_sim = min(p.simulated["usd_per_million_output_tokens"] for p in refined if p.simulated)
    assert screen_first.simulated is not None
    assert screen_first.simulated["usd_per_million_output_tokens"] <= best_sim * 1.05


def test_search_reports_its_size_and_front(searches: dict[tuple[str, str], ServingSearch]) -> None:
    search = searches[("qwen3-30b-a3b", "H100")]
    assert search.space_size >= search.configurations_costed > 0
    assert search.plans[0].usd_per_million_output_tokens <= search.plans[-1].usd_per_million_output_tokens
    # the front is non-dominated and sorted by tokens/s per user
    users = [p.tokens_per_s_per_user for p in search.front]
    per_gpu = [p.output_tokens_per_s_per_gpu for p in search.front]
    assert users == sorted(users)
    assert all(a > b for a, b in zip(per_gpu, per_gpu[1:], strict=False))
    best = search.best
    assert best.tokens_per_s_per_user >= TARGETS["tokens_per_s_per_user"] * 0.999
    assert set(best.flags) == {"vllm", "sglang", "trtllm"}
    assert "decode" in best.bound_by
    assert search.to_dict()["plans"][0]["deployment"]["mode"] == "disaggregated"


def test_framework_flags_follow_the_readme_table() -> None:
    dep = {
        "mode": "colocated",
        "nodes": 1,
        "gpus_per_node": 8,
        "tp": 2,
        "attn_dp": 4,
        "ep": 8,
        "moe_tp": 1,
        "dispatcher": "deepep",
        "micro_batches": 2,
        "tp_allreduce": "nccl",
        "max_batch_per_gpu": 64,
        "max_tokens_per_gpu": 8192,
        "kv_dtype": "fp8",
        "weight_dtype": "fp8",
    }
    flags = framework_flags(dep, mtp_draft_tokens=1, model_name="deepseek-ai/DeepSeek-V3")
    assert "--tensor-parallel-size 2 --data-parallel-size 4 --enable-expert-parallel" in flags["vllm"]
    assert "--enable-dbo" in flags["vllm"] and "--max-num-seqs 64" in flags["vllm"]
    assert "--tp 8" in flags["sglang"] and "--dp 4 --enable-dp-attention" in flags["sglang"]
    assert "--enable-deepep-moe" in flags["sglang"] and "--speculative-num-draft-tokens 2" in flags["sglang"]
    assert "--ep_size 8" in flags["trtllm"] and "not expressible" in flags["trtllm"]


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Unknown GPU|unknown GPU|known"):
        plan_serving("qwen3-30b-a3b", "H999", WORKLOAD, TARGETS, space=SMALL_SPACE, refine_top=0)
    with pytest.raises(ValueError, match="known|unknown|Unknown"):
        plan_serving("no-such-model", "H100", WORKLOAD, TARGETS, space=SMALL_SPACE, refine_top=0)
    with pytest.raises(ValueError, match="Unknown target keys"):
        plan_serving("qwen3-30b-a3b", "H100", WORKLOAD, {"tpot_s": 0.05}, space=SMALL_SPACE, refine_top=0)
    with pytest.raises(ValueError, match="finite number > 0"):
        plan_serving("qwen3-30b-a3b", "H100", WORKLOAD, {"tpot_p50_s": -1.0}, space=SMALL_SPACE, refine_top=0)
    with pytest.raises(ValueError, match="Unknown search-space keys"):
        plan_serving("qwen3-30b-a3b", "H100", WORKLOAD, TARGETS, space={"node": [1]}, refine_top=0)
    with pytest.raises(ValueError, match="Unknown workload keys"):
        plan_serving(
            "qwen3-30b-a3b", "H100", {**WORKLOAD, "input": 3}, TARGETS, space=SMALL_SPACE, refine_top=0
        )


def test_impossible_targets_say_why() -> None:
    search = plan_serving(
        "qwen3-30b-a3b",
        "H100",
        WORKLOAD,
        {"tokens_per_s_per_user": 1e5, "ttft_p99_s": 2.0},
        space={**SMALL_SPACE, "modes": ["disaggregated"]},
        refine_top=0,
    )
    assert not search.plans
    assert search.rejected["misses the target"] > 0
    with pytest.raises(ValueError, match="misses the target"):
        _ = search.best
    budget = plan_serving(
        "qwen3-30b-a3b", "H100", WORKLOAD, {**TARGETS, "max_gpus": 8}, space=SMALL_SPACE, refine_top=0
    )
    assert budget.rejected["exceeds the budget"] > 0
    assert all(p.total_gpus <= 8 for p in budget.plans)


def test_deterministic_under_a_seed() -> None:
    space = {**SMALL_SPACE, "modes": ["colocated"]}
    a = plan_serving("qwen3-30b-a3b", "H100", WORKLOAD, TARGETS, space=space, refine_top=0, seed=3)
    b = plan_serving("qwen3-30b-a3b", "H100", WORKLOAD, TARGETS, space=space, refine_top=0, seed=3)
    assert [p.to_dict() for p in a.plans] == [p.to_dict() for p in b.plans]


def test_deepseek_day6_plan_is_no_dearer_than_deepseeks_deployment() -> None:
    """DeepSeek's setting (V3, H800, the Day-6 request mix, TPOT <= 50 ms): the cheapest plan found,
    simulated, costs no more per million output tokens (every GPU, prefill included) than DeepSeek's
    published deployment (4 prefill instances of 4 nodes EP32, one decode instance of 18 nodes EP144)
    simulated the same way."""
    from sim import scenarios

    day6 = scenarios.get("day6")  # sim/scenarios/day6.toml: DeepSeek's published deployment and mix
    DAY6_DEPLOYMENT, DAY6_WORKLOAD = day6.deployment, day6.workload

    workload = {k: v for k, v in DAY6_WORKLOAD.items() if k != "concurrency"}
    space = {
        "modes": ["disaggregated"],
        "nodes": [4, 8, 16, 18, 32],
        "prefill_nodes": [2, 4],
        "tp": [1],
        "moe_tp": [1],
        "stacks": ["deepseek"],
        "weight_dtypes": ["fp8"],
        "kv_dtypes": ["bf16"],
        "mtp": [True],
    }
    # DeepSeek publishes no TTFT; 30 s keeps the closed loop's start-up backlog out of the verdict
    search = plan_serving(
        "deepseek-v3", "H800", workload, {"tpot_p50_s": 0.050, "ttft_p99_s": 30.0}, space=space, refine_top=1
    )
    best = search.best
    assert best.simulated is not None
    deepseek = sim.estimate_serving(
        "deepseek-v3", "H800", DAY6_DEPLOYMENT, DAY6_WORKLOAD, duration_s=240, warmup_s=120
    )
    deepseek_usd = deepseek.total_gpus * deepseek.usd_per_gpu_hour / 3600 / deepseek.output_tokens_per_s * 1e6
    assert deepseek.tpot_p50_s <= 0.050  # DeepSeek's deployment meets the target too
    assert best.simulated["tpot_p50_s"] <= 0.050 * 1.05
    assert best.simulated["meets_targets"] == 1.0
    assert best.simulated["usd_per_million_output_tokens"] <= deepseek_usd
    assert math.isfinite(best.usd_per_request)


def test_shared_step_caches_change_no_step_cost() -> None:
    """Cost models that share operator times and timed layer operators (as plan_serving's do) give the
    same step costs as models that share nothing, whatever the order they fill the caches in."""
    import numpy as np

    import gpus
    import moe
    from sim.serving.deployment import parse_instance
    from sim.serving.stepcost import StepCostModel

    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    specs = [
        {
            "nodes": 1,
            "tp": tp,
            "attn_dp": 8 // tp,
            "moe_tp": moe_tp,
            "ep": 8 // moe_tp,
            "kv_dtype": kv,
            "stack": st,
        }
        for tp in (1, 8)
        for moe_tp in (1, 8)
        for kv in ("fp8", "bf16")
        for st in ("deepseek", "sglang-0.4")
    ]
    ops: dict = {}
    layers: dict = {}
    for role in ("decode", "colocated"):
        for draft in (0, 1):
            for spec in specs:
                inst = parse_instance(role, {**spec, "redundant_experts": 0, "weight_dtype": "fp8"}, m, g)
                shared = StepCostModel(m, g, inst, draft, np.random.default_rng(0), {}, ops, layers)
                alone = StepCostModel(m, g, inst, draft, np.random.default_rng(0))
                for b in (1, 7, 64):
                    assert shared.decode_step(b, 3000) == alone.decode_step(b, 3000)
                    assert shared.mixed_step(b, 3000, 512, 1e-4) == alone.mixed_step(b, 3000, 512, 1e-4)
                assert shared.prefill_step(4096, 2e-3) == alone.prefill_step(4096, 2e-3)


def test_plan_serving_ranks_as_without_shared_step_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen with its cost models sharing operator times and layer operators ranks, rejects and
    counts as one whose cost models share nothing."""
    import sim.serving.plan as plan_module
    from sim.serving.stepcost import StepCostModel

    class Unshared(StepCostModel):
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args[:6])  # the imbalance draws stay shared, as plan_serving has them

    space = {
        **SMALL_SPACE,
        "nodes": [1, 2],
        "stacks": None,
        "kv_dtypes": ["fp8", "bf16"],
        "mtp": [True, False],
    }
    shared = plan_serving("deepseek-v2-lite", "H20", WORKLOAD, TARGETS, space=space, refine_top=0)
    monkeypatch.setattr(plan_module, "StepCostModel", Unshared)
    alone = plan_serving("deepseek-v2-lite", "H20", WORKLOAD, TARGETS, space=space, refine_top=0)
    strip = ("wall_s", "screen_wall_s", "configurations_per_s", "notes", "step_evaluations")
    a, b = shared.to_dict(), alone.to_dict()
    assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    assert a["plans"] and a["rejected"] == b["rejected"]
