"""Host time of one eager PyTorch operator call, measured on the machine at hand.

``python -m kernels_numba.host_overhead [--write] [--calls N] [--repeats R]``

A serving stack that captures no CUDA graphs (TensorRT-LLM's PyTorch backend before it turned them
on by default, ``use_cuda_graph = False``) issues every kernel of a step from Python: the host walks
the model's modules, and each operator costs the interpreter's module call, torch's dispatcher and
the launch. When that host time exceeds the kernel's GPU time, the GPU waits for the host
(``sim.serving.stepcost`` schedules the step as a queue fed by the host at this rate).

What is measured: an ``nn.Module`` whose ``forward`` calls one aten operator on a one-element tensor
(the operator's own arithmetic is negligible), called ``calls`` times in a row, the median over
``repeats`` runs after warm-up, by ``time.perf_counter_ns`` (STYLE.md rule 9); the result is seconds
per call. It stands for the host side of one inventory operator (a projection, a norm, a fused MoE
call): one module call dispatching one kernel. Not included, and so not charged: the CUDA driver's
launch call itself (no measurement of it on this machine, which has no GPU) and the extra small
aten operators (views, copies, casts) that real eager model code issues between the inventory's
operators. Both would add host time, so the charge is a lower bound.

``--write`` stores the figure in ``gpus/calibration/host/eager_pytorch.json`` (its ``measured_here``
entry, ``sim.calibration.write_eager_call``) with the CPU's name, the date and the library versions.
The file's ``published`` entry, a measurement on a CUDA GPU that includes the launch, is what the
model uses where it is present.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from typing import Any

from sim import calibration as cal


def measure_eager_call_s(calls: int = 2000, repeats: int = 21, warmup: int = 3) -> dict[str, float]:
    """Median, minimum and maximum seconds per eager module call (see the module docstring)."""
    import torch

    if calls < 1 or repeats < 1 or warmup < 0:
        raise ValueError(f"calls and repeats must be >= 1 and warmup >= 0, got {calls}, {repeats}, {warmup}")

    class OneOp(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.add(x, 1.0)

    module = OneOp()
    x = torch.zeros(1)
    per_call: list[float] = []
    with torch.inference_mode():
        for run in range(warmup + repeats):
            start = time.perf_counter_ns()
            for _ in range(calls):
                module(x)
            elapsed = (time.perf_counter_ns() - start) * 1e-9 / calls
            if run >= warmup:
                per_call.append(elapsed)
    return {
        "median_s": statistics.median(per_call),
        "min_s": min(per_call),
        "max_s": max(per_call),
    }


def record(calls: int, repeats: int) -> dict[str, Any]:
    """The calibration record: the measurement with the CPU, date, versions and method."""
    from kernels_numba import bench

    measured = measure_eager_call_s(calls, repeats)
    return {
        "schema": 1,
        "device": bench.cpu_name(),
        "kind": "cpu",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "versions": bench.versions(),
        "eager_call_s": measured["median_s"],
        "eager_call_spread_s": [measured["min_s"], measured["max_s"]],
        "calls": calls,
        "repeats": repeats,
        "source": "measured by python -m kernels_numba.host_overhead --write",
        "method": (
            "nn.Module.__call__ whose forward is one torch.add on a one-element float32 CPU tensor, under "
            "torch.inference_mode; calls in a row timed with time.perf_counter_ns, median over repeats "
            "after warm-up; seconds per call"
        ),
        "not_included": (
            "the CUDA driver's launch call (no GPU here) and the small aten operators eager model code "
            "adds between the inventory's operators: the host time charged per operator is a lower bound"
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write gpus/calibration/{cal.HOST_EAGER_FILE}")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=21)
    args = parser.parse_args(argv)
    try:
        data = record(args.calls, args.repeats)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"{data['device']}: {data['eager_call_s'] * 1e6:.2f} us per eager module call")
    if args.write:
        print(f"wrote {cal.write_eager_call(data)}")  # the file's published figure, if any, is kept
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
