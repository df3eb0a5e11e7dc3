"""sim.plan_training: the wider training plan search (virtual stages, micro-batch size, context
parallelism, MoE TP, recomputation, five schedules), screened by the no-wait bound and simulated."""

from __future__ import annotations

import pytest

import sim
from sim.training.search import TrainingSpace, plan_training

SMALL = dict(
    model="deepseek-v2-lite", gpu="H100", num_gpus=16, seq_len=2048, global_batch_seqs=64, tokens=1e9
)


@pytest.fixture(scope="module")
def search():
    return plan_training(**SMALL, refine_top=3)


def test_search_costs_the_space_and_simulates_the_best(search) -> None:
    assert search.space_size >= search.configurations_costed > 100
    assert search.refined == 3
    simulated = [r for r in search.ranked if "simulated_step_s" in r]
    assert len(simulated) == 3
    assert search.best.step_time_s == min(r["simulated_step_s"] for r in simulated)
    # every key of the space is searched
    plans = [r["plan"] for r in search.ranked]
    assert {
        "tp",
        "pp",
        "ep",
        "moe_tp",
        "cp",
        "micro_batch_seqs",
        "virtual_stages",
        "recompute",
        "schedule",
    } <= set(plans[0])
    assert search.best.runners_up and "plan search" in search.best.notes[-1]
    # the screen is a lower bound on the simulated step of the same plan (no waiting, exposed comm)
    for r in simulated:
        assert r["screen_step_s"] <= r["simulated_step_s"] * 1.001


def test_space_options_reach_the_candidates() -> None:
    space = TrainingSpace(
        tp=(1,), pp=(2,), cp=(1, 2), micro_batch_seqs=(1, 2), schedules=("interleaved-1f1b",)
    )
    search = plan_training(**SMALL, space=space, refine_top=1)
    plans = [r["plan"] for r in search.ranked]
    assert {p["cp"] for p in plans} == {1, 2}
    assert {p["micro_batch_seqs"] for p in plans} == {1, 2}
    assert {p["virtual_stages"] for p in plans} <= {2, 4} and all(
        p["schedule"] == "interleaved-1f1b" for p in plans
    )


def test_estimate_training_auto_runs_the_search() -> None:
    small = {k: v for k, v in SMALL.items()}
    result = sim.estimate_training(
        model=small.pop("model"), gpu=small.pop("gpu"), num_gpus=small.pop("num_gpus"), plan="auto", **small
    )
    assert result.step_time_s > 0 and "plan search" in result.notes[-1]


@pytest.mark.parametrize(
    "change,match",
    [
        ({"objective": "fast"}, "objective must be"),
        ({"num_gpus": 0}, "num_gpus must be"),
        ({"tokens": -1.0}, "tokens"),
        ({"space": TrainingSpace(schedules=("gpipe",))}, "unknown schedule"),
        ({"model": "deepseek-v3", "num_gpus": 1, "global_batch_seqs": 8}, "no plan .* fits"),
    ],
)
def test_bad_input_is_a_clear_error(change: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plan_training(**{**SMALL, **change})
