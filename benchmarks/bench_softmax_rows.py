"""PyTorch CPU softmax cost per element against row width, as ratios measured in one run.

``python benchmarks/bench_softmax_rows.py [--threads N] [--rows R]``

The timing model (``sim.timing.gating_time(..., unfused=True)``) charges a softmax over rows
narrower than one SIMD vector of fp32 (fewer than ``vector_bytes / 4`` values) its scalar path,
``sim.timing.SCALAR_SOFTMAX_OPS_PER_ELEMENT`` operations per element, and a wider row nothing
beyond its bytes. This measures the premise on the machine at hand: ``Tensor.softmax(-1)`` over
``[rows, width]`` float32, median of repeated runs after warm-up (``time.perf_counter_ns``, via
``kernels_numba.bench.time_cpu``), nanoseconds per element for each width, and the ratio of the
narrowest rows' cost to the cost at one full vector. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels_numba import bench  # noqa: E402

WIDTHS = (2, 4, 8, 15, 16, 17, 24, 32, 64, 256)


def measure(threads: int, rows: int) -> dict[str, object]:
    import torch

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    capability = bench.cpu_capability()
    lanes = {"AVX512": 16, "AVX2": 8}.get(capability, 0)
    per_element: dict[int, float] = {}
    for width in WIDTHS:
        x = torch.randn(rows, width, generator=gen)
        seconds, _ = bench.time_cpu(partial(torch.softmax, x, -1))
        per_element[width] = seconds / (rows * width) * 1e9
    out: dict[str, object] = {
        "device": bench.cpu_name(),
        "cpu_capability": capability,
        "fp32_lanes": lanes,
        "threads": threads,
        "rows": rows,
        "ns_per_element": {str(w): round(v, 3) for w, v in per_element.items()},
    }
    if lanes in per_element:
        narrow = [w for w in WIDTHS if w < lanes]
        out["narrow_over_full_vector"] = {
            str(w): round(per_element[w] / per_element[lanes], 2) for w in narrow
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--rows", type=int, default=8192, help="rows per tensor (default 8192)")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rows < 1:
        parser.error("--threads and --rows must be at least 1")
    result = measure(args.threads, args.rows)
    for width, ns in result["ns_per_element"].items():  # type: ignore[union-attr]
        print(f"softmax rows of {int(width):4d}: {ns:7.2f} ns per element")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
