"""Time every kernel on the hardware at hand and write ``gpus/calibration/<device>.json``.

``python -m kernels_numba.bench [--quick] [--out PATH] [--no-fit]``
(``--merge A.json B.json --out C.json`` pools the passes of full runs taken apart in time)

1. Measures the device's two ceilings: a large float32 matmul (FLOP/s) and a large copy
   (bytes read + written per second), with torch.
2. Times every case of ``kernels_numba.shapes.grid()`` for every implementation present
   (three interleaved passes over the grid; the median over passes is kept):
   ``numba_cpu`` and ``torch_cpu`` always; ``numba_cuda`` and ``torch_cuda`` when a CUDA GPU is
   there. Warm-up runs first (compilation, caches), then the median of repeated runs:
   ``time.perf_counter_ns`` on the CPU, CUDA events on the GPU (STYLE.md rule 9).
3. Fits each family's parameters on the fit half of the shapes (``sim.calibration.devices``)
   and writes the file: device name, kind, cores, date, library versions, ceilings, fitted
   families, and every measurement. CPU kernels run in float32 (no bf16 arithmetic here).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kernels_numba.shapes import Case, grid
from sim import calibration as cal
from sim.calibration import devices

Runner = Callable[[], Any]


# ---------------------------------------------------------------------------------------------
# Device description


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_capability() -> str:
    """The SIMD level torch's CPU kernels dispatch to ("AVX512", "AVX2", "DEFAULT", ...): it sets
    which softmax rows run the scalar path (``sim.timing.gating_time``)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def versions() -> dict[str, str]:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for package in ("numpy", "numba", "numba-cuda", "torch", "scipy"):
        try:
            found[package] = md.version(package)
        except md.PackageNotFoundError:
            found[package] = "absent"
    return found


