"""DeepSeek's published serving figures: predictions of the simulator, never fitting targets.

Sources: deepseek_figures.md section 3 (Day 6 of the open-infra week; ISCA'25 section 2.3.2),
section 5.2 (V2 report), measured_calibration.json R011-R018. Tolerances are the issue's.
Known misses are marked xfail(strict=True) with the measured figure and the cause, so they turn
into failures the day the model starts to meet them (and must then be un-marked).
"""

from __future__ import annotations

import pytest

from sim import scenarios
from sim.serving.fleet import isca_decode_bound, size_fleet
from sim.serving.plan import plan_serving
from sim.serving.workloads import day6_load_curve

# The configurations and their published figures (value, tolerance, source): sim/scenarios/*.toml
DAY6 = scenarios.get("day6")
PROFILE_PREFILL = scenarios.get("profile-prefill")
PROFILE_DECODE = scenarios.get("profile-decode")
V2_GENERATION = scenarios.get("v2-generation")


def approx(figure: scenarios.ScenarioFigure):
    """The published value of ``figure`` within its tolerance."""
    if figure.absolute:
        return pytest.approx(figure.value, abs=figure.tolerance)
    return pytest.approx(figure.value, rel=figure.tolerance)


def instance_shapes(deployment):
    """The deployment with each role's instance count left to the fleet sizing."""
    return {
        role: {k: v for k, v in spec.items() if k != "instances"} if isinstance(spec, dict) else spec
        for role, spec in deployment.items()
    }


def day6_run(gpu: str = "H800"):
    """Day 6's decode instance at its concurrency, fed by four prefill instances, over the
    acceptance check's 600 s (the closed loop starts every client at once: a long window is nearer
    the steady state)."""
    return DAY6.run(gpu=gpu)


@pytest.fixture(scope="module")
def day6():
    return day6_run()


def test_isca25_decode_bound():
    # ISCA'25 p.5: 120.96 us per EP step, 14.76 ms per token (2%)
    b = isca_decode_bound("H800")
    assert b.ep_step_s == pytest.approx(120.96e-6, rel=0.02)
    assert b.tpot_s == pytest.approx(14.76e-3, rel=0.02)


@pytest.mark.parametrize("gpu", ["H800", "H800@2025-02"])
def test_profile_prefill_r017(gpu):
    # predicts 66.2k (+6%) with the newest kernels, 61.4k (-2%) with those of 2025-02 (the README's
    # 60 s run): every kernel of a prefill batch counted (FP8 casts, MLA norms, RoPE and K/V
    # assembly, router GEMM, permute/unpermute) with the trace-fitted memory-bound kernels
    a = PROFILE_PREFILL.run(gpu=gpu, duration_s=120)  # the README table runs its 60 s
    figure = PROFILE_PREFILL.figure("profile_prefill_tokens_per_s_per_node")
    assert figure.of(a) == approx(figure)


R018_MISS = (
    "R018 decode with the newest kernels predicts 22,350 output tokens/s per node, +20.2% against 18,598 "
    "(tolerance 20%): it was +18.7% before the trace families were refitted on whole shapes (+19.1%) and "
    "the DeepEP low-latency send kernels and combine sum stopped being charged twice (+20.2%); both are "
    "corrections of mechanism, not of this figure. With MTP off it is 17.7k (-5%)."
)


@pytest.mark.parametrize(
    "gpu", [pytest.param("H800", marks=pytest.mark.xfail(strict=True, reason=R018_MISS)), "H800@2025-02"]
)
def test_profile_decode_r018_capacity(gpu):
    # predicts 22.35k (+20.2%) with MTP (1 draft, 85%), 17.7k (-5%) without; 21.2k (+14%, MTP on) with
    # the kernels of 2025-02 (after the trace families' whole-shape refit and the low-latency kernels
    # charged once). 128 requests per GPU, KV ~4,096: enough prefill instances and clients
    # to keep the decode instance full (the acceptance script's own case b is prefill-bound: 2
    # prefill instances feed ~124 requests/s)
    b = PROFILE_DECODE.run(gpu=gpu)
    assert b.mean_batch_per_gpu["decode"] == pytest.approx(128, rel=0.05)
    figure = PROFILE_DECODE.figure("profile_decode_tokens_per_s_per_node")
    assert figure.of(b) == approx(figure)


def test_day6_decode_instance_holds_the_published_load(day6):
    # Day 6: 12,686 concurrent requests on one 18-node decode instance (EP144), which bounds the
    # deployment (10%: requests waiting in prefill or between turns are not in decode)
    concurrency, decode_ranks = DAY6.workload["concurrency"], DAY6.deployment["decode"]["attn_dp"]
    assert day6.mean_batch_per_gpu["decode"] == pytest.approx(concurrency / decode_ranks, rel=0.1)
    assert day6.bound_by.startswith("decode")


@pytest.mark.xfail(
    strict=True,
    reason="predicts 17.3k tok/s/node (+17%, within) but 25.7 tok/s/user (+22%) with MTP (1 draft, 85%); "
    "13.3k (-10%) and 19.5 (-7%) without MTP; with the kernels of 2025-02 both are within (below); "
    "see the README",
)
def test_day6_decode_within_20pct(day6):
    for key in ("day6_decode_tokens_per_s_per_node", "day6_tokens_per_s_per_user"):
        figure = DAY6.figure(key)
        assert figure.of(day6) == approx(figure)


