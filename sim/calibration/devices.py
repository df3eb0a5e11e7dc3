"""Kernels measured on the hardware at hand: fit the efficiency parameters to them, score, write.

A device file (``gpus/calibration/<device>.json``, written by ``python -m kernels_numba.bench``)
holds the harness's measurements; this module fits the timing model to them and writes the fitted
families back. It is used by ``kernels_numba.bench`` (which writes each file),
``kernels_numba.validate`` (which reports the held-out errors) and ``reports`` (the README's table
and the validation notebook's scatter):

* :func:`groups` -- a file's measurements by (family, implementation);
* :func:`fit_group` -- one group fitted on the fit half of its shapes (the fixed rule of
  ``sim.calibration.split_fit_holdout``), with every record's (predicted, measured) seconds;
* :func:`fit_families` -- the fitted parameters of every group, as a file stores them;
* :func:`score_device` -- held-out error summaries per group, and printable lines;
* :func:`write_device_file` -- write a file, then its fitted families;
* :func:`merge_runs` -- one file from several runs of the bench, their passes pooled.

The torch references of ``kernels_numba.torch_ref`` are unfused operator sequences; how many calls
they issue (:func:`launch_count`) and when the CPU attention materialises its scores
(:func:`materializes_scores`) is part of predicting their times, so it is stated here, where the
cost API can read it without torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import gpus
from sim import calibration as cal
from sim import timing

CPU_START = cal.FamilyParams(
    launch_s=1e-5, compute_efficiency=0.5, memory_efficiency=0.5, overlap_exponent=2.0
)
CPU_MAX_EFFICIENCY = 8.0  # caches (L2/L3 bandwidth) can beat the measured DRAM copy ceiling on a CPU
GPU_MAX_EFFICIENCY = 1.0


def launch_count(family: str, shape: Mapping[str, Any], config: Mapping[str, Any]) -> int:
    """Torch operator calls each function of ``kernels_numba.torch_ref`` issues for a shape (counted
    from its code): the timing model charges a call overhead per operator, as an unfused sequence
    pays it."""
    if family == "grouped_gemm":
        return max(1, sum(1 for g in shape["group_sizes"] if g > 0))  # one matmul per non-empty group
    if family == "gating":
        # score, bias add; group-limited: group score (sigmoid: topk(2) + sum; softmax: amax),
        # topk of groups, zeros_like, scatter_, ~mask, repeat_interleave, masked_fill; then topk,
        # gather, sum, div, mul (the ``view`` launches nothing). Sigmoid grouped 15, softmax
        # grouped 14, ungrouped 7.
        grouped = 0
        if int(config.get("n_group", 1)) > 1:
            grouped = (2 if config.get("scoring", "sigmoid") == "sigmoid" else 1) + 6
        return 2 + grouped + 5
    if family == "permute":
        # combine: index_select, unsqueeze/to, bmm; permute: argsort, div, empty, arange, scatter,
        # bincount, cumsum, cat, index_select
        return 3 if shape["combine"] else 9
    return 1


def materializes_scores(qk_head_dim: int, v_head_dim: int) -> bool:
    """Whether ``kernels_numba.torch_ref.attention`` takes PyTorch's unfused CPU path (score matrix
    in memory): the fused CPU flash kernel requires equal query/key and value head dims (ATen
    ``sdp_utils_cpp.cpp``, ``check_head_dim_size_cpp``), which MLA (192/128, 576/512) breaks."""
    return qk_head_dim != v_head_dim


def model_time(
    profile: Any, family: str, shape: Mapping[str, Any], config: Mapping[str, Any], impl: str = "numba_cpu"
) -> Any:
    """The ``sim.timing`` OpTime for a benchmark record (its compute_s and memory_s feed the fit).

    Numba kernels are one call; the torch references issue :func:`launch_count` calls.
    """
    launches = 1
    if impl.startswith("torch"):
        launches = launch_count(family, shape, config)
    s = shape
    if family == "gemm":
        return timing.gemm_time(profile, s["m"], s["n"], s["k"], s["dtype"])
    if family == "grouped_gemm":
        return timing.grouped_gemm_time(profile, s["group_sizes"], s["n"], s["k"], s["dtype"], launches)
    if family == "gating":
        return timing.gating_time(
            profile,
            s["num_tokens"],
            s["num_experts"],
            s["top_k"],
            config.get("scoring", "sigmoid"),
            config.get("n_group", 1),
            launches,
            unfused=impl.startswith("torch"),
            topk_group=config.get("topk_group"),
        )
    if family == "permute":
        return timing.permute_time(
            profile,
            s["num_tokens"],
            s["hidden"],
            s["top_k"],
            s["dtype"],
            s["combine"],
            launches,
            unfused=impl.startswith("torch"),
        )
    if family in ("attention_prefill", "attention_decode"):
        size = cal.dtype_bytes(s["dtype"])
        kv_bytes = s["batch"] * config["kv_heads"] * s["kv_len"] * (s["qk_head_dim"] + s["v_head_dim"]) * size
        materialized = impl == "torch_cpu" and materializes_scores(s["qk_head_dim"], s["v_head_dim"])
        return timing.attention_time(
            profile,
            s["batch"],
            s["q_len"],
            s["kv_len"],
            s["num_heads"],
            s["qk_head_dim"],
            s["v_head_dim"],
            s["causal"],
            s["dtype"],
            kv_bytes=kv_bytes,
            materialized_scores=materialized,
        )
    raise ValueError(f"unknown family {family!r}; allowed: {', '.join(cal.FAMILIES)}")


def profile_for(doc: Mapping[str, Any], path: Path | None) -> Any:
    """The device profile: a CPU profile from the file's ceilings, or the GPU's own profile."""
    if doc.get("kind") == "cpu":
        if path is None:
            raise ValueError("a CPU calibration document needs its file path to build the profile")
        return gpus.cpu_profile_from_calibration(path)
    return gpus.get(str(doc["device"]))


def model_family(record: Mapping[str, Any]) -> str:
    """The timing model's family for a benchmark record: a one-row GEMM is ``gemv``
    (``sim.timing.gemm_family``: BLAS's matrix-vector path, the Numba kernel's one-row loop);
    torch's prefill attention on the CPU with unequal head dims runs PyTorch's unfused math path
    (:func:`materializes_scores`), a different kernel from its fused flash path, so it is
    fitted as ``attention_prefill_math``."""
    family = str(record["family"])
    if family == "gemm":
        return timing.gemm_family(int(record["shape"]["m"]))
    if family == "attention_prefill" and record["impl"] == "torch_cpu":
        s = record["shape"]
        if materializes_scores(s["qk_head_dim"], s["v_head_dim"]):
            return "attention_prefill_math"
    return family


def groups(doc: Mapping[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A calibration file's measurements grouped by (model family, implementation)."""
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for record in doc.get("measurements", []):
        out.setdefault((model_family(record), record["impl"]), []).append(record)
    return out


