"""DeepSeek's published H800 kernel tables: parse, fit on half the shapes, score the other half.

Tables (all H800 SXM5, from ``reference/measured_calibration.json`` and
``deepseek_figures.md`` section 4; the newest table version of each shape is used):

``deepgemm_gemm``
    DeepGEMM README @a9967bc..327ec92 (2025-04-09, the last version with tables): 18 dense
    FP8 GEMM shapes, TFLOPS. Time = 2mnk / TFLOPS.
``deepgemm_grouped_gemm``
    Same README: 4 contiguous-layout shapes (v2 = v3 values) and 6 masked-layout shapes.
    Time = 2 * groups * m_per_group * n * k / TFLOPS.
``flashmla``
    FlashMLA README (2025-04-22 update): 3000 GB/s memory-bound, 660 TFLOPS compute-bound
    (dense MLA decode, BF16). The README gives rates, not shapes: we place them at the grid of
    FlashMLA's own ``tests/test_flash_mla.py`` (batch 128, 1 KV head, d_qk 576, d_v 512) at
    ``s_k = 8192``: memory-bound h_q = 16, s_q = 1; compute-bound h_q = 128, s_q = 2. These
    shapes are an assumption; at these sizes the launch time is < 2% of the kernel, so the
    score is insensitive to it.
``deepep``
    DeepEP normal kernels (docs/legacy.md after 3b1045d: intranode EP8, internode EP16/32/64)
    and low-latency kernels (README @d8dd185, 2025-06-05: EP8..256), dispatch and combine.
    Bandwidth rows: time = bytes / reported bandwidth; latency rows: the reported time, which is
    one kernel's GPU time, its send and receive phases included (:func:`deepep_tables`).

Fitting: the fixed rule of :func:`sim.calibration.split_fit_holdout` (sort the shape keys,
even positions fit, odd positions held out). Parameters that a table's fit half cannot
constrain are taken from the DeepGEMM dense-GEMM fit (stated per table in the output). Four more
H800 families are fitted on kernel instances of the V3 training trace (``TRACE_TABLES``; whole
shapes held out, :func:`trace_split`).

:func:`fit_and_score` fits and scores every table; :func:`write_calibration` writes one result as
``gpus/calibration/h800.json`` (or ``h800-YYYY-MM.json`` for a result fitted as of an older month,
:func:`vintages`), and :func:`write_all` writes all of them (``python -m kernels_numba.validate
--write``). ``python -m sim.calibration.published [--as-of YYYY-MM] [--write]`` scores (and writes)
one.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim import calibration as cal

# Shipped with the project (reference/README.md gives the sources).
REFERENCE = Path(__file__).resolve().parents[2] / "reference" / "measured_calibration.json"

# DeepEP workload (docs/legacy.md and README): hidden 7168, top-8; FP8 dispatch carries one
# float32 scale per 128 channels; BF16 combine.
DEEPEP_HIDDEN = 7168
DEEPEP_TOP_K = 8
DEEPEP_DISPATCH_TOKEN_BYTES = DEEPEP_HIDDEN + DEEPEP_HIDDEN // 128 * 4
DEEPEP_COMBINE_TOKEN_BYTES = DEEPEP_HIDDEN * 2
DEEPEP_GPUS_PER_NODE = 8

# The published kernel tables that measured_calibration.json does not hold: DeepEP's newest
# figures and every table as it stood in an older month (reference/kernel_tables/*.toml, each with
# its sources), read when first asked for.
KERNEL_TABLES = Path(__file__).resolve().parents[2] / "reference" / "kernel_tables"


def _read_table(name: str) -> dict[str, Any]:
    with (KERNEL_TABLES / name).open("rb") as handle:
        return tomllib.load(handle)


def _by_direction(rows: list[dict[str, Any]], unit: str) -> dict[tuple[int, str], float]:
    """``[{ep, dispatch_<unit>, combine_<unit>}, ...]`` -> ``{(ep, direction): value}``."""
    out: dict[tuple[int, str], float] = {}
    for row in rows:
        for direction in ("dispatch", "combine"):
            out[(int(row["ep"]), direction)] = float(row[f"{direction}_{unit}"])
    return out


@functools.cache
def deepep_tables() -> tuple[
    dict[tuple[int, str], float], dict[tuple[int, str], float], str, tuple[str, ...]
]:
    """DeepEP's newest figures (reference/kernel_tables/deepep.toml): normal-kernel GB/s and
    low-latency microseconds by (ep, direction), their source, and the low-latency phases the times
    contain."""
    data = _read_table("deepep.toml")
    return (
        _by_direction(data["normal"], "gb_s"),
        _by_direction(data["low_latency"], "us"),
        str(data["source"]),
        tuple(data["low_latency_contains"]),
    )


# What a low-latency table time contains besides the transfer. DeepEP's tests/test_low_latency.py
# (at ebfe47e and at d8dd185, the commits of the two tables) reports as "latency" the mean GPU time
# of the one kernel named dispatch (or combine) under the CUDA profiler (tests/utils.py
# bench_kineto), launched without the receive hook (return_recv_hook=False): one launch runs both
# phases of csrc/kernels/internode_ll.cu, the send phase (dispatch: FP8 cast of each token with its
# 1x128 scales into the send buffer, then the puts; combine: expert outputs copied into the send
# buffer, then the puts) and the receive phase (dispatch: wait, then copy the received rows into
# the per-expert layout; combine: wait, then the weighted sum over each token's top-k). So the time
# holds the work of the send kernel and the receive-hook kernel that a hooked decode step launches
# on its compute stream. One exception: from dcaf73e (2025-03-18) the test times the combine with
# zero_copy=True, the expert outputs written into the send buffer by a copy before the timed kernel,
# so the 2025-06 combine time holds no staging copy. (That README repeats the launch figures for
# EP128 and EP256 without saying whether they were measured again; the test of its commit is
# taken to be the one they came from.) Phase names as sim.comm.Link reads them; each table file
# lists the phases its times contain (``low_latency_contains``; d8dd185: the zero-copy combine).


@dataclass(frozen=True)
class Vintage:
    """DeepSeek's H800 kernel tables as they stood at the end of one month (deepseek_figures.md
    4.1-4.3, each figure's version and commit there), for predicting a system of that time with
    the kernels it ran. Only the figures a later version changed are listed; every other table
    entry was the same then as in the newest version."""

    label: str  # "YYYY-MM": the newest table of each kernel published by the end of that month
    deepgemm_dense_tflops: Mapping[tuple[int, int, int], float]
    deepgemm_contiguous_tflops: Mapping[tuple[int, int, int, int], float]
    flashmla_compute_tflops: float
    deepep_normal_gb_s: Mapping[tuple[int, str], float]
    deepep_low_latency_us: Mapping[tuple[int, str], float]
    source: str
    # the low-latency kernel phases that those times contain (see the comment above deepep_tables)
    deepep_low_latency_contains: tuple[str, ...]


def _vintage(path: Path) -> Vintage:
    with path.open("rb") as handle:
        data = tomllib.load(handle)
    return Vintage(
        label=str(data["label"]),
        deepgemm_dense_tflops={
            (int(r["m"]), int(r["n"]), int(r["k"])): float(r["tflops"]) for r in data["deepgemm_dense"]
        },
        deepgemm_contiguous_tflops={
            (int(r["groups"]), int(r["m"]), int(r["n"]), int(r["k"])): float(r["tflops"])
            for r in data["deepgemm_contiguous"]
        },
        flashmla_compute_tflops=float(data["flashmla_compute_tflops"]),
        deepep_normal_gb_s=_by_direction(data["deepep_normal"], "gb_s"),
        deepep_low_latency_us=_by_direction(data["deepep_low_latency"], "us"),
        source=str(data["source"]),
        deepep_low_latency_contains=tuple(data["deepep_low_latency_contains"]),
    )


@functools.cache
def vintages() -> dict[str, Vintage]:
    """The older tables by label ("YYYY-MM"), one file each: reference/kernel_tables/h800_<label>.toml."""
    found = [_vintage(path) for path in sorted(KERNEL_TABLES.glob("h800_*.toml"))]
    return {v.label: v for v in found}


def _figure(
    record: Mapping[str, Any], older: Mapping[Any, float] | None, key: Any, as_of: Vintage | None
) -> tuple[float, str]:
    """(value, source) of a reference record's figure, or of ``as_of``'s older value for ``key``."""
    if as_of is not None and older is not None and key in older:
        return older[key], f"{record['id']} as of {as_of.label}: {as_of.source}"
    return float(record["value"]), f"{record['id']}: {record['source']}"


def vintage(label: str | None) -> Vintage | None:
    """The :func:`vintages` entry for ``label`` (None: the newest tables)."""
    if label is None:
        return None
    known = vintages()
    if label not in known:
        raise ValueError(
            f"no H800 kernel tables as of {label!r}; known: {', '.join(sorted(known))} "
            "(or none for the newest)"
        )
    return known[label]


H800_NVLINK_PEAK = 200e9  # 400 GB/s bidirectional (DESIGN.md; NVIDIA H800 datasheet)
H800_IB_PEAK = 50e9  # ConnectX-7 400 Gb/s per GPU


@dataclass
class Row:
    """One published measurement: a shape key, its measured time and what predicts it."""

    table: str
    key: tuple[Any, ...]
    measured_s: float
    source: str
    compute_s: float = 0.0
    memory_s: float = 0.0
    shape: dict[str, Any] = field(default_factory=dict)
    family: str = ""

    @staticmethod
    def predicted(
        table: str,
        key: tuple[Any, ...],
        measured_s: float,
        source: str,
        time: Any,
        shape: dict[str, Any],
        family: str,
        count: int = 1,
    ) -> Row:
        """A row predicted by ``time`` (a :mod:`sim.timing` result, ``count`` kernels of it)."""
        return Row(
            table, key, measured_s, source, time.compute_s * count, time.memory_s * count, shape, family
        )

    def scored(self, table: str, family: str, held_out: bool, predicted_s: float) -> dict[str, Any]:
        """The row as a fit's result lists it: measured beside predicted, and whether it was held out."""
        return {
            "table": table,
            "key": list(self.key),
            "held_out": held_out,
            "measured_s": self.measured_s,
            "predicted_s": predicted_s,
            "source": self.source,
            "family": family,
            "shape": self.shape,
        }


