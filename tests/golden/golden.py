"""Golden figures: every simulated value the reference tests, the README validation table and the
benchmarks compute, saved so that a refactor can show it changes none of them (issue 14, item 4).

The figures are the simulators' answers, not the published values they are compared with, and no
wall-clock timing. Each group is computed by one function that runs each simulation once and reads
every number of its result (``to_dict()`` flattened to ``path -> value``), so a figure that moves
anywhere in a result (a breakdown category, a percentile, a plan field) shows up by name.

    python -m tests.golden.golden --write     # regenerate tests/golden/figures.json (from the repo root)
    python -m tests.golden.golden             # compare with the file; lists every figure that moved

``tests/golden/test_golden.py`` recomputes each group and requires every number within 1e-9
relative of the file (integers, strings and booleans exactly).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
FIGURES = Path(__file__).resolve().parent / "figures.json"
TRACE = REPO_ROOT / "reference" / "deepseek_v3_train_profile_h800.json.gz"
REL_TOL = 1e-9
REGENERATE = "python -m tests.golden.golden --write (from the repository root)"

# Fields of a result that are not simulated figures: host timings and free text.
NOT_FIGURES = frozenset({"wall_time_s", "wall_s", "seconds", "notes", "note", "message", "source"})


def flatten(value: Any, prefix: str = "", out: dict[str, Any] | None = None) -> dict[str, Any]:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b.0": 1, "a.b.1": 2}``: numbers, strings, booleans and None,
    keyed by their path; fields named in :data:`NOT_FIGURES` are left out."""
    out = {} if out is None else out
    if hasattr(value, "to_dict"):
        value = value.to_dict()
    if isinstance(value, dict):
        for key, item in value.items():
            if str(key) in NOT_FIGURES:
                continue
            flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            flatten(item, f"{prefix}.{index}" if prefix else str(index), out)
    elif isinstance(value, float):  # numpy's float64 too
        out[prefix] = float(value)
    elif value is None or isinstance(value, bool | int | str):
        out[prefix] = value
    else:  # numpy scalars and the like
        out[prefix] = float(value)
    return out


# --- the README validation table (reports.validation.published_checks) ---------------------------


def readme_table() -> dict[str, Any]:
    """Each check's simulated value, keyed ``<kernels>/<figure key>`` ("newest" for the newest kernels)."""
    from reports.validation import published_checks

    out: dict[str, Any] = {}
    for check in published_checks():
        key = f"{check.kernels or 'newest'}/{check.figure.key}"
        if key in out:
            raise ValueError(f"two validation checks share the golden key {key!r}")
        out[key] = check.simulated
    return out


# --- tests/sim/serving/test_serving_reference.py ---------------------------------------------------

_VINTAGES = ("H800", "H800@2025-02")


def serving_reference() -> dict[str, Any]:
    """Every simulation of the serving reference tests (their scenarios: sim/scenarios/*.toml), each
    result flattened whole."""
    from sim import scenarios
    from sim.serving.fleet import isca_decode_bound, size_fleet
    from sim.serving.plan import plan_serving
    from sim.serving.workloads import day6_load_curve

    day6 = scenarios.get("day6")
    out: dict[str, Any] = {}
    out.update(flatten(isca_decode_bound("H800"), "isca_decode_bound"))
    for gpu in _VINTAGES:
        out.update(
            flatten(scenarios.get("profile-prefill").run(gpu=gpu, duration_s=120), f"prefill_r017[{gpu}]")
        )
        out.update(flatten(scenarios.get("profile-decode").run(gpu=gpu), f"decode_r018[{gpu}]"))
        out.update(flatten(day6.run(gpu=gpu), f"day6[{gpu}]"))
    out.update(flatten(scenarios.get("v2-generation").run(), "v2_generation"))
    shapes = {
        role: {k: v for k, v in spec.items() if k != "instances"} if isinstance(spec, dict) else spec
        for role, spec in day6.deployment.items()
    }
    plan = size_fleet(
        day6.model,
        day6.gpu,
        shapes,
        {k: v for k, v in day6.workload.items() if k != "concurrency"},
        day6_load_curve(),
        tpot_target_s=1 / 20,
        ttft_target_s=5.0,
        usd_per_gpu_hour=2.0,
    )
    out.update(flatten(plan, "day6_fleet"))
    # the V4 projections of tests/sim/serving/test_serving_reference.py: plan searches (as notebook 6's)
    workload = {k: v for k, v in day6.workload.items() if k != "concurrency"}
    space = {
        "modes": ["disaggregated"],
        "nodes": [1, 4],
        "prefill_nodes": [1],
        "moe_tp": [1],
        "stacks": ["deepseek"],
        "weight_dtypes": ["fp8"],
        "kv_dtypes": ["fp8"],
        "mtp": [True],
        "prefill_tokens_per_gpu": [8192],
    }
    for tp_options in ((1, 2, 4, 8), (1,)):
        for gpu in ("H800", "A800"):
            for target in (20.0, 100.0):
                search = plan_serving(
                    "deepseek-v4-flash",
                    gpu,
                    workload,
                    {"tokens_per_s_per_user": target, "ttft_p99_s": 5.0},
                    space={**space, "tp": list(tp_options)},
                    refine_top=0,
                )
                found = {
                    "best": search.plans[0] if search.plans else None,
                    "rejected": search.rejected,
                    "configurations_costed": search.configurations_costed,
                }
                tp = ",".join(map(str, tp_options))
                out.update(flatten(found, f"v4_projection[{gpu},{target:g},tp={tp}]"))
    return out


