"""Calibration data for the timing model: loading, the efficiency model, and fitting.

Calibration is data (STYLE.md rule 8). Each device has one JSON file under
``gpus/calibration/<device>.json`` written by ``python -m kernels_numba.bench`` (hardware at
hand) or by ``python -m kernels_numba.validate`` (H800, fitted to DeepSeek's published kernel
tables). A file holds, per kernel family and implementation, at most four fitted parameters:

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
``sim.timing``). Only this module reads the files; nothing here is a
hand-tuned constant except the documented defaults in ``gpus/calibration/defaults.json``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
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


@lru_cache(maxsize=1)
def _package_calibration_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "gpus" / "calibration"


def calibration_dir() -> Path:
    """Folder of the per-device calibration files (``gpus/calibration``)."""
    return _package_calibration_dir()


@lru_cache(maxsize=8)
def _listing(folder: str, mtime_ns: int) -> tuple[Path, ...]:
    return tuple(sorted(Path(folder).glob("*.json")))


def calibration_files() -> tuple[Path, ...]:
    """The calibration folder's ``*.json`` files, sorted by name (the listing is cached by the
    folder's modification time, which changes when a file is added or removed; a timing model
    looks files up on every operator, and scanning the folder each time dominated a serving run)."""
    folder = calibration_dir()
    try:
        mtime_ns = folder.stat().st_mtime_ns
    except FileNotFoundError:
        return ()
    return _listing(str(folder), mtime_ns)


def calibration_sha256(length: int = 16) -> dict[str, str]:
    """Each calibration file under ``gpus/calibration`` (subfolders included, such as ``collectives/``),
    by its path relative to that folder, with the first ``length`` hex digits of its SHA-256, sorted
    by path: the provenance that results computed with these files carry (the end-to-end baselines,
    sweep rows)."""
    import hashlib

    folder = calibration_dir()
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()[:length]
        for path in sorted(folder.rglob("*.json"))
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


@lru_cache(maxsize=64)
def _load_json(path: str, mtime_ns: int) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def load_file(path: Path) -> dict[str, Any]:
    """Parsed calibration JSON (cached by modification time, so re-written files are re-read)."""
    return _load_json(str(path), path.stat().st_mtime_ns)


@lru_cache(maxsize=1024)
def device_key(name: str) -> str:
    """File stem for a device name: lower case, trademark marks ("(R)", "(TM)") dropped, every
    run of characters other than letters, digits, "." and "+" as one dash
    ("Intel(R) Xeon(R) Processor" -> "intel-xeon-processor", "H800 SXM" -> "h800-sxm")."""
    text = re.sub(r"\((r|tm)\)", "", name.strip().lower())
    return re.sub(r"[^a-z0-9.+]+", "-", text).strip("-")


def defaults() -> dict[str, Any]:
    """The uncalibrated defaults (``gpus/calibration/defaults.json``)."""
    path = calibration_dir() / "defaults.json"
    if not path.exists():
        raise ValueError(f"missing {path}: the timing model needs its documented defaults file")
    return load_file(path)


def _labels(data: Mapping[str, Any]) -> set[str]:
    labels = {device_key(str(data.get("device", "")))}
    labels.update(device_key(str(a)) for a in data.get("aliases", []))
    return labels


@lru_cache(maxsize=256)
def _calibration_path(names: tuple[str, ...], files: tuple[Path, ...]) -> Path | None:
    by_stem = {path.stem: path for path in files}
    wanted = [device_key(n) for n in names if n]
    for key in wanted:
        if key in by_stem:
            return by_stem[key]
    for path in files:
        if path.name != "defaults.json" and _labels(load_file(path)).intersection(wanted):
            return path
    return None


KERNELS_FOLDER = "kernels"  # kernel tables of serving stacks, under the calibration folder


def kernel_table_names() -> list[str]:
    """Names of the kernel tables (``gpus/calibration/kernels/<name>.json``), sorted."""
    return sorted(p.stem for p in (calibration_dir() / KERNELS_FOLDER).glob("*.json"))


def kernel_table(name: str) -> dict[str, Any]:
    """The kernel table ``name``: a library kernel's published times with their source and the
    parameters fitted to them (``python -m kernels_numba.stack_kernels --write``)."""
    path = calibration_dir() / KERNELS_FOLDER / f"{name}.json"
    if not isinstance(name, str) or not name or "/" in name or not path.is_file():
        raise ValueError(f"unknown kernel table {name!r}; known: {', '.join(kernel_table_names()) or 'none'}")
    return load_file(path)


def kernel_params(name: str) -> FamilyParams:
    """The fitted parameters of kernel table ``name`` (fractions of the timed GPU's peaks, carried to
    any GPU the kernel runs on, as every fit of this model is)."""
    fitted = kernel_table(name).get("fitted")
    if not isinstance(fitted, Mapping) or "params" not in fitted:
        raise ValueError(
            f"kernel table {name!r} has no fitted parameters; "
            "run python -m kernels_numba.stack_kernels --write"
        )
    return FamilyParams.from_mapping(fitted["params"])


HOST_EAGER_FILE = "host/eager_pytorch.json"  # under the calibration folder


def eager_call_s() -> float:
    """Host seconds per eager PyTorch operator call (one call launching one kernel), from
    ``gpus/calibration/host/eager_pytorch.json``: its ``published`` figure (measured on a CUDA GPU, the
    launch included) where it has one, else the one ``python -m kernels_numba.host_overhead --write``
    measured here (``measured_here``: the CPU side only, a lower bound)."""
    path = calibration_dir() / HOST_EAGER_FILE
    if not path.exists():
        raise ValueError(
            f"missing {path}: a stack without CUDA graphs needs the measured host time per eager call "
            "(python -m kernels_numba.host_overhead --write)"
        )
    data = load_file(path)
    # a published measurement on a CUDA GPU (it includes the launch) before this machine's CPU-only one
    entry = data.get("published") or data.get("measured_here") or {}
    value = entry.get("eager_call_s") if isinstance(entry, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e-3:
        raise ValueError(f"{path}: 'eager_call_s' must be seconds in (0, 1e-3), got {value!r}")
    return float(value)


def find_calibration(names: Sequence[str]) -> dict[str, Any] | None:
    """The calibration file for the first of ``names`` that has one, else None.

    A file is matched by its stem (``h800.json``) or by a ``"device"`` / ``"aliases"`` entry. Which
    file matches is remembered per folder listing; the file itself is re-read when rewritten, and a
    match by label is looked up afresh if the rewritten file no longer carries the label.
    """
    files = calibration_files()
    if not files:
        return None
    key = tuple(str(n) for n in names)
    found = _FOUND.get((key, files))
    if found is not None:
        # the same names against the same listing: one stat tells whether the matched file changed
        path, mtime_ns, data = found
        if path is None:
            return None
        if path.stat().st_mtime_ns == mtime_ns:
            return data
    path = _calibration_path(key, files)
    if path is None:
        _FOUND[(key, files)] = (None, 0, None)
        return None
    data = load_file(path)
    wanted = {device_key(n) for n in key if n}
    if path.stem not in wanted and not _labels(data).intersection(wanted):
        _calibration_path.cache_clear()
        path = _calibration_path(key, files)
        data = None if path is None else load_file(path)
    if len(_FOUND) > 1024:
        _FOUND.clear()
    _FOUND[(key, files)] = (path, 0 if path is None else path.stat().st_mtime_ns, data)
    return data


# find_calibration's answers per (names, folder listing): the matched file, its modification time
# when matched and its parsed contents (a timing model asks once per operator it times)
_FOUND: dict[tuple[tuple[str, ...], tuple[Path, ...]], tuple[Path | None, int, dict[str, Any] | None]] = {}


def family_params(
    calibration: Mapping[str, Any] | None, family: str, impl: str | None = None
) -> FamilyParams | None:
    """Fitted parameters of ``family`` (for ``impl`` or the file's default implementation)."""
    if calibration is None:
        return None
    families = calibration.get("families", {})
    per_impl = families.get(family)
    if not per_impl:
        return None
    chosen = impl or calibration.get("default_impl")
    if chosen not in per_impl:
        chosen = sorted(per_impl)[0]
    return FamilyParams.from_mapping(per_impl[chosen])


def default_params(kind: str) -> FamilyParams:
    """Uncalibrated parameters for a device kind ("gpu" or "cpu") from defaults.json."""
    data = defaults()
    if kind not in data.get("kinds", {}):
        raise ValueError(
            f"no defaults for device kind {kind!r}; defaults.json has {list(data.get('kinds', {}))}"
        )
    return FamilyParams.from_mapping(data["kinds"][kind])


# ---------------------------------------------------------------------------------------------
# Fitting and the fixed held-out split


def split_fit_holdout(keys: Sequence[Any]) -> tuple[list[int], list[int]]:
    """Fixed rule: sort the distinct shape keys; even positions fit, odd positions are held out.

    Keys are tuples of numbers and strings (lists count as tuples) and sort naturally; whole
    shapes are held out (every implementation of a shape falls on the same side), and the rule
    depends neither on the measured times nor on a random draw.
    """
    normal = [_hashable(k) for k in keys]
    try:
        distinct = sorted(set(normal))
    except TypeError:
        distinct = sorted(set(normal), key=repr)
    side = {k: (i % 2) for i, k in enumerate(distinct)}
    fit = [i for i, k in enumerate(normal) if side[k] == 0]
    held = [i for i, k in enumerate(normal) if side[k] == 1]
    return fit, held


def _hashable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, Mapping):
        return tuple((k, _hashable(value[k])) for k in sorted(value))
    return value


