"""Serving simulator speed: 100,000 requests of the Day-6 workload through one disaggregated deployment.

The Day-6 scenario (sim/scenarios/day6.toml, variant "benchmark"): input 4,383 and output 1,211
tokens on average (lognormal, coefficient of variation 1), 56.3% prefix-cache hits, 12,686 concurrent
requests; V3 on H800, 4 prefill instances of 4 nodes (EP32) and one decode instance of 18 nodes (EP144,
32 redundant experts). Reports wall time (target < 60 s on the development machine) and simulated
events per second as a ratio to a bare SimPy loop of timeouts timed in the same run.

    .venv/bin/python benchmarks/bench_serving.py [--requests N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import simpy

import gpus
import moe
from sim.serving.deployment import parse_deployment
from sim.serving.engine import Simulation
from sim.serving.workloads import parse_workload

# The Day-6 scenario and its "benchmark" variant (sim/scenarios/day6.toml), read here with tomllib
# rather than through sim.scenarios: benchmarks/compare.py runs this file against older trees too.
SCENARIO = Path(__file__).resolve().parents[1] / "sim" / "scenarios" / "day6.toml"


def _day6() -> tuple[dict[str, Any], dict[str, Any]]:
    with SCENARIO.open("rb") as handle:
        data = tomllib.load(handle)
    return data["deployment"], {**data["workload"], **data["variants"]["benchmark"]["workload"]}


DEPLOYMENT, WORKLOAD = _day6()


def bare_simpy_events_per_s(events: int = 200_000) -> float:
    env = simpy.Environment()

    def loop():
        for _ in range(events):
            yield env.timeout(1.0)

    env.process(loop())
    t0 = time.perf_counter_ns()
    env.run()
    return events / ((time.perf_counter_ns() - t0) * 1e-9)


def run_simulation(requests: int = 100_000) -> tuple[Simulation, float]:
    """Build and run the Day-6 simulation until ``requests`` complete; returns it and the wall
    seconds of building and running it (the figure this benchmark times)."""
    m, g = moe.get("deepseek-v3"), gpus.get("H800")
    dep = parse_deployment(DEPLOYMENT, m, g)
    wl = parse_workload(WORKLOAD)
    t0 = time.perf_counter_ns()
    s = Simulation(
        m,
        g,
        dep,
        wl,
        duration_s=1e9,
        warmup_s=0.0,
        rng=np.random.default_rng(0),
        stop_after_completions=requests,
    )
    s.run()
    return s, (time.perf_counter_ns() - t0) * 1e-9


def workload(requests: int = 100_000) -> dict[str, float]:
    """The simulator work this benchmark times, in one fresh process (cold caches); also used by
    ``benchmarks/compare.py``."""
    s, wall = run_simulation(requests)
    return {"wall_s": wall, "events": s.events, "requests_completed": s.completed}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    bare = bare_simpy_events_per_s()
    s, wall = run_simulation(args.requests)
    ours = s.events / wall
    out = {
        "requests_completed": s.completed,
        "simulated_s": s.env.now,
        "wall_s": wall,
        "events": s.events,
        "events_per_s": ours,
        "bare_simpy_events_per_s": bare,
        "ratio_to_bare_simpy": ours / bare,
        "target_wall_s": 60.0,
        "meets_target": wall < 60.0,
    }
    st = s.stats["decode"]
    if st.kv_imbalance_steps:  # busiest attention-DP rank's KV over the mean (lengths drawn, CV 1)
        out["decode_kv_imbalance"] = st.kv_imbalance_sum / st.kv_imbalance_steps
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v:.4g}" if isinstance(v, float) else f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