# --- tests/sim/training/test_training_figures.py and test_training_api.py --------------------------


# V3's published pre-training plan (sim/scenarios/v3_pretraining.toml, as tests/sim/training and
# benchmarks/bench_training.py run it), costed here at one trillion tokens
def _v3_plan() -> dict[str, Any]:
    from sim import scenarios

    return scenarios.get("v3-pretraining").plan


def _v3_training() -> dict[str, Any]:
    from sim import scenarios

    return scenarios.get("v3-pretraining").training_kwargs(tokens=1e12)


def training_reference() -> dict[str, Any]:
    """Every simulation of the training reference tests, each result flattened whole."""
    import gpus
    import moe
    from sim.training.api import build_plan
    from sim.training.estimate import estimate_training
    from sim.training.run import Phase, deepseek_v3_run, estimate_run, projections
    from sim.training.trace import compare, compare_kernels

    out: dict[str, Any] = {}
    plan = build_plan(moe.get("deepseek-v3"), gpus.get("H800"), 2048, **_v3_plan()).plan
    out.update(flatten(list(plan.layers_per_piece), "v3_plan.layers_per_piece"))
    out.update(flatten([list(p) for p in plan.pieces_of_rank], "v3_plan.pieces_of_rank"))
    for name, _trace_ms, sim_ms in compare(TRACE):  # the trace's columns are measured, not simulated
        out[f"trace_compare[{name}].simulated_ms"] = float(sim_ms)
    for name, _trace_ms, sim_ms, _trace_n, sim_n in compare_kernels(TRACE):
        out[f"trace_kernels[{name}].simulated_ms"] = float(sim_ms)
        out[f"trace_kernels[{name}].simulated_count"] = float(sim_n)
    for gpu in _VINTAGES:
        out.update(flatten(estimate_training(**{**_v3_training(), "gpu": gpu}), f"v3_training[{gpu}]"))
        out.update(flatten(deepseek_v3_run(gpu=gpu), f"v3_run[{gpu}]"))
    out.update(
        flatten(
            estimate_training(
                model="deepseek-v2",
                gpu="H800",
                num_gpus=2048,
                tp=1,
                pp=16,
                ep=8,
                seq_len=4096,
                global_batch_seqs=9216,
                tokens=1e12,
                precision="bf16",
                schedule="zb1p",
                usd_per_gpu_hour=2.0,
            ),  # fmt: skip
            "v2_training",
        )
    )
    phases = [
        Phase("a", 1e9, 2048, 256),
        Phase("b", seq_len=4096, global_batch_seqs=128, steps=10, context_parallel=2),
        Phase("post", gpu_hours=7.0),
    ]
    run = estimate_run(
        phases, usd_per_gpu_hour=2.0, model="deepseek-v2-lite", gpu="H800", num_gpus=64,
        tp=1, pp=4, ep=8, precision="bf16", schedule="1f1b",
    )  # fmt: skip
    out.update(flatten(run, "v2_lite_run"))
    from sim.training.search import TrainingSpace

    # one schedule and micro-batch size, no MoE TP or CP: the search's shape, in a second
    space = TrainingSpace(
        pp=(8, 16), ep_choices=2, moe_tp=(1,), cp=(1,), micro_batch_seqs=(1,), schedules=("dualpipe",)
    )
    rows = projections(models=("deepseek-v4-flash",), gpus_=("H800",), space=space, refine_top=1)
    out.update(flatten(rows, "projections"))
    return out


# --- the benchmarks' simulator outputs (benchmarks/bench_training.py, bench_serving.py) ------------


