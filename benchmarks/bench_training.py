"""Wall time to simulate one DeepSeek-V3 step on 2,048 H800 (target < 2 s), and SimPy events/s
of the training engine as a ratio to a bare SimPy timeout loop measured in the same run."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path
from typing import Any

import simpy


def bare_simpy_events_per_s(n: int = 200_000) -> float:
    env = simpy.Environment()

    def loop(env: simpy.Environment):  # type: ignore[no-untyped-def]
        for _ in range(n):
            yield env.timeout(1.0)

    env.process(loop(env))
    t0 = time.perf_counter()
    env.run()
    return n / (time.perf_counter() - t0)


def workload() -> dict[str, float]:
    """The simulator work this benchmark times, in one fresh process (cold caches): the whole
    ``estimate_training`` call, then the engine alone on the same plan with its cost caches warm.
    Also used by ``benchmarks/compare.py``."""
    import gpus
    import moe
    from sim import estimate_training  # the public entry point (benchmarks/compare.py runs older trees too)
    from sim.training.api import build_plan
    from sim.training.engine import simulate_step

    # V3's published plan (sim/scenarios/v3_pretraining.toml), read with tomllib: benchmarks/compare.py
    # runs this file against older trees too
    with (Path(__file__).resolve().parents[1] / "sim" / "scenarios" / "v3_pretraining.toml").open("rb") as f:
        kw: dict[str, Any] = tomllib.load(f)["plan"]
    t0 = time.perf_counter()
    r = estimate_training(model="deepseek-v3", gpu="H800", num_gpus=2048, tokens=1e12, **kw)
    whole = time.perf_counter() - t0
    built = build_plan(moe.get("deepseek-v3"), gpus.get("H800"), 2048, **kw)
    # a tree from before build_plan returned BuiltPlan (benchmarks/compare.py runs this against it)
    layout, cost = (built.layout, built.cost) if hasattr(built, "layout") else (built[1], built[2])
    for _ in range(1):
        simulate_step(layout, cost)  # warm the cost caches
    t1 = time.perf_counter()
    res = simulate_step(layout, cost)
    engine_s = time.perf_counter() - t1
    events = len(res.timelines) and res.num_events
    return {
        "estimate_training_s": whole,
        "engine_s": engine_s,
        "events": events,
        "step_time_s": r.step_time_s,
    }


def main() -> None:
    w = workload()
    whole, engine_s, events = w["estimate_training_s"], w["engine_s"], w["events"]
    engine_rate = events / engine_s
    bare = bare_simpy_events_per_s()
    print(
        f"V3 step on 2048 H800: estimate_training wall {whole:.2f} s (target < 2 s); "
        f"engine only {engine_s:.2f} s for {events} segments; step {w['step_time_s']:.2f} s"
    )
    print(
        f"engine segments/s {engine_rate:,.0f}; bare SimPy timeouts/s {bare:,.0f}; "
        f"ratio {engine_rate / bare:.3f}"
    )


if __name__ == "__main__":
    main()
