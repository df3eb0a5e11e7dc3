"""Numba GEMM throughput as a ratio to torch float32, measured in the same run.

``python benchmarks/bench_kernels.py [--threads N]``

CPU (always): Numba CPU GEMM (``kernels_numba.cpu``) against ``torch.matmul`` float32 on the
same inputs, per shape, median of repeated runs after warm-up (``time.perf_counter_ns``).
GPU (when a CUDA GPU is present): Numba-CUDA tiled GEMM against torch float32 (TF32 off), and
against the GPU's float32 peak from its ``gpus`` profile, timed with CUDA events.
The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels_numba import bench  # noqa: E402

SHAPES = ((64, 2048, 512), (256, 1024, 1024), (1024, 1024, 1024), (1, 4096, 1024))


def cpu_rows(threads: int) -> list[dict[str, float | int | str]]:
    import numba
    import torch

    from kernels_numba import cpu

    numba.set_num_threads(threads)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    rows: list[dict[str, float | int | str]] = []
    for m, n, k in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        ta, tb, tout = torch.from_numpy(a), torch.from_numpy(b), torch.empty(m, n)
        numba_s, _ = bench.time_cpu(partial(cpu.gemm, a, b, out))
        torch_s, _ = bench.time_cpu(partial(torch.matmul, ta, tb, out=tout))
        flops = 2.0 * m * n * k
        rows.append(
            {
                "device": "cpu",
                "m": m,
                "n": n,
                "k": k,
                "numba_gflop_per_s": flops / numba_s / 1e9,
                "torch_gflop_per_s": flops / torch_s / 1e9,
                "numba_over_torch": torch_s / numba_s,
            }
        )
    return rows


def gpu_rows() -> list[dict[str, float | int | str]]:
    import torch
    from numba import cuda

    import gpus
    from kernels_numba.gpu import kernels as gk

    torch.backends.cuda.matmul.allow_tf32 = False
    name = torch.cuda.get_device_name(0)
    try:
        peak = gpus.get(name).peak_flops("fp32")
    except ValueError:
        peak = float("nan")
    rng = np.random.default_rng(0)
    rows: list[dict[str, float | int | str]] = []
    for m, n, k in ((4096, 4096, 4096), (1024, 4096, 4096), (64, 4096, 4096)):
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        da, db, dc = cuda.to_device(a), cuda.to_device(b), cuda.device_array((m, n), dtype=np.float32)
        tasks = tuple(cuda.to_device(t) for t in gk.gemm_tasks(m))
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        tout = torch.empty(m, n, device="cuda")
        numba_s, _ = bench.time_cuda(partial(gk.launch_gemm, da, db, dc, tasks))
        torch_s, _ = bench.time_cuda(partial(torch.matmul, ta, tb, out=tout))
        flops = 2.0 * m * n * k
        rows.append(
            {
                "device": name,
                "m": m,
                "n": n,
                "k": k,
                "numba_gflop_per_s": flops / numba_s / 1e9,
                "torch_gflop_per_s": flops / torch_s / 1e9,
                "numba_over_torch": torch_s / numba_s,
                "numba_over_fp32_peak": flops / numba_s / peak,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=bench.cpu_cores())
    args = parser.parse_args(argv)
    rows = cpu_rows(args.threads)
    if bench.cuda_present():
        rows += gpu_rows()
    else:
        print("no CUDA GPU present: Numba-CUDA figures not measured")
    for r in rows:
        extra = f"  {r['numba_over_fp32_peak']:.3f} of fp32 peak" if "numba_over_fp32_peak" in r else ""
        print(
            f"{r['device']:>10} gemm {r['m']:5d}x{r['n']:5d}x{r['k']:5d}: "
            f"numba {r['numba_gflop_per_s']:8.1f} "
            f"GFLOP/s, torch {r['torch_gflop_per_s']:8.1f} GFLOP/s, ratio {r['numba_over_torch']:.3f}{extra}"
        )
    cpu_ratios = [float(r["numba_over_torch"]) for r in rows if r["device"] == "cpu"]
    print(
        json.dumps(
            {
                "threads": args.threads,
                "rows": rows,
                "cpu_numba_over_torch_median": float(np.median(cpu_ratios)),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