def cuda_present() -> bool:
    """A real CUDA GPU (not the simulator) usable by both torch and numba."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        import torch

        if not torch.cuda.is_available():
            return False
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # any driver or import failure means: no GPU for this run
        return False


# ---------------------------------------------------------------------------------------------
# Timers


def time_cpu(
    run: Runner, warmup: int = 2, min_runs: int = 5, min_total_s: float = 0.25, max_runs: int = 200
) -> tuple[float, int]:
    """Median wall time of ``run()`` (``perf_counter_ns``) after ``warmup`` calls, over at least
    ``min_runs`` runs and ``min_total_s`` seconds."""
    median, runs, _ = time_cpu_clocks(run, warmup, min_runs, min_total_s, max_runs)
    return median, runs


def time_cpu_clocks(
    run: Runner, warmup: int = 2, min_runs: int = 5, min_total_s: float = 0.25, max_runs: int = 200
) -> tuple[float, int, float]:
    """(median wall time, runs, median process CPU time) of ``run()``.

    Wall time is ``time.perf_counter_ns``; CPU time is ``time.process_time_ns`` (all threads of
    this process), which excludes the time the process waited while other jobs held the cores.
    """
    for _ in range(warmup):
        run()
    wall: list[float] = []
    cpu: list[float] = []
    total = 0.0
    while len(wall) < min_runs or (total < min_total_s and len(wall) < max_runs):
        start_cpu = time.process_time_ns()
        start = time.perf_counter_ns()
        run()
        elapsed = (time.perf_counter_ns() - start) * 1e-9
        cpu.append((time.process_time_ns() - start_cpu) * 1e-9)
        wall.append(elapsed)
        total += elapsed
    return float(np.median(wall)), len(wall), float(np.median(cpu))


def time_cuda(run: Runner, warmup: int = 3, runs: int = 20) -> tuple[float, int]:
    """Median of CUDA-event timings (torch events; numba launches on the same default stream)."""
    import torch

    for _ in range(warmup):
        run()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e-3)
    return float(np.median(times)), runs


# ---------------------------------------------------------------------------------------------
# Ceilings


def ceilings(device: str, quick: bool = False) -> dict[str, Any]:
    """Large fp32 matmul FLOP/s and large copy bytes/s (read + write) on ``device``
    (``quick``: small sizes, for tests of the harness only)."""
    import torch

    dev = torch.device(device)
    threads = torch.get_num_threads()

    def timer(run: Runner) -> tuple[float, int]:
        if device == "cuda":
            return time_cuda(run)
        wall, runs, cpu = time_cpu_clocks(run)
        return (cpu / threads if wall > PREEMPTION_RATIO * cpu / threads else wall), runs

    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
    size = 4096 if device == "cuda" else (512 if quick else 2048)
    a = torch.randn(size, size, device=dev)
    b = torch.randn(size, size, device=dev)
    c = torch.empty(size, size, device=dev)
    matmul_s, _ = timer(lambda: torch.matmul(a, b, out=c))
    elements = (1 << 28) if device == "cuda" else (1 << 21 if quick else 1 << 25)  # 1 GiB / 128 MiB float32
    src = torch.randn(elements, device=dev)
    dst = torch.empty_like(src)
    copy_s, _ = timer(lambda: dst.copy_(src))
    return {
        "matmul_flops_per_s": {"fp32": 2.0 * size**3 / matmul_s},
        "copy_bytes_per_s": 2.0 * elements * 4 / copy_s,
        "matmul_shape": [size, size, size],
        "copy_bytes": elements * 4,
        "method": "torch.matmul float32 (TF32 off) and Tensor.copy_, median after warm-up; on a CPU the "
        "clock rule of measure() (wall time unless the process waited for a core)",
    }


# ---------------------------------------------------------------------------------------------
# Inputs and runners


def make_inputs(case: Case, rng: np.random.Generator) -> dict[str, Any]:
    s, c = case.shape, case.config
    f32 = np.float32
    if case.family == "gemm":
        return {
            "a": rng.standard_normal((s["m"], s["k"]), dtype=f32),
            "b": rng.standard_normal((s["k"], s["n"]), dtype=f32),
            "out": np.empty((s["m"], s["n"]), dtype=f32),
        }
    if case.family == "grouped_gemm":
        sizes = s["group_sizes"]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        rows = int(offsets[-1])
        return {
            "x": rng.standard_normal((rows, s["k"]), dtype=f32),
            "w": rng.standard_normal((len(sizes), s["k"], s["n"]), dtype=f32) * f32(0.05),
            "offsets": offsets,
            "out": np.empty((rows, s["n"]), dtype=f32),
        }
    if case.family == "gating":
        t, e, k = s["num_tokens"], s["num_experts"], s["top_k"]
        return {
            "logits": rng.standard_normal((t, e), dtype=f32),
            "bias": rng.uniform(-0.1, 0.1, e).astype(f32) if c["scoring"] == "sigmoid" else np.zeros(e, f32),
            "indices": np.empty((t, k), dtype=np.int64),
            "weights": np.empty((t, k), dtype=f32),
        }
    if case.family == "permute":
        t, h, k, e = s["num_tokens"], s["hidden"], s["top_k"], c["num_experts"]
        popularity = 1.0 / np.arange(1, e + 1) ** c["skew"]
        popularity /= popularity.sum()
        indices = np.stack([rng.choice(e, size=k, replace=False, p=popularity) for _ in range(t)]).astype(
            np.int64
        )
        from kernels_numba import reference

        _, _, _, slot = reference.permute(np.zeros((t, 1), f32), indices, e)
        return {
            "x": rng.standard_normal((t, h), dtype=f32),
            "indices": indices,
            "num_experts": e,
            "out": np.empty((t * k, h), dtype=f32),
            "slot": slot,
            "y": rng.standard_normal((t * k, h), dtype=f32),
            "weights": rng.uniform(0.1, 1.0, (t, k)).astype(f32),
            "combined": np.empty((t, h), dtype=f32),
        }
    if case.family in ("attention_prefill", "attention_decode"):
        b, sq, skv, hq = s["batch"], s["q_len"], s["kv_len"], s["num_heads"]
        hkv, d, dv = c["kv_heads"], s["qk_head_dim"], s["v_head_dim"]
        return {
            "q": rng.standard_normal((b, hq, sq, d), dtype=f32),
            "k": rng.standard_normal((b, hkv, skv, d), dtype=f32),
            "v": rng.standard_normal((b, hkv, skv, dv), dtype=f32),
            "scale": 1.0 / float(np.sqrt(d)),
            "causal": bool(s["causal"]),
            "out": np.empty((b, hq, sq, dv), dtype=f32),
        }
    raise ValueError(f"unknown family {case.family!r}")


def numba_cpu_runner(case: Case, x: dict[str, Any]) -> Runner:
    from kernels_numba import cpu

    f = case.family
    if f == "gemm":
        return lambda: cpu.gemm(x["a"], x["b"], x["out"])
    if f == "grouped_gemm":
        return lambda: cpu.grouped_gemm(x["x"], x["offsets"], x["w"], x["out"])
    if f == "gating":
        c, s = case.config, case.shape
        return lambda: cpu.gating(
            x["logits"],
            s["top_k"],
            c["scoring"],
            c["n_group"],
            c["topk_group"],
            x["bias"],
            2.5,
            True,
            x["indices"],
            x["weights"],
        )
    if f == "permute":
        if case.shape["combine"]:
            return lambda: cpu.unpermute(x["y"], x["slot"], x["weights"], x["combined"])
        return lambda: cpu.permute(x["x"], x["indices"], x["num_experts"], x["out"])
    return lambda: cpu.attention(x["q"], x["k"], x["v"], x["causal"], x["scale"], x["out"])


def torch_runner(case: Case, x: dict[str, Any], device: str) -> Runner:
    import torch

    from kernels_numba import torch_ref

    t = {k: torch.from_numpy(v).to(device) if isinstance(v, np.ndarray) else v for k, v in x.items()}
    f = case.family
    if f == "gemm":
        return lambda: torch_ref.gemm(t["a"], t["b"], t["out"])
    if f == "grouped_gemm":
        offsets = [int(o) for o in x["offsets"]]
        return lambda: torch_ref.grouped_gemm(t["x"], offsets, t["w"], t["out"])
    if f == "gating":
        c, s = case.config, case.shape
        return lambda: torch_ref.gating(
            t["logits"], s["top_k"], c["scoring"], c["n_group"], c["topk_group"], t["bias"], 2.5, True
        )
    if f == "permute":
        if case.shape["combine"]:
            workspace = torch.empty_like(t["y"])
            return lambda: torch_ref.unpermute(t["y"], t["slot"], t["weights"], t["combined"], workspace)
        return lambda: torch_ref.permute(t["x"], t["indices"], x["num_experts"], t["out"])
    return lambda: torch_ref.attention(t["q"], t["k"], t["v"], x["causal"], x["scale"])


def numba_cuda_runner(case: Case, x: dict[str, Any]) -> Runner:
    from numba import cuda

    from kernels_numba.gpu import kernels as gk

    d = {k: cuda.to_device(v) if isinstance(v, np.ndarray) else v for k, v in x.items()}
    f = case.family
    if f == "gemm":
        tasks = tuple(cuda.to_device(a) for a in gk.gemm_tasks(x["a"].shape[0]))
        return lambda: gk.launch_gemm(d["a"], d["b"], d["out"], tasks)
    if f == "grouped_gemm":
        gtasks = tuple(cuda.to_device(a) for a in gk.grouped_tasks(x["offsets"]))
        return lambda: gk.launch_grouped_gemm(d["x"], d["w"], d["out"], gtasks)
    if f == "gating":
        c, s = case.config, case.shape
        return lambda: gk.launch_gating(
            d["logits"],
            d["bias"],
            s["top_k"],
            c["scoring"],
            c["n_group"],
            c["topk_group"],
            2.5,
            True,
            d["indices"],
            d["weights"],
        )
    if f == "permute":
        if case.shape["combine"]:
            return lambda: gk.launch_combine(d["y"], d["slot"], d["weights"], d["combined"])

        def permute() -> None:
            _, source, _, _ = gk.launch_route(d["indices"], x["num_experts"])
            gk.launch_copy_rows(d["x"], source, d["out"])

        return permute
    return lambda: gk.launch_attention(d["q"], d["k"], d["v"], x["causal"], x["scale"], d["out"])


# ---------------------------------------------------------------------------------------------
# The run


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (sysfs), or 32 MiB when it cannot be read."""
    best = 0
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            best = max(best, int(digits) * scale)
    return best or (32 << 20)