def _h800_matches(
    records: list[dict[str, Any]], pattern: str
) -> list[tuple[dict[str, Any], tuple[int, ...]]]:
    """The H800 records whose metric matches ``pattern``, with its groups as integers."""
    compiled = re.compile(pattern)
    out = []
    for r in records:
        match = compiled.match(str(r.get("metric", "")))
        if match and "H800" in str(r.get("hardware")):
            out.append((r, tuple(int(g) for g in match.groups())))
    return out


def load_reference(path: Path = REFERENCE) -> list[dict[str, Any]]:
    if not path.exists():
        raise ValueError(f"reference table {path} not found; it ships in the project's reference/ folder")
    with open(path, encoding="utf-8") as handle:
        records: list[dict[str, Any]] = json.load(handle)
    return records


def _h800() -> Any:
    import gpus

    return gpus.get("H800")


def gemm_rows(records: list[dict[str, Any]], as_of: Vintage | None = None) -> list[Row]:
    """DeepGEMM's dense FP8 GEMM table (the newest version, or ``as_of``'s)."""
    from sim import timing

    gpu = _h800()
    rows = []
    for r, (m, n, k) in _h800_matches(records, r"^GEMM TFLOPS M=(\d+) N=(\d+) K=(\d+)$"):
        t = timing.gemm_time(gpu, m, n, k, "fp8")
        shape = {"m": m, "n": n, "k": k, "dtype": "fp8"}
        tflops, source = _figure(r, as_of.deepgemm_dense_tflops if as_of else None, (m, n, k), as_of)
        measured = 2.0 * m * n * k / (tflops * 1e12)
        rows.append(Row.predicted("deepgemm_gemm", (m, n, k), measured, source, t, shape, "gemm"))
    return rows


