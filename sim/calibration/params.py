"""The timing model's efficiency model: at most four fitted parameters per kernel family.

A calibration file holds, per kernel family and implementation:

``launch_s``
    fixed time per call (kernel launch, Python/torch dispatch, thread wake-up), seconds.
``compute_efficiency``
    fraction of the device's dense peak (for the dtype) that the kernel sustains on full tiles.
``memory_efficiency``
    fraction of the peak memory bandwidth the kernel sustains.
``overlap_exponent``
    ``p`` in ``(compute_s**p + memory_s**p) ** (1/p)``: 1 means compute and memory traffic
    add up (no overlap), large ``p`` tends to ``max`` (perfect overlap).

The predicted time of a kernel is ``launches * launch_s + combine(compute_s / compute_efficiency,
memory_s / memory_efficiency)``, where ``compute_s`` is the FLOP count rounded up to whole
tiles and whole waves over the SMs (or cores) divided by the peak, and ``memory_s`` is the
bytes moved over the peak bandwidth (on a CPU with written bytes weighted for write-allocate,
``sim.timing``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

FAMILIES = (
    "gemm",
    "grouped_gemm",
    "gating",
    "permute",
    "attention_prefill",
    "attention_decode",
    "memory",
    "gemm_wgrad",
    "memory_bound",
    "attention_backward",
    "attention_prefill_math",
    "norm_rope",
    "gemv",
)
# A family a device file lacks borrows the first of these the file has (nearest kind of kernel
# on the same device), before the uncalibrated defaults.
FALLBACKS: dict[str, tuple[str, ...]] = {
    "gemm_wgrad": ("gemm",),
    "memory_bound": ("memory", "gemm"),
    "attention_backward": ("attention_prefill", "memory", "gemm"),
    "attention_prefill_math": ("attention_prefill", "memory", "gemm"),
    "norm_rope": ("memory_bound", "memory", "gemm"),
    "gemv": ("gemm",),
}
PARAMETER_NAMES = ("launch_s", "compute_efficiency", "memory_efficiency", "overlap_exponent")
# Bounds of the fitted parameters: physical limits, not tuning knobs.
PARAMETER_BOUNDS = {
    "launch_s": (0.0, 1e-4),  # a call or launch overhead above 100 us is not physical
    "compute_efficiency": (1e-3, 4.0),
    "memory_efficiency": (1e-3, 4.0),
    "overlap_exponent": (1.0, 16.0),
}

DTYPE_BYTES = {
    "fp64": 8.0,
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 0.5,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; ValueError for an unknown format."""
    key = str(dtype).lower()
    if key not in DTYPE_BYTES:
        raise ValueError(f"unknown dtype {dtype!r}; allowed: {', '.join(DTYPE_BYTES)}")
    return DTYPE_BYTES[key]


@dataclass(frozen=True)
class FamilyParams:
    """The (at most four) fitted parameters of one kernel family on one device."""

    launch_s: float
    compute_efficiency: float
    memory_efficiency: float
    overlap_exponent: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def as_vector(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in PARAMETER_NAMES], dtype=float)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FamilyParams:
        missing = [n for n in PARAMETER_NAMES if n not in data]
        if missing:
            raise ValueError(f"calibration parameters lack {missing}; each family needs {PARAMETER_NAMES}")
        return cls(**{n: float(data[n]) for n in PARAMETER_NAMES})


def combine(compute_s: float, memory_s: float, overlap_exponent: float) -> float:
    """Smooth maximum of compute and memory time: the p-norm (p=1 sum, p->inf max)."""
    top = max(compute_s, memory_s)
    if top <= 0.0:
        return 0.0
    p = overlap_exponent
    return float(top * ((compute_s / top) ** p + (memory_s / top) ** p) ** (1.0 / p))


def predict_seconds(params: FamilyParams, compute_s: float, memory_s: float, launches: int = 1) -> float:
    """``launches * launch_s + combine(compute_s / compute_efficiency, memory_s / memory_efficiency)``;
    ``launches`` is the number of kernel (or library) calls the implementation issues."""
    return launches * params.launch_s + combine(
        compute_s / params.compute_efficiency, memory_s / params.memory_efficiency, params.overlap_exponent
    )