# Convergence tolerance of the least-squares fits (scipy's default is 1e-8). At the default, a fit
# stops where the cost has stopped falling by 1e-8 of itself, which in a flat direction (the overlap
# exponent) leaves the parameters uncertain at about 1e-6: the same data fitted on two CPUs gave
# values 1.2e-6 apart, enough to fail the check that a committed file is what the fit produces.
# Converged this tightly, the optimum no longer depends on the machine's last-bit rounding.
FIT_TOLERANCE = 1e-14


def fit_params(
    predict: Callable[[FamilyParams, int], float],
    measured_s: Sequence[float],
    indices: Sequence[int],
    initial: FamilyParams,
    free: Sequence[str] = PARAMETER_NAMES,
    max_efficiency: float = PARAMETER_BOUNDS["compute_efficiency"][1],
) -> FamilyParams:
    """Least-squares fit of ``free`` parameters on log(predicted / measured) over ``indices``.

    ``predict(params, i)`` gives the predicted time of sample ``i``. Parameters not in
    ``free`` keep their ``initial`` values (used when a table cannot constrain them).
    ``max_efficiency`` caps both efficiencies: 1 for a GPU against its datasheet peaks; above 1
    is physical on a CPU whose caches beat the measured DRAM copy ceiling.
    """
    from scipy.optimize import least_squares

    names = [n for n in PARAMETER_NAMES if n in free]
    if not names or not indices:
        return initial
    base = initial.to_dict()
    lo = np.array([PARAMETER_BOUNDS[n][0] for n in names])
    hi = np.array([max_efficiency if n.endswith("efficiency") else PARAMETER_BOUNDS[n][1] for n in names])

    # Optimise log of the positive parameters, and the launch time in microseconds.
    def unpack(x: np.ndarray) -> FamilyParams:
        values = dict(base)
        for name, value in zip(names, x, strict=True):
            values[name] = float(value)
        return FamilyParams(**values)

    target = np.log(np.asarray([measured_s[i] for i in indices], dtype=float))

    def residual(x: np.ndarray) -> np.ndarray:
        params = unpack(x)
        predicted = np.array([predict(params, i) for i in indices], dtype=float)
        return np.log(np.maximum(predicted, 1e-15)) - target

    x0 = np.clip(np.array([base[n] for n in names], dtype=float), lo, hi)
    scale = np.array([1e-5 if n == "launch_s" else 1.0 for n in names])
    best = None
    for start in _starts(x0, names, lo, hi):
        result = least_squares(
            residual,
            start,
            bounds=(lo, hi),
            x_scale=scale,
            loss="soft_l1",
            f_scale=0.1,
            xtol=FIT_TOLERANCE,
            ftol=FIT_TOLERANCE,
            gtol=FIT_TOLERANCE,
        )
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    return unpack(best.x)