def fit_group(
    profile: Any, records: list[dict[str, Any]], kind: str
) -> tuple[cal.FamilyParams, list[int], list[int], list[tuple[float, float]]]:
    """Fit one group's parameters on the fit half of its shapes; returns them, the fit and held-out
    record indices, and every record's (predicted, measured) seconds. ``kind``: "cpu" or "gpu"."""
    times = [model_time(profile, r["family"], r["shape"], r.get("config", {}), r["impl"]) for r in records]
    measured = [float(r["measured_s"]) for r in records]
    keys = [shape_key(r["shape"]) for r in records]
    fit_idx, held_idx = cal.split_fit_holdout(keys)

    def predict(params: cal.FamilyParams, i: int) -> float:
        return cal.predict_seconds(params, times[i].compute_s, times[i].memory_s, times[i].launches)

    cap = CPU_MAX_EFFICIENCY if kind == "cpu" else GPU_MAX_EFFICIENCY
    params = cal.fit_params(predict, measured, fit_idx, CPU_START, max_efficiency=cap)
    pairs = [(predict(params, i), measured[i]) for i in range(len(records))]
    return params, fit_idx, held_idx, pairs


def shape_key(shape: Mapping[str, Any]) -> tuple[Any, ...]:
    """Numbers first in a fixed field order, so that shapes sort by size within a family."""
    return tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in sorted(shape.items()))


def fit_families(doc: Mapping[str, Any], path: Path) -> dict[str, dict[str, Any]]:
    """Fitted parameters per family and implementation (fit half only), for the file at ``path``."""
    profile = profile_for(doc, path)
    families: dict[str, dict[str, Any]] = {}
    for (family, impl), records in sorted(groups(doc).items()):
        params, fit_idx, held_idx, _ = fit_group(profile, records, str(doc.get("kind")))
        families.setdefault(family, {})[impl] = {
            **params.to_dict(),
            "fit_n": len(fit_idx),
            "held_out_n": len(held_idx),
        }
    return families


