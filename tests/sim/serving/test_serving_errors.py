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


@pytest.mark.parametrize(
    "hours, match",
    [
        (5, "sequence of 24 hourly request counts"),
        ("x" * 24, "sequence of 24 hourly request counts"),
        (("1",) * 24, "Hour 0: requests per hour must be a number"),
        ((True,) * 24, "Hour 0: requests per hour must be a number"),
        ((1.0,) * 23, "24 hourly values"),
    ],
)
def test_bad_load_curve(hours, match):
    from sim.serving.workloads import DailyLoadCurve

    with pytest.raises(ValueError, match=match):
        DailyLoadCurve(hours)


def test_load_curve_keeps_a_tuple_of_floats():
    from sim.serving.workloads import DailyLoadCurve

    curve = DailyLoadCurve([3600] * 24)
    assert curve.requests_per_hour == (3600.0,) * 24 and curve.arrival_rate_per_s[0] == 1.0


FLEET_DEP = {
    "mode": "disaggregated",
    "prefill": {"nodes": 4, "ep": 32, "attn_dp": 32},
    "decode": {"nodes": 18, "ep": 144, "attn_dp": 144, "redundant_experts": 32},
}


@pytest.mark.parametrize(
    "change, match",
    [
        ({"load_curve": [100.0] * 24}, "load_curve must be a DailyLoadCurve"),
        ({"tpot_target_s": True}, "tpot_target_s must be a finite positive number"),
        ({"tpot_target_s": float("inf")}, "tpot_target_s must be a finite positive number"),
        ({"ttft_target_s": -1.0}, "ttft_target_s must be a finite positive number"),
        ({"workload": 5}, "workload must be a dict"),
    ],
)
def test_fleet_sizing_checks_its_inputs_first(change, match):
    from sim.serving.fleet import size_fleet
    from sim.serving.workloads import day6_load_curve

    args = {
        "model": "deepseek-v3",
        "gpu": "H800",
        "deployment": FLEET_DEP,
        "workload": {"input_len": 1000, "output_len": 100},
        "load_curve": day6_load_curve(),
        "tpot_target_s": 0.05,
        "ttft_target_s": 2.0,
        **change,
    }
    with pytest.raises(ValueError, match=match):
        size_fleet(**args)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"num_layers": 0}, "num_layers must be a whole number >= 1"),
        ({"tokens_per_expert": -32}, "tokens_per_expert must be a whole number >= 1"),
        ({"dispatch_bytes": float("nan")}, "dispatch_bytes .* finite number > 0"),
    ],
)
def test_isca_bound_bad_input(change, match):
    from sim.serving.fleet import isca_decode_bound

    with pytest.raises(ValueError, match=match):
        isca_decode_bound(**change)


@pytest.mark.parametrize("hour", [24, -1, 1.5, True])
def test_verify_fleet_hour_needs_an_hour_of_the_day(hour):
    from sim.serving.fleet import verify_fleet_hour
    from sim.serving.workloads import day6_load_curve

    with pytest.raises(ValueError, match="hour must be a whole number 0..23"):
        verify_fleet_hour("deepseek-v3", "H800", FLEET_DEP, {}, None, day6_load_curve(), hour)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "values, match",
    [
        ([2.7], "whole number >= 1"),
        ([float("nan")], "whole number >= 1"),
        (["abc"], "whole number >= 1"),
        ([0], "whole number >= 1"),
        (8, "list of whole numbers"),
        ([], "at least one concurrency"),
    ],
)
def test_sweep_bad_concurrencies(values, match):
    from sim.serving.sweep import pareto_sweep

    with pytest.raises(ValueError, match=match):
        pareto_sweep("deepseek-v3", "H800", DEP, WL, values, duration_s=1)
