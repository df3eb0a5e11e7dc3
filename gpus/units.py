"""Human units <-> SI: the one place where the project converts units.

Data files under ``gpus/data/`` are written in the units of datasheets (TFLOPS, GB/s, GB, MiB,
Gbit/s, MHz, W); everything inside the project is SI (FLOP/s, bytes/s, bytes, Hz, W, USD).
Decimal prefixes are decimal (1 GB = 1e9 bytes, 1 TFLOPS = 1e12 FLOP/s); binary prefixes are
binary (1 GiB = 2**30 bytes). Link rates in bits are divided by 8 (400 Gbit/s = 50e9 bytes/s).

``to_si(value, unit)`` and ``from_si(value_si, unit)`` are exact inverses up to floating-point
rounding; the small named helpers (``tflops``, ``gb_per_s`` ...) are shorthands for ``to_si``.
"""

from __future__ import annotations

import math

# unit -> (dimension, factor to SI). The dimension names the SI unit the factor leads to.
UNITS: dict[str, tuple[str, float]] = {
    # arithmetic throughput -> FLOP/s (TOPS: integer operations per second, same scale)
    "FLOP/s": ("flop_per_s", 1.0),
    "GFLOPS": ("flop_per_s", 1e9),
    "TFLOPS": ("flop_per_s", 1e12),
    "PFLOPS": ("flop_per_s", 1e15),
    "TOPS": ("flop_per_s", 1e12),
    "POPS": ("flop_per_s", 1e15),
    # bandwidth -> bytes/s
    "B/s": ("bytes_per_s", 1.0),
    "MB/s": ("bytes_per_s", 1e6),
    "GB/s": ("bytes_per_s", 1e9),
    "TB/s": ("bytes_per_s", 1e12),
    "Gbit/s": ("bytes_per_s", 1e9 / 8.0),
    "Tbit/s": ("bytes_per_s", 1e12 / 8.0),
    # capacity -> bytes
    "bytes": ("bytes", 1.0),
    "KB": ("bytes", 1e3),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "TB": ("bytes", 1e12),
    "KiB": ("bytes", 2.0**10),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
    "TiB": ("bytes", 2.0**40),
    # clock -> Hz
    "Hz": ("hz", 1.0),
    "MHz": ("hz", 1e6),
    "GHz": ("hz", 1e9),
    # power -> W
    "W": ("w", 1.0),
    "kW": ("w", 1e3),
    # money
    "USD": ("usd", 1.0),
    "USD/GPU-hour": ("usd_per_gpu_hour", 1.0),
    # counts (no conversion); the unit names what is counted
    "SMs": ("count", 1.0),
    "CUs": ("count", 1.0),
    "AI cores": ("count", 1.0),
    "cores": ("count", 1.0),
    "GPUs": ("count", 1.0),
    "NICs": ("count", 1.0),
}


def units_of(dimension: str) -> list[str]:
    """The unit names accepted for a dimension ("flop_per_s", "bytes_per_s", "bytes", ...)."""
    found = [unit for unit, (dim, _) in UNITS.items() if dim == dimension]
    if not found:
        known = sorted({dim for dim, _ in UNITS.values()})
        raise ValueError(f"unknown dimension {dimension!r}; known dimensions: {', '.join(known)}")
    return found


def dimension_of(unit: str) -> str:
    """The dimension of a unit name; ValueError naming the known units if it is not one."""
    try:
        return UNITS[unit][0]
    except (KeyError, TypeError):
        raise ValueError(f"unknown unit {unit!r}; known units: {', '.join(UNITS)}") from None


def _check_number(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return float(value)


def to_si(value: float, unit: str) -> float:
    """``value`` expressed in ``unit`` (e.g. 989.5, "TFLOPS"), converted to SI (9.895e14 FLOP/s)."""
    dimension_of(unit)
    return _check_number(value, "value") * UNITS[unit][1]


def from_si(value_si: float, unit: str) -> float:
    """An SI value expressed in ``unit`` (e.g. 9.895e14 FLOP/s -> 989.5 "TFLOPS"); for display."""
    dimension_of(unit)
    return _check_number(value_si, "value") / UNITS[unit][1]


def tflops(x: float) -> float:
    """TFLOPS -> FLOP/s."""
    return to_si(x, "TFLOPS")


def tb_per_s(x: float) -> float:
    """TB/s (1e12 bytes/s) -> bytes/s."""
    return to_si(x, "TB/s")


def gb_per_s(x: float) -> float:
    """GB/s (1e9 bytes/s) -> bytes/s."""
    return to_si(x, "GB/s")


def gb(x: float) -> float:
    """GB (1e9 bytes) -> bytes."""
    return to_si(x, "GB")


def gib(x: float) -> float:
    """GiB (2**30 bytes) -> bytes."""
    return to_si(x, "GiB")


def mb(x: float) -> float:
    """MB (1e6 bytes) -> bytes."""
    return to_si(x, "MB")


def mib(x: float) -> float:
    """MiB (2**20 bytes) -> bytes."""
    return to_si(x, "MiB")


def gbit_per_s(x: float) -> float:
    """Gbit/s -> bytes/s (divided by 8: 400 Gbit/s = 50e9 bytes/s)."""
    return to_si(x, "Gbit/s")


def mhz(x: float) -> float:
    """MHz -> Hz."""
    return to_si(x, "MHz")
