"""Sweep throughput: configurations per second in this process, in local processes and on a local
Dask cluster of 1 and 2 workers, and what chunking costs over the bare per-configuration time, all
measured in one run (so every ratio sees the same machine load).

The grid (1,024 serving configurations by default, every one a distinct evaluation: no price axis
to reuse) runs:

* ``bare``: ``sim.grid.evaluate.evaluate_config`` in a loop, nothing else (no chunks, no files);
* ``in_process``: ``sim.sweep(jobs=1)`` (chunks, Parquet files, manifest) in this process;
* ``processes_2``: ``sim.sweep(jobs=2)``, two spawned local processes;
* ``dask_1`` / ``dask_2``: ``sim.sweep(cluster=client)`` on a ``distributed.LocalCluster`` of 1 or
  2 worker processes (one thread each), started before the clock starts and warmed with one
  chunk per worker (imports and the timing model's caches), as a long-running cluster would be.

The chunking overhead is ``in_process / bare - 1`` and, per chunk, the extra seconds over the
number of chunks. Each engine's rows are checked equal to the in-process rows.

    .venv/bin/python benchmarks/bench_sweep.py [--chunk-size N] [--small] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import sim
from sim.grid.evaluate import evaluate_config, evaluate_range
from sim.grid.spec import SweepSpec, parse_sweep_spec


def grid(chunk_size: int, small: bool) -> SweepSpec:
    return parse_sweep_spec(
        {
            "title": "bench_sweep",
            "kind": "serving",
            "chunk_size": chunk_size,
            "grid": {
                "model": ["mixtral-8x7b", "qwen3-30b-a3b"],
                "gpu": ["H100", "H800", "H20", "A800"],
                "deployment": [{"nodes": 1}, {"nodes": 1, "tp": 2}],
                "input_len": [1024, 4096] if small else [1024, 2048, 4096, 8192],
                "output_len": [512, 2048],
                "cache_hit_rate": [0.0, 0.5],
                "tpot_target_s": [0.01, 0.02, 0.05, 0.1],
            },
        }
    )


def _rows(results: Path) -> Any:
    # every column but ``stack``, whose commit field says "+changes" when tracked files are edited
    # between two engines' runs (the tests compare whole rows)
    return sim.query_sweep(results, "SELECT * EXCLUDE (stack) FROM results ORDER BY config_id")


def _timed_sweep(spec: SweepSpec, folder: Path, **options: Any) -> float:
    started = time.perf_counter_ns()
    summary = sim.sweep(spec, folder, **options)
    seconds = (time.perf_counter_ns() - started) * 1e-9
    if not summary.ok or summary.configurations_evaluated != spec.size:
        raise RuntimeError(f"the sweep on {summary.engine} did not finish: {summary.to_dict()}")
    return seconds


def _dask(spec: SweepSpec, folder: Path, workers: int) -> tuple[float, float]:
    """(start-up seconds, sweep seconds) on a fresh LocalCluster of ``workers`` processes."""
    import distributed

    started = time.perf_counter_ns()
    cluster = distributed.LocalCluster(
        n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.run(evaluate_range, spec, 0, min(spec.chunk_size, spec.size))  # warm every worker
        startup = (time.perf_counter_ns() - started) * 1e-9
        return startup, _timed_sweep(spec, folder, cluster=client)
    finally:
        client.close()
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunk-size", type=int, default=128, help="configurations per chunk (default 128)")
    parser.add_argument("--small", action="store_true", help="512 configurations instead of 1,024")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    spec = grid(args.chunk_size, args.small)
    configs = list(spec.configs())
    for config in configs[: spec.chunk_size]:  # warm this process's caches, as the workers are warmed
        evaluate_config(spec, config)

    started = time.perf_counter_ns()
    for config in configs:
        evaluate_config(spec, config)
    bare_s = (time.perf_counter_ns() - started) * 1e-9

    seconds: dict[str, float] = {"bare": bare_s}
    startup: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = Path(tmp)
        seconds["in_process"] = _timed_sweep(spec, root / "in_process", jobs=1)
        seconds["processes_2"] = _timed_sweep(spec, root / "processes_2", jobs=2)
        startup["dask_1"], seconds["dask_1"] = _dask(spec, root / "dask_1", 1)
        startup["dask_2"], seconds["dask_2"] = _dask(spec, root / "dask_2", 2)
        reference = _rows(root / "in_process")
        identical = {
            name: _rows(root / name).equals(reference) for name in ("processes_2", "dask_1", "dask_2")
        }

    rate = {name: spec.size / value for name, value in seconds.items()}
    result = {
        "configurations": spec.size,
        "chunk_size": spec.chunk_size,
        "chunks": spec.num_chunks,
        "cpus": os.cpu_count(),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "configurations_per_s": {k: round(v, 1) for k, v in rate.items()},
        "bare_ms_per_configuration": round(bare_s / spec.size * 1e3, 3),
        "chunking_overhead_fraction": round(seconds["in_process"] / bare_s - 1, 4),
        "chunking_overhead_ms_per_chunk": round((seconds["in_process"] - bare_s) / spec.num_chunks * 1e3, 2),
        "dask_startup_s": {k: round(v, 2) for k, v in startup.items()},
        "ratios": {
            "dask_1 / in_process": round(rate["dask_1"] / rate["in_process"], 3),
            "dask_2 / dask_1": round(rate["dask_2"] / rate["dask_1"], 3),
            "dask_2 / in_process": round(rate["dask_2"] / rate["in_process"], 3),
            "processes_2 / in_process": round(rate["processes_2"] / rate["in_process"], 3),
        },
        "rows_identical_to_in_process": identical,
    }
    if args.json:
        print(json.dumps(result))
        return 0 if all(identical.values()) else 1
    print(
        f"{spec.size} configurations in {spec.num_chunks} chunks of {spec.chunk_size}, {os.cpu_count()} CPUs"
    )
    print(f"bare evaluation: {result['bare_ms_per_configuration']} ms per configuration")
    for name in ("bare", "in_process", "processes_2", "dask_1", "dask_2"):
        extra = (
            f" (cluster start-up and warm-up {startup[name]:.1f} s, not counted)" if name in startup else ""
        )
        print(f"  {name:<12} {seconds[name]:7.2f} s  {rate[name]:8.1f} configurations/s{extra}")
    print(
        f"chunking overhead: {result['chunking_overhead_fraction']:+.1%} "
        f"({result['chunking_overhead_ms_per_chunk']} ms per chunk)"
    )
    for label, value in result["ratios"].items():
        print(f"  {label}: {value:.2f}x")
    print(f"rows identical to in-process: {identical}")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