def grouped_rows(records: list[dict[str, Any]], as_of: Vintage | None = None) -> list[Row]:
    """DeepGEMM's grouped FP8 GEMM tables, contiguous and masked layouts (newest, or ``as_of``'s)."""
    from sim import timing

    gpu = _h800()
    rows = []
    pattern = r"^grouped GEMM TFLOPS groups=(\d+) M/group=(\d+) N=(\d+) K=(\d+)$"
    for r, (g, m, n, k) in _h800_matches(records, pattern):
        layout = "contiguous" if m * g >= 16384 else "masked"  # the README's two tables
        t = timing.grouped_gemm_time(gpu, [m] * g, n, k, "fp8")
        shape = {"group_sizes": [m] * g, "n": n, "k": k, "dtype": "fp8"}
        tflops, source = _figure(r, as_of.deepgemm_contiguous_tflops if as_of else None, (g, m, n, k), as_of)
        measured = 2.0 * g * m * n * k / (tflops * 1e12)
        key = (layout, g, m, n, k)
        rows.append(Row.predicted("deepgemm_grouped_gemm", key, measured, source, t, shape, "grouped_gemm"))
    return rows


def flashmla_rows(records: list[dict[str, Any]], as_of: Vintage | None = None) -> list[Row]:
    """FlashMLA's two published rates placed at FlashMLA's test grid (module docstring)."""
    from sim import timing

    gpu = _h800()
    by_id = {r["id"]: r for r in records}
    rows = []
    batch, s_k, d_qk, d_v = 128, 8192, 576, 512
    for rid, h_q, s_q, kind in (("R409", 16, 1, "memory"), ("R410", 128, 2, "compute")):
        r = by_id.get(rid)
        if r is None:
            raise ValueError(f"reference record {rid} (FlashMLA) missing from {REFERENCE}")
        kv_bytes = batch * s_k * d_qk * 2.0
        t = timing.attention_time(gpu, batch, s_q, s_k, h_q, d_qk, d_v, False, "bf16", kv_bytes=kv_bytes)
        if kind == "memory":  # 3000 GB/s in every version
            gb_s, source = _figure(r, None, kind, as_of)
            measured = t.bytes_moved / (gb_s * 1e9)
        else:
            older = {kind: as_of.flashmla_compute_tflops} if as_of is not None else None
            tflops, source = _figure(r, older, kind, as_of)
            measured = t.flops / (tflops * 1e12)
        shape = {
            "batch": batch,
            "q_len": s_q,
            "kv_len": s_k,
            "num_heads": h_q,
            "qk_head_dim": d_qk,
            "v_head_dim": d_v,
            "causal": False,
            "dtype": "bf16",
        }
        rows.append(
            Row.predicted("flashmla", (kind, h_q, s_q), measured, source, t, shape, "attention_decode")
        )
    return rows


def deepep_bytes(ep: int, direction: str, tokens: int) -> tuple[float, float]:
    """(NVLink bytes, RDMA bytes) per GPU for ``tokens`` tokens sent to top-8 experts over ``ep``
    ranks with uniform destinations (8 GPUs per node)."""
    per_token = DEEPEP_DISPATCH_TOKEN_BYTES if direction == "dispatch" else DEEPEP_COMBINE_TOKEN_BYTES
    total = tokens * DEEPEP_TOP_K * per_token
    local = min(ep, DEEPEP_GPUS_PER_NODE)
    intra = total * (local - 1) / ep
    inter = total * (ep - local) / ep
    return intra, inter


def deepep_rows(as_of: Vintage | None = None) -> list[Row]:
    """DeepEP's normal-kernel bandwidths and low-latency-kernel times (newest, or ``as_of``'s).
    The low-latency kernels were pure RDMA until 2025-06-05 (PR #173 sends to peers in the node
    over NVLink): in an older vintage every peer's bytes cross the NIC."""
    newest_normal, newest_low_latency, newest_source, _ = deepep_tables()
    normal = newest_normal if as_of is None else as_of.deepep_normal_gb_s
    low_latency = newest_low_latency if as_of is None else as_of.deepep_low_latency_us
    source = newest_source if as_of is None else as_of.source
    rows = []
    for (ep, direction), gb_s in sorted(normal.items()):
        intra, inter = deepep_bytes(ep, direction, 4096)
        # The reported figure is the bottleneck link's bandwidth: NVLink intranode, RDMA internode.
        link_bytes = intra if ep <= DEEPEP_GPUS_PER_NODE else inter
        measured = link_bytes / (gb_s * 1e9)
        rows.append(
            Row(
                "deepep",
                ("normal", ep, direction),
                measured,
                source,
                shape={
                    "mode": "normal",
                    "ep": ep,
                    "direction": direction,
                    "nvlink_bytes": intra if ep <= 8 else 0.0,
                    "rdma_bytes": inter,
                },
            )
        )
    for (ep, direction), us in sorted(low_latency.items()):
        intra, inter = deepep_bytes(ep, direction, 128)
        if as_of is not None:
            intra, inter = 0.0, intra + inter
        rows.append(
            Row(
                "deepep",
                ("low_latency", ep, direction),
                us * 1e-6,
                source,
                shape={
                    "mode": "low_latency",
                    "ep": ep,
                    "direction": direction,
                    "nvlink_bytes": intra,
                    "rdma_bytes": inter,
                },
            )
        )
    return rows


def deepep_predict(x: np.ndarray, row: Row) -> float:
    """``latency + max(nvlink_bytes / bw_nvlink, rdma_bytes / bw_rdma)``; x = (latency_s,
    bw_nvlink, bw_rdma) in (s, bytes/s)."""
    latency, bw_nv, bw_ib = float(x[0]), float(x[1]), float(x[2])
    return latency + max(row.shape["nvlink_bytes"] / bw_nv, row.shape["rdma_bytes"] / bw_ib)


def fit_deepep(rows: list[Row], indices: list[int]) -> np.ndarray:
    from scipy.optimize import least_squares

    def residual(x: np.ndarray) -> np.ndarray:
        scaled = np.array([x[0] * 1e-6, x[1] * 1e9, x[2] * 1e9])
        return np.array([np.log(deepep_predict(scaled, rows[i]) / rows[i].measured_s) for i in indices])

    result = least_squares(
        residual,
        np.array([20.0, 150.0, 45.0]),
        bounds=([0.0, 1.0, 1.0], [1e3, 1e3, 1e3]),
        xtol=cal.FIT_TOLERANCE,
        ftol=cal.FIT_TOLERANCE,
        gtol=cal.FIT_TOLERANCE,
    )
    return np.array([result.x[0] * 1e-6, result.x[1] * 1e9, result.x[2] * 1e9])


