"""Sweep throughput: configurations per second in this process, in local processes and on a local
Dask cluster of 1 and 2 workers, and what chunking costs over the bare per-configuration time, all
measured in one run (so every ratio sees the same machine load).

The grid (1,024 serving configurations by default, every one a distinct evaluation: no price axis
to reuse) runs:

* ``bare``: ``sim.grid.evaluate.evaluate_config`` in a loop, nothing else (no chunks, no files);
* ``in_process``: ``sim.sweep(jobs=1)`` (chunks, Parquet files, manifest) in one process;
* ``processes_2``: ``sim.sweep(jobs=2)``, two spawned local processes (their start-up counted);
* ``dask_1`` / ``dask_2``: ``sim.sweep(cluster=client)`` on a ``distributed.LocalCluster`` of 1 or
  2 worker processes (one thread each), started before the clock starts, as a long-running
  cluster would be.

``bare`` and ``in_process`` each run in a freshly spawned process and every Dask worker is fresh,
each warmed with the same one chunk (imports and the timing model's caches), so no engine profits
from another's caches. Each round runs every engine once; the minimum over ``--repeats`` rounds
counts. The chunking overhead is measured inside the in-process sweep: the seconds outside
``evaluate_range`` (Parquet files, manifest, bookkeeping) over the seconds inside it, in the same
moments under the same load, and per chunk against ``chunk_size`` bare evaluations. The in-process
sweep against the bare loop (separate runs, CPU and wall seconds) is printed beside it: on a shared
machine the load between two runs moves that comparison more than chunking does. Each engine's
rows are checked equal to the in-process rows.

    .venv/bin/python benchmarks/bench_sweep.py [--chunk-size N] [--small] [--repeats N] [--json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
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


def _warm(spec: SweepSpec) -> None:
    """One chunk's evaluations: imports and the timing model's caches, as a worker is warmed."""
    evaluate_range(spec, 0, min(spec.chunk_size, spec.size))


def _bare(chunk_size: int, small: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of evaluating every configuration in a loop (in a fresh process, warmed)."""
    spec = grid(chunk_size, small)
    _warm(spec)
    cpu = time.process_time()
    started = time.perf_counter_ns()
    for config in spec.configs():
        evaluate_config(spec, config)
    return (time.perf_counter_ns() - started) * 1e-9, time.process_time() - cpu


def _chunked(chunk_size: int, small: bool, folder: str) -> tuple[float, float, float]:
    """(wall, CPU, evaluation) seconds of ``sim.sweep(jobs=1)`` (in a fresh process, warmed); the
    evaluation seconds are those spent inside the chunks' ``evaluate_range``, the rest is what
    chunking adds (files, manifest, bookkeeping), measured in the same moments under the same load."""
    from sim.grid import runner

    spec = grid(chunk_size, small)
    _warm(spec)
    inside = [0.0]
    evaluate = runner.evaluate_range

    def timed(*args: Any) -> Any:
        started = time.perf_counter_ns()
        rows = evaluate(*args)
        inside[0] += (time.perf_counter_ns() - started) * 1e-9
        return rows

    runner.evaluate_range = timed  # this throw-away process only
    cpu = time.process_time()
    wall = _timed_sweep(spec, Path(folder), jobs=1)
    return wall, time.process_time() - cpu, inside[0]


