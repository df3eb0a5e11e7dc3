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


# --- the screen's shortcuts give what the long way gives ------------------------------------------


def _exhaustive(**search) -> tuple[list[tuple[float, dict]], dict[str, int], int]:
    """plan_training's screen the long way: every plan built whole without a shared cache, its memory
    walked from its layout (memory_report), its no-wait bound from its built layout's grouped actions;
    (the fitting candidates' best bounds, sorted; rejections; configurations costed)."""
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.memory import memory_report
    from sim.training.search import (
        RECOMPUTE_LADDER,
        LayoutSummary,
        _training_candidates,
        action_time_s,
        summary_bound_s,
    )

    m, g = moe.get(search["model"]), gpus.get(search["gpu"])
    common = {k: search[k] for k in ("seq_len", "global_batch_seqs")} | {"precision": "fp8"}
    cands = _training_candidates(
        m, g, search["num_gpus"], search["global_batch_seqs"], search["seq_len"], TrainingSpace()
    )
    screened, rejected, costed = [], {"does not fit": 0, "not valid": 0}, 0
    for cand in cands:
        fits: dict[str, tuple[float, dict]] = {}
        for recompute in RECOMPUTE_LADDER:
            if (recompute == "none" and "selective" not in fits) or (
                recompute == "full" and "selective" in fits
            ):
                continue
            kwargs = {**cand, **common, "recompute": recompute}
            try:
                built = build_plan(m, g, search["num_gpus"], **kwargs)
            except ValueError:
                rejected["not valid"] += 1
                break
            costed += 1
            report = memory_report(m, g, built.plan, built.layout, built.pieces)
            if max(r.total_bytes - r.capacity_bytes for r in report) > 0:
                rejected["does not fit"] += 1
                continue
            summary = LayoutSummary.of(built.layout)
            bound = summary_bound_s(summary, lambda rank, group, b=built: action_time_s(b.cost, rank, group))
            fits[recompute] = (bound, kwargs)
        if fits:
            screened.append(min(fits.values(), key=lambda x: x[0]))
    screened.sort(key=lambda x: x[0])
    return screened, rejected, costed


def test_the_screen_ranks_as_the_exhaustive_screen(search) -> None:
    """Shared caches, extrapolated layout summaries, summed activation peaks and estimated bounds
    change nothing: the plans shown, their bounds (exactly), the rejections and the counts."""
    screened, rejected, costed = _exhaustive(**SMALL)
    assert search.rejected == rejected and search.configurations_costed == costed
    assert f"{len(screened)} fit" in search.notes[-1]
    shown = [(r["screen_step_s"], r["plan"]) for r in search.ranked]
    simulated = sorted(shown[: search.refined], key=lambda x: x[0])  # the refined, re-sorted by bound
    assert simulated + shown[search.refined :] == screened[: len(shown)]


def test_grouped_bound_equals_the_walked_definition() -> None:
    """summary_bound_s over a layout's grouped actions (what the screen computes) equals
    screen_bound_s, which walks every action of every rank, on plans of each schedule."""
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.search import LayoutSummary, action_time_s, screen_bound_s, summary_bound_s

    m, g = moe.get("deepseek-v2-lite"), gpus.get("H100")
    plans = [
        dict(tp=1, pp=4, ep=4, schedule="1f1b"),
        dict(tp=2, pp=2, ep=8, schedule="zb1p", recompute="full"),
        dict(tp=1, pp=2, ep=8, schedule="interleaved-1f1b", virtual_stages=2),
        dict(tp=1, pp=4, ep=4, schedule="dualpipe", micro_batch_seqs=2),
        dict(tp=1, pp=2, ep=8, schedule="dualpipev", cp=2),
    ]
    for plan in plans:
        built = build_plan(m, g, 16, seq_len=2048, global_batch_seqs=64, precision="fp8", **plan)
        walked = screen_bound_s(built.layout, built.cost)
        grouped = summary_bound_s(
            LayoutSummary.of(built.layout), lambda rank, group, b=built: action_time_s(b.cost, rank, group)
        )
        assert walked > 0 and grouped == pytest.approx(walked, rel=1e-12), plan


def test_extrapolated_layout_summaries_equal_built_ones() -> None:
    from sim.training.api import PlanCache
    from sim.training.schedules import get_schedule
    from sim.training.search import LayoutSummaries, LayoutSummary

    summaries = LayoutSummaries(PlanCache())
    checked = 0
    for name in ("1f1b", "zb1p", "interleaved-1f1b", "dualpipe", "dualpipev"):
        for pp in (2, 4, 6, 8):
            for v in (2, 3) if name == "interleaved-1f1b" else (1,):
                for n in range(2 * pp, 14 * pp + 3):
                    try:
                        get_schedule(name).validate(pp, n, v)
                    except ValueError:
                        continue
                    got = summaries.get(name, pp, n, v)
                    want = LayoutSummary.of(get_schedule(name).build(pp, n, v))
                    assert (got.shape(), got.counts()) == (want.shape(), want.counts()), (name, pp, n, v)
                    checked += 1
    assert checked > 500
    assert len(summaries.built) < checked / 3  # most were extrapolated, not built


def _partition_by_definition(costs: list[float], num_pieces: int) -> list[tuple[int, int]]:
    """The linear partition's (start, end) blocks by the dynamic programme's definition (the scan
    partition_units shortcuts where it can)."""
    n = len(costs)
    prefix = [0.0]
    for c in costs:
        prefix.append(prefix[-1] + c)
    inf = float("inf")
    best = [[inf] * (n + 1) for _ in range(num_pieces + 1)]
    cut = [[0] * (n + 1) for _ in range(num_pieces + 1)]
    best[0][0] = 0.0
    for p in range(1, num_pieces + 1):
        for i in range(p, n - (num_pieces - p) + 1):
            for j in range(p - 1, i):
                v = max(best[p - 1][j], prefix[i] - prefix[j])
                if v < best[p][i] - 1e-15:
                    best[p][i] = v
                    cut[p][i] = j
    bounds, i = [], n
    for p in range(num_pieces, 0, -1):
        bounds.append((cut[p][i], i))
        i = cut[p][i]
    return bounds[::-1]


def test_partition_units_equals_the_dynamic_programme() -> None:
    """Random block costs, with plateaus and near-ties (the shortcut's conditions) and without."""
    import numpy as np

    from sim.training.costs import Unit
    from sim.training.plan import partition_units

    rng = np.random.default_rng(18)
    for _ in range(400):
        n = int(rng.integers(1, 40))
        kinds = rng.choice([0.3, 1.0, 1.0, 1.0, 2.5, 1e-16], size=n)
        costs = [float(c) * (1 + 1e-15 * int(rng.integers(0, 3))) for c in kinds]
        pieces = int(rng.integers(1, n + 1))
        units = [Unit("layer", i, True) for i in range(n)]
        got = partition_units(units, costs, pieces)
        want = _partition_by_definition(costs, pieces)
        assert [(p[0].index, p[-1].index + 1) for p in got] == want