def benchmarks() -> dict[str, Any]:
    """What the benchmarks print that the simulators compute (their wall times are not golden)."""
    import numpy as np

    import gpus
    import moe
    from sim.serving.deployment import parse_deployment
    from sim.serving.engine import Simulation
    from sim.serving.workloads import parse_workload
    from sim.training.api import build_plan
    from sim.training.engine import simulate_step

    out: dict[str, Any] = {}
    built = build_plan(moe.get("deepseek-v3"), gpus.get("H800"), 2048, **_v3_plan())
    step = simulate_step(built.layout, built.cost)
    out["bench_training.step_time_s"] = float(step.step_time_s)
    out["bench_training.num_events"] = int(step.num_events)

    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import bench_serving
    finally:
        sys.path.pop(0)
    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    sim = Simulation(
        m,
        g,
        parse_deployment(bench_serving.DEPLOYMENT, m, g),
        parse_workload(bench_serving.WORKLOAD),
        duration_s=1e9,
        warmup_s=0.0,
        rng=np.random.default_rng(0),
        stop_after_completions=100_000,
    )
    sim.run()
    out["bench_serving.requests_completed"] = int(sim.completed)
    out["bench_serving.simulated_s"] = float(sim.env.now)
    out["bench_serving.events"] = int(sim.events)
    st = sim.stats["decode"]
    out["bench_serving.decode_kv_imbalance"] = float(st.kv_imbalance_sum / st.kv_imbalance_steps)
    return out


# --- tests/reports/test_end_to_end.py: its fast sample of third-party records ---------------------

END_TO_END_SAMPLE = ("R044", "R216", "R234", "R121", "R038", "R362")


def end_to_end_sample() -> dict[str, Any]:
    from reports import end_to_end as e2e

    out: dict[str, Any] = {}
    for outcome in e2e.run(only=END_TO_END_SAMPLE, jobs=1):
        rid = outcome.record["id"]
        out[f"{rid}.status"] = outcome.status
        out[f"{rid}.predicted"] = outcome.predicted
    return out


GROUPS: dict[str, Callable[[], dict[str, Any]]] = {
    "readme_table": readme_table,
    "serving_reference": serving_reference,
    "training_reference": training_reference,
    "benchmarks": benchmarks,
    "end_to_end_sample": end_to_end_sample,
}


def differences(expected: dict[str, Any], actual: dict[str, Any], rel_tol: float = REL_TOL) -> list[str]:
    """One line per figure that is missing, new, or moved by more than ``rel_tol`` relative."""
    lines = [f"{key}: missing (was {expected[key]!r})" for key in sorted(set(expected) - set(actual))]
    lines += [f"{key}: new ({actual[key]!r})" for key in sorted(set(actual) - set(expected))]
    for key in sorted(set(expected) & set(actual)):
        want, got = expected[key], actual[key]
        if isinstance(want, float) and isinstance(got, float):
            both_nan = math.isnan(want) and math.isnan(got)
            same = both_nan or math.isclose(got, want, rel_tol=rel_tol, abs_tol=0.0)
            if not same:
                change = f"{100 * (got - want) / want:+.3g} %" if want else "from 0"
                lines.append(f"{key}: {want!r} -> {got!r} ({change})")
        elif type(want) is not type(got) or want != got:
            lines.append(f"{key}: {want!r} -> {got!r}")
    return lines


def _commit() -> str:
    result = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or "unknown"


def load(path: Path = FIGURES) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"rewrite {FIGURES.name}")
    parser.add_argument("--groups", default=",".join(GROUPS), help="comma-separated groups to compute")
    args = parser.parse_args(argv)
    names = [n for n in args.groups.split(",") if n]
    unknown = sorted(set(names) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; known: {sorted(GROUPS)}")
    figures = {name: GROUPS[name]() for name in names}
    if args.write:
        data = load() if FIGURES.exists() and set(names) != set(GROUPS) else {"groups": {}}
        data.update(
            {
                "date": datetime.date.today().isoformat(),
                "commit": _commit(),
                "regenerate": REGENERATE,
                "rel_tol": REL_TOL,
            }
        )
        data["groups"] = {**data.get("groups", {}), **figures}
        text = json.dumps(data, indent=1, sort_keys=True, allow_nan=True)
        FIGURES.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {sum(len(v) for v in figures.values())} figures to {FIGURES}")
        return 0
    golden = load()["groups"]
    moved = [f"{name}/{line}" for name in names for line in differences(golden[name], figures[name])]
    print("\n".join(moved) if moved else f"all {sum(len(v) for v in figures.values())} figures unchanged")
    return 1 if moved else 0


if __name__ == "__main__":
    raise SystemExit(main())
