"""Small-M CPU GEMM: cost per weight element against the weight's row width, at equal bytes.

``python benchmarks/bench_gemm_width.py [--threads N] [--rows M] [--weight-mib B] [--huge-pages]``

The timing model charges a GEMM ``C[m, n] = A[m, k] @ B[k, n]`` by its FLOPs and bytes, which are
the same for every ``(n, k)`` with equal ``n * k``: it predicts the same time for a weight of
1,024 x 512 as for 512 x 1,024. This measures whether that holds on the machine at hand for
decode-sized ``m``: ``torch.matmul`` (the BLAS torch links) and the Numba kernel
(``kernels_numba.cpu.gemm``), float32, weights of ``--weight-mib`` MiB in row widths ``n`` of
256 to 4,096 values (``k = bytes / (4 n)``), each case rotating over independent input sets so
that the weight is not in cache from the previous call (as the harness does), median of
repeated runs after warm-up (``kernels_numba.bench.time_cpu``). It reports nanoseconds per
weight element and, per implementation, the ratio of each width's cost to the narrowest's, next
to the timing model's ratio for the same shapes (``sim.timing.gemm_time`` on this machine's
profile, when a calibration file for it is committed). The last line is one JSON object.

Measured on the Intel Xeon of ``gpus/calibration/cpu-intel-xeon-processor.json`` (1 thread,
4 MiB, three runs at m = 16 and one at m = 8, 2026-12-01): torch costs 1.4-1.9x more per element
from n = 1,024 on than at n = 256 (n = 512: 1.1-1.5x), the Numba kernel 1.15-1.25x, while the
model's ratio stays at 1.0. This is the orientation effect behind the torch GEMM and grouped-GEMM
held-out errors of ``python -m kernels_numba.validate`` on that file. Until 2026-12-02 the grid's
grouped shapes came as 1,024 x 512 and 512 x 1,024 only, and the fixed split fitted on one and
scored the other; with a third pair (1,024 x 1,024) both sides hold every orientation, and the
fit averages the effect: narrow-row shapes predicted 15-33 % slow, the wide square 10-30 % fast.

The row-bytes scan (same run, torch alone) rose gradually, ~1.5x from 1 KiB to 4 KiB rows, the same
in float32 and float64 (0.141 -> 0.212 and 0.144 -> 0.213 ns per byte): it follows bytes, not
elements, and shows no step at 2 KiB, the stride reach of Intel's hardware prefetcher; a sharp
step an earlier probe showed at 2 KiB rows (k fixed at 1,024, float32 and float64 alike) came as
its rotated working set passed 32 MiB, which looks like cache capacity rather than stride; this
scan (fixed bytes, 64 MiB rotated) avoids it. Nor is it the TLB: with ``--huge-pages`` (all 64 MiB
of weights on 2 MiB pages, as ``AnonHugePages`` showed) the rise was the same, 0.141 -> 0.225 ns
per byte in float32. The mechanism is not established.
"""

from __future__ import annotations

import argparse
import json
import mmap
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernels_numba import bench  # noqa: E402

WIDTHS = (256, 512, 1024, 2048, 4096)
SETS = 16


def _model_profile() -> Any:
    """This machine's CPU profile from its committed calibration file, or None without one."""
    from sim import calibration as cal
    from sim.calibration import devices

    path = cal.calibration_dir() / f"cpu-{cal.device_key(bench.cpu_name())}.json"
    if not path.exists():
        return None
    return devices.profile_for(json.loads(path.read_text()), path)


def measure(threads: int, rows: int, weight_bytes: int) -> dict[str, object]:
    import numba
    import torch

    from kernels_numba import cpu

    torch.set_num_threads(threads)
    numba.set_num_threads(threads)
    rng = np.random.default_rng(0)
    ns: dict[str, dict[int, float]] = {"torch_cpu": {}, "numba_cpu": {}}
    from sim import timing

    profile = _model_profile()
    model: dict[int, float] = {}
    for n in WIDTHS:
        k = weight_bytes // (4 * n)
        a = [rng.standard_normal((rows, k), dtype=np.float32) for _ in range(SETS)]
        b = [rng.standard_normal((k, n), dtype=np.float32) for _ in range(SETS)]
        c = [np.empty((rows, n), dtype=np.float32) for _ in range(SETS)]
        ta, tb, tc = ([torch.from_numpy(x) for x in xs] for xs in (a, b, c))
        runners: dict[str, list[Callable[[], Any]]] = {
            "torch_cpu": [partial(torch.matmul, ta[i], tb[i], out=tc[i]) for i in range(SETS)],
            "numba_cpu": [partial(cpu.gemm, a[i], b[i], c[i]) for i in range(SETS)],
        }
        for impl, calls in runners.items():
            run = bench.rotate(calls)
            for call in calls:  # every set once: first touches and compilation outside the timing
                call()
            seconds, _ = bench.time_cpu(run, warmup=SETS)
            ns[impl][n] = seconds / (k * n) * 1e9
        if profile is not None:
            model[n] = float(timing.gemm_time(profile, rows, n, k, "fp32").predicted_s)
    narrow = WIDTHS[0]
    out: dict[str, object] = {
        "device": bench.cpu_name(),
        "threads": threads,
        "rows": rows,
        "weight_bytes": weight_bytes,
        "ns_per_weight_element": {
            impl: {str(n): round(v, 4) for n, v in d.items()} for impl, d in ns.items()
        },
        "ratio_to_narrowest": {
            impl: {str(n): round(v / d[narrow], 2) for n, v in d.items()} for impl, d in ns.items()
        },
    }
    if model:
        out["model_ratio_to_narrowest"] = {str(n): round(v / model[narrow], 2) for n, v in model.items()}
    return out