def _initial(gemm: cal.FamilyParams | None) -> cal.FamilyParams:
    return gemm if gemm is not None else cal.FamilyParams(5e-6, 0.8, 0.8, 2.0)


def fit_and_score(records: list[dict[str, Any]] | None = None, as_of: str | None = None) -> dict[str, Any]:
    """Fit the H800 parameters per table on the fit half, score the held-out half; with ``as_of``
    (a :func:`vintages` label) on the tables as they stood then. The V3 training trace (February
    2025) is the same for every vintage.

    Returns ``{"tables": {name: summary}, "families": {...}, "links": {...}, "rows": [...]}``.
    """
    records = load_reference() if records is None else records
    old = vintage(as_of)
    out: dict[str, Any] = {"tables": {}, "families": {}, "links": {}, "rows": [], "as_of": as_of}
    gemm_params: cal.FamilyParams | None = None
    tables: list[tuple[str, list[Row], str, tuple[str, ...] | None]] = [
        ("deepgemm_gemm", gemm_rows(records, old), "gemm", cal.PARAMETER_NAMES),
        ("deepgemm_grouped_gemm", grouped_rows(records, old), "grouped_gemm", cal.PARAMETER_NAMES),
        ("flashmla", flashmla_rows(records, old), "attention_decode", None),
    ]
    for name, rows, family, free in tables:
        if not rows:
            raise ValueError(f"no rows for table {name} in {REFERENCE}")
        fit_idx, held_idx = cal.split_fit_holdout([r.key for r in rows])
        measured = [r.measured_s for r in rows]

        def predict(params: cal.FamilyParams, i: int, rows: list[Row] = rows) -> float:
            return cal.predict_seconds(params, rows[i].compute_s, rows[i].memory_s)

        start = _initial(gemm_params)
        if free is None:
            # A table this small can pin only what its fit half is bound by; the rest comes
            # from the DeepGEMM fit. The fit half's rows are memory- or compute-bound:
            bound = {"memory" if rows[i].memory_s > rows[i].compute_s else "compute" for i in fit_idx}
            free = tuple(f"{b}_efficiency" for b in sorted(bound))
        params = cal.fit_params(predict, measured, fit_idx, start, free, max_efficiency=1.0)
        if family == "gemm":
            gemm_params = params
        errors = cal.abs_pct_errors([predict(params, i) for i in held_idx], [measured[i] for i in held_idx])
        summary = cal.summarise(errors)
        summary["fitted"] = list(free)
        summary["fit_n"] = len(fit_idx)
        out["tables"][name] = summary
        out["families"][family] = {
            "published": {
                **params.to_dict(),
                "fit_table": name,
                "fitted_parameters": list(free),
                "held_out_median_pct": summary["median_pct"],
            }
        }
        for i, r in enumerate(rows):
            out["rows"].append(r.scored(name, family, i in held_idx, predict(params, i)))
    kernels = load_trace_kernels()
    for name, family, free in TRACE_TABLES:
        rows = trace_rows(name, kernels)
        if not rows:
            raise ValueError(f"no kernels for {name} in {TRACE_PATH}")
        fit_idx, held_idx = trace_split(rows)
        measured = [r.measured_s for r in rows]

        def predict_trace(params: cal.FamilyParams, i: int, rows: list[Row] = rows) -> float:
            return cal.predict_seconds(
                params, rows[i].compute_s, rows[i].memory_s, int(rows[i].shape.get("launches", 1))
            )

        params = cal.fit_params(
            predict_trace, measured, fit_idx, _initial(gemm_params), free, max_efficiency=1.0
        )
        shapes = len(trace_shapes(rows))
        if held_idx:
            errors = cal.abs_pct_errors(
                [predict_trace(params, i) for i in held_idx], [measured[i] for i in held_idx]
            )
            summary = cal.summarise(errors)
            scores = {"held_out_median_pct": summary["median_pct"], "held_out_p90_pct": summary["p90_pct"]}
        else:
            # One shape: nothing to hold out. The residual of the fit is reported as what it is (how
            # well the fitted rows are reproduced), never as a held-out error.
            fitted = [predict_trace(params, i) for i in fit_idx]
            in_sample = cal.summarise(cal.abs_pct_errors(fitted, [measured[i] for i in fit_idx]))
            summary = {"n": 0, "fitted_only": True, "fit_median_pct": in_sample["median_pct"]}
            scores = {"fitted_only": True, "fit_median_pct": in_sample["median_pct"]}
        summary["fitted"] = list(free)
        summary["fit_n"] = len(fit_idx)
        summary["shapes"] = shapes
        summary["held_out_shapes"] = shapes // 2 if held_idx else 0
        out["tables"][name] = summary
        out["families"][family] = {
            "published": {
                **params.to_dict(),
                "fit_table": name,
                "fitted_parameters": list(free),
                **scores,
                "source": TRACE_FAMILY_SOURCE,
                "held_out_rule": "whole shapes (kernel kinds, with kinds of equal model inputs merged), "
                "smallest first: even shapes fit, odd held out; a single-shape table is fitted only "
                "(sim.calibration.published.trace_split)",
            }
        }
        for i, r in enumerate(rows):
            out["rows"].append(r.scored(name, family, i in held_idx, predict_trace(params, i)))
    rows = deepep_rows(old)
    link_source = deepep_tables()[2] if old is None else old.source
    contains = list(deepep_tables()[3] if old is None else old.deepep_low_latency_contains)
    fit_idx, held_idx = cal.split_fit_holdout([r.key for r in rows])
    x = fit_deepep(rows, fit_idx)
    errors = cal.abs_pct_errors(
        [deepep_predict(x, rows[i]) for i in held_idx], [rows[i].measured_s for i in held_idx]
    )
    summary = cal.summarise(errors)
    summary["fitted"] = ["latency_s", "nvlink_bandwidth_bytes_per_s", "rdma_bandwidth_bytes_per_s"]
    summary["fit_n"] = len(fit_idx)
    out["tables"]["deepep"] = summary
    out["links"] = {
        kind: {
            "bandwidth_bytes_per_s": float(bandwidth),
            "latency_s": float(x[0]),
            "peak_bandwidth_bytes_per_s": peak,
            "low_latency_kernel_contains": contains,
            "source": f"fitted to {link_source}",
        }
        for kind, bandwidth, peak in (("nvlink", x[1], H800_NVLINK_PEAK), ("ib", x[2], H800_IB_PEAK))
    }
    for i, r in enumerate(rows):
        out["rows"].append(r.scored("deepep", "deepep", i in held_idx, deepep_predict(x, r)))
    return out


