"""Plan search speed: the serving screen's configurations per second (target >= 2,000/s; Calculon's
search runs 78/s on 2 cores, the figure issue #18 quotes: its package is not on PyPI under that name,
so it is not run here), the wall time of a full serving search for DeepSeek-V3 on one GPU type (1-32
nodes, every deployment key; target <= 30 s) and of a training search for V3 on 2,048 H800 (target
<= 10 s). Each search runs once, cold, in this process.

    python benchmarks/bench_plan.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time

CALCULON_CONFIGS_PER_S = 78.0  # issue #18: Calculon's search on 2 cores


def workload() -> dict[str, float]:
    """The searches this benchmark times (also usable by ``benchmarks/compare.py``)."""
    from sim.serving.plan import plan_serving
    from sim.training.search import plan_training

    t0 = time.perf_counter()
    serving = plan_serving("deepseek-v3", "H800", refine_top=0)
    serve_wall = time.perf_counter() - t0
    t1 = time.perf_counter()
    refined = plan_serving("deepseek-v3", "H800", refine_top=3)
    serve_refined_wall = time.perf_counter() - t1
    t2 = time.perf_counter()
    training = plan_training("deepseek-v3", "H800", 2048)
    train_wall = time.perf_counter() - t2
    return {
        "serving_space_size": float(serving.space_size),
        "serving_configurations_costed": float(serving.configurations_costed),
        "serving_screen_configurations_per_s": serving.configurations_per_s,
        "serving_search_s": serve_wall,
        "serving_search_refined_s": serve_refined_wall,
        "serving_best_usd_per_million_output_tokens": refined.best.usd_per_million_output_tokens,
        "training_configurations_costed": float(training.configurations_costed),
        "training_configurations_per_s": training.configurations_per_s,
        "training_search_s": train_wall,
        "training_best_step_time_s": training.best.step_time_s,
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
        f"configurations costed at {rate:,.0f}/s (target >= 2,000/s; {rate / CALCULON_CONFIGS_PER_S:.0f}x "
        f"Calculon's 78/s)"
    )
    print(
        f"serving search, V3 on H800, 1-32 nodes, every key: {w['serving_search_s']:.1f} s screened "
        f"(target <= 30 s), {w['serving_search_refined_s']:.1f} s with the 3 best simulated"
    )
    print(
        f"training search, V3 on 2,048 H800: {w['training_search_s']:.1f} s (target <= 10 s), "
        f"{w['training_configurations_costed']:.0f} configurations at "
        f"{w['training_configurations_per_s']:.0f}/s; best step {w['training_best_step_time_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
