"""Scenarios as data (sim/scenarios/*.toml) and API prices as data (sim/data/api_prices.toml)."""

from __future__ import annotations

import pytest

from sim import scenarios
from sim.cost import api_price, api_prices


def test_every_scenario_loads_with_its_figures_sources_and_tolerances():
    assert {"day6", "profile-prefill", "profile-decode", "v2-generation", "v3-pretraining"} <= set(
        scenarios.names()
    )
    for name in scenarios.names():
        scenario = scenarios.get(name)
        assert scenario.source and scenario.figures
        for figure in scenario.figures:
            assert figure.source and figure.tolerance >= 0 and figure.metric
        if scenario.kind == "serving":
            assert scenario.serving_kwargs()["deployment"]["mode"] in ("colocated", "disaggregated")
        else:
            kwargs = scenario.training_kwargs()
            assert kwargs["num_gpus"] > 0 and kwargs["tokens"] > 0 and "tp" in kwargs


def test_the_v3_pretraining_scenario_is_the_published_plan():
    v3 = scenarios.get("v3-pretraining")
    assert v3.kind == "training" and (v3.num_gpus, v3.tokens) == (2048, 14.8e12)
    assert v3.plan == {
        "tp": 1,
        "pp": 16,
        "ep": 64,
        "seq_len": 4096,
        "global_batch_seqs": 15360,
        "precision": "fp8",
        "schedule": "dualpipe",
    }
    assert v3.figure("v3_mfu_causal").absolute
    with pytest.raises(ValueError, match="is a training scenario"):
        v3.serving_kwargs()
    with pytest.raises(ValueError, match="is a serving scenario"):
        scenarios.get("day6").training_kwargs()


def test_the_day6_scenario_is_the_published_deployment():
    day6 = scenarios.get("day6")
    assert (day6.model, day6.gpu, day6.usd_per_gpu_hour) == ("deepseek-v3", "H800", 2.0)
    assert day6.deployment["decode"] == {
        "instances": 1,
        "nodes": 18,
        "ep": 144,
        "attn_dp": 144,
        "redundant_experts": 32,
    }
    assert day6.workload == {
        "input_len": 4383,
        "output_len": 1211,
        "cache_hit_rate": 0.563,
        "concurrency": 12686,
    }
    figure = day6.figure("day6_decode_tokens_per_s_per_node")
    assert figure.value == 14800 and figure.within(14800 * 1.19) and not figure.within(14800 * 1.21)


def test_copies_are_fresh_and_variants_replace_workload_keys():
    day6 = scenarios.get("day6")
    day6.deployment["decode"]["nodes"] = 1
    assert day6.deployment["decode"]["nodes"] == 18
    bench = scenarios.get("day6", variant="benchmark")
    assert bench.deployment == day6.deployment
    assert bench.workload["input_len"]["dist"] == "lognormal"
    assert bench.workload["concurrency"] == 12686 and bench.workload["mtp_draft_tokens"] == 1


def test_lower_bounds_and_errors():
    v2 = scenarios.get("v2-generation").figure("v2_generation_tokens_per_s_per_node")
    assert v2.lower_bound and v2.within(50_000) and not v2.within(49_999)
    with pytest.raises(ValueError, match="unknown scenario 'day7'; known: "):
        scenarios.get("day7")
    with pytest.raises(ValueError, match="has no variant"):
        scenarios.get("day6", variant="fast")
    with pytest.raises(ValueError, match="has no figure"):
        scenarios.get("day6").figure("nope")
    with pytest.raises(ValueError, match="unknown estimate_serving arguments"):
        scenarios.get("day6").serving_kwargs(durations=1)


def test_api_prices_come_from_the_data_file_with_sources():
    prices, source = api_prices()
    assert source and all(p.source for p in prices)
    flash = api_price("DeepSeek-V4-Flash")
    assert flash is not None and flash.usd_per_million_output == 0.28
    assert api_price("mixtral-8x7b") is None
