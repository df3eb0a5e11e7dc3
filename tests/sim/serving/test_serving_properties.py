"""Property tests of the serving simulator: limiting cases with closed-form answers, conservation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gpus
import moe
import sim
from sim.serving.api import estimate_serving
from sim.serving.deployment import parse_deployment
from sim.serving.engine import Simulation
from sim.serving.stepcost import LayerCost, StepCostModel, two_stream_schedule
from sim.serving.workloads import parse_workload

V2L = "deepseek-v2-lite"  # small: one GPU holds it, so property runs are fast
ONE_GPU = {
    "mode": "disaggregated",
    "prefill": {"nodes": 1, "gpus_per_node": 1},
    "decode": {"nodes": 1, "gpus_per_node": 1},
}


def test_single_request_tpot_equals_single_sequence_step():
    """One request alone: TPOT = the decode step time of a batch of one at its KV length."""
    out_len = 200
    r = estimate_serving(
        V2L,
        "H800",
        ONE_GPU,
        {"input_len": 1000, "output_len": out_len, "concurrency": 1},
        duration_s=60,
        warmup_s=0,
        seed=1,
    )
    m, g = moe.get(V2L), gpus.get("H800")
    dep = parse_deployment(ONE_GPU, m, g)
    assert dep.decode is not None
    cost = StepCostModel(m, g, dep.decode, 0, np.random.default_rng(0))
    # KV grows from 1001 to 1199 over the request; the engine looks steps up per 64-token page
    steps = [cost.decode_step(1, int(math.ceil((1001 + i) / 64)) * 64).time_s for i in range(out_len - 1)]
    expected = float(np.mean(steps))
    assert r.num_requests > 3
    assert r.tpot_p50_s == pytest.approx(expected, rel=0.02)


def test_littles_law_closed_loop():
    """Concurrency = throughput x mean end-to-end latency, in steady state (2%)."""
    conc = 64
    r = estimate_serving(
        V2L,
        "H800",
        ONE_GPU,
        {
            "input_len": {"dist": "exponential", "mean": 500},
            "output_len": {"dist": "exponential", "mean": 100},
            "concurrency": conc,
        },
        duration_s=600,
        warmup_s=60,
        seed=3,
    )
    assert r.mean_requests_in_system == pytest.approx(conc, rel=0.02)


def test_doubling_decode_instances_doubles_throughput():
    base = {
        "mode": "disaggregated",
        "prefill": {"instances": 4, "nodes": 1, "gpus_per_node": 1},
        "decode": {"instances": 1, "nodes": 1, "gpus_per_node": 1},
    }
    wl = {"input_len": 300, "output_len": 300, "concurrency": 64}
    one = estimate_serving(V2L, "H800", base, wl, duration_s=120, seed=0)
    base2 = {
        **base,
        "prefill": {**base["prefill"], "instances": 8},
        "decode": {**base["decode"], "instances": 2},
    }
    two = estimate_serving(V2L, "H800", base2, {**wl, "concurrency": 128}, duration_s=120, seed=0)
    assert two.output_tokens_per_s == pytest.approx(2 * one.output_tokens_per_s, rel=0.03)
    assert two.decode_output_tokens_per_s_per_node == pytest.approx(
        one.decode_output_tokens_per_s_per_node, rel=0.03
    )


def test_throughput_does_not_fall_with_batch_until_kv_binds():
    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    dep = parse_deployment(
        {"mode": "disaggregated", "prefill": {"nodes": 4}, "decode": {"nodes": 18, "redundant_experts": 32}},
        m,
        g,
    )
    assert dep.decode is not None
    cost = StepCostModel(m, g, dep.decode, 0, np.random.default_rng(0))
    rates = [b / cost.decode_step(b, 4096).time_s for b in (1, 2, 4, 8, 16, 32, 64, 128, 256)]
    assert all(b >= a * 0.999 for a, b in zip(rates, rates[1:], strict=False)), rates


def test_kv_capacity_bounds_the_batch():
    """Beyond the KV capacity, more concurrency queues instead of growing the batch."""
    tiny = {"mode": "colocated", "nodes": 1, "gpus_per_node": 1, "kv_dtype": "bf16"}
    r = estimate_serving(
        V2L, "H100", tiny, {"input_len": 30000, "output_len": 2000, "concurrency": 400}, duration_s=60, seed=0
    )
    cap = r.memory["colocated"]["kv_capacity_tokens"]
    assert r.mean_batch_per_gpu["colocated"] <= cap / 32000 + 1
    assert "kv_capacity" in r.bound_by


@settings(deadline=None, max_examples=4)
@given(seed=st.integers(0, 1000), conc=st.integers(1, 40))
def test_no_request_lost_or_double_counted(seed, conc):
    m, g = moe.get(V2L), gpus.get("H800")
    dep = parse_deployment(ONE_GPU, m, g)
    wl = parse_workload(
        {
            "input_len": {"dist": "uniform", "low": 10, "high": 400},
            "output_len": {"dist": "uniform", "low": 1, "high": 60},
            "concurrency": conc,
        }
    )
    s = Simulation(m, g, dep, wl, 30.0, 0.0, np.random.default_rng(seed), run_past_window=False)
    s.run()
    log = s.log
    finished = ~np.isnan(log.column("finish_s"))
    in_flight = int((~finished).sum())
    assert in_flight == conc  # closed loop: every finished request was replaced exactly once
    out = log.output_len[: log.size]
    # all output tokens of finished requests were counted (window = whole run)
    assert s.output_tokens.total == pytest.approx(
        float(out[finished].sum()) + _partial(s), rel=1e-9, abs=1e-6
    )
    first = log.column("first_token_s")
    assert np.all(first[finished] <= log.column("finish_s")[finished])


def _partial(s: Simulation) -> float:
    """Tokens counted for requests still running: first token + steps run x tokens per step."""
    total = 0.0
    log = s.log
    for d in s.decode:
        for start in d.batch.start.values():
            total += 1 + (d.batch.step - start) * s.r
    finished_or_decoding = set()
    for d in s.decode:
        finished_or_decoding.update(d.batch.start)
    first = log.column("first_token_s")
    finish = log.column("finish_s")
    for rid in range(log.size):
        if np.isnan(finish[rid]) and rid not in finished_or_decoding and not np.isnan(first[rid]):
            total += 1  # prefilled, in KV transfer or waiting for decode
    return total


def test_two_stream_schedule_limits():
    layers = [LayerCost(0.0, 0.0, 1.0, 2.0)] * 5
    assert two_stream_schedule(layers, 2).total_s == pytest.approx(5 * 2 * 3.0)
    layers = [LayerCost(1.0, 2.0, 0.0, 0.0)] * 5
    assert two_stream_schedule(layers, 2).total_s == pytest.approx(5 * 2 * 3.0)
    # balanced compute and comm overlap almost fully with two micro-batches
    layers = [LayerCost(1.0, 1.0, 1.0, 1.0)] * 50
    assert two_stream_schedule(layers, 2).total_s < 50 * 4.2
    assert two_stream_schedule(layers, 1).total_s == pytest.approx(50 * 4.0)


def test_deterministic_under_seed():
    wl = {
        "input_len": {"dist": "lognormal", "mean": 400, "cv": 1.0},
        "output_len": 50,
        "arrival_rate_per_s": 20,
    }
    a = sim.estimate_serving(V2L, "H800", ONE_GPU, wl, duration_s=30, seed=5)
    b = sim.estimate_serving(V2L, "H800", ONE_GPU, wl, duration_s=30, seed=5)
    assert a.to_dict() == b.to_dict()


def test_pareto_front_is_non_dominated():
    from sim.serving.sweep import pareto_sweep

    front = pareto_sweep(
        V2L,
        "H800",
        {"mode": "colocated", "nodes": 1, "gpus_per_node": 1},
        {"input_len": 300, "output_len": 50},
        [1, 4, 16, 64],
        duration_s=30,
    )
    assert front
    for a in front:
        for b in front:
            assert not (
                b.output_tokens_per_s_per_gpu > a.output_tokens_per_s_per_gpu
                and b.tokens_per_s_per_user > a.tokens_per_s_per_user
            )


def test_cli_json(capsys):
    import json

    from sim.serving.cli import main

    def serve(output_len: int, *extra: str) -> int:
        return main(
            [
                "serve",
                "--model",
                V2L,
                "--deployment",
                '{"mode": "colocated", "nodes": 1, "gpus_per_node": 1}',
                "--workload",
                f'{{"input_len": 100, "output_len": {output_len}, "concurrency": 2}}',
                "--duration-s",
                "5",
                *extra,
            ]
        )

    assert serve(10, "--json") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["decode_output_tokens_per_s_per_node"] > 0
    assert main(["serve", "--deployment", '{"mode": "x"}', "--workload", "{}"]) == 2
    capsys.readouterr()
    assert serve(5000) == 0
    text = capsys.readouterr().out
    assert "tokens_per_s_per_user=nan" in text
    assert "note: no request arrived in the measured window" in text  # the table says why


def test_tensor_parallel_adds_allreduce():
    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    dep = parse_deployment({"mode": "colocated", "nodes": 4, "tp": 8, "attn_dp": 4}, m, g)
    assert dep.colocated is not None
    cost = StepCostModel(m, g, dep.colocated, 0, np.random.default_rng(0))
    step = cost.decode_step(16, 2048)
    assert step.breakdown_s["tp_allreduce"] > 0


def test_prefill_starved_closed_loop_names_prefill_as_the_bound():
    """Long prompts, short outputs, one prefill GPU for one decode GPU: the decode GPU steps all
    the time on small batches (busy ~100%) while requests queue for prefill; the bound is the
    prefill role, and the decode wait is short. With plenty of prefill the bound is decode."""
    wl = {"input_len": 8192, "output_len": 16, "concurrency": 64}
    starved = estimate_serving(V2L, "H100", ONE_GPU, wl, duration_s=60, seed=0)
    assert starved.bound_by.startswith("prefill"), starved.bound_by
    assert starved.utilisation["prefill"] > 0.95
    assert starved.queueing_mean_s > 10 * starved.decode_wait_mean_s
    fed = {**ONE_GPU, "prefill": {**ONE_GPU["prefill"], "instances": 32}}
    short = {"input_len": 256, "output_len": 512, "concurrency": 64}
    assert estimate_serving(V2L, "H100", fed, short, duration_s=60, seed=0).bound_by.startswith("decode")


def test_decode_ranks_take_the_least_kv_and_the_step_charges_the_busiest():
    """The decode balancer places a joining request on the rank with the fewest KV tokens (below
    the per-rank cap); the step's KV is the busiest rank's, shared over the mean request count."""
    from sim.serving.engine import DecodeBatch

    b = DecodeBatch(1.0, ranks=3, rank_cap=2)
    for rid, kv in enumerate((1000, 100, 100, 50)):
        b.join(rid, kv, tokens_left=10)
    # 1000 -> rank 0; 100 -> rank 1; 100 -> rank 2; 50 -> the lighter of ranks 1 and 2 (rank 1)
    assert [b.rank_of[i] for i in range(4)] == [0, 1, 2, 1]
    assert list(b.rank_kv()) == [1000, 150, 100]
    b.join(4, 10, tokens_left=10)  # rank 1 is full (cap 2): the next lightest is rank 2
    assert b.rank_of[4] == 2
    b.step = 3  # every request grew by 3 tokens
    assert list(b.rank_kv()) == [1003, 156, 116]
    assert b.busiest_kv() == 1003 and b.mean_kv() == pytest.approx((1260 + 15) / 5)
    per_gpu, kv, imbalance = b.step_shape()
    assert per_gpu == 2 and kv == 512  # 1003 / 2 rounded up to a 64-token page
    assert imbalance == pytest.approx(1003 / (1275 / 3))
    b.step = 10
    assert sorted(rid for rid, _ in b.pop_done()) == [0, 1, 2, 3, 4]
    assert b.size == 0 and list(b.rank_n) == [0, 0, 0] and list(b.rank_kv()) == [0, 0, 0]
    one = DecodeBatch(1.0)  # one rank: the whole batch
    for rid, kv in enumerate((1000, 100)):
        one.join(rid, kv, tokens_left=10)
    assert one.step_shape() == (2, 576, 1.0)


def test_wide_length_spread_loads_the_busiest_rank_more():
    """Same means, lengths fixed or drawn with CV 1: the drawn lengths leave the busiest rank
    further above the mean, and the attention of every step waits for it."""
    dep = {
        "mode": "disaggregated",
        "prefill": {"nodes": 1, "gpus_per_node": 8, "attn_dp": 8, "ep": 8},
        "decode": {"nodes": 1, "gpus_per_node": 8, "attn_dp": 8, "ep": 8},
    }
    spread = {"dist": "lognormal", "mean": 2000, "cv": 1.0, "max": 20000}
    runs = {
        name: estimate_serving(
            V2L,
            "H800",
            dep,
            {"input_len": inp, "output_len": 300, "concurrency": 256},
            duration_s=120,
            seed=3,
        )
        for name, inp in (("fixed", 2000), ("spread", spread))
    }
    assert runs["fixed"].kv_imbalance["decode"] >= 1.0
    assert runs["spread"].kv_imbalance["decode"] > runs["fixed"].kv_imbalance["decode"] + 0.02
    one = estimate_serving(
        V2L,
        "H800",
        ONE_GPU,
        {"input_len": spread, "output_len": 300, "concurrency": 16},
        duration_s=60,
        seed=3,
    )
    assert one.kv_imbalance["decode"] == pytest.approx(1.0)


def test_requests_arriving_in_the_window_are_followed_to_completion():
    """Latency statistics cover the requests that arrived in the window, followed past its end:
    with requests longer than the window, selecting on the finish time would keep none."""
    wl = {"input_len": 1000, "output_len": 2000, "concurrency": 4}
    r = estimate_serving(V2L, "H800", ONE_GPU, wl, duration_s=10, warmup_s=5, seed=0)
    step = r.tpot_p50_s
    assert 2000 * step > 10  # a request outlasts the window
    assert r.num_requests > 0 and math.isfinite(r.tokens_per_s_per_user)
    assert not any("had not finished" in n for n in r.notes)
    assert any("fewer than two request lifetimes" in n for n in r.notes)
    m, g = moe.get(V2L), gpus.get("H800")
    sim_ = Simulation(
        m, g, parse_deployment(ONE_GPU, m, g), parse_workload(wl), 10.0, 5.0, np.random.default_rng(0)
    )
    sim_.run()
    arrival, finish = sim_.log.column("arrival_s"), sim_.log.column("finish_s")
    inside = (arrival >= 5.0) & (arrival <= 15.0)
    assert inside.sum() == r.num_requests and np.all(~np.isnan(finish[inside]))
    assert sim_.env.now <= 25.0 and sim_.window_open == 0
    late = estimate_serving(
        V2L, "H800", ONE_GPU, {**wl, "output_len": 20000}, duration_s=10, warmup_s=5, seed=0
    )
    assert any("no request arrived in the measured window" in n for n in late.notes)
    assert math.isnan(late.tokens_per_s_per_user)


def test_colocated_cache_hits_cost_their_prefix_attention():
    """Co-located chunked prefill: a cached prefix is not recomputed, but the new tokens attend to it,
    so a hit costs more than nothing and less than a miss; with no hits the hit price is undefined."""
    dep = {"mode": "colocated", "nodes": 1, "gpus_per_node": 1}
    wl = {"input_len": 3000, "output_len": 50, "concurrency": 8}
    hits = estimate_serving(V2L, "H800", dep, {**wl, "cache_hit_rate": 0.6}, duration_s=60, seed=0)
    hit, miss = hits.usd_per_million_input_tokens_cache_hit, hits.usd_per_million_input_tokens_cache_miss
    assert 0.0 < hit < miss
    none = estimate_serving(V2L, "H800", dep, {**wl, "cache_hit_rate": 0.0}, duration_s=60, seed=0)
    assert math.isnan(none.usd_per_million_input_tokens_cache_hit)


@pytest.mark.parametrize("tp", [1, 2])
def test_fleet_decode_capacity_agrees_with_the_simulation_per_gpu(tp):
    """The analytic decode capacity (fleet sizing, the plan search) counts output per GPU the way the
    simulation does, with tensor-parallel attention too: a rank of ``tp`` GPUs shares its requests."""
    from sim.serving.plan import decode_operating_point

    m, g = moe.get(V2L), gpus.get("H800")
    decode = {"nodes": 1, "gpus_per_node": 2, "tp": tp}
    lengths = {"input_len": 1000, "output_len": 400, "mtp_draft_tokens": 0}
    dep = parse_deployment({"mode": "disaggregated", "prefill": decode, "decode": decode}, m, g)
    assert dep.decode is not None
    workload = parse_workload({**lengths, "arrival_rate_per_s": 1.0})
    cap = decode_operating_point(m, g, dep.decode, workload, 1 / 30)
    assert cap.feasible and cap.batch_per_gpu > 1
    ranks = dep.decode.attn_dp
    run = estimate_serving(
        V2L,
        g,
        {
            "mode": "disaggregated",
            "prefill": {"nodes": 1, "gpus_per_node": 1, "instances": 8},
            "decode": {**decode, "max_batch_per_gpu": cap.batch_per_gpu},
        },
        {**lengths, "concurrency": cap.batch_per_gpu * ranks + 64},
        duration_s=120,
        seed=0,
    )
    assert run.mean_batch_per_gpu["decode"] == pytest.approx(cap.batch_per_gpu, rel=0.05)
    per_gpu = run.decode_output_tokens_per_s_per_node / 2  # one node of 2 GPUs
    assert per_gpu == pytest.approx(cap.output_tokens_per_s_per_gpu, rel=0.05)


def test_tensor_parallel_ranks_dispatch_their_share_of_the_tokens():
    """A rank of tp GPUs holds the same tokens; each GPU dispatches 1/tp of them (as the router and
    the routed rows count them), so the all-to-all of 64 tokens at tp 2 is that of 32 at tp 1."""
    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    costs = {}
    for tp in (1, 2):
        dep = parse_deployment({"mode": "colocated", "nodes": 4, "tp": tp, "ep": 32}, m, g)
        assert dep.colocated is not None
        costs[tp] = StepCostModel(m, g, dep.colocated, 0, np.random.default_rng(0))
    for bytes_per_value, dedupe in ((1.0, False), (2.0, True)):
        assert costs[2].all_to_all(64, bytes_per_value, dedupe) == pytest.approx(
            costs[1].all_to_all(32, bytes_per_value, dedupe)
        )