def score_device(doc: Mapping[str, Any], path: Path) -> tuple[dict[str, Any], list[str]]:
    """Held-out summaries per "family/impl" and printable lines."""
    profile = profile_for(doc, path)
    held_out: dict[str, Any] = {}
    lines = []
    for (family, impl), records in sorted(groups(doc).items()):
        params, fit_idx, held_idx, pairs = fit_group(profile, records, str(doc.get("kind")))
        errors = cal.abs_pct_errors([pairs[i][0] for i in held_idx], [pairs[i][1] for i in held_idx])
        summary = cal.summarise(errors)
        if summary["n"] == 0:
            lines.append(f"{family + '/' + impl:30s} no held-out shape (only {len(records)} measured)")
            continue
        held_out[f"{family}/{impl}"] = summary
        lines.append(
            f"{family + '/' + impl:30s} held-out median {summary['median_pct']:6.1f}%  "
            f"p90 {summary['p90_pct']:6.1f}%  n={summary['n']:3d}  (fit on {len(fit_idx)})  "
            f"launch {params.launch_s * 1e6:.1f} us, compute eff {params.compute_efficiency:.3f}, "
            f"memory eff {params.memory_efficiency:.3f}, p {params.overlap_exponent:.2f}"
        )
    return held_out, lines


def write_device_file(path: Path, doc: Mapping[str, Any], fit: bool = True) -> Path:
    """Write the device file ``doc`` to ``path``, then, with ``fit``, its fitted families
    (:func:`fit_families`, which builds a CPU profile from the file just written); returns ``path``."""
    cal.write_json(path, doc)
    if fit:
        cal.write_json(path, {**doc, "families": fit_families(doc, path)})
    return path


def merge_runs(paths: list[Path], out: Path, fit: bool = True) -> Path:
    """One calibration file from several full runs of the bench on the same device, thread count
    and library versions: each record's passes are pooled and ``measured_s`` is their median (as
    one run with the passes of all); the ceilings are the median of the runs' ceilings. Runs taken
    apart in time average over the slow swings of a shared machine that one run's interleaved
    passes cannot. The file's ``merged_from`` lists the runs (date, passes, ceilings)."""
    if len(paths) < 2:
        raise ValueError(f"merge needs at least two calibration files, got {len(paths)}")
    docs = [json.loads(Path(p).read_text()) for p in paths]
    first = docs[0]
    for p, d in zip(paths[1:], docs[1:], strict=True):
        for field in ("device", "kind", "cores", "versions", "cpu_capability"):
            if d.get(field) != first.get(field):
                raise ValueError(
                    f"cannot merge {p}: its {field} {d.get(field)!r} differs from {first.get(field)!r}"
                )

    def key(r: dict[str, Any]) -> str:
        return json.dumps([r["family"], r["impl"], r["shape"], r.get("config", {})], sort_keys=True)

    pooled: dict[str, dict[str, Any]] = {}
    seen: dict[str, int] = {}  # runs that hold each record
    for d in docs:
        for r in d["measurements"]:
            k = key(r)
            if k not in pooled:
                pooled[k] = {**r, "pass_s": [], "wall_s": [], "cpu_s": [], "runs": 0, "clock": {}}
                seen[k] = 0
            seen[k] += 1
            m = pooled[k]
            m["pass_s"] += list(r.get("pass_s", [r["measured_s"]]))
            m["wall_s"] += list(r.get("wall_s", []))
            m["cpu_s"] += list(r.get("cpu_s", []))
            m["runs"] += int(r.get("runs", 0))
            for clock, count in r.get("clock", {}).items():
                m["clock"][clock] = m["clock"].get(clock, 0) + count
    missing = [k for k, c in seen.items() if c != len(docs)]
    if missing:
        raise ValueError(f"cannot merge: {len(missing)} records are not in every run, e.g. {missing[0]}")
    for m in pooled.values():
        m["measured_s"] = float(np.median(m["pass_s"]))
    ceilings = dict(first["ceilings"])
    flops = {
        dtype: float(np.median([d["ceilings"]["matmul_flops_per_s"][dtype] for d in docs]))
        for dtype in first["ceilings"]["matmul_flops_per_s"]
    }
    ceilings["matmul_flops_per_s"] = flops
    ceilings["copy_bytes_per_s"] = float(np.median([d["ceilings"]["copy_bytes_per_s"] for d in docs]))
    doc = {
        **first,
        "date": max(str(d["date"]) for d in docs),
        "source": f"measured by python -m kernels_numba.bench, {len(docs)} runs pooled by --merge",
        "ceilings": ceilings,
        "merged_from": [
            {
                "date": d["date"],
                "passes": len(d["measurements"][0].get("pass_s", [1])),
                "ceilings": d["ceilings"],
            }
            for d in docs
        ],
        "families": {},
        "measurements": list(pooled.values()),
    }
    return write_device_file(out, doc, fit)
