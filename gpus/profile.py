"""Frozen hardware profiles in SI units: ``GPUProfile``, ``NodeSpec``, ``PriceSpec``.

Profiles are built by ``gpus.loader`` from the data files in ``gpus/data/`` (human units, one
source per figure); nothing here converts units. Peak FLOP/s figures are dense (2:4-sparsity
datasheet figures halved); a number format the chip lacks is absent from
``peak_flops_per_s``, never zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

# How the GPUs of a scale-up domain are joined: through switches (NVSwitch: every GPU reaches any
# other at its full link bandwidth), as a full mesh (HCCS on Ascend, Infinity Fabric on MI300X: a
# pair shares one link), by bridges (NVLink-bridged PCIe pairs), or not at all.
SCALE_UP_TOPOLOGIES: tuple[str, ...] = ("switch", "full-mesh", "bridge", "none")

# Number formats a profile may list, widest first.
DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "fp4", "int8")

# Spellings accepted for each format (compared after lower-casing).
_DTYPE_SPELLINGS: dict[str, str] = {
    "fp64": "fp64", "float64": "fp64", "double": "fp64",
    "fp32": "fp32", "float32": "fp32", "float": "fp32",
    "tf32": "tf32", "tensorfloat32": "tf32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
    "fp8": "fp8", "float8": "fp8", "fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "e4m3": "fp8", "e5m2": "fp8",
    "float8_e4m3fn": "fp8", "float8_e5m2": "fp8",
    "fp4": "fp4", "float4": "fp4", "nvfp4": "fp4", "mxfp4": "fp4", "fp4_e2m1": "fp4",
    "int8": "int8", "i8": "int8",
}

# Where a format is missing, the formats tried in order: the nearest wider one that does the same
# work (fp8 on A800 runs as bf16; fp4 on H800 runs as fp8).
_FALLBACK: dict[str, tuple[str, ...]] = {
    "fp4": ("fp8", "bf16", "fp16", "tf32", "fp32"),
    "fp8": ("bf16", "fp16", "tf32", "fp32"),
    "int8": ("fp8", "bf16", "fp16", "fp32"),
    "bf16": ("fp16", "tf32", "fp32"),
    "fp16": ("bf16", "tf32", "fp32"),
    "tf32": ("fp32",),
    "fp32": ("tf32", "fp64"),
    "fp64": ("fp32",),
}


def normalize_dtype(dtype: str) -> str:
    """The canonical name of a number format ("bfloat16" -> "bf16"); ValueError if unknown."""
    if isinstance(dtype, str):
        key = dtype.strip().lower().replace("-", "_")
        if key in _DTYPE_SPELLINGS:
            return _DTYPE_SPELLINGS[key]
    raise ValueError(f"unknown number format {dtype!r}; known formats: {', '.join(DTYPES)}")


class FrozenMap(dict):  # type: ignore[type-arg]
    """A read-only, hashable dict (so that profiles stay frozen and hashable).

    It is a real ``dict`` subclass, so ``json.dumps``, ``dataclasses.asdict``, ``pickle`` and
    ``copy.deepcopy`` work; every mutating method raises ``TypeError``.
    """

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("this mapping is read-only (part of a frozen profile)")

    __setitem__ = _refuse
    __delitem__ = _refuse
    clear = _refuse
    pop = _refuse  # type: ignore[assignment]
    popitem = _refuse  # type: ignore[assignment]
    setdefault = _refuse  # type: ignore[assignment]
    update = _refuse
    __ior__ = _refuse  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenMap, (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenMap({dict.__repr__(self)})"


def _positive(value: float, what: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        limit = "zero or more" if allow_zero else "positive"
        raise ValueError(f"{what} must be {limit}, got {value!r}")


def _positive_int(value: int, what: str, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be a whole number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        limit = "zero or more" if allow_zero else "at least 1"
        raise ValueError(f"{what} must be {limit}, got {value!r}")


@dataclass(frozen=True)
class NodeSpec:
    """A typical server of this GPU.

    ``scale_up_domain_gpus`` is the number of GPUs joined by the scale-up fabric (NVLink/NVSwitch,
    HCCS, Infinity Fabric): 8 for an HGX board, 2 for NVLink-bridged PCIe pairs, 72 for an NVL72
    rack (a domain larger than a node, then a whole number of nodes). ``scale_up_topology`` is one
    of ``SCALE_UP_TOPOLOGIES``. NIC bandwidth is per NIC and per direction;
    ``scale_out_bandwidth_bytes_per_s_per_gpu`` shares the node's NICs over its GPUs.
    """

    gpus_per_node: int
    scale_up_domain_gpus: int
    nics_per_node: int
    nic_bandwidth_bytes_per_s_per_direction: float
    scale_up_topology: str = "switch"

    def __post_init__(self) -> None:
        if self.scale_up_topology not in SCALE_UP_TOPOLOGIES:
            raise ValueError(f"scale_up_topology must be one of {', '.join(SCALE_UP_TOPOLOGIES)}, "
                             f"got {self.scale_up_topology!r}")
        _positive_int(self.gpus_per_node, "gpus_per_node")
        _positive_int(self.scale_up_domain_gpus, "scale_up_domain_gpus")
        _positive_int(self.nics_per_node, "nics_per_node", allow_zero=True)
        _positive(self.nic_bandwidth_bytes_per_s_per_direction, "nic_bandwidth_bytes_per_s_per_direction",
                  allow_zero=True)
        domain, per_node = self.scale_up_domain_gpus, self.gpus_per_node
        if domain > per_node and domain % per_node != 0:
            raise ValueError(
                f"scale_up_domain_gpus ({domain}) is larger than a node ({per_node} GPUs) but not a whole "
                "number of nodes; a scale-up domain is either within one node or spans whole nodes")
        if domain < per_node and per_node % domain != 0:
            raise ValueError(
                f"scale_up_domain_gpus ({domain}) does not divide a node's {per_node} GPUs; a scale-up "
                "domain within a node splits it into equal groups (e.g. NVLink-bridged pairs: 2)")

    @property
    def scale_out_bandwidth_bytes_per_s_per_node(self) -> float:
        """All NICs of the node together, per direction (bytes/s)."""
        return self.nics_per_node * self.nic_bandwidth_bytes_per_s_per_direction

    @property
    def scale_out_bandwidth_bytes_per_s_per_gpu(self) -> float:
        """The node's NIC bandwidth per direction divided over its GPUs (bytes/s)."""
        return self.scale_out_bandwidth_bytes_per_s_per_node / self.gpus_per_node

    def to_dict(self) -> dict[str, Any]:
        return {
            "gpus_per_node": self.gpus_per_node,
            "scale_up_domain_gpus": self.scale_up_domain_gpus,
            "scale_up_topology": self.scale_up_topology,
            "nics_per_node": self.nics_per_node,
            "nic_bandwidth_bytes_per_s_per_direction": self.nic_bandwidth_bytes_per_s_per_direction,
            "scale_out_bandwidth_bytes_per_s_per_gpu": self.scale_out_bandwidth_bytes_per_s_per_gpu,
        }