SCAN_ROW_BYTES = tuple(range(1024, 4096 + 1, 256))


def _weight(k: int, n: int, dtype: Any, gen: Any, huge_pages: bool, keep: list[Any]) -> Any:
    """A random [k, n] weight; with ``huge_pages``, in an anonymous mapping advised onto 2 MiB
    transparent huge pages (``madvise(MADV_HUGEPAGE)``), 2 MiB aligned."""
    import torch

    w = torch.randn(k, n, generator=gen, dtype=dtype)
    if not huge_pages:
        return w
    nbytes = w.numel() * w.element_size()
    region = mmap.mmap(-1, nbytes + (2 << 20), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(region, dtype=np.uint8)
    start = (-raw.ctypes.data) % (2 << 20)
    placed = torch.from_numpy(raw[start : start + nbytes]).view(dtype).view(k, n)
    placed.copy_(w)
    keep.append(region)
    return placed


def _anon_huge_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("AnonHugePages:"):
            return int(line.split()[1])
    return 0


def scan_row_bytes(
    threads: int, rows: int, weight_bytes: int, huge_pages: bool = False
) -> dict[str, dict[str, float]]:
    """torch alone, float32 and float64: ns per weight byte for rows of 1 to 4 KiB in 256-byte steps,
    at equal weight bytes. If the rise follows row bytes in both element sizes, it belongs to the
    memory system rather than to a blocking size counted in elements. ``huge_pages`` puts the
    weights on 2 MiB pages: if the rise came from TLB reach (4 KiB pages), it would go away; the
    result records ``AnonHugePages`` while the weights were mapped."""
    import torch

    torch.set_num_threads(threads)
    keep: list[Any] = []
    out: dict[str, dict[str, float]] = {}
    for dtype in (torch.float32, torch.float64):
        size = torch.empty(0, dtype=dtype).element_size()
        gen = torch.Generator().manual_seed(1)
        per_byte: dict[str, float] = {}
        huge_kib: dict[str, float] = {}
        for row_bytes in SCAN_ROW_BYTES:
            n = row_bytes // size
            k = weight_bytes // row_bytes
            sets = [
                (
                    torch.randn(rows, k, generator=gen, dtype=dtype),
                    _weight(k, n, dtype, gen, huge_pages, keep),
                )
                for _ in range(SETS)
            ]
            outs = [torch.empty(rows, n, dtype=dtype) for _ in range(SETS)]
            calls: list[Callable[[], Any]] = [
                partial(torch.matmul, a, b, out=c) for (a, b), c in zip(sets, outs, strict=True)
            ]
            for call in calls:
                call()
            seconds, _ = bench.time_cpu(bench.rotate(calls), warmup=SETS)
            per_byte[str(row_bytes)] = round(seconds / (k * n * size) * 1e9, 4)
            if huge_pages:
                huge_kib[str(row_bytes)] = float(_anon_huge_kib())
            del sets, calls
            keep.clear()
        name = str(dtype).removeprefix("torch.")
        out[name] = per_byte
        if huge_pages:
            out[f"{name} AnonHugePages kiB"] = huge_kib
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch and numba threads (default 1)")
    parser.add_argument("--rows", type=int, default=16, help="rows m of the activations (default 16)")
    parser.add_argument("--weight-mib", type=int, default=4, help="weight size in MiB (default 4)")
    parser.add_argument(
        "--huge-pages", action="store_true", help="scan with the weights on 2 MiB transparent huge pages"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rows < 1 or args.weight_mib < 1:
        parser.error("--threads, --rows and --weight-mib must be at least 1")
    result = measure(args.threads, args.rows, args.weight_mib << 20)
    result["torch_ns_per_weight_byte_by_row_bytes"] = scan_row_bytes(
        args.threads, args.rows, args.weight_mib << 20, args.huge_pages
    )
    result["huge_pages"] = args.huge_pages
    ratios = result["ratio_to_narrowest"]
    model = result.get("model_ratio_to_narrowest", {})
    for n in WIDTHS:
        line = f"n = {n:5d}: " + "  ".join(
            f"{impl} {result['ns_per_weight_element'][impl][str(n)]:.3f} ns ({ratios[impl][str(n)]:.2f}x)"  # type: ignore[index]
            for impl in ("torch_cpu", "numba_cpu")
        )
        if model:
            line += f"  model {model[str(n)]:.2f}x"  # type: ignore[index]
        print(line)
    for dtype, per_byte in result["torch_ns_per_weight_byte_by_row_bytes"].items():  # type: ignore[attr-defined]
        unit = "" if "AnonHugePages" in dtype else ", ns per weight byte by row bytes"
        print(f"torch {dtype}{unit}: " + " ".join(f"{b}:{v:.3f}" for b, v in per_byte.items()))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