def h800_calibration(result: Mapping[str, Any], date: str) -> dict[str, Any]:
    """The ``gpus/calibration/h800.json`` document for a :func:`fit_and_score` result; for a result
    fitted ``as_of`` a vintage, the ``h800-<vintage>.json`` document of the device ``H800@<vintage>``
    (``gpus.get("H800@2025-02")``), which no other GPU borrows."""
    measurements = [
        {
            "family": r["family"],
            "impl": "published",
            "shape": r["shape"],
            "measured_s": r["measured_s"],
            "source": r["source"],
        }
        for r in result["rows"]
        if r["family"] != "deepep" and not str(r["table"]).startswith("v3_trace")
    ]
    doc: dict[str, Any] = {
        "schema": 1,
        "device": "H800",
        "aliases": ["H800-SXM5", "H800 SXM", "H800-SXM"],
        "kind": "gpu",
        "date": date,
        "source": "fitted by python -m kernels_numba.validate to DeepSeek's published H800 tables "
        "(DeepGEMM 2025-04-09, FlashMLA 2025-04-22, DeepEP 2025-04-22 / 2025-06-05) and, for "
        "gemm_wgrad / memory_bound / norm_rope / attention_backward, to kernel instances of the V3 training "
        "trace (deepseek-ai/profile-data train.json); see sim/calibration/published.py",
        "applies_to_architectures": ["hopper"],
        "reference_for_other_gpus": True,
        "applies_note": "No public kernel tables exist for H100/H200/H20; their timing uses these Hopper "
        "efficiencies with their own peaks and bandwidths; other GPUs without a calibration file use them "
        "as reference efficiencies (sim/timing.py docstring).",
        "default_impl": "published",
        "families": result["families"],
        "links": result["links"],
        "published_scores": result["tables"],
        "measurements": measurements,
    }
    old = vintage(result.get("as_of"))
    if old is not None:
        doc.update(
            {
                "device": f"H800@{old.label}",
                "aliases": [],
                "kernels_as_of": old.label,
                "source": f"fitted by python -m sim.calibration.published --as-of {old.label} --write to "
                f"DeepSeek's H800 tables as they stood at the end of {old.label} ({old.source}; every "
                "other entry as in the newest tables) and, for gemm_wgrad / memory_bound / norm_rope / "
                "attention_backward, to kernel instances of the V3 training trace "
                "(deepseek-ai/profile-data train.json, 2025-02-27)",
                "applies_to_architectures": [],
                "reference_for_other_gpus": False,
                "applies_note": "For predicting H800 systems of that time with the kernels they ran: name "
                f"the GPU 'H800@{old.label}'. No other GPU borrows these efficiencies.",
            }
        )
    return doc


def write_calibration(result: Mapping[str, Any], date: str) -> Path:
    """Write :func:`h800_calibration`'s document where the timing model finds it by device name
    (``h800.json``, ``h800-2025-02.json``); return the path."""
    doc = h800_calibration(result, date)
    return cal.write_json(cal.calibration_dir() / f"{cal.device_key(doc['device'])}.json", doc)


def write_all(date: str) -> list[Path]:
    """Fit the newest tables and every older vintage by the same rule and write each file
    (``h800.json``, then ``h800-YYYY-MM.json`` by label); return the paths."""
    written = [write_calibration(fit_and_score(), date)]
    for label in sorted(vintages()):
        written.append(write_calibration(fit_and_score(as_of=label), date))
    return written


# DeepSeek-V3 training trace (deepseek_figures.md 1.7, from deepseek-ai/profile-data train.json,
# H800, EP64, 4K sequence, balanced routing): kernel time ranges over the trace's instances.
# Level-3 cross-checks, not fitted: predicted with the fitted H800 parameters. The grouped GEMMs
# run while DeepEP holds 20 of the 132 SMs (the trace's dispatch/combine kernels use grid 20;
# V3-TR 3.2.2), so they are predicted on 112 SMs; the row count per GPU (4 local experts x 8192
# rows) is the figures file's derivation (4096 tokens x top-8 x 64 ranks / 64), an assumption.
TRACE_SOURCE = "deepseek-ai/profile-data train.json (deepseek_figures.md 1.7)"
COMM_SMS = 20


def trace_cross_checks() -> dict[str, dict[str, Any]]:
    """Predicted vs the V3 training trace, with the error against the middle of each range."""
    import dataclasses

    from sim import timing

    gpu = _h800()
    share = (gpu.sm_count - COMM_SMS) / gpu.sm_count  # the compute kernels' share of the SMs
    compute_sms = dataclasses.replace(
        gpu,
        sm_count=gpu.sm_count - COMM_SMS,
        peak_flops_per_s={k: v * share for k, v in gpu.peak_flops_per_s.items()},
    )
    checks = {
        "mla_attention_fwd": (
            timing.attention_time(gpu, 1, 4096, 4096, 128, 192, 128, True, "bf16"),
            1.20e-3,
            1.28e-3,
        ),
        "expert_gemm_gate_up": (
            timing.grouped_gemm_time(compute_sms, [8192] * 4, 4096, 7168, "fp8"),
            1.65e-3,
            2.16e-3,
        ),
        "expert_gemm_down": (
            timing.grouped_gemm_time(compute_sms, [8192] * 4, 7168, 2048, "fp8"),
            0.77e-3,
            1.19e-3,
        ),
    }
    out = {}
    for name, (t, low, high) in checks.items():
        middle = (low + high) / 2
        out[name] = {
            "predicted_s": t.predicted_s,
            "trace_low_s": low,
            "trace_high_s": high,
            "error_vs_middle_pct": round(abs(t.predicted_s - middle) / middle * 100, 2),
            "within_range": bool(low <= t.predicted_s <= high),
            "calibration": t.calibration,
            "source": TRACE_SOURCE,
        }
    return out


# ---------------------------------------------------------------------------------------------
# Kernel families fitted on DeepSeek's V3 training trace (level 3: a published component
# measurement, H800): weight-gradient GEMMs, memory-bound kernels, attention backward.