@dataclass(frozen=True)
class PriceSpec:
    """Rental price in USD per GPU-hour (typical, with a low-high range), and an optional purchase
    price per GPU for total-cost-of-ownership estimates. ``source`` and ``date`` describe the
    typical figure; the per-figure sources are in the profile's ``sources``."""

    usd_per_gpu_hour: float
    usd_per_gpu_hour_low: float
    usd_per_gpu_hour_high: float
    source: str
    date: str
    purchase_usd_per_gpu: float | None = None
    purchase_source: str = ""
    purchase_date: str = ""

    def __post_init__(self) -> None:
        _positive(self.usd_per_gpu_hour, "usd_per_gpu_hour", allow_zero=True)
        _positive(self.usd_per_gpu_hour_low, "usd_per_gpu_hour_low", allow_zero=True)
        _positive(self.usd_per_gpu_hour_high, "usd_per_gpu_hour_high", allow_zero=True)
        if not self.usd_per_gpu_hour_low <= self.usd_per_gpu_hour <= self.usd_per_gpu_hour_high:
            raise ValueError(
                "price range must satisfy low <= typical <= high, got "
                f"low {self.usd_per_gpu_hour_low}, typical {self.usd_per_gpu_hour}, "
                f"high {self.usd_per_gpu_hour_high} USD per GPU-hour")
        if self.purchase_usd_per_gpu is not None:
            _positive(self.purchase_usd_per_gpu, "purchase_usd_per_gpu")

    def to_dict(self) -> dict[str, Any]:
        return {
            "usd_per_gpu_hour": self.usd_per_gpu_hour,
            "usd_per_gpu_hour_low": self.usd_per_gpu_hour_low,
            "usd_per_gpu_hour_high": self.usd_per_gpu_hour_high,
            "source": self.source,
            "date": self.date,
            "purchase_usd_per_gpu": self.purchase_usd_per_gpu,
            "purchase_source": self.purchase_source,
            "purchase_date": self.purchase_date,
        }


