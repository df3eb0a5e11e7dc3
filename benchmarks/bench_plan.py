"""Plan search speed: the serving screen's configurations per second (target >= 2,000/s; Calculon's
search runs 78/s on 2 cores, the figure issue #18 quotes: its package is not on PyPI under that name,
so it is not run here), the wall time of a full serving search for DeepSeek-V3 on one GPU type (1-32
nodes, every deployment key; target <= 30 s) and of a training search for V3 on 2,048 H800 (target
<= 10 s). Each search runs once, cold, in this process; its CPU seconds are printed beside its wall
seconds, with the machine's load average, because a shared machine's other work stretches the wall
time (and, on shared cores, the CPU time) of the same search.

    python benchmarks/bench_plan.py [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from typing import Any

CALCULON_CONFIGS_PER_S = 78.0  # issue #18: Calculon's search on 2 cores


def _timed(run: Callable[[], Any]) -> tuple[Any, float, float]:
    """``run()``'s result, wall seconds and CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def workload() -> dict[str, float]:
    """The searches this benchmark times (also usable by ``benchmarks/compare.py``)."""
    from sim.serving.plan import plan_serving
    from sim.training.search import plan_training

    load_before = os.getloadavg()[0]
    serving, serve_wall, serve_cpu = _timed(lambda: plan_serving("deepseek-v3", "H800", refine_top=0))
    refined, refined_wall, refined_cpu = _timed(lambda: plan_serving("deepseek-v3", "H800", refine_top=3))
    training, train_wall, train_cpu = _timed(lambda: plan_training("deepseek-v3", "H800", 2048))
    return {
        "serving_space_size": float(serving.space_size),
        "serving_configurations_costed": float(serving.configurations_costed),
        "serving_step_evaluations": float(serving.step_evaluations),
        "serving_screen_configurations_per_s": serving.configurations_per_s,
        "serving_search_s": serve_wall,
        "serving_search_cpu_s": serve_cpu,
        "serving_search_refined_s": refined_wall,
        "serving_search_refined_cpu_s": refined_cpu,
        "serving_best_usd_per_million_output_tokens": refined.best.usd_per_million_output_tokens,
        "training_configurations_costed": float(training.configurations_costed),
        "training_configurations_per_s": training.configurations_per_s,
        "training_search_s": train_wall,
        "training_search_cpu_s": train_cpu,
        "training_best_step_time_s": training.best.step_time_s,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "cpus": float(os.cpu_count() or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    w = workload()
    if args.json:
        print(json.dumps(w))
        return
    rate = w["serving_screen_configurations_per_s"]
    print(
        f"serving screen: {w['serving_configurations_costed']:.0f} of {w['serving_space_size']:.0f} "
        f"configurations costed ({w['serving_step_evaluations']:.0f} step-cost evaluations) at {rate:,.0f}/s "
        f"(target >= 2,000/s; {rate / CALCULON_CONFIGS_PER_S:.0f}x Calculon's 78/s)"
    )
    print(
        f"serving search, V3 on H800, 1-32 nodes, every key: {w['serving_search_s']:.1f} s screened "
        f"({w['serving_search_cpu_s']:.1f} s CPU; target <= 30 s), {w['serving_search_refined_s']:.1f} s "
        f"({w['serving_search_refined_cpu_s']:.1f} s CPU) with the 3 best simulated"
    )
    print(
        f"training search, V3 on 2,048 H800: {w['training_search_s']:.1f} s "
        f"({w['training_search_cpu_s']:.1f} s CPU; target <= 10 s), "
        f"{w['training_configurations_costed']:.0f} configurations at "
        f"{w['training_configurations_per_s']:.0f}/s; best step {w['training_best_step_time_s']:.2f} s"
    )
    print(
        f"load average {w['load_average_before']:.1f} before, {w['load_average_after']:.1f} after, "
        f"on {w['cpus']:.0f} CPUs"
    )


if __name__ == "__main__":
    main()