def _fresh(function: Any, *args: Any) -> tuple[float, ...]:
    """``function(*args)`` in a newly spawned process, so that no cache of an earlier engine helps it."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return tuple(float(x) for x in pool.submit(function, *args).result())


def _dask(spec: SweepSpec, folder: Path, workers: int) -> tuple[float, float, float]:
    """(start-up seconds, sweep seconds, the workers' CPU seconds in the sweep) on a fresh LocalCluster
    of ``workers`` processes."""
    import distributed

    started = time.perf_counter_ns()
    cluster = distributed.LocalCluster(
        n_workers=workers, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=40
    )
    client = distributed.Client(cluster, set_as_default=False)
    try:
        client.run(_warm, spec)  # every worker, like the fresh processes above
        startup = (time.perf_counter_ns() - started) * 1e-9
        before = client.run(time.process_time)
        seconds = _timed_sweep(spec, folder, cluster=client)
        after = client.run(time.process_time)
        return startup, seconds, sum(after[w] - before[w] for w in after if w in before)
    finally:
        client.close()
        cluster.close()


ENGINES = ("bare", "in_process", "processes_2", "dask_1", "dask_2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunk-size", type=int, default=128, help="configurations per chunk (default 128)")
    parser.add_argument("--small", action="store_true", help="512 configurations instead of 1,024")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every engine; the minimum counts")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    spec = grid(args.chunk_size, args.small)
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {name: [] for name in ENGINES}
    cpu_samples: dict[str, list[float]] = {"bare": [], "in_process": [], "dask_1": [], "dask_2": []}
    added: list[float] = []  # in-process sweep: seconds outside evaluate_range over seconds inside
    startup: dict[str, list[float]] = {"dask_1": [], "dask_2": []}
    identical: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="bench_sweep_") as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):  # every engine once per round, so all see the same load
            base = root / f"round{repeat}"
            for name, wall_cpu in (
                ("bare", _fresh(_bare, args.chunk_size, args.small)),
                ("in_process", _fresh(_chunked, args.chunk_size, args.small, str(base / "in_process"))),
            ):
                samples[name].append(wall_cpu[0])
                cpu_samples[name].append(wall_cpu[1])
                if name == "in_process":
                    added.append((wall_cpu[0] - wall_cpu[2]) / wall_cpu[2])
            samples["processes_2"].append(_timed_sweep(spec, base / "processes_2", jobs=2))
            for workers in (1, 2):
                up, seconds, worker_cpu = _dask(spec, base / f"dask_{workers}", workers)
                startup[f"dask_{workers}"].append(up)
                cpu_samples[f"dask_{workers}"].append(worker_cpu)
                samples[f"dask_{workers}"].append(seconds)
            reference = _rows(base / "in_process")
            for name in ("processes_2", "dask_1", "dask_2"):
                identical[name] = identical.get(name, True) and _rows(base / name).equals(reference)

    seconds = {name: min(values) for name, values in samples.items()}
    cpu = {name: min(values) for name, values in cpu_samples.items()}
    rate = {name: spec.size / value for name, value in seconds.items()}
    result = {
        "configurations": spec.size,
        "chunk_size": spec.chunk_size,
        "chunks": spec.num_chunks,
        "cpus": os.cpu_count(),
        "load_average_before": round(load_before, 2),
        "repeats": args.repeats,
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "samples_s": {k: [round(v, 3) for v in values] for k, values in samples.items()},
        "configurations_per_s": {k: round(v, 1) for k, v in rate.items()},
        "bare_ms_per_configuration": round(seconds["bare"] / spec.size * 1e3, 3),
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "chunking_overhead_fraction": round(min(added), 4),
        "chunking_overhead_ms_per_chunk": round(min(added) * seconds["bare"] / spec.num_chunks * 1e3, 2),
        "in_process_over_bare_cpu": round(cpu["in_process"] / cpu["bare"] - 1, 4),
        "in_process_over_bare_wall": round(seconds["in_process"] / seconds["bare"] - 1, 4),
        "dask_startup_s": {k: round(min(v), 2) for k, v in startup.items()},
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
        f"{spec.size} configurations in {spec.num_chunks} chunks of {spec.chunk_size}; "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before; best of {args.repeats} rounds"
    )
    print(f"bare evaluation: {result['bare_ms_per_configuration']} ms per configuration")
    for name in ENGINES:
        extra = f", CPU {cpu[name]:.2f} s" if name in cpu else ""
        if name in startup:
            extra += f" (cluster start-up and warm-up {min(startup[name]):.1f} s, not counted)"
        print(f"  {name:<12} {seconds[name]:7.2f} s  {rate[name]:8.1f} configurations/s{extra}")
    print(
        "chunking overhead (time of the in-process sweep outside evaluate_range over the time inside): "
        f"{result['chunking_overhead_fraction']:+.2%}, about {result['chunking_overhead_ms_per_chunk']} ms "
        f"per chunk of {spec.chunk_size} x {result['bare_ms_per_configuration']} ms; "
        "in-process sweep against the bare loop, separate runs: "
        f"CPU {result['in_process_over_bare_cpu']:+.1%}, "
        f"wall {result['in_process_over_bare_wall']:+.1%}"
    )
    for label, value in result["ratios"].items():
        print(f"  {label}: {value:.2f}x")
    print(f"rows identical to in-process: {identical}")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