def _freeze(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> FrozenMap:
    return mapping if isinstance(mapping, FrozenMap) else FrozenMap(mapping)


@dataclass(frozen=True)
class GPUProfile:
    """What one accelerator can do, in SI units (FLOP/s, bytes, bytes/s, Hz, W, USD).

    Build one with ``gpus.get(name)`` or ``gpus.load_profile(path)``. ``sources``, ``notes`` and
    ``confidence`` are keyed by field path ("sm_count", "peak_flops_per_s.bf16",
    "node.nics_per_node", "price.usd_per_gpu_hour" ...). ``hbm_bytes`` is the capacity the driver
    reports where that is known, else the marketed figure (``notes["hbm_bytes"]`` says which);
    ``hbm_marketed_bytes`` is the marketed "GB" figure x 1e9. ``vector_bytes`` (CPUs) is the
    width of the SIMD register the CPU's vectorised kernels use (64 for AVX-512, 32 for AVX2);
    0 where unknown or not a CPU.
    """

    name: str
    full_name: str
    vendor: str
    architecture: str
    aliases: tuple[str, ...]
    sm_count: int
    clock_hz: float
    peak_flops_per_s: Mapping[str, float]
    hbm_bytes: float
    hbm_bandwidth_bytes_per_s: float
    l2_bytes: float
    smem_per_sm_bytes: float
    nvlink_bandwidth_bytes_per_s_per_direction: float
    pcie_bandwidth_bytes_per_s_per_direction: float
    tdp_w: float
    node: NodeSpec
    price: PriceSpec
    hbm_marketed_bytes: float | None = None
    sources: Mapping[str, str] = field(default_factory=FrozenMap)
    notes: Mapping[str, str] = field(default_factory=FrozenMap)
    confidence: Mapping[str, str] = field(default_factory=FrozenMap)
    data_file: str = ""
    vector_bytes: float = 0.0

    def __post_init__(self) -> None:
        for attr in ("name", "full_name", "vendor", "architecture"):
            if not isinstance(getattr(self, attr), str) or not getattr(self, attr).strip():
                raise ValueError(f"{attr} must be a non-empty string, got {getattr(self, attr)!r}")
        object.__setattr__(self, "aliases", tuple(self.aliases))
        _positive_int(self.sm_count, "sm_count")
        _positive(self.clock_hz, "clock_hz")
        peaks = _freeze(self.peak_flops_per_s)
        if not peaks:
            raise ValueError("peak_flops_per_s must list at least one number format")
        for dtype, value in peaks.items():
            if dtype not in DTYPES:
                raise ValueError(f"peak_flops_per_s has unknown format {dtype!r}; known: {', '.join(DTYPES)}")
            _positive(value, f"peak_flops_per_s[{dtype!r}]")
        object.__setattr__(self, "peak_flops_per_s", peaks)
        _positive(self.hbm_bytes, "hbm_bytes")
        _positive(self.hbm_bandwidth_bytes_per_s, "hbm_bandwidth_bytes_per_s")
        _positive(self.l2_bytes, "l2_bytes", allow_zero=True)
        _positive(self.smem_per_sm_bytes, "smem_per_sm_bytes", allow_zero=True)
        _positive(self.nvlink_bandwidth_bytes_per_s_per_direction,
                  "nvlink_bandwidth_bytes_per_s_per_direction", allow_zero=True)
        _positive(self.pcie_bandwidth_bytes_per_s_per_direction, "pcie_bandwidth_bytes_per_s_per_direction",
                  allow_zero=True)
        _positive(self.tdp_w, "tdp_w", allow_zero=True)
        _positive(self.vector_bytes, "vector_bytes", allow_zero=True)
        if self.hbm_marketed_bytes is not None:
            _positive(self.hbm_marketed_bytes, "hbm_marketed_bytes")
        if not isinstance(self.node, NodeSpec):
            raise ValueError(f"node must be a NodeSpec, got {type(self.node).__name__}")
        if not isinstance(self.price, PriceSpec):
            raise ValueError(f"price must be a PriceSpec, got {type(self.price).__name__}")
        for attr in ("sources", "notes", "confidence"):
            object.__setattr__(self, attr, _freeze(getattr(self, attr)))

    # -- number formats -------------------------------------------------------------------------

    @property
    def dtypes(self) -> tuple[str, ...]:
        """The number formats this chip has a peak for, widest first."""
        return tuple(d for d in DTYPES if d in self.peak_flops_per_s)

    def supports(self, dtype: str) -> bool:
        """Whether the chip computes in ``dtype`` natively (fp8 on A800: False)."""
        return normalize_dtype(dtype) in self.peak_flops_per_s

    def nearest_dtype(self, dtype: str) -> str:
        """``dtype`` if supported, else the nearest wider format the chip has (A800: fp8 -> bf16;
        H800: fp4 -> fp8). ValueError if there is none."""
        canonical = normalize_dtype(dtype)
        if canonical in self.peak_flops_per_s:
            return canonical
        for candidate in _FALLBACK[canonical]:
            if candidate in self.peak_flops_per_s:
                return candidate
        raise ValueError(f"{self.name} has no format to run {canonical} in; it has: {', '.join(self.dtypes)}")

    def peak_flops(self, dtype: str) -> float:
        """Dense peak FLOP/s in ``dtype``; ValueError naming the formats the chip has if it lacks it."""
        canonical = normalize_dtype(dtype)
        try:
            return self.peak_flops_per_s[canonical]
        except KeyError:
            hint = ""
            try:
                hint = (f" nearest_dtype({dtype!r}) gives {self.nearest_dtype(canonical)!r}, the nearest "
                        "format it has.")
            except ValueError:
                pass
            raise ValueError(
                f"{self.name} has no {canonical} peak (the chip lacks the format); it has: "
                f"{', '.join(self.dtypes)}.{hint}") from None

    # -- derived figures ------------------------------------------------------------------------

    @property
    def scale_out_bandwidth_bytes_per_s_per_gpu(self) -> float:
        """The node's NIC bandwidth per direction divided over its GPUs (bytes/s)."""
        return self.node.scale_out_bandwidth_bytes_per_s_per_gpu

    def ridge_point_flop_per_byte(self, dtype: str = "bf16") -> float:
        """Arithmetic intensity (FLOP per HBM byte) where the roofline turns from memory to compute."""
        return self.peak_flops(dtype) / self.hbm_bandwidth_bytes_per_s

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-friendly), SI units."""
        return {
            "name": self.name,
            "full_name": self.full_name,
            "vendor": self.vendor,
            "architecture": self.architecture,
            "aliases": list(self.aliases),
            "sm_count": self.sm_count,
            "clock_hz": self.clock_hz,
            "peak_flops_per_s": dict(self.peak_flops_per_s),
            "hbm_bytes": self.hbm_bytes,
            "hbm_marketed_bytes": self.hbm_marketed_bytes,
            "hbm_bandwidth_bytes_per_s": self.hbm_bandwidth_bytes_per_s,
            "l2_bytes": self.l2_bytes,
            "smem_per_sm_bytes": self.smem_per_sm_bytes,
            "nvlink_bandwidth_bytes_per_s_per_direction": self.nvlink_bandwidth_bytes_per_s_per_direction,
            "pcie_bandwidth_bytes_per_s_per_direction": self.pcie_bandwidth_bytes_per_s_per_direction,
            "tdp_w": self.tdp_w,
            "node": self.node.to_dict(),
            "price": self.price.to_dict(),
            "sources": dict(self.sources),
            "notes": dict(self.notes),
            "confidence": dict(self.confidence),
            "data_file": self.data_file,
        }