def rotation_copies(inputs: dict[str, Any], llc_bytes: int, quick: bool) -> int:
    """How many independent input sets to cycle through so that consecutive calls do not find
    their operands in the last-level cache (a model's layers each read their own weights):
    enough sets to span twice the LLC, at most 16, and at most 1 GiB of copies."""
    size = sum(v.nbytes for v in inputs.values() if isinstance(v, np.ndarray))
    if quick or size == 0:
        return 1
    wanted = -(-2 * llc_bytes // size)
    return int(max(1, min(16, wanted, (1 << 30) // size)))


def rotation_sets(
    case: Case, inputs: dict[str, Any], copies: int, seed: int, index: int
) -> list[dict[str, Any]]:
    """``inputs`` and ``copies - 1`` independent draws of the same case (own seeds): not copies,
    because identical copies let the branch predictor learn a data-dependent kernel's
    comparisons (top-k selection, sorting) across calls when the data is small (measured: torch
    gating of 64 tokens x 256 experts, 150 us on 16 identical copies, 371 us on 16 draws)."""
    return [inputs] + [make_inputs(case, np.random.default_rng([seed, index, j])) for j in range(1, copies)]


def rotate(runners: list[Runner]) -> Runner:
    """One runner that calls ``runners`` in turn, one per call (over the input sets of
    :func:`rotation_sets`, so that successive timed runs read different memory)."""
    state = {"next": 0}

    def run() -> Any:
        i = state["next"]
        state["next"] = (i + 1) % len(runners)
        return runners[i]()

    return run


PREEMPTION_RATIO = 1.1  # wall / (CPU time / threads) above this: the process was waiting for a core


def measure(
    cases: list[Case],
    impls: list[str],
    seed: int = 0,
    log: Callable[[str], None] = print,
    quick: bool = False,
    threads: int = 1,
    passes: int = 1,
) -> list[dict[str, Any]]:
    """Time ``cases`` for each implementation; one record per (case, impl).

    The grid is timed ``passes`` times, interleaved (pass 1 over every case, then pass 2 ...),
    so that a burst of load from other jobs hits one pass of many cases rather than every run
    of one case; ``measured_s`` is the median over passes (``pass_s`` keeps them all). Warm-up
    calls each rotation set once (at least twice in all), so that no timed call is the first
    write to its output buffer (first-touch page faults: measured 32 ms against 13 ms for a
    1024 x 2048 x 512 torch GEMM over 16 sets when only two were warmed).

    CPU clock rule (fixed, per pass): the median wall time (``perf_counter_ns``) unless it
    exceeds the median process CPU time per thread by more than ``PREEMPTION_RATIO`` (the
    machine is shared and the process waited for a core); then the CPU time per thread. The
    record's ``clock`` counts the passes that used each clock.
    """
    budget = {"min_total_s": 0.02, "min_runs": 3} if quick else {"min_total_s": 0.25, "min_runs": 5}
    llc = last_level_cache_bytes()
    per_pass: dict[tuple[int, str], list[tuple[float, int, str, float, float]]] = {}
    copies_of: dict[int, int] = {}
    for pass_index in range(passes):
        for index, case in enumerate(cases):
            inputs = make_inputs(case, np.random.default_rng([seed, index]))  # the same data every pass
            copies = rotation_copies(inputs, llc, quick)
            copies_of[index] = copies
            sets = rotation_sets(case, inputs, copies, seed, index)
            for impl in impls:
                wall = cpu = float("nan")
                if impl in ("numba_cpu", "torch_cpu"):
                    if impl == "numba_cpu":
                        runner = rotate([numba_cpu_runner(case, x) for x in sets])
                    else:
                        runner = rotate([torch_runner(case, x, "cpu") for x in sets])
                    # warm-up calls every input set once: the first write to a set's output
                    # buffer (np.empty) takes page faults that a steady-state call does not
                    wall, runs, cpu = time_cpu_clocks(
                        runner,
                        warmup=max(2, len(sets)),
                        **budget,  # type: ignore[arg-type]
                    )
                    per_thread = cpu / threads
                    preempted = wall > PREEMPTION_RATIO * per_thread
                    median = per_thread if preempted else wall
                    clock = "process_time" if preempted else "perf_counter"
                elif impl == "numba_cuda":
                    median, runs = time_cuda(numba_cuda_runner(case, inputs))
                    clock = "cuda_event"
                elif impl == "torch_cuda":
                    median, runs = time_cuda(torch_runner(case, inputs, "cuda"))
                    clock = "cuda_event"
                else:
                    raise ValueError(f"unknown implementation {impl!r}")
                per_pass.setdefault((index, impl), []).append((median, runs, clock, wall, cpu))
                log(
                    f"pass {pass_index + 1}/{passes} {case.family:18s} {impl:10s} {median * 1e3:10.4f} ms "
                    f"{clock:13s} {json.dumps(case.shape)[:70]}"
                )
    records = []
    for index, case in enumerate(cases):
        for impl in impls:
            results = per_pass[(index, impl)]
            clocks: dict[str, int] = {}
            for r in results:
                clocks[r[2]] = clocks.get(r[2], 0) + 1
            records.append(
                {
                    "family": case.family,
                    "impl": impl,
                    "shape": case.shape,
                    "config": case.config,
                    "measured_s": float(np.median([r[0] for r in results])),
                    "pass_s": [r[0] for r in results],
                    "runs": int(sum(r[1] for r in results)),
                    "wall_s": [r[3] for r in results],
                    "cpu_s": [r[4] for r in results],
                    "clock": clocks,
                    "input_sets": copies_of[index],
                }
            )
    return records


def run(
    quick: bool = False,
    out: Path | None = None,
    fit: bool = True,
    log: Callable[[str], None] = print,
    threads: int | None = None,
    families: list[str] | None = None,
    passes: int = 3,
    update: bool = False,
) -> Path:
    """Measure and write the calibration file. ``threads`` (default: every core this process may
    use) sets both numba's and torch's thread count; the file's ``cores`` is that number, the
    compute units of the CPU profile (the timing model quantises work over them).

    ``update=True`` (with ``families``): re-measure only those families and replace their
    records in the existing file, keeping its ceilings (the profile every other family was
    fitted against) and its other records; the file's ``updates`` lists each such run. The file
    must be this device's; one from before the bench recorded ``cpu_capability`` gains it."""
    import numba
    import torch

    gpu = cuda_present()
    available = cpu_cores()
    cores = available if threads is None else int(threads)
    if not 1 <= cores <= available:
        raise ValueError(f"threads must be between 1 and the {available} cores available, got {threads}")
    torch.set_num_threads(cores)
    numba.set_num_threads(cores)
    if gpu:
        device = torch.cuda.get_device_name(0)
        kind, impls, default_impl = "gpu", ["numba_cuda", "torch_cuda"], "torch_cuda"
    else:
        device = cpu_name()
        kind, impls, default_impl = "cpu", ["numba_cpu", "torch_cpu"], "torch_cpu"
    stem = cal.device_key(device)
    stem = re.sub(r"[^a-z0-9]+", "-", stem).strip("-")
    if kind == "cpu":
        stem = f"cpu-{stem}"
    path = out if out is not None else cal.calibration_dir() / f"{stem}.json"
    previous: dict[str, Any] | None = None
    if update:
        if not families or not path.exists():
            raise ValueError(f"update needs --families and an existing file; got {families} and {path}")
        previous = json.loads(path.read_text())
        if int(previous.get("cores", -1)) != cores:
            raise ValueError(f"update must use the file's thread count {previous.get('cores')}, got {cores}")
        if str(previous.get("device")) != device:
            raise ValueError(
                f"update must run on the file's device {previous.get('device')!r}; this is {device!r} "
                "(measure this device into its own file instead)"
            )
    if previous is not None:
        log(f"device {device} ({kind}), {cores} cores; keeping the file's ceilings")
        ceiling = previous["ceilings"]
    else:
        log(f"device {device} ({kind}), {cores} cores; measuring ceilings")
        ceiling = ceilings("cuda" if gpu else "cpu", quick)
    log(
        f"ceilings: fp32 matmul {ceiling['matmul_flops_per_s']['fp32'] / 1e9:.1f} GFLOP/s, "
        f"copy {ceiling['copy_bytes_per_s'] / 1e9:.1f} GB/s"
    )
    cases = [c for c in grid(quick) if families is None or c.family in families]
    records = measure(cases, impls, log=log, quick=quick, threads=cores, passes=1 if quick else passes)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if previous is not None:
        assert families is not None
        kept = [r for r in previous.get("measurements", []) if r.get("family") not in families]
        updated = dict(previous)
        updated["measurements"] = kept + records
        entry: dict[str, Any] = {"date": now, "families": sorted(families), "versions": versions()}
        if kind == "cpu" and "cpu_capability" not in previous:
            # a file from before the bench recorded it: the device is the same, so is its SIMD level
            updated["cpu_capability"] = entry["cpu_capability_added"] = cpu_capability()
        updated["updates"] = list(previous.get("updates", [])) + [entry]
        devices.write_device_file(path, updated, fit)
        log(f"updated {path}")
        return path
    doc: dict[str, Any] = {
        "schema": 1,
        "device": device,
        "kind": kind,
        "cores": cores,
        "cores_available": available,
        "date": now,
        "versions": versions(),
        "platform": platform.platform(),
        **({"cpu_capability": cpu_capability()} if kind == "cpu" else {}),
        "source": "measured by python -m kernels_numba.bench" + (" --quick" if quick else ""),
        "note": "CPU kernels in float32 (no bf16 arithmetic on this CPU); the machine was shared with other "
        "jobs while measuring, so times carry noise; medians of repeated runs.",
        "ceilings": ceiling,
        "default_impl": default_impl,
        "families": {},
        "measurements": records,
    }
    devices.write_device_file(path, doc, fit)  # the fit reads the profile built from the file written
    log(f"wrote {path}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kernels_numba.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny grid (tests of the harness)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output path (default gpus/calibration/<device>.json)"
    )
    parser.add_argument("--no-fit", action="store_true", help="store measurements only, no fitted families")
    parser.add_argument(
        "--threads", type=int, default=None, help="threads for numba and torch (default: all cores)"
    )
    parser.add_argument("--passes", type=int, default=3, help="interleaved passes over the grid (median)")
    parser.add_argument("--families", nargs="*", default=None, help="only these families (default: all)")
    parser.add_argument(
        "--update",
        action="store_true",
        help="re-measure --families only, replacing their records in the existing file (its ceilings kept)",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        metavar="FILE",
        help="pool the passes of these full runs (same device, threads, versions) into --out; no timing",
    )
    args = parser.parse_args(argv)
    if args.merge:
        if args.out is None:
            parser.error("--merge needs --out")
        try:
            devices.merge_runs(args.merge, args.out, fit=not args.no_fit)
        except (OSError, ValueError, KeyError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        print(f"wrote {args.out}")
        return 0
    run(
        quick=args.quick,
        out=args.out,
        fit=not args.no_fit,
        threads=args.threads,
        families=args.families,
        passes=args.passes,
        update=args.update,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
