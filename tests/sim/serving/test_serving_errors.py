"""Bad input: each a ValueError with a sentence saying what is wrong."""

from __future__ import annotations

import io

import pytest

from sim.serving.api import estimate_serving
from sim.serving.workloads import parse_workload, read_trace

DEP = {"mode": "disaggregated", "prefill": {"nodes": 4}, "decode": {"nodes": 18, "redundant_experts": 32}}
WL = {"input_len": 1000, "output_len": 100, "concurrency": 10}


def run(dep=DEP, wl=WL, model="deepseek-v3", gpu="H800"):
    return estimate_serving(model, gpu, dep, wl, duration_s=1)


def test_weights_do_not_fit():
    with pytest.raises(ValueError, match="cannot hold"):
        run({"mode": "colocated", "nodes": 1})


def test_experts_not_divisible_by_ep():
    with pytest.raises(ValueError, match="must divide by ep"):
        run({**DEP, "decode": {"nodes": 18, "redundant_experts": 0}})


def test_unknown_keys():
    with pytest.raises(ValueError, match="Unknown workload keys"):
        run(wl={**WL, "batchsize": 3})
    with pytest.raises(ValueError, match="Unknown decode instance keys"):
        run({**DEP, "decode": {"nodes": 18, "redundant_experts": 32, "pp": 2}})
    with pytest.raises(ValueError, match="Unknown disaggregated deployment keys"):
        run({**DEP, "router": "rr"})
    with pytest.raises(ValueError, match="mode"):
        run({"mode": "split"})


@pytest.mark.parametrize(
    "bad", [{"arrival_rate_per_s": 0}, {"arrival_rate_per_s": -1.0}, {"concurrency": 0}, {"concurrency": 2.5}]
)
def test_zero_or_negative_rates(bad):
    with pytest.raises(ValueError):
        parse_workload({"input_len": 10, "output_len": 10, **bad})


@pytest.mark.parametrize(
    "key,value",
    [
        ("input_len", 0),
        ("output_len", -5),
        ("input_len", float("nan")),
        ("output_len", {"dist": "lognormal"}),
        ("input_len", {"dist": "zipf"}),
    ],
)
def test_bad_lengths(key, value):
    with pytest.raises(ValueError, match=key):
        parse_workload({"input_len": 10, "output_len": 10, "concurrency": 1, key: value})


def test_needs_exactly_one_arrival_mode():
    with pytest.raises(ValueError, match="exactly one"):
        parse_workload({"input_len": 10, "output_len": 10})
    with pytest.raises(ValueError, match="exactly one"):
        parse_workload({"input_len": 10, "output_len": 10, "concurrency": 1, "arrival_rate_per_s": 1})


@pytest.mark.parametrize(
    "text,match",
    [
        ("arrival_time_s,input_len,output_len\n0,10,5\n1,abc,5\n", "not a number"),
        ("arrival_time_s,input_len,output_len\n2,10,5\n1,10,5\n", "must not decrease"),
        ("arrival_time_s,input_len,output_len\n0,0,5\n", "whole number >= 1"),
        ("arrival_time_s,input_len\n0,10\n", "lacks"),
        ("arrival_time_s,input_len,output_len\n", "no rows"),
    ],
)
def test_malformed_trace(text, match):
    with pytest.raises(ValueError, match=match):
        read_trace(io.StringIO(text))


def test_trace_runs(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(
        "arrival_time_s,input_len,output_len\n" + "".join(f"{i * 0.1},{200 + i},{20}\n" for i in range(50))
    )
    r = estimate_serving(
        "deepseek-v2-lite",
        "H800",
        {"mode": "colocated", "nodes": 1, "gpus_per_node": 1},
        {"trace": str(path)},
        duration_s=10,
        warmup_s=0,
    )
    assert r.num_requests == 50


def test_unknown_model_and_gpu():
    with pytest.raises(ValueError):
        run(model="deepseek-v9")
    with pytest.raises(ValueError):
        run(gpu="H900")
