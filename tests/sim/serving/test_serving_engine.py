"""The serving engine driven by a constant stub step cost: exact event logs, and policies swapped by
deployment keys (issue 15, item 3).

Every step costs 0.5 s (a binary fraction, so every time below is exact in floating point). The
model and GPU only size the KV cache (DeepSeek-V2-Lite on one H100: room for far more than these
requests); MTP is off, so a decode step yields one token per request.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpus
import moe
from sim.serving.costing import ConstantStepCost
from sim.serving.deployment import InstanceSpec, parse_deployment
from sim.serving.engine import Simulation
from sim.serving.metrics import StepRecord
from sim.serving.policies import DEFAULT_POLICIES, POLICY_KEYS, check_policy
from sim.serving.workloads import parse_workload

STEP_S = 0.5
ONE_GPU = {"mode": "colocated", "nodes": 1, "gpus_per_node": 1}


def run(deployment, trace, step_s=STEP_S, kv_transfer_s=0.0, duration_s=20.0):
    m, g = moe.get("deepseek-v2-lite"), gpus.get("H100")
    stub = ConstantStepCost(step_s, kv_transfer_s)

    def costs(spec: InstanceSpec) -> ConstantStepCost:
        return stub

    sim = Simulation(
        m,
        g,
        parse_deployment(deployment, m, g),
        parse_workload({"trace": trace, "mtp_draft_tokens": 0}),
        duration_s=duration_s,
        warmup_s=0.0,
        rng=np.random.default_rng(0),
        step_costs=costs,
        trace_steps=True,
    )
    sim.run()
    return sim


def request_times(sim, rid):
    return {name: float(col[rid]) for name, col in sim.log.times.items()}


def test_two_requests_on_one_gpu_exact_event_log():
    """A: 100-token prompt, 3 output tokens, at t = 0. B: 200-token prompt, 4 output tokens, at 1.25 s,
    while A decodes. Each iteration is 0.5 s. A: prefill [0, 0.5] (first token), decode steps
    [0.5, 1.0] and [1.0, 1.5] (finish). B waits for the iteration under way at its arrival: admitted
    at 1.5, prefill [1.5, 2.0], three decode steps to 3.5."""
    trace = [
        {"arrival_time_s": 0.0, "input_len": 100, "output_len": 3},
        {"arrival_time_s": 1.25, "input_len": 200, "output_len": 4},
    ]
    sim = run(ONE_GPU, trace)
    assert sim.log.size == 2
    assert request_times(sim, 0) == {
        "arrival_s": 0.0,
        "prefill_start_s": 0.0,
        "first_token_s": 0.5,
        "decode_admit_s": 0.5,
        "finish_s": 1.5,
    }
    assert request_times(sim, 1) == {
        "arrival_s": 1.25,
        "prefill_start_s": 1.5,
        "first_token_s": 2.0,
        "decode_admit_s": 2.0,
        "finish_s": 3.5,
    }
    steps = sim.recorder.steps
    assert steps == [
        StepRecord("colocated", 0, 0.0, 0.5, 0, 100),  # A's prompt
        StepRecord("colocated", 0, 0.5, 1.0, 1, 0),  # A's second token
        StepRecord("colocated", 0, 1.0, 1.5, 1, 0),  # A's third: A finishes
        StepRecord("colocated", 0, 1.5, 2.0, 0, 200),  # B's prompt
        StepRecord("colocated", 0, 2.0, 2.5, 1, 0),
        StepRecord("colocated", 0, 2.5, 3.0, 1, 0),
        StepRecord("colocated", 0, 3.0, 3.5, 1, 0),  # B's fourth token: B finishes
    ]
    # the window is [0, 20]: every token counted once, the GPU busy 3.5 s of it
    assert sim.output_tokens.total == 7.0
    assert sim.input_tokens.total == 300.0
    stats = sim.stats["colocated"]
    assert stats.busy_s == 3.5 and stats.steps == 7
    assert stats.breakdown_s["prefill_share_s"] == 1.0  # two iterations of prefill only
    assert sim.completed == 2 and sim.events == 2 + 2 + 7  # arrivals, finishes, steps


def test_disaggregated_exact_event_log_with_kv_transfer():
    """One prefill GPU and one decode GPU, a 0.25 s KV transfer: both requests arrive at 0 and are
    prefilled in one batch [0, 0.5]; they reach decode at 0.75 and decode together; A (3 tokens)
    finishes after two steps, B (4 tokens) after three."""
    dep = {
        "mode": "disaggregated",
        "prefill": {"nodes": 1, "gpus_per_node": 1},
        "decode": {"nodes": 1, "gpus_per_node": 1},
    }
    trace = [
        {"arrival_time_s": 0.0, "input_len": 100, "output_len": 3},
        {"arrival_time_s": 0.0, "input_len": 200, "output_len": 4},
    ]
    sim = run(dep, trace, kv_transfer_s=0.25)
    for rid, finish in ((0, 1.75), (1, 2.25)):
        assert request_times(sim, rid) == {
            "arrival_s": 0.0,
            "prefill_start_s": 0.0,
            "first_token_s": 0.5,
            "decode_admit_s": 0.75,
            "finish_s": finish,
        }
    assert sim.recorder.steps == [
        StepRecord("prefill", 0, 0.0, 0.5, 2, 300),
        StepRecord("decode", 0, 0.75, 1.25, 2, 0),
        StepRecord("decode", 0, 1.25, 1.75, 2, 0),
        StepRecord("decode", 0, 1.75, 2.25, 1, 0),
    ]
    assert sim.output_tokens.total == 7.0


def test_a_policy_swapped_by_a_deployment_key():
    """chunked_prefill: the default cuts a 200-token prompt into 64-token chunks (four iterations before
    its first token); "whole_prompts" prefills it in one iteration."""
    trace = [{"arrival_time_s": 0.0, "input_len": 200, "output_len": 2}]
    small = {**ONE_GPU, "max_tokens_per_gpu": 64}
    chunked = run(small, trace)
    whole = run({**small, "chunked_prefill": "whole_prompts"}, trace)
    assert [s.prefill_tokens for s in chunked.recorder.steps] == [64, 64, 64, 8, 0]
    assert request_times(chunked, 0)["first_token_s"] == 2.0
    assert [s.prefill_tokens for s in whole.recorder.steps] == [200, 0]
    assert request_times(whole, 0)["first_token_s"] == 0.5
    assert request_times(whole, 0)["finish_s"] == 1.0


def test_round_robin_router_ignores_load():
    """Two prefill instances; the first request is long. least_loaded sends the next two to the idle
    instance one after the other (it holds fewer queued tokens); round_robin alternates."""
    dep = {
        "mode": "disaggregated",
        "prefill": {"instances": 2, "nodes": 1, "gpus_per_node": 1, "max_batch_per_gpu": 1},
        "decode": {"nodes": 1, "gpus_per_node": 1},
    }
    trace = [
        {"arrival_time_s": 0.0, "input_len": 1000, "output_len": 2},
        {"arrival_time_s": 0.0, "input_len": 100, "output_len": 2},
        {"arrival_time_s": 0.0, "input_len": 100, "output_len": 2},
    ]
    least = run(dep, trace)
    robin = run({**dep, "prefill": {**dep["prefill"], "router": "round_robin"}}, trace)
    prefill = [s for s in least.recorder.steps if s.role == "prefill"]
    assert [(s.instance, s.start_s) for s in prefill] == [(0, 0.0), (1, 0.0), (1, 0.5)]
    prefill = [s for s in robin.recorder.steps if s.role == "prefill"]
    assert [(s.instance, s.start_s) for s in prefill] == [(0, 0.0), (1, 0.0), (0, 0.5)]


def test_unknown_policies_and_policies_of_other_roles_are_errors():
    m, g = moe.get("deepseek-v2-lite"), gpus.get("H100")
    with pytest.raises(ValueError, match="decode_admission 'lifo' is not a known policy; allowed: "):
        parse_deployment({**ONE_GPU, "decode_admission": "lifo"}, m, g)
    with pytest.raises(ValueError, match="applies to prefill instances"):
        parse_deployment({**ONE_GPU, "prefill_batching": "one_request"}, m, g)
    for key, names in POLICY_KEYS.items():
        assert DEFAULT_POLICIES[key] in names
        assert check_policy(key, names[-1].upper().replace("_", "-")) == names[-1]
    dep = parse_deployment({**ONE_GPU, "decode_admission": "first_fit"}, m, g)
    assert dep.colocated is not None and dep.colocated.decode_admission == "first_fit"
    assert "prefill_batching" not in dep.to_dict()["colocated"]


def test_first_fit_admission_lets_a_small_request_pass_a_large_one():
    """A KV cache of 4,096 tokens (64 pages): A holds 3,000; B (2,000) does not fit behind it, C (500)
    does. fifo_reserve keeps C behind B; first_fit admits C at once."""
    from sim.serving.kvcache import KVCacheManager

    trace = [
        {"arrival_time_s": 0.0, "input_len": 2900, "output_len": 100},
        {"arrival_time_s": 0.0, "input_len": 1900, "output_len": 100},
        {"arrival_time_s": 0.0, "input_len": 400, "output_len": 100},
    ]
    results = {}
    for name in ("fifo_reserve", "first_fit"):
        m, g = moe.get("deepseek-v2-lite"), gpus.get("H100")
        sim = Simulation(
            m,
            g,
            parse_deployment({**ONE_GPU, "decode_admission": name}, m, g),
            parse_workload({"trace": trace, "mtp_draft_tokens": 0}),
            duration_s=200.0,
            warmup_s=0.0,
            rng=np.random.default_rng(0),
            step_costs=lambda spec: ConstantStepCost(STEP_S),
        )
        for instance in sim.colocated:
            instance.kv = KVCacheManager(4096)
        sim.run()
        results[name] = sim.log.column("prefill_start_s")
    assert list(results["fifo_reserve"]) == [0.0, 50.0, 50.0]
    assert list(results["first_fit"]) == [0.0, 50.0, 0.0]
