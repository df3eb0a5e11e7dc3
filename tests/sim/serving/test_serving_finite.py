"""Finite benchmarks (workload ``requests``): offline batches and bounded loops, to their makespan."""

from __future__ import annotations

import numpy as np
import pytest

from sim.serving.api import simulate
from sim.serving.workloads import parse_workload

V2L = "deepseek-v2-lite"  # one GPU holds it: fast runs
ONE_GPU = {"mode": "colocated", "nodes": 1, "gpus_per_node": 1}
DISAGG = {
    "mode": "disaggregated",
    "prefill": {"nodes": 1, "gpus_per_node": 1},
    "decode": {"nodes": 1, "gpus_per_node": 1},
}


@pytest.mark.parametrize("deployment", [ONE_GPU, DISAGG], ids=["colocated", "disaggregated"])
def test_offline_batch_is_tokens_over_makespan(deployment):
    """All requests arrive at t = 0 and finish; throughput is exactly their tokens over the last finish."""
    n, n_in, n_out = 200, 300, 50
    result, table = simulate(V2L, "H800", deployment, {"input_len": n_in, "output_len": n_out, "requests": n})
    assert len(table["arrival_s"]) == n
    assert np.all(table["arrival_s"] == 0.0)
    assert not np.any(np.isnan(table["finish_s"]))
    makespan = float(np.max(table["finish_s"]))
    assert result.duration_s == pytest.approx(makespan, rel=1e-12)
    assert result.output_tokens_per_s == pytest.approx(n * n_out / makespan, rel=1e-9)
    assert result.input_tokens_per_s == pytest.approx(n * n_in / makespan, rel=1e-9)
    assert result.num_requests == n
    assert any("finite benchmark of 200 requests" in note for note in result.notes)


def test_offline_batch_is_not_a_warm_closed_loop():
    """A batch pays its start (everyone prefills at once) and its tail (a shrinking batch): its
    throughput differs from a steady closed loop at the batch's own size, which has neither."""
    wl = {"input_len": 300, "output_len": 50}
    batch, _ = simulate(V2L, "H800", ONE_GPU, {**wl, "requests": 64})
    steady, _ = simulate(V2L, "H800", ONE_GPU, {**wl, "concurrency": 64}, duration_s=60)
    assert batch.output_tokens_per_s < steady.output_tokens_per_s


def test_bounded_closed_loop_keeps_concurrency_and_stops():
    """``requests`` with ``concurrency``: never more than that many in flight, exactly ``requests`` issued."""
    n, c = 40, 4
    result, table = simulate(
        V2L, "H800", ONE_GPU, {"input_len": 200, "output_len": 30, "concurrency": c, "requests": n}
    )
    arrivals, finishes = table["arrival_s"], table["finish_s"]
    assert len(arrivals) == n and not np.any(np.isnan(finishes))
    for t in np.unique(arrivals):
        in_flight = np.sum((arrivals <= t) & (finishes > t))
        assert in_flight <= c
    assert result.duration_s == pytest.approx(float(finishes.max()))


def test_bounded_open_loop_issues_requests_then_stops():
    result, table = simulate(
        V2L,
        "H800",
        ONE_GPU,
        {"input_len": 200, "output_len": 30, "arrival_rate_per_s": 5.0, "requests": 25},
        seed=3,
    )
    assert len(table["arrival_s"]) == 25
    assert np.all(np.diff(table["arrival_s"]) >= 0)
    assert result.num_requests == 25


def test_finite_runs_are_deterministic_under_a_seed():
    wl = {"input_len": {"dist": "uniform", "low": 100, "high": 400}, "output_len": 40, "requests": 50}
    a, _ = simulate(V2L, "H800", ONE_GPU, wl, seed=7)
    b, _ = simulate(V2L, "H800", ONE_GPU, wl, seed=7)
    assert a.output_tokens_per_s == b.output_tokens_per_s


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"requests": 0}, "requests must be a whole number >= 1"),
        ({"requests": 2.5}, "requests must be a whole number >= 1"),
        ({"requests": float("nan")}, "requests must be a whole number >= 1"),
        ({"requests": True}, "requests must be a whole number >= 1"),
        (
            {"requests": 3, "trace": [{"arrival_time_s": 0, "input_len": 5, "output_len": 5}]},
            "cannot be combined",
        ),
        ({}, "exactly one of"),
        ({"concurrency": 2, "arrival_rate_per_s": 1.0}, "exactly one of"),
    ],
)
def test_bad_finite_workloads_are_refused(spec, match):
    base = {"input_len": 10, "output_len": 10}
    if "trace" in spec:
        base = {}
    with pytest.raises(ValueError, match=match):
        parse_workload({**base, **spec})


def test_workload_kinds():
    base = {"input_len": 10, "output_len": 10}
    assert parse_workload({**base, "requests": 5}).kind == "offline"
    assert parse_workload({**base, "requests": 5, "concurrency": 2}).kind == "closed"
    assert parse_workload({**base, "requests": 5}).finite
    assert not parse_workload({**base, "concurrency": 2}).finite
