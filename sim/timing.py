"""Time of one operator on one device: roofline, predicted (calibrated), measured.

Every function returns an :class:`OpTime` with three times over one spec (STYLE.md rule 7):

* ``roofline_s``: ``max(FLOPs / peak(dtype), bytes / HBM bandwidth)``, no overheads;
* ``predicted_s``: the calibrated model of :mod:`sim.calibration`: FLOPs rounded up to whole
  tiles and whole waves over the SMs (cores for a CPU), divided by the peak and a fitted
  compute efficiency; bytes over the bandwidth and a fitted memory efficiency; the two combined
  by a fitted overlap exponent; plus a fitted launch time. At most four parameters per kernel
  family and device, read from ``gpus/calibration/<device>.json``;
* ``measured_s``: the measurement of that exact shape when the calibration file holds one.

On a CPU, the bytes an operator writes also pay write-allocate (each stored line is read first):
GEMM, grouped GEMM, fused gating and fused permute/combine give their written bytes and their
memory time is ``(read + 2 x written) / (1.5 x copy ceiling)``; operators whose split is not
tracked (unfused PyTorch sequences, attention, ``memory_time``) count as copy-like, which that
formula leaves unchanged. GPUs: bytes over bandwidth.

Which parameters a device uses: its own calibration file when there is one; otherwise a file
that declares the device's architecture in ``applies_to_architectures`` (the H800 fit, from
DeepSeek's published DeepGEMM / FlashMLA tables, is the best public evidence for Hopper parts
such as H100, H200 and H20; each part keeps its own peaks, so only the efficiencies carry
over); otherwise, for any other GPU, the file marked ``reference_for_other_gpus`` (the same H800
fit), so that every GPU is predicted with the same achieved fractions of its own peaks rather
than some at 100% and others at the measured ~75% (the result's ``calibration`` names the
stand-in); the uncalibrated defaults of ``gpus/calibration/defaults.json`` apply only when no
file exists.

``gpu`` is a ``gpus.GPUProfile``, any object with the same fields, or a name (resolved with
``gpus.get``). ``launches`` (grouped GEMM, gating, permute) is the number of kernel or library
calls an implementation issues (1 for a fused kernel such as DeepGEMM's grouped GEMM; one per
operator for an unfused PyTorch sequence); each pays the fitted ``launch_s``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from moe.accounting import weight_scale_bytes
from moe.operators.op import Attention, Comm, Gating, Gemm, Given, GroupedGemm, Memory, Op, Permute, Work
from sim import calibration as cal
from sim.record import Record

if TYPE_CHECKING:
    from gpus import GPUProfile

__all__ = [
    "OpTime",
    "attention_time",
    "gemm_time",
    "grouped_gemm_time",
    "memory_time",
    "op_time",
    "gating_time",
    "permute_time",
    "resolve_gpu",
]


@dataclass(frozen=True)
class OpTime(Record):
    """Times of one operator, seconds; ``bound_by`` is "compute", "memory" or "latency"."""

    roofline_s: float
    predicted_s: float
    measured_s: float | None = None
    bound_by: str = "compute"
    flops: float = 0.0
    bytes_moved: float = 0.0
    family: str = ""
    calibration: str = "default"
    compute_s: float = 0.0  # tile- and wave-quantised FLOPs over the peak (model input)
    memory_s: float = 0.0  # bytes over the peak bandwidth (model input)
    launches: int = 1  # kernel or library calls the implementation issues (model input)


# ---------------------------------------------------------------------------------------------
# Device resolution


def resolve_gpu(gpu: GPUProfile | str) -> GPUProfile:
    """A profile object for ``gpu`` (a name is resolved with ``gpus.get``)."""
    if isinstance(gpu, str):
        import gpus

        return gpus.get(gpu)
    for field in ("sm_count", "hbm_bandwidth_bytes_per_s", "peak_flops"):
        if not hasattr(gpu, field):
            raise ValueError(
                f"gpu must be a GPU name or a profile with sm_count, peak_flops() and "
                f"hbm_bandwidth_bytes_per_s; got {type(gpu).__name__} without {field!r}"
            )
    return gpu


@dataclass(frozen=True)
class _Device:
    profile: GPUProfile
    kind: str
    calibration: Mapping[str, Any] | None
    calibration_name: str

    @property
    def sm_count(self) -> int:
        return max(1, int(self.profile.sm_count))

    @property
    def bandwidth(self) -> float:
        return float(self.profile.hbm_bandwidth_bytes_per_s)

    def peak(self, dtype: str) -> tuple[float, str]:
        """Peak FLOP/s for ``dtype`` (or the nearest format the device has) and that format."""
        key = str(dtype).lower()
        cal.dtype_bytes(key)
        supports = getattr(self.profile, "supports", None)
        if supports is not None and not supports(key):
            nearest = getattr(self.profile, "nearest_dtype", None)
            key = nearest(key) if nearest is not None else key
        return float(self.profile.peak_flops(key)), key

    def params(self, family: str) -> tuple[cal.FamilyParams, str]:
        # A family the device file lacks borrows the nearest family the file has (same device,
        # nearest kind of kernel: ``cal.FALLBACKS``), before the uncalibrated defaults.
        found = cal.family_params(self.calibration, family)
        for fallback in cal.FALLBACKS.get(family, ("memory", "gemm")):
            if found is None:
                found = cal.family_params(self.calibration, fallback)
        if found is not None:
            return found, self.calibration_name
        return cal.default_params(self.kind), "default"

    def tiles(self) -> Mapping[str, Any]:
        data: Mapping[str, Any] = cal.defaults()["kinds"][self.kind]["tiles"]
        return data


def _device(gpu: GPUProfile | str) -> _Device:
    profile = resolve_gpu(gpu)
    names = [str(getattr(profile, "name", ""))] + [str(a) for a in getattr(profile, "aliases", ())]
    data = cal.find_calibration(names)
    label = str(data.get("device")) if data else "default"
    if data is None:
        arch = str(getattr(profile, "architecture", "")).lower()
        if arch:
            for path in cal.calibration_files():
                candidate = cal.load_file(path)
                if any(str(a).lower() in arch for a in candidate.get("applies_to_architectures", [])):
                    data = candidate
                    label = f"{candidate.get('device')} (same architecture: {arch.split()[0]})"
                    break
        is_cpu = str(getattr(profile, "name", "")).lower().startswith("cpu") or "cpu" in arch
        if data is None and not is_cpu:
            for path in cal.calibration_files():
                candidate = cal.load_file(path)
                if candidate.get("reference_for_other_gpus"):
                    data = candidate
                    arch_name = arch.split()[0] if arch else "this GPU"
                    label = f"{candidate.get('device')} (reference efficiencies; none for {arch_name})"
                    break
    kind = str(data.get("kind", "")) if data else ""
    if kind not in ("gpu", "cpu"):
        name = str(getattr(profile, "name", "")).lower()
        vendor = str(getattr(profile, "vendor", "")).lower()
        kind = (
            "cpu"
            if name.startswith("cpu")
            or "cpu" in str(getattr(profile, "architecture", "")).lower()
            or (vendor in ("intel", "amd") and "mi" not in name)
            else "gpu"
        )
    return _Device(profile=profile, kind=kind, calibration=data, calibration_name=label)


NORM_ROPE = "norm_rope"  # the family of RMSNorm and RoPE kernels (memory_time), for the step costs

# Families the timing model splits off a benchmark family by shape: the bench records them
# under the family they split from.
RECORDED_FAMILY = {"attention_prefill_math": "attention_prefill", "gemv": "gemm"}


GEMM_PHASES = ("forward", "dgrad", "wgrad")  # gemm_time's ``phase``


def gemm_family(m: int, phase: str = "forward") -> str:
    """The fitted family of a dense GEMM: ``gemm_wgrad`` for weight gradients; ``gemv`` for a
    single row (``m == 1``), which runs a different loop from a GEMM's: a blocked GEMM packs B
    into panels before its inner kernel (Goto and van de Geijn, "Anatomy of high-performance
    matrix multiplication", ACM TOMS 34(3), 2008), a one-row product has no reuse of B to pay
    for that and BLAS libraries may route it to a matrix-vector kernel that streams B as it lies
    (OpenBLAS does on ARM64/POWER/RISC-V, ``GEMM_GEMV_FORWARD``; MKL's dispatch is not
    documented: on the Xeon of ``cpu-intel-xeon-processor.json`` torch's one-row fp32 product
    reads B at about 25 GB/s, products of 4-16 rows at about 13 GB/s); the Numba kernel takes
    rows four at a time, so a lone row runs its one-row loop (one FMA per load of B,
    ``kernels_numba/cpu/kernels.py``). A device file without ``gemv`` borrows its ``gemm`` fit."""
    if phase not in GEMM_PHASES:
        raise ValueError(f"phase must be one of {', '.join(GEMM_PHASES)}, got {phase!r}")
    if phase == "wgrad":
        return "gemm_wgrad"
    return "gemv" if m == 1 else "gemm"


def _measured(dev: _Device, family: str, shape: Mapping[str, Any]) -> float | None:
    if dev.calibration is None or dev.calibration_name != str(dev.calibration.get("device")):
        return None  # measurements belong to the device itself, not to a stand-in architecture
    impl = dev.calibration.get("default_impl")
    family = RECORDED_FAMILY.get(family, family)  # as the bench records it
    for record in dev.calibration.get("measurements", []):
        if (
            record.get("family") == family
            and record.get("impl") == impl
            and record.get("shape") == dict(shape)
        ):
            return float(record["measured_s"])
    return None


def _memory_seconds(dev: _Device, bytes_moved: float, written_bytes: float | None) -> float:
    """Bytes over the device's bandwidth; on a CPU, with the written part known, each written
    byte also costs the read of its cache line before the store (write-allocate, x86's
    read-for-ownership): DRAM traffic ``R + 2W``. The CPU ceiling is a copy's (``R = W``), read
    plus written bytes over time, whose traffic is ``3/2`` of that, so the time is
    ``(R + 2W) / (1.5 x ceiling)``; a copy-like mix (or ``written_bytes=None``) is unchanged.
    GPUs write whole sectors into L2 without reading them first: ``(R + W) / bandwidth``."""
    if dev.kind != "cpu" or written_bytes is None:
        return bytes_moved / dev.bandwidth
    written = min(max(0.0, written_bytes), bytes_moved)
    return (bytes_moved + written) / (1.5 * dev.bandwidth)


def _result(
    dev: _Device,
    family: str,
    flops: float,
    bytes_moved: float,
    peak: float,
    quantised_compute_s: float,
    shape: Mapping[str, Any],
    launches: int = 1,
    written_bytes: float | None = None,
    kernel: str | None = None,
) -> OpTime:
    compute_s = flops / peak if flops > 0 else 0.0
    memory_s = _memory_seconds(dev, bytes_moved, written_bytes)
    if kernel:
        params, source = cal.kernel_params(kernel), f"kernel table {kernel}"
    else:
        params, source = dev.params(family)
    body_compute = quantised_compute_s / params.compute_efficiency
    body_memory = memory_s / params.memory_efficiency
    body = cal.combine(body_compute, body_memory, params.overlap_exponent)
    predicted = launches * params.launch_s + body
    if launches * params.launch_s > body:
        bound = "latency"
    else:
        bound = "compute" if body_compute >= body_memory else "memory"
    return OpTime(
        roofline_s=max(compute_s, memory_s),
        predicted_s=predicted,
        measured_s=_measured(dev, family, shape),
        bound_by=bound,
        flops=flops,
        bytes_moved=bytes_moved,
        family=family,
        calibration=source,
        compute_s=quantised_compute_s,
        memory_s=memory_s,
        launches=launches,
    )


def _whole_number(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an ``int`` when it is a whole number >= ``minimum`` (an int, a numpy integer,
    or a float such as ``4.0`` whose value is whole); otherwise a ValueError naming ``name``.
    Booleans (Python's or numpy's), strings, None, NaN, infinities and fractions are rejected."""
    allowed = "a positive whole number" if minimum == 1 else f"a whole number >= {minimum}"
    message = f"{name} must be {allowed}, got {value!r}"
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(message)
    try:
        whole = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(message) from None
    if whole != value or whole < minimum:
        raise ValueError(message)
    return whole


def positive_int(value: Any, name: str) -> int:
    """``value`` as an ``int`` >= 1 (see :func:`_whole_number`); counts, sizes, ``launches``."""
    return _whole_number(value, name, 1)


def finite_non_negative(value: Any, name: str) -> float:
    """``value`` as a ``float`` when it is a finite real number >= 0 (bytes, FLOPs); otherwise a
    ValueError naming ``name``. Strings and booleans are rejected, not converted."""
    message = f"{name} must be a finite number >= 0, got {value!r}"
    if isinstance(value, (str, bytes, bool, np.bool_)):
        raise ValueError(message)
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(message) from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(message)
    return number


def _group_sizes(group_sizes: Any) -> list[int]:
    """The rows of each group as ints: whole numbers >= 0 (an empty group, as skewed routing
    leaves some experts, is allowed), at least one group and a positive sum."""
    expected = "group_sizes must be a sequence of whole numbers >= 0 (rows per group)"
    if isinstance(group_sizes, (str, bytes)) or not isinstance(group_sizes, Iterable):
        raise ValueError(f"{expected}, got {type(group_sizes).__name__} {group_sizes!r}")
    sizes = [_whole_number(s, f"group_sizes[{i}]", 0) for i, s in enumerate(group_sizes)]
    if not sizes or sum(sizes) == 0:
        raise ValueError(f"{expected} with a positive sum, got {sizes[:8]}")
    return sizes


def _gemm_quantised_flops(
    dev: _Device, group_rows: Sequence[int], n: int, k: int, swap_ab: bool = False
) -> float:
    """FLOPs executed when every group is padded to whole tiles and tiles run in whole waves.

    Tile shape: ``block_m`` is the smallest configured size that covers the largest group
    (capped at the largest), ``block_n`` the configured size that minimises padded work
    (DeepGEMM picks its N block the same way). Waves: tiles / SMs rounded up. ``swap_ab`` (a kernel
    that puts the weights on the tensor cores' M side and the tokens on their N side, for groups of
    fewer than 64 rows): the rows pad to the smaller ``swap_ab_block_rows`` tiles and the weights'
    width to ``swap_ab_block_n`` (``gpus/calibration/defaults.json``, with its sources).
    """
    tiles = dev.tiles()
    largest = max(group_rows)
    use_swap = swap_ab and "swap_ab_block_rows" in tiles and largest < 64
    sizes_m = sorted(int(b) for b in tiles["swap_ab_block_rows" if use_swap else "block_m"])
    block_m = next((b for b in sizes_m if b >= largest), sizes_m[-1])
    best = math.inf
    for block_n in sorted(int(b) for b in tiles["swap_ab_block_n" if use_swap else "block_n"]):
        count = sum(math.ceil(r / block_m) for r in group_rows if r > 0) * math.ceil(n / block_n)
        waves = math.ceil(count / dev.sm_count)
        work = waves * dev.sm_count * block_m * block_n * 2.0 * k
        best = min(best, work)
    return best


def gemm_time(
    gpu: GPUProfile | str, m: int, n: int, k: int, dtype: str = "bf16", phase: str = "forward", batch: int = 1
) -> OpTime:
    """Dense GEMM ``C[m, n] = A[m, k] @ B[k, n]``: 2mnk FLOP; A, B read once, C written once.

    ``phase``: "forward" and "dgrad" (``dX = dY W^T``) use the ``gemm`` family (``gemv`` for a
    single row, :func:`gemm_family`); "wgrad"
    (``dW = X^T dY``, reduction over the tokens) uses the ``gemm_wgrad`` family: DeepSeek's
    weight-gradient kernel (``fp8_dptp128c_acc``) accumulates in FP32 into the existing
    gradient, so C is read and written in FP32 (8 bytes per element), and its sustained rate
    differs from the forward kernels' (fitted on the V3 training trace, ``sim.calibration.published``).
    ``batch`` > 1: a batched GEMM (e.g. MLA's absorbed per-head products), ``batch`` independent
    [m, k] x [k, n] products in one kernel: batch times the FLOPs and bytes, tiles of every
    product quantised together over the SMs.
    """
    m, n, k = (positive_int(v, name) for v, name in ((m, "m"), (n, "n"), (k, "k")))
    batch = positive_int(batch, "batch")
    if phase not in GEMM_PHASES:
        raise ValueError(f"phase must be one of {', '.join(GEMM_PHASES)}, got {phase!r}")
    dev = _device(gpu)
    peak, used = dev.peak(dtype)
    size = cal.dtype_bytes(used)
    out_size = max(size, 2.0) if used in ("fp8", "fp4", "int8") else size  # low-precision GEMMs write BF16
    family = gemm_family(m, phase)
    out_traffic = out_size
    if phase == "wgrad":
        out_traffic = 8.0  # FP32 gradient read and written back (accumulation)
    flops = 2.0 * m * n * k * batch
    bytes_moved = ((m * k + k * n) * size + m * n * out_traffic) * batch
    quant = _gemm_quantised_flops(dev, [m] * batch, n, k) / peak
    shape: dict[str, Any] = {"m": m, "n": n, "k": k, "dtype": str(dtype)}
    if batch > 1:
        shape["batch"] = batch
    if phase == "wgrad":
        shape["phase"] = phase
    written = m * n * out_size * batch
    return _result(dev, family, flops, bytes_moved, peak, quant, shape, written_bytes=written)


def grouped_gemm_time(
    gpu: GPUProfile | str,
    group_sizes: Sequence[int],
    n: int,
    k: int,
    dtype: str = "bf16",
    launches: int = 1,
    compute_dtype: str | None = None,
    swap_ab: bool = False,
    kernel: str | None = None,
) -> OpTime:
    """Grouped expert GEMM: group ``g`` multiplies ``group_sizes[g]`` rows by its own ``[k, n]``.

    Weights of every group with at least one row are read, in the format they are stored in
    (``dtype``, with its block scales: :func:`moe.accounting.weight_scale_bytes`); empty groups cost
    nothing. ``compute_dtype`` (default: ``dtype``) is the format the products run in (the nearest the
    device has) and the activations move in: a stack that dequantises weights in the kernel (MXFP4
    experts on Hopper) computes in BF16 while reading 4.25-bit weights. ``swap_ab``: the kernel swaps
    its operands for groups of fewer than 64 rows (:func:`_gemm_quantised_flops`). ``kernel``: a
    kernel table of ``gpus/calibration/kernels`` whose fitted parameters time the product instead of
    the device's ``grouped_gemm`` fit (the kernel a serving stack runs:
    :func:`sim.calibration.kernel_params`).
    """
    sizes = _group_sizes(group_sizes)
    n, k = positive_int(n, "n"), positive_int(k, "k")
    positive_int(launches, "launches")  # checked; passed on as given (results unchanged)
    dev = _device(gpu)
    peak, used = dev.peak(compute_dtype or dtype)
    size = cal.dtype_bytes(used)
    weight = size if compute_dtype is None else cal.dtype_bytes(dtype) + weight_scale_bytes(dtype)
    out_size = max(size, 2.0) if used in ("fp8", "fp4", "int8") else size
    rows = sum(sizes)
    active = sum(1 for s in sizes if s > 0)
    flops = 2.0 * rows * n * k
    bytes_moved = rows * k * size + active * k * n * weight + rows * n * out_size
    quant = _gemm_quantised_flops(dev, [s for s in sizes if s > 0], n, k, swap_ab) / peak
    shape = {"group_sizes": sizes, "n": n, "k": k, "dtype": str(dtype)}
    if compute_dtype is not None:
        shape["compute_dtype"] = str(compute_dtype)
    if swap_ab:
        shape["swap_ab"] = True
    written = rows * n * out_size
    if kernel:
        shape["kernel"] = str(kernel)
    return _result(dev, "grouped_gemm", flops, bytes_moved, peak, quant, shape, launches, written, kernel)


def causal_pairs(q_len: int, kv_len: int, causal: bool) -> float:
    """Number of (query, key) pairs attended; causal queries sit at the end of the keys.

    ``q_len`` and ``kv_len``: whole numbers >= 0."""
    _whole_number(q_len, "q_len", 0)
    _whole_number(kv_len, "kv_len", 0)
    if not causal:
        return float(q_len) * kv_len
    offset = kv_len - q_len
    total = 0.0
    # sum over i of clamp(offset + i + 1, 0, kv_len), in closed form
    first = max(0, -offset)  # queries before the first key see nothing
    for_count = q_len - first
    if for_count <= 0:
        return 0.0
    lo = offset + first + 1
    hi = offset + q_len
    total = (lo + hi) * for_count / 2.0
    return float(min(total, float(q_len) * kv_len))


def attention_time(
    gpu: GPUProfile | str,
    batch: int,
    q_len: int,
    kv_len: int,
    num_heads: int,
    qk_head_dim: int,
    v_head_dim: int,
    causal: bool = True,
    dtype: str = "bf16",
    kv_bytes: float | None = None,
    materialized_scores: bool = False,
    backward: bool = False,
) -> OpTime:
    """Attention forward (scores and values products), per layer; ``backward=True``: its
    backward kernel (FlashAttention's ``FlashAttnBwd``).

    Backward: 5 matmuls against the forward's 2 (S = QK^T recomputed, dP = dO V^T, dV = P^T dO,
    dQ = dS K, dK = dS^T Q; FlashAttention-2, Dao 2023, section 3.1), so 2.5x the FLOPs; bytes:
    Q, K, V, O, dO read and dQ (FP32 accumulator), dK, dV written, i.e. twice the forward's
    plus the FP32 dQ. Family ``attention_backward`` (fitted on the V3 training trace's
    FlashAttnBwd instances; its preprocess and dQ-convert kernels are separate memory-bound
    kernels).

    ``materialized_scores``: the implementation writes the full ``q_len x kv_len`` score matrix
    to memory and reads it back (an unfused "math" path, e.g. PyTorch's CPU SDPA when the query
    and value head dims differ): all pairs are computed (the causal mask is applied afterwards)
    and 3 float32 passes over the matrix are added to the bytes.

    FLOPs: ``2 * batch * num_heads * pairs * (qk_head_dim + v_head_dim)``, pairs from
    :func:`causal_pairs`. Bytes: Q and O plus K/V; ``kv_bytes`` overrides the K/V bytes (a
    compressed or shared cache: MLA's latent, GQA). Family ``attention_decode`` when
    ``q_len <= 16`` (decode, with MTP drafts), else ``attention_prefill``. Prefill tiles are
    128 query rows per (batch, head) in whole waves; decode kernels split the KV sequence
    over SMs (FlashMLA), so decode is not wave-quantised.
    """
    batch, q_len, kv_len, num_heads = (
        positive_int(v, name)
        for v, name in ((batch, "batch"), (q_len, "q_len"), (kv_len, "kv_len"), (num_heads, "num_heads"))
    )
    qk_head_dim, v_head_dim = (
        positive_int(qk_head_dim, "qk_head_dim"),
        positive_int(v_head_dim, "v_head_dim"),
    )
    if kv_bytes is not None:
        finite_non_negative(kv_bytes, "kv_bytes")
    dev = _device(gpu)
    peak, used = dev.peak(dtype)
    size = cal.dtype_bytes(used)
    pairs = causal_pairs(q_len, kv_len, bool(causal) and not materialized_scores)
    flops = 2.0 * batch * num_heads * pairs * (qk_head_dim + v_head_dim)
    kv_total = (
        float(kv_bytes)
        if kv_bytes is not None
        else batch * num_heads * kv_len * (qk_head_dim + v_head_dim) * size
    )
    bytes_moved = batch * num_heads * q_len * (qk_head_dim + v_head_dim) * size + kv_total
    if materialized_scores:
        bytes_moved += 3.0 * 4.0 * batch * num_heads * float(q_len) * kv_len
    decode = q_len <= 16 and not backward
    family = "attention_decode" if decode else "attention_prefill"
    if materialized_scores and not decode:
        # a different kernel: the products run as library batched GEMMs around a softmax over
        # the stored scores (family ``attention_prefill_math``; a device without it uses its
        # ``attention_prefill`` fit)
        family = "attention_prefill_math"
    if backward:
        flops *= 2.5
        bytes_moved = 2.0 * bytes_moved + batch * num_heads * q_len * qk_head_dim * 4.0
        family = "attention_backward"
    if decode:
        quant = flops / peak
    else:
        block_q = int(dev.tiles()["attention_block_q"])
        units = batch * num_heads * math.ceil(q_len / block_q)
        waves = math.ceil(units / dev.sm_count)
        quant = flops / peak * (waves * dev.sm_count / units)
    shape = {
        "batch": batch,
        "q_len": q_len,
        "kv_len": kv_len,
        "num_heads": num_heads,
        "qk_head_dim": qk_head_dim,
        "v_head_dim": v_head_dim,
        "causal": bool(causal),
        "dtype": str(dtype),
    }
    if backward:
        shape["backward"] = True
    # counted copy-like on a CPU (no write-allocate term): one fitted family holds both the fused
    # decode path and the math path, whose write shares differ and are not tracked separately
    return _result(dev, family, flops, bytes_moved, peak, quant, shape)


def memory_time(
    gpu: GPUProfile | str,
    bytes_moved: float,
    family: str = "memory_bound",
    flops: float = 0.0,
    launches: int = 1,
) -> OpTime:
    """A bandwidth-bound kernel (FP8 cast, transpose, norm, elementwise, permute): bytes read
    plus written.

    ``family`` selects the fitted parameters: ``memory_bound`` (default; on H800 the effective
    bandwidth and per-kernel overhead fitted on the V3 training trace's FP8 cast-and-transpose
    and attention pre/post-process kernels; a device without it borrows its ``memory`` then
    ``gemm`` fit), ``norm_rope`` (RMSNorm and RoPE: on H800 fitted on the trace's ``ln_fwd`` /
    ``ln_bwd`` and ``rotary_kernel`` instances, about half the bandwidth of the streaming
    kernels; a device without it borrows ``memory_bound``), or "memory", "gating", "permute".
    ``launches``: kernels the operator issues.
    """
    finite_non_negative(bytes_moved, "bytes_moved")
    finite_non_negative(flops, "flops")
    if family not in cal.FAMILIES:
        raise ValueError(f"unknown family {family!r}; allowed: {', '.join(cal.FAMILIES)}")
    dev = _device(gpu)
    peak, _ = dev.peak("fp32")
    return _result(
        dev,
        family,
        float(flops),
        float(bytes_moved),
        peak,
        float(flops) / peak,
        {"bytes": bytes_moved},
        positive_int(launches, "launches"),
    )


def _topk_comparisons(rows: float, row_len: int, k: int) -> float:
    """Comparisons of a row-wise top-k by selection, as PyTorch's CPU ``topk`` does it
    (ATen ``TopKImpl.h``: each row copied into a (value, index) buffer, ``nth_element``, then
    the first ``k`` sorted): about ``2 * row_len`` for the selection plus ``k log2 k``."""
    return rows * (2.0 * row_len + k * math.log2(max(k, 1)))


# Scalar operations per element of a row-wise softmax on PyTorch's CPU scalar path: the max
# comparison, the exponential, the sum and the normalising multiply (one each; ATen's
# ``_vec_softmax_lastdim`` loop over a row, run lane by lane).
SCALAR_SOFTMAX_OPS_PER_ELEMENT = 4


def _unfused_gating_work(
    t: int, e: int, k: int, scoring: str, groups: int, topk_group: int, vector_lanes: int = 0
) -> tuple[float, float]:
    """FLOPs and bytes of the unfused PyTorch sequence (``kernels_numba.torch_ref.gating``),
    operator by operator: each reads its inputs and writes its output tensor in memory.

    FLOPs counted are scalar operations: the top-k selection comparisons (data-dependent
    branches: what bounds PyTorch's CPU ``topk``), and a softmax over rows narrower than one SIMD
    vector (``e < vector_lanes`` fp32 lanes: such a row cannot fill a vector, so PyTorch's CPU
    softmax runs it element by element, :data:`SCALAR_SOFTMAX_OPS_PER_ELEMENT` operations each;
    ``python benchmarks/bench_softmax_rows.py`` on an AVX-512 Xeon with torch 2.13: 17-25 ns per
    element for rows of 2-15 values, 0.6-1.0 ns from 16 on, where a partial last vector costs
    one more vector step, not a scalar loop). The other elementwise operators (score, bias
    add, mask fill) and softmax over wider rows are vectorised streaming passes, charged
    through the bytes they read and write."""
    te = float(t) * e
    # score (read logits, write scores) and bias add (read scores, write choice): fp32 T x E
    nbytes = 2 * (4 * te + 4 * te)
    flops = _topk_comparisons(t, e, k)  # the final top-k over the (masked) T x E choice
    if scoring == "softmax" and 0 < e < vector_lanes:
        flops += te * SCALAR_SOFTMAX_OPS_PER_ELEMENT
    if groups > 1:
        per_group = e // groups
        tg = float(t) * groups
        if scoring == "sigmoid":
            # top-2 per group over T * n_group rows (values fp32, indices int64), then the sum
            flops += _topk_comparisons(tg, per_group, 2)
            nbytes += 4 * te + tg * 2 * 12 + tg * 2 * 4 + tg * 4
        else:
            nbytes += 4 * te + tg * 4  # amax per group, a reduction: read T x E, write T x n_group
        flops += _topk_comparisons(t, groups, topk_group)  # group top-k
        nbytes += tg * 4 + t * topk_group * 12
        # zeros_like, scatter_, ~mask (bool T x n_group), repeat_interleave to a bool T x E mask,
        # masked_fill: read fp32 choice and the mask, write fp32 T x E
        nbytes += tg + (t * topk_group * 9) + 2 * tg + (tg + te) + (4 * te + te + 4 * te)
    nbytes += 4 * te + t * k * 12  # final top-k: read choice, write values and int64 indices
    # gather (indices, scores rows), sum, divide, scale: T x k
    nbytes += t * k * (8 + 4 + 4) + 3 * t * k * 8
    return flops, nbytes


def gating_time(
    gpu: GPUProfile | str,
    num_tokens: int,
    num_experts: int,
    top_k: int,
    scoring: str = "sigmoid",
    n_group: int = 1,
    launches: int = 1,
    unfused: bool = False,
    topk_group: int | None = None,
) -> OpTime:
    """Top-k gating over router logits ``[num_tokens, num_experts]`` (scores, groups, top-k).

    Fused kernel (default; DeepSeek's gate kernel, the Numba kernels): operations per logit:
    scoring 4 (exp or sigmoid and normalisation), 1 more for the sigmoid's selection bias
    (DeepSeek-V3), 3 more with group-limited routing (group score, group top-k, mask), and
    ``top_k`` for the selection passes; FLOPs = ``num_tokens * num_experts`` times that. Bytes:
    logits read in fp32, indices (int64) and weights (fp32) written.

    ``unfused=True``: the PyTorch operator sequence (``kernels_numba.torch_ref.gating``), whose
    work is counted operator by operator (:func:`_unfused_gating_work`): every intermediate
    (scores, choice, group scores, masks, top-k results) is written and read back, and each
    row-wise ``topk`` pays its selection comparisons: the sigmoid group-limited path runs two
    top-k passes over all ``T x E`` scores (top-2 in every group, then the final top-k), the
    softmax one (its group score is a max), the ungrouped one; on a CPU whose profile gives its
    SIMD width (``vector_bytes``), a softmax over rows narrower than one vector is charged its
    scalar path. ``topk_group`` (groups kept, default half of ``n_group``) only sizes small
    tensors.
    """
    t, e, k = (
        positive_int(num_tokens, "num_tokens"),
        positive_int(num_experts, "num_experts"),
        positive_int(top_k, "top_k"),
    )
    if k > e:
        raise ValueError(f"top_k ({k}) cannot exceed num_experts ({e})")
    if scoring not in ("softmax", "sigmoid"):
        raise ValueError(f"scoring must be 'softmax' or 'sigmoid', got {scoring!r}")
    groups = positive_int(n_group, "n_group")
    if e % groups:
        raise ValueError(f"num_experts ({e}) must be a multiple of n_group ({groups})")
    kept = max(1, groups // 2) if topk_group is None else positive_int(topk_group, "topk_group")
    if kept > groups:
        raise ValueError(f"topk_group ({kept}) cannot exceed n_group ({groups})")
    positive_int(launches, "launches")  # checked; passed on as given (results unchanged)
    dev = _device(gpu)
    if unfused:
        lanes = int(float(getattr(dev.profile, "vector_bytes", 0.0) or 0.0) // 4)  # fp32 lanes
        flops, bytes_moved = _unfused_gating_work(t, e, k, scoring, groups, kept, lanes)
    else:
        per_logit = 4 + (1 if scoring == "sigmoid" else 0) + (3 if groups > 1 else 0) + k
        flops = float(t) * e * per_logit
        bytes_moved = t * e * 4.0 + t * k * 12.0
    peak, _ = dev.peak("fp32")
    shape = {"num_tokens": t, "num_experts": e, "top_k": k}
    written = None if unfused else t * k * 12.0  # the fused kernel writes indices and weights
    return _result(dev, "gating", flops, bytes_moved, peak, flops / peak, shape, launches, written)


def permute_time(
    gpu: GPUProfile | str,
    num_tokens: int,
    hidden: int,
    top_k: int,
    dtype: str = "bf16",
    combine: bool = False,
    launches: int = 1,
    unfused: bool = False,
) -> OpTime:
    """Token permute (dispatch to expert-contiguous rows) or un-permute with weighted combine.

    Fused kernel (default): permute moves ``num_tokens * top_k`` rows of ``hidden`` (read +
    write); the combine reads the same rows and writes ``num_tokens`` rows, with
    ``2 * num_tokens * top_k * hidden`` FLOP.

    ``unfused=True``: the PyTorch sequence (``kernels_numba.torch_ref``), operator by operator.
    Permute: ``argsort`` of the ``T * k`` int64 expert ids (read the keys, write sorted keys and
    the order), the source row (``div``), ``arange`` and the slot ``scatter``, ``bincount``,
    then ``index_select`` (int64 index and the rows: read and written). Combine: ``index_select``
    of the ``T * k`` rows into a workspace (read + write), the weights cast, and ``bmm`` reading
    the workspace again and writing ``T`` rows: the gathered rows cross memory three times.
    """
    t, h, k = (
        positive_int(num_tokens, "num_tokens"),
        positive_int(hidden, "hidden"),
        positive_int(top_k, "top_k"),
    )
    positive_int(launches, "launches")  # checked; passed on as given (results unchanged)
    size = cal.dtype_bytes(dtype)
    rows = float(t) * k
    written: float | None = None  # known for the fused kernels only
    if combine:
        flops = 2.0 * rows * h
        if unfused:
            # gather into the workspace (read + write), bmm reads it again and writes T rows; the
            # int64 slots and the fp32 weights' cast (read + write)
            bytes_moved = 3 * rows * h * size + t * h * size + rows * 8 + rows * 4 * 2
        else:
            bytes_moved = (rows * h + t * h) * size + rows * 12.0
            written = t * h * size
    else:
        flops = 0.0
        if unfused:
            # argsort (read keys; write sorted keys and order), div, arange, scatter (read order
            # and arange, write slots), bincount, the index_select index: int64 per (token, choice)
            index_bytes = rows * ((8 + 16) + 16 + 8 + 24 + 8 + 8)
            bytes_moved = 2 * rows * h * size + index_bytes
        else:
            bytes_moved = (t * h + rows * h) * size + rows * 8.0
            written = rows * h * size
    dev = _device(gpu)
    peak, _ = dev.peak("fp32")
    shape = {"num_tokens": t, "hidden": h, "top_k": k, "dtype": str(dtype), "combine": bool(combine)}
    return _result(dev, "permute", flops, bytes_moved, peak, flops / peak, shape, launches, written)


def op_time(gpu: GPUProfile | str, op: Op | Work) -> OpTime:
    """Time of an operator of the inventory (:class:`moe.operators.Op`, or its work record).

    GEMMs, grouped GEMMs, bandwidth-bound kernels, attention, gating and permutes go to their own
    models above; ``Given`` returns its time; communication (``Comm``) is each simulator's to time
    with :mod:`sim.comm` (its topology and kernels), so passing one here is a ValueError. Results are
    cached per (GPU, work)."""
    work = op.work if isinstance(op, Op) else op
    if isinstance(work, Comm):
        name = op.name if isinstance(op, Op) else "communication"
        raise ValueError(f"op {name!r} is communication; time it with sim.comm")
    entry = _WORK_TIMES.get(id(gpu))
    if entry is None or entry[0] is not gpu:
        entry = _WORK_TIMES[id(gpu)] = (gpu, {})
    cache = entry[1]
    t = cache.get(work)
    if t is None:
        t = cache[work] = _work_time(gpu, work)
    return t


# op_time's results per GPU object (held, so that its id is not reused) and work record: a GPU
# profile is costly to hash, so the cache is keyed by identity
_WORK_TIMES: dict[int, tuple[Any, dict[Any, OpTime]]] = {}


def op_seconds(gpu: GPUProfile | str, op: Op) -> float:
    """Predicted seconds of ``op`` (:func:`op_time`), with bandwidth-bound kernels taken from their
    family's affine fit (launch + bytes / achieved bandwidth) read once per GPU."""
    work = op.work
    if type(work) is Memory:
        held = _AFFINE.get((id(gpu), work.family))
        if held is None or held[0] is not gpu:  # by identity, as _WORK_TIMES: hashing a profile is costly
            held = _AFFINE[(id(gpu), work.family)] = (gpu, _memory_affine(gpu, work.family))
        affine = held[1]
        if affine is not None:
            return affine[0] + affine[1] * max(0.0, float(work.bytes))
    return op_time(gpu, op).predicted_s


_AFFINE: dict[tuple[int, str], tuple[Any, tuple[float, float] | None]] = {}


@lru_cache(maxsize=256)
def _memory_affine(gpu: GPUProfile | str, family: str) -> tuple[float, float] | None:
    """``(launch_s, s_per_byte)`` of ``family``'s bandwidth-bound time when it is affine in the bytes
    (no FLOPs term), else None."""
    t0 = memory_time(gpu, 0.0, family=family).predicted_s
    slope = (memory_time(gpu, 1e9, family=family).predicted_s - t0) / 1e9
    probe = memory_time(gpu, 3.7e8, family=family).predicted_s
    return (t0, slope) if math.isclose(probe, t0 + slope * 3.7e8, rel_tol=1e-9) else None


def _work_time(gpu: GPUProfile | str, work: Work) -> OpTime:
    if isinstance(work, Gemm):
        phase = "wgrad" if work.wgrad else "forward"
        return gemm_time(gpu, work.m, work.n, work.k, work.dtype, phase=phase, batch=work.batch)
    if isinstance(work, GroupedGemm):
        compute = work.compute_dtype or None
        return grouped_gemm_time(
            gpu,
            list(work.groups),
            work.n,
            work.k,
            work.dtype,
            compute_dtype=compute,
            swap_ab=work.swap_ab,
            kernel=work.kernel or None,
        )
    if isinstance(work, Memory):
        return memory_time(gpu, max(0.0, float(work.bytes)), family=work.family)
    if isinstance(work, Attention):
        t = attention_time(
            gpu,
            work.batch,
            work.q_len,
            work.kv_len,
            work.heads,
            work.qk,
            work.v,
            work.causal,
            work.dtype,
            kv_bytes=work.kv_bytes,
            backward=work.backward,
        )
        if work.scale == 1.0:
            return t
        f = work.scale
        return OpTime(
            t.roofline_s * f,
            t.predicted_s * f,
            None,
            t.bound_by,
            t.flops * f,
            t.bytes_moved * f,
            t.family,
            t.calibration,
        )
    if isinstance(work, Gating):
        return gating_time(gpu, work.tokens, work.experts, work.top_k, work.scoring, work.groups)
    if isinstance(work, Permute):
        return permute_time(gpu, work.tokens, work.hidden, work.top_k, work.dtype, combine=work.combine)
    if isinstance(work, Given):
        return OpTime(work.seconds, work.seconds, None, "given")
    raise ValueError(
        f"unknown operator work {type(work).__name__}; allowed: Gemm, GroupedGemm, Memory, Attention, "
        "Gating, Permute, Given"
    )