# The same systems predicted with the kernels of their time. Day 6 (window 2025-02-27/28) and the
# profile-data traces (2025-02-27) ran before DeepGEMM's v2/v3 tables, FlashMLA's 2025-04-22 kernel
# and DeepEP's 2025-04/06 updates; "H800@2025-02" is the calibration fitted, by the same rule, to
# the tables as they stood at the end of February 2025 (sim.calibration.published.vintages()). The
# vintage is chosen by the tables' dates. It was built after the default prediction's +21% per-user
# miss above was known, and the README says so.
@pytest.fixture(scope="module")
def day6_feb():
    return day6_run("H800@2025-02")


def test_day6_with_the_kernels_of_february_2025(day6_feb, day6):
    # predicts 16.4k tok/s/node (+11%), 24.4 tok/s/user (+16%), $0.271/M output (-10%) with MTP (1 draft, 85%)
    for figure in DAY6.figures:
        assert figure.of(day6_feb) == approx(figure), figure.key
    # the older kernels are slower: the same deployment serves fewer tokens
    assert day6_feb.decode_output_tokens_per_s_per_node < day6.decode_output_tokens_per_s_per_node


def test_day6_output_cost(day6):
    # predicts $0.257 (-14%) with MTP (1 draft, 85%), $0.335 (+12%) without
    figure = DAY6.figure("day6_usd_per_million_output")
    assert figure.of(day6) == approx(figure)


def test_day6_input_cost_and_prefill_utilisation(day6):
    # Day 6: 73.7k input tok/s per prefill node is a 24 h fleet average -> $0.060 per M input at $16/node-h.
    # Here prefill runs below capacity (decode-bound), so it is charged for idle time too.
    util = day6.utilisation["prefill"]
    assert 0.2 < util < 0.95
    capacity_per_node = day6.prefill_input_tokens_per_s_per_node / util
    # the fleet's 24 h average (73.7k per prefill node) is a floor for what a busy node can do
    assert capacity_per_node > 73_700
    assert day6.usd_per_million_input_tokens_cache_hit < day6.usd_per_million_input_tokens_cache_miss


@pytest.mark.xfail(
    strict=True,
    reason="predicts 43.1k tok/s (newest kernels; 40.1k with those of 2025-02) against DeepSeek's "
    "'over 50K': a lower bound, which the prediction does not reach; see the README",
)
def test_v2_generation_claim():
    # V2-TR p.16: "over 50K" generated tok/s on one 8xH800 node, FP8 weights, ~6-bit KV: a lower
    # bound (reports.published: v2_generation_tokens_per_s_per_node), so the check is that the
    # prediction reaches it.
    # "Maximum generation throughput": the decode node filled until its KV cache binds. Lengths are not
    # stated; assumed 2,048 in / 512 out.
    r = V2_GENERATION.run()
    assert "kv_capacity" in r.bound_by
    figure = V2_GENERATION.figure("v2_generation_tokens_per_s_per_node")
    assert figure.lower_bound and figure.within(figure.of(r))


def test_day6_fleet_sizing():
    plan = size_fleet(
        DAY6.model,
        DAY6.gpu,
        instance_shapes(DAY6.deployment),
        {k: v for k, v in DAY6.workload.items() if k != "concurrency"},
        day6_load_curve(),
        tpot_target_s=1 / 20,
        ttft_target_s=5.0,
        usd_per_gpu_hour=2.0,
    )
    assert len(plan.nodes_by_hour) == 24
    assert max(plan.nodes_by_hour) > 2 * min(plan.nodes_by_hour)
    assert plan.decode.tokens_per_s_per_user >= 20


# V4 projections are plan searches (notebook 6): the Day-6 request mix, decode on 1 or 4 nodes with
# attention tensor-parallel over part of a node, one stack, FP8 weights and KV cache, the model's MTP
V4_PROJECTION_SPACE = {
    "modes": ["disaggregated"],
    "nodes": [1, 4],
    "prefill_nodes": [1],
    "tp": [1, 2, 4, 8],
    "moe_tp": [1],
    "stacks": ["deepseek"],
    "weight_dtypes": ["fp8"],
    "kv_dtypes": ["fp8"],
    "mtp": [True],
    "prefill_tokens_per_gpu": [8192],
}


def v4_projection(gpu: str, tokens_per_s_per_user: float, tp: tuple[int, ...]):
    workload = {k: v for k, v in DAY6.workload.items() if k != "concurrency"}
    targets = {"tokens_per_s_per_user": tokens_per_s_per_user, "ttft_p99_s": 5.0}
    space = {**V4_PROJECTION_SPACE, "tp": list(tp)}
    return plan_serving("deepseek-v4-flash", gpu, workload, targets, space=space, refine_top=0)


@pytest.mark.parametrize("bad", [{"nodes": []}, {"tp": [0]}, {"tp": [1.5]}])
def test_projection_searches_refuse_impossible_options(bad):
    with pytest.raises(ValueError, match="non-empty list|whole numbers >= 1"):
        plan_serving("deepseek-v4-flash", "H800", space={**V4_PROJECTION_SPACE, **bad}, refine_top=0)


@pytest.mark.parametrize("gpu", ["H800", "A800"])
def test_v4_projections(gpu):
    for target in (20.0, 100.0):
        wide = v4_projection(gpu, target, (1, 2, 4, 8))
        if not wide.plans:
            assert wide.rejected_examples and "misses the target" in wide.explain()
            continue
        best = wide.best
        assert best.usd_per_million_output_tokens > 0 and best.tokens_per_s_per_user >= target
        assert best.deployment["decode"]["tp"] in (1, 2, 4, 8)
        # a wider search (tensor-parallel attention too) is never dearer than data-parallel alone
        only_dp = v4_projection(gpu, target, (1,))
        if only_dp.plans:
            assert best.usd_per_million_output_tokens <= only_dp.best.usd_per_million_output_tokens