def _starts(x0: np.ndarray, names: Sequence[str], lo: np.ndarray, hi: np.ndarray) -> list[np.ndarray]:
    """A few deterministic starting points (the fit is non-convex in the overlap exponent)."""
    starts = [x0]
    order = list(names)
    for p in (1.5, 4.0):
        for launch in (None, 1e-6, 2e-5):
            s = x0.copy()
            if "overlap_exponent" in names:
                s[order.index("overlap_exponent")] = p
            if launch is not None and "launch_s" in names:
                s[order.index("launch_s")] = launch
            for name in ("compute_efficiency", "memory_efficiency"):
                if name in names and launch == 1e-6:
                    s[order.index(name)] = 1.0
            starts.append(np.clip(s, lo, hi))
    return starts


def abs_pct_errors(predicted: Sequence[float], measured: Sequence[float]) -> np.ndarray:
    """|predicted - measured| / measured, in percent."""
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    return np.abs(p - m) / m * 100.0


def summarise(errors_pct: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Median and 90th percentile (linear interpolation) of absolute percentage errors."""
    e = np.asarray(errors_pct, dtype=float)
    if e.size == 0:
        return {"median_pct": math.nan, "p90_pct": math.nan, "n": 0}
    return {
        "median_pct": round(float(np.median(e)), 2),
        "p90_pct": round(float(np.percentile(e, 90)), 2),
        "n": int(e.size),
    }