TRACE_PATH = Path(__file__).resolve().parents[2] / "reference" / "deepseek_v3_train_profile_h800.json.gz"
TRACE_TOKENS = 4096  # one 4K sequence per micro-batch on each GPU (PROF README)
TRACE_EP = 64
TRACE_LAYERS = 4
TRACE_FAMILY_SOURCE = (
    "deepseek-ai/profile-data train.json (reference/deepseek_v3_train_profile_h800.json.gz): "
    "H800, EP64, 4,096 tokens per micro-batch, balanced routing; shapes derived from the V3 config"
)


def trace_kernel_events(path: str | Path = TRACE_PATH) -> list[dict[str, Any]]:
    """The kernel events of a Chrome trace (gzipped or not), in the file's order; ValueError when the
    file is missing or holds none. ``sim.training.trace`` reads the V3 trace through this too."""
    import gzip

    path = Path(path)
    if not path.exists():
        raise ValueError(f"training trace {path} not found; it ships in reference/")
    raw = path.read_bytes()
    data = json.loads(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
    kernels = [e for e in data["traceEvents"] if e.get("cat") == "kernel" and e.get("ph") == "X"]
    if not kernels:
        raise ValueError(f"{path} holds no kernel events")
    return kernels


def load_trace_kernels(path: Path = TRACE_PATH) -> list[dict[str, Any]]:
    """The trace's kernel events, sorted by start time."""
    return sorted(trace_kernel_events(path), key=lambda e: float(e["ts"]))


def _compute_sms_h800() -> Any:
    """H800 with the 20 SMs DeepEP holds taken away (the compute kernels' 112 SMs)."""
    import dataclasses

    gpu = _h800()
    share = (gpu.sm_count - COMM_SMS) / gpu.sm_count
    return dataclasses.replace(
        gpu,
        sm_count=gpu.sm_count - COMM_SMS,
        peak_flops_per_s={k: v * share for k, v in gpu.peak_flops_per_s.items()},
    )


def span_union(spans: list[tuple[float, float]]) -> float:
    """Length of the union of (start, end) intervals (a stream's busy time when kernels overlap)."""
    ordered = sorted(spans)
    total, (cur_s, cur_e) = 0.0, ordered[0]
    for s0, e0 in ordered[1:]:
        if s0 > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = s0, e0
        else:
            cur_e = max(cur_e, e0)
    return total + cur_e - cur_s


def _union_s(events: list[dict[str, Any]]) -> float:
    """Seconds during which any of the trace ``events`` (microsecond ``ts`` and ``dur``) runs."""
    return span_union([(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events]) * 1e-6


def _wgrad_shapes(model: Any) -> dict[str, tuple[int, int, int, int]]:
    """(m, n, k, count) of each weight-gradient GEMM ``dW[m, n] = X^T[m, k] dY[k, n]`` of one V3
    MoE layer on one GPU: k is the reduction over tokens (4,096 per micro-batch for the dense
    and shared-expert weights; 4,096 x 8 routed experts x 64 ranks / 256 experts = 8,192 rows
    per local expert with balanced routing, 4 local experts per rank)."""
    a = model.attention
    h = model.hidden_size
    heads = a.num_heads
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    inter = model.moe_intermediate_size
    shared = model.num_shared_experts * (model.shared_expert_intermediate_size or inter)
    local = model.num_routed_experts // TRACE_EP
    rows = TRACE_TOKENS * model.experts_per_token * TRACE_EP // model.num_routed_experts
    t = TRACE_TOKENS
    return {
        "shared_down": (shared, h, t, 1),
        "experts_down x4": (inter, h, rows, local),
        "experts_gate_up x4": (h, 2 * inter, rows, local),
        "shared_gate_up": (h, 2 * shared, t, 1),
        "o": (heads * a.v_head_dim, h, t, 1),
        "kv_b": (a.kv_lora_rank, heads * (a.qk_nope_head_dim + a.v_head_dim), t, 1),
        "q_b": (a.q_lora_rank, heads * qk, t, 1),
        "kv_a": (h, a.kv_lora_rank + a.qk_rope_head_dim, t, 1),
        "q_a": (h, a.q_lora_rank, t, 1),
    }


def wgrad_trace_rows(kernels: list[dict[str, Any]] | None = None) -> list[Row]:
    """Weight-gradient GEMM units of the trace (``fp8_dptp128c_acc``), one row per unit.

    The trace has 15 per layer, in runs of 10 (the MoE part's backward-for-weights) then 5 (the
    attention part's). Operators are identified by position and grid, which the trace's order
    fixes (an assumption stated here, checked against the grids): MoE run = shared_down (first,
    grid 2x56), the four routed experts' down wgrads (grid 112, run two at a time on two
    streams), the four experts' gate_up wgrads (grid 2x56, two streams), shared_gate_up (last,
    grid 112); attention run = o, kv_b, q_b, kv_a, q_a (MLA's backward order, kv path first).
    The four expert kernels of one projection overlap each other on the two streams, so they
    form one unit: measured = the union of their intervals, predicted = the sum of the four
    (concurrent kernels share the SMs). Predicted on the 112 SMs left by DeepEP.
    """
    import moe
    from sim import timing

    kernels = load_trace_kernels() if kernels is None else kernels
    wg = [e for e in kernels if "fp8_dptp128c_acc" in e["name"]]
    per_layer = 15
    if len(wg) != TRACE_LAYERS * per_layer:
        raise ValueError(f"expected {TRACE_LAYERS * per_layer} wgrad kernels in the trace, found {len(wg)}")
    shapes = _wgrad_shapes(moe.get("deepseek-v3"))
    gpu = _compute_sms_h800()
    rows: list[Row] = []
    for layer in range(TRACE_LAYERS):
        run_a, run_b = wg[layer * 15 : layer * 15 + 10], wg[layer * 15 + 10 : layer * 15 + 15]
        grids = [tuple(e["args"]["grid"][:2]) for e in run_a]
        middle = run_a[1:9]
        down = [e for e in middle if tuple(e["args"]["grid"][:2]) == (112, 1)]
        gate_up = [e for e in middle if tuple(e["args"]["grid"][:2]) == (2, 56)]
        if grids[0] != (2, 56) or grids[9] != (112, 1) or len(down) != 4 or len(gate_up) != 4:
            raise ValueError(f"layer {layer}: wgrad kernels do not follow the expected structure: {grids}")
        units = [
            ("shared_down", [run_a[0]]),
            ("experts_down x4", down),
            ("experts_gate_up x4", gate_up),
            ("shared_gate_up", [run_a[9]]),
        ] + [(name, [e]) for name, e in zip(("o", "kv_b", "q_b", "kv_a", "q_a"), run_b, strict=True)]
        for name, events in units:
            m, n, k, count = shapes[name]
            if len(events) != count:
                raise ValueError(f"layer {layer}: {name} has {len(events)} kernels, expected {count}")
            t = timing.gemm_time(gpu, m, n, k, "fp8", phase="wgrad")
            shape = {"m": m, "n": n, "k": k, "dtype": "fp8", "phase": "wgrad", "kernels": count}
            key, measured = (name, layer), _union_s(events)
            row = Row.predicted(
                "v3_trace_wgrad", key, measured, TRACE_FAMILY_SOURCE, t, shape, "gemm_wgrad", count
            )
            rows.append(row)
            rows[-1].shape["launches"] = count
    return rows


def memory_trace_rows(kernels: list[dict[str, Any]] | None = None) -> list[Row]:
    """Memory-bound kernels of the trace whose bytes follow from the V3 config alone:

    * RMSNorm ``ln_fwd`` / ``ln_bwd`` (width in the kernel's template: 7,168 hidden, 1,536 q_a,
      512 kv_a), 4,096 rows: forward reads x and writes y (BF16) plus an FP32 rstd per row;
      backward reads x and dy, writes dx (BF16) and FP32 partial weight gradients (one row of
      ``width`` per block of its grid).
    * RoPE ``rotary_kernel``: the query's rope part over 128 heads (grid z = 128) or the key's
      single shared head (grid z = 1), 4,096 x heads x 64 BF16 values read and written.
    * FlashAttention backward preprocess (reads O and dO, writes rowsum(dO*O) in FP32 and zeroes
      the FP32 dQ accumulator) and dQ convert (reads the FP32 dQ, writes BF16): 4,096 tokens x
      128 heads, qk dim 192, v dim 128.
    * FP8 ``per_channel_cast_and_transpose`` (BF16 in, FP8 transposed + FP32 scales out), its
      shape read off the grid (one 128 x 128 tile per block).
    Other casts and permutes are left out: their shapes are not fixed by the kernel name or grid.

    The rows form two families (``table`` ``v3_trace_norm_rope`` and ``v3_trace_memory_bound``):
    RMSNorm and RoPE (``norm_rope``) sustain about 1.1 TB/s where the streaming casts and the
    attention pre/post-process reach 2.2-2.7 TB/s. The trace says why for the norms: the 7,168-wide
    ``ln_fwd``/``ln_bwd`` kernels use 168-200 registers per thread and run at 13-19% estimated
    occupancy (12 and 8 warps per SM), too few loads in flight to cover DRAM latency. RoPE runs at
    full occupancy, so the trace does not say why it is slow; it touches the 64-wide rope slice
    of each 192-wide query head (a strided partial-row access), and it is grouped with the norms
    because the simulators charge both as per-layer elementwise passes over activations. One
    family for all would fit neither (held-out median 20.7% before the split).
    """
    import re

    import moe
    from sim import timing

    kernels = load_trace_kernels() if kernels is None else kernels
    model = moe.get("deepseek-v3")
    a = model.attention
    heads = a.num_heads
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    v = a.v_head_dim
    r = a.qk_rope_head_dim
    t = TRACE_TOKENS
    gpu = _h800()
    rows: list[Row] = []
    for e in kernels:
        name = e["name"]
        grid = e["args"].get("grid", [1, 1, 1])
        if "ln_fwd_kernel" in name or "ln_bwd_kernel" in name:
            width = int(re.search(r"unsigned int, (\d+)u", name).group(1))  # type: ignore[union-attr]
            if "ln_fwd_kernel" in name:
                kind, nbytes = f"ln_fwd {width}", t * width * 4.0 + t * 4.0
            else:
                kind, nbytes = f"ln_bwd {width}", t * width * 6.0 + t * 4.0 + grid[0] * width * 4.0
        elif "per_channel_cast_and_transpose<" in name and "swiglu" not in name.split("(")[0]:
            # BF16 [rows, width] -> FP8 transposed copy + one FP32 scale per 128 values; one
            # 128 x 128 tile per block: rows = 128 * grid.y, width = 128 * grid.x (rounded up to
            # whole tiles, e.g. kv_a's 576 counts as 640)
            flags = name.split("<", 1)[1].split(">", 1)[0].replace(" ", "")
            width, nrows = 128 * int(grid[0]), 128 * int(grid[1])
            kind = f"cast_transpose <{flags}> width {width}"  # held-out kind: not the row count
            nbytes = nrows * width * (2.0 + 1.0 + 4.0 / 128.0)
        elif name == "rotary_kernel":
            nh = heads if grid[2] > 1 else 1
            kind, nbytes = f"rotary heads={nh}", t * nh * r * 2.0 * 2.0
        elif "FlashAttnBwdPreprocess" in name:
            kind, nbytes = "attn bwd preprocess", t * heads * (2 * v * 2.0 + 4.0 + qk * 4.0)
        elif "FlashAttnBwdPostprocessConvertdQ" in name:
            kind, nbytes = "attn bwd dq convert", t * heads * qk * (4.0 + 2.0)
        else:
            continue
        family = "norm_rope" if kind.startswith(("ln_", "rotary")) else "memory_bound"
        mt = timing.memory_time(gpu, nbytes, family=family)
        rows.append(
            Row(
                "v3_trace_norm_rope" if family == "norm_rope" else "v3_trace_memory_bound",
                (kind, float(e["ts"])),
                float(e["dur"]) * 1e-6,
                TRACE_FAMILY_SOURCE,
                0.0,
                mt.memory_s,
                {"kernel": kind, "bytes": nbytes},
                family,
            )
        )
    return rows


def attention_bwd_trace_rows(kernels: list[dict[str, Any]] | None = None) -> list[Row]:
    """The trace's ``FlashAttnBwd`` kernels (one per layer): MLA training shape, one 4,096-token
    causal sequence, 128 heads, qk 192 / v 128, BF16; predicted on the 112 SMs left by DeepEP
    (the backward overlaps the forward chunk's all-to-alls)."""
    import moe
    from sim import timing

    kernels = load_trace_kernels() if kernels is None else kernels
    a = moe.get("deepseek-v3").attention
    qk = a.qk_nope_head_dim + a.qk_rope_head_dim
    gpu = _compute_sms_h800()
    rows = []
    for e in kernels:
        n = e["name"]
        if "flash::FlashAttnBwd<" not in n:  # not the preprocess / dQ-convert kernels
            continue
        t = timing.attention_time(
            gpu, 1, TRACE_TOKENS, TRACE_TOKENS, a.num_heads, qk, a.v_head_dim, True, "bf16", backward=True
        )
        shape = {"batch": 1, "q_len": TRACE_TOKENS, "kv_len": TRACE_TOKENS, "backward": True}
        key = ("FlashAttnBwd", float(e["ts"]))
        measured = float(e["dur"]) * 1e-6
        rows.append(
            Row.predicted(
                "v3_trace_attention_bwd", key, measured, TRACE_FAMILY_SOURCE, t, shape, "attention_backward"
            )
        )
    return rows


def trace_shapes(rows: list[Row]) -> list[list[int]]:
    """The distinct shapes of a trace table, as lists of row indices, smallest first.

    A shape is a kernel kind (``key[0]``: an operator of the layer, or a kernel template at one
    width); kinds that give the timing model the same inputs (compute seconds, memory seconds,
    launches: e.g. two cast templates over the same 7,168-wide tensor) are one shape, because a
    held-out row whose prediction equals a fitted row's tests nothing new. Instances of one kind
    in different layers are the same shape. Shapes are ordered by their mean roofline work
    (compute + memory seconds), then by kind.
    """
    kind_of_inputs: dict[tuple[float, float, int], str] = {}
    parent: dict[str, str] = {}

    def root(kind: str) -> str:
        while parent[kind] != kind:
            kind = parent[kind]
        return kind

    for r in rows:
        kind = str(r.key[0])
        parent.setdefault(kind, kind)
        inputs = (round(r.compute_s, 12), round(r.memory_s, 12), int(r.shape.get("launches", 1)))
        other = kind_of_inputs.setdefault(inputs, kind)
        a, b = root(kind), root(other)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        members.setdefault(root(str(r.key[0])), []).append(i)

    def size(item: tuple[str, list[int]]) -> tuple[float, str]:
        kind, idx = item
        return (sum(rows[i].compute_s + rows[i].memory_s for i in idx) / len(idx), kind)

    return [idx for _, idx in sorted(members.items(), key=size)]


def trace_split(rows: list[Row]) -> tuple[list[int], list[int]]:
    """Fixed held-out rule for trace rows: whole shapes (:func:`trace_shapes`, smallest first),
    even positions fit, odd ones held out, so that no held-out row shares its shape with a fitted
    one (the trace runs each shape once per layer; holding out another layer of a fitted shape
    would score repeatability, not the model). A table with a single shape cannot be split: it is
    fitted on every row and held nothing out (``fitted_only``). No random draw."""
    fit: list[int] = []
    held: list[int] = []
    shapes = trace_shapes(rows)
    if len(shapes) < 2:
        return sorted(i for idx in shapes for i in idx), []
    for position, idx in enumerate(shapes):
        (fit if position % 2 == 0 else held).extend(idx)
    return sorted(fit), sorted(held)


TRACE_TABLES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("v3_trace_wgrad", "gemm_wgrad", ("compute_efficiency", "memory_efficiency")),
    ("v3_trace_memory_bound", "memory_bound", ("launch_s", "memory_efficiency")),
    ("v3_trace_norm_rope", "norm_rope", ("launch_s", "memory_efficiency")),
    ("v3_trace_attention_bwd", "attention_backward", ("compute_efficiency",)),
)


def trace_rows(table: str, kernels: list[dict[str, Any]]) -> list[Row]:
    """The rows of trace table ``table`` (one of :data:`TRACE_TABLES`) from the trace's kernels."""
    if table == "v3_trace_wgrad":
        return wgrad_trace_rows(kernels)
    if table in ("v3_trace_memory_bound", "v3_trace_norm_rope"):
        return [r for r in memory_trace_rows(kernels) if r.table == table]
    return attention_bwd_trace_rows(kernels)


def main(argv: list[str] | None = None) -> int:
    """``python -m sim.calibration.published [--as-of YYYY-MM] [--write]``: fit and score the H800
    tables (newest, or as of a vintage) and print the held-out errors; ``--write`` with ``--as-of``
    writes ``gpus/calibration/h800-<vintage>.json`` (the newest tables' ``h800.json`` is written by
    ``python -m kernels_numba.validate --write``)."""
    import argparse
    import datetime

    parser = argparse.ArgumentParser(prog="python -m sim.calibration.published", description=main.__doc__)
    parser.add_argument("--as-of", default=None, help=f"a table vintage: {', '.join(sorted(vintages()))}")
    parser.add_argument("--write", action="store_true", help="write the vintage's calibration file")
    args = parser.parse_args(argv)
    if args.write and args.as_of is None:
        parser.error(
            "--write needs --as-of (h800.json is written by python -m kernels_numba.validate --write)"
        )
    try:
        result = fit_and_score(as_of=args.as_of)
    except ValueError as err:
        print(f"python -m sim.calibration.published: error: {err}", file=sys.stderr)
        return 2
    label = "newest tables" if args.as_of is None else f"tables as of {args.as_of}"
    for table, summary in result["tables"].items():
        if summary.get("fitted_only"):
            print(
                f"H800 ({label}) {table:24s} fitted only (one shape, {summary['fit_n']} instances; "
                f"in-sample median {summary['fit_median_pct']:.1f}%, not a validation)"
            )
            continue
        print(
            f"H800 ({label}) {table:24s} held-out median {summary['median_pct']:6.1f}%  "
            f"p90 {summary['p90_pct']:6.1f}%  n={summary['n']:3d}"
        )
    if args.write:
        print(f"wrote {write_calibration(result, datetime.date.today().isoformat())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
